//! Drawing a compose's progress on stderr: a line per phase, message and warning (prefixed
//! `keel-compose:`, as they always were), and while a phase runs an indicatif bar for its
//! bytes or items (a phase reporting both, like fetch, gets the bytes bar with the items
//! counted beside it), or a spinner with the elapsed time when it reports neither. Bars are
//! drawn only when stderr is a terminal and `--json` was not given; lines always go to
//! stderr, so stdout carries nothing but the `--json` object.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keel_common::progress::{Event, Progress};

/// Where the bar goes: drawn on a terminal, or nowhere.
pub struct Terminal {
    bars: bool,
    current: Mutex<Current>,
}

#[derive(Default)]
struct Current {
    phase: String,
    bar: Option<(ProgressBar, BarKind)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BarKind {
    Spinner,
    Bytes,
    Items,
}

impl Terminal {
    /// Bars only when stderr is a terminal and `json` is false.
    pub fn new(json: bool) -> Terminal {
        Terminal {
            bars: !json && std::io::stderr().is_terminal(),
            current: Mutex::new(Current::default()),
        }
    }

    fn bar(&self, kind: BarKind, phase: &str, total: Option<u64>) -> ProgressBar {
        let target = if self.bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(total, target);
        let template = match kind {
            BarKind::Spinner => "{spinner} {prefix} {elapsed}",
            BarKind::Bytes => "{prefix} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            BarKind::Items => "{prefix} [{bar:20}] {pos}/{len}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(phase.to_owned());
        if kind == BarKind::Spinner {
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        bar
    }
}

/// The line printed for an event, if it is one.
pub fn line(event: &Event) -> Option<String> {
    match event {
        Event::Phase { name } => Some(format!("keel-compose: {name}...")),
        Event::Message { text } => Some(format!("keel-compose: {text}")),
        Event::Warning { text } => Some(format!("keel-compose: warning: {text}")),
        Event::Bytes { .. } | Event::Items { .. } => None,
    }
}

impl Progress for Terminal {
    fn report(&self, event: Event) {
        let mut current = match self.current.lock() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        let print = |current: &Current, text: &str| match &current.bar {
            Some((bar, _)) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        };
        match &event {
            Event::Phase { name } => {
                if let Some((bar, _)) = current.bar.take() {
                    bar.finish_and_clear();
                }
                print(&current, &line(&event).unwrap_or_default());
                current.phase = name.clone();
                current.bar = Some((self.bar(BarKind::Spinner, name, None), BarKind::Spinner));
            }
            Event::Message { .. } | Event::Warning { .. } => {
                print(&current, &line(&event).unwrap_or_default());
            }
            Event::Items { done, total } if matches!(current.bar, Some((_, BarKind::Bytes))) => {
                if let Some((bar, _)) = &current.bar {
                    let total = total.map(|t| format!("/{t}")).unwrap_or_default();
                    bar.set_message(format!("{done}{total}"));
                }
            }
            Event::Bytes { done, total } | Event::Items { done, total } => {
                let kind = if matches!(event, Event::Bytes { .. }) {
                    BarKind::Bytes
                } else {
                    BarKind::Items
                };
                if current.bar.as_ref().map(|(_, k)| *k) != Some(kind) {
                    if let Some((bar, _)) = current.bar.take() {
                        bar.finish_and_clear();
                    }
                    let bar = self.bar(kind, &current.phase, *total);
                    current.bar = Some((bar, kind));
                }
                if let Some((bar, _)) = &current.bar {
                    if let Some(total) = total {
                        bar.set_length(*total);
                    }
                    bar.set_position(*done);
                }
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let current = match self.current.get_mut() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((bar, _)) = current.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_the_composers_prefix() {
        for (event, want) in [
            (
                Event::Phase {
                    name: "fetch".into(),
                },
                Some("keel-compose: fetch..."),
            ),
            (
                Event::Message {
                    text: "fetch done in 1.0 s".into(),
                },
                Some("keel-compose: fetch done in 1.0 s"),
            ),
            (
                Event::Warning {
                    text: "not caching".into(),
                },
                Some("keel-compose: warning: not caching"),
            ),
            (
                Event::Bytes {
                    done: 1,
                    total: None,
                },
                None,
            ),
        ] {
            assert_eq!(line(&event).as_deref(), want);
        }
    }

    #[test]
    fn bars_follow_the_events_without_a_terminal() {
        let sink = Terminal::new(true);
        let kind = |sink: &Terminal| sink.current.lock().unwrap().bar.as_ref().map(|(_, k)| *k);
        sink.phase("resolve");
        assert_eq!(kind(&sink), Some(BarKind::Spinner));
        sink.items(1, Some(2));
        assert_eq!(kind(&sink), Some(BarKind::Items));
        sink.phase("fetch");
        sink.bytes(10, Some(100));
        sink.items(1, Some(2));
        assert_eq!(
            kind(&sink),
            Some(BarKind::Bytes),
            "items count beside the bytes"
        );
        {
            let current = sink.current.lock().unwrap();
            let (bar, _) = current.bar.as_ref().unwrap();
            assert_eq!(bar.message(), "1/2");
            assert_eq!(bar.position(), 10);
        }
        sink.phase("install");
        assert_eq!(sink.current.lock().unwrap().phase, "install");
        assert_eq!(kind(&sink), Some(BarKind::Spinner));
    }
}
