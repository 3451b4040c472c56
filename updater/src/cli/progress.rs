//! The progress sink the CLI hands to keel-host: an indicatif spinner on stderr (drawn only on
//! a terminal), hidden with `--json`. Messages and warnings always become lines on stderr:
//! above the spinner when it is drawn, plain lines when it is not (a pipe, the journal,
//! `--json`), so stdout carries nothing but the command's output.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use keel_common::progress::{Event, Progress};
use keel_host::upgrade::human_bytes;

/// What the current phase has moved so far.
#[derive(Default)]
struct State {
    phase: String,
    started: Option<Instant>,
    bytes: u64,
    items: (u64, Option<u64>),
}

pub struct Bar {
    bar: ProgressBar,
    state: Mutex<State>,
    /// Where lines go when the spinner is not drawn (stderr).
    lines: Mutex<Box<dyn Write + Send>>,
}

impl Bar {
    /// A spinner, or no spinner when `hidden` (`--json`); lines go to stderr either way.
    pub fn new(hidden: bool) -> Self {
        Self::with_lines(hidden, Box::new(std::io::stderr()))
    }

    /// [`Bar::new`] writing its lines to `lines` whenever the spinner is not drawn.
    fn with_lines(hidden: bool, lines: Box<dyn Write + Send>) -> Self {
        let bar = if hidden {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new_spinner();
            let style = ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar
        };
        Self {
            bar,
            state: Mutex::new(State::default()),
            lines: Mutex::new(lines),
        }
    }

    /// A line above the spinner, or on its own when no spinner is drawn.
    fn line(&self, text: String) {
        if !self.bar.is_hidden() {
            self.bar.println(text);
            return;
        }
        let mut lines = match self.lines.lock() {
            Ok(lines) => lines,
            Err(poisoned) => poisoned.into_inner(),
        };
        let _ = writeln!(lines, "{text}");
    }

    /// Removes the spinner before the command prints its result.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Progress for Bar {
    fn report(&self, event: Event) {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        match event {
            Event::Phase { name } => {
                *state = State {
                    phase: name,
                    started: Some(Instant::now()),
                    ..State::default()
                };
            }
            Event::Message { text } => {
                drop(state);
                self.line(text);
                return;
            }
            Event::Warning { text } => {
                drop(state);
                self.line(format!("warning: {text}"));
                return;
            }
            Event::Bytes { done, .. } => state.bytes = done,
            Event::Items { done, total } => state.items = (done, total),
        }
        self.bar.set_message(render(&state));
        self.bar.tick();
    }
}

fn render(state: &State) -> String {
    let elapsed = state
        .started
        .map_or(0.001, |s| s.elapsed().as_secs_f64().max(0.001));
    let rate = human_bytes((state.bytes as f64 / elapsed) as u64);
    let (done, total) = state.items;
    let total = total.map_or_else(|| "?".to_string(), |t| t.to_string());
    match state.phase.as_str() {
        "pull" => format!(
            "Receiving: {} at {rate}/s, objects {done}/{total}",
            human_bytes(state.bytes)
        ),
        "delta" => format!(
            "Receiving the static delta: {} at {rate}/s, parts {done}/{total}",
            human_bytes(state.bytes)
        ),
        "deploy" => "Deploying".to_string(),
        other => format!("{other}..."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn warnings_and_messages_reach_stderr_without_a_terminal_or_with_json() {
        for hidden in [false, true] {
            let out = Captured::default();
            let bar = Bar::with_lines(hidden, Box::new(out.clone()));
            bar.report(Event::Phase {
                name: "pull".into(),
            });
            bar.warning("the remote's summary expires in 2 hours");
            bar.message("Staged 42.1");
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            assert_eq!(
                text, "warning: the remote's summary expires in 2 hours\nStaged 42.1\n",
                "hidden={hidden}"
            );
        }
    }

    #[test]
    fn pull_and_delta_progress_read_as_before() {
        let state = State {
            phase: "pull".into(),
            started: None,
            bytes: 2048,
            items: (3, Some(7)),
        };
        let text = render(&state);
        assert!(text.starts_with("Receiving: 2.0 KiB at "), "{text}");
        assert!(text.ends_with("objects 3/7"), "{text}");
        let delta = State {
            phase: "delta".into(),
            items: (1, Some(2)),
            ..state
        };
        assert!(render(&delta).ends_with("parts 1/2"));
    }
}
