//! Progress events drawn on stderr: a bar with bytes, rate and items while a phase moves,
//! warnings as lines above it. Hidden when stderr is not a terminal (logs and tests stay
//! clean), except warnings, which are always printed. This is the CLI's side of
//! [`keel_common::progress::Progress`]; libraries only send events.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keel_common::progress::{Event, Progress};
use std::io::IsTerminal;

pub struct TerminalProgress {
    bar: ProgressBar,
    terminal: bool,
}

impl TerminalProgress {
    /// A bar labelled `what` (`"fetching"`).
    pub fn new(what: &str) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let target = if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        let template = format!(
            "{what} {{bar:30}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} {{prefix}} {{wide_msg}}"
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        TerminalProgress { bar, terminal }
    }
}

impl Progress for TerminalProgress {
    fn report(&self, event: Event) {
        match event {
            Event::Bytes { done, total } => {
                if let Some(total) = total {
                    self.bar.set_length(total);
                }
                self.bar.set_position(done);
            }
            Event::Items { done, total } => {
                let total = total.map_or(String::new(), |t| format!("/{t}"));
                self.bar.set_prefix(format!("{done}{total}"));
            }
            Event::Message { text } => self.bar.set_message(text),
            Event::Warning { text } => {
                if self.terminal {
                    self.bar.suspend(|| eprintln!("keel-compose: {text}"));
                } else {
                    eprintln!("keel-compose: {text}");
                }
            }
            Event::Phase { .. } => {}
        }
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
