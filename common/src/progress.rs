//! Progress reported by long operations through a sink the caller passes in.
//!
//! Libraries never print: they send [`Event`]s to a [`Progress`]. The CLI draws them as
//! progress bars and lines on stderr, the daemon turns them into D-Bus signals, tests record
//! them ([`Recorder`]) and assert on what a user would have seen.

use serde::Serialize;
use std::sync::Mutex;

/// One thing a long operation tells whoever watches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Event {
    /// A step starts (`"resolve"`, `"fetch"`, `"pull"`, `"deploy"`).
    Phase { name: String },
    /// A line for the user: what is happening, in words.
    Message { text: String },
    /// Something the user should know that does not stop the work.
    Warning { text: String },
    /// Bytes moved in the current phase so far, and the total when known.
    Bytes { done: u64, total: Option<u64> },
    /// Items (packages, objects, files) done in the current phase, and the total when known.
    Items { done: u64, total: Option<u64> },
}

/// Where progress goes. Implementations must be cheap: work calls this often.
pub trait Progress: Send + Sync {
    fn report(&self, event: Event);

    fn phase(&self, name: &str) {
        self.report(Event::Phase { name: name.into() });
    }
    fn message(&self, text: &str) {
        self.report(Event::Message { text: text.into() });
    }
    fn warning(&self, text: &str) {
        self.report(Event::Warning { text: text.into() });
    }
    fn bytes(&self, done: u64, total: Option<u64>) {
        self.report(Event::Bytes { done, total });
    }
    fn items(&self, done: u64, total: Option<u64>) {
        self.report(Event::Items { done, total });
    }
}

/// A sink that drops everything (scripts with `--json`, tests that do not care).
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl Progress for Discard {
    fn report(&self, _event: Event) {}
}

/// A sink that keeps every event, for tests.
#[derive(Debug, Default)]
pub struct Recorder(Mutex<Vec<Event>>);

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        match self.0.lock() {
            Ok(events) => events.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The texts of every `Message` and `Warning`, in order.
    pub fn lines(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Message { text } | Event::Warning { text } => Some(text),
                _ => None,
            })
            .collect()
    }
}

impl Progress for Recorder {
    fn report(&self, event: Event) {
        match self.0.lock() {
            Ok(mut events) => events.push(event),
            Err(poisoned) => poisoned.into_inner().push(event),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_keeps_events_in_order_and_lists_lines() {
        let sink = Recorder::default();
        sink.phase("fetch");
        sink.bytes(10, Some(20));
        sink.message("fetched 3 packages");
        sink.warning("mirror is slow");
        assert_eq!(sink.events().len(), 4);
        assert_eq!(sink.lines(), vec!["fetched 3 packages", "mirror is slow"]);
    }

    #[test]
    fn events_serialize_with_a_kind_tag() {
        let json = serde_json::to_string(&Event::Bytes {
            done: 1,
            total: None,
        })
        .unwrap_or_default();
        assert_eq!(json, r#"{"kind":"bytes","done":1,"total":null}"#);
    }
}
