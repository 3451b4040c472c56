//! The progress sink the CLI hands to keel-host: an indicatif spinner on stderr (drawn only on
//! a terminal), hidden with `--json`. Messages and warnings become lines above it.

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
}

impl Bar {
    /// A spinner, or a sink that shows nothing when `hidden` (`--json`).
    pub fn new(hidden: bool) -> Self {
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
        }
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
                self.bar.println(text);
                return;
            }
            Event::Warning { text } => {
                self.bar.println(format!("warning: {text}"));
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
