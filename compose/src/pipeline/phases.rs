//! Running a compose's phases: each one timed, announced to the progress sink, and skipped
//! once the compose's [`Cancel`] token is cancelled; and that token wired into what cannot
//! check it between phases (libostree's `GCancellable`, a running sandboxed process).

use std::time::Instant;

use keel_common::cancel::{Cancel, Cancelled};
use keel_common::progress::Progress;
use ostree::gio;
use ostree::gio::prelude::CancellableExt;

use super::report::PhaseTime;
use crate::sandbox::Sandbox;

/// What the token reaches for one compose: libostree's work and our sandboxed processes.
pub struct Cancellation {
    cancel: Cancel,
    cancellable: gio::Cancellable,
}

impl Cancellation {
    /// Hooks a fresh `GCancellable` to `cancel`: it trips when the token is cancelled (at
    /// once, if it already is).
    pub fn new(cancel: &Cancel) -> Cancellation {
        let cancellable = gio::Cancellable::new();
        let hooked = cancellable.clone();
        cancel.on_cancel(move || hooked.cancel());
        Cancellation {
            cancel: cancel.clone(),
            cancellable,
        }
    }

    /// For libostree calls: cancelled with the token.
    pub fn cancellable(&self) -> &gio::Cancellable {
        &self.cancellable
    }

    /// `sandbox`, whose running command is killed when the token is cancelled.
    pub fn sandbox(&self, sandbox: Sandbox) -> Sandbox {
        sandbox.cancel_on(&self.cancel)
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// Times phases and announces each one to the progress sink.
pub struct Phases<'a> {
    pub started: Instant,
    pub times: Vec<PhaseTime>,
    pub cancellation: &'a Cancellation,
    pub progress: &'a dyn Progress,
}

impl Phases<'_> {
    /// `Err` with [`Cancelled`] in its chain once the compose is cancelled, saying that it
    /// stopped before `phase`.
    pub fn check(&self, phase: &str) -> anyhow::Result<()> {
        if self.cancellation.is_cancelled() {
            return Err(anyhow::Error::new(Cancelled).context(format!(
                "stopped before phase {phase}; the scratch tree is removed and the repository \
                 is unchanged"
            )));
        }
        Ok(())
    }

    /// Runs `f` as phase `phase`; refuses to start once cancelled, and marks an error that a
    /// cancellation caused as [`Cancelled`] (find it with `anyhow::Error::downcast_ref`).
    pub fn run<T>(
        &mut self,
        phase: &str,
        f: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.check(phase)?;
        self.progress.phase(phase);
        let started = Instant::now();
        let result = f();
        let seconds = started.elapsed().as_secs_f64();
        self.times.push(PhaseTime {
            phase: phase.to_owned(),
            seconds,
        });
        match result {
            Ok(value) => {
                self.progress
                    .message(&format!("{phase} done in {seconds:.1} s"));
                Ok(value)
            }
            // A cancellation explains whatever error it caused.
            Err(err) if self.cancellation.is_cancelled() => Err(err
                .context(Cancelled)
                .context(format!("phase {phase} stopped"))),
            Err(err) => Err(err.context(format!("phase {phase} failed"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_common::progress::{Event, Recorder};

    #[test]
    fn cancelling_the_token_trips_the_cancellable_and_stops_the_next_phase() {
        let cancel = Cancel::new();
        let cancellation = Cancellation::new(&cancel);
        let sink = Recorder::default();
        let mut phases = Phases {
            started: Instant::now(),
            times: Vec::new(),
            cancellation: &cancellation,
            progress: &sink,
        };
        phases.run("first", || Ok(())).unwrap();
        assert!(!cancellation.cancellable().is_cancelled());
        cancel.cancel();
        assert!(cancellation.cancellable().is_cancelled());
        let mut ran = false;
        let err = phases
            .run("second", || {
                ran = true;
                Ok(())
            })
            .unwrap_err();
        assert!(!ran, "a phase started after the token was cancelled");
        assert!(err.downcast_ref::<Cancelled>().is_some(), "{err:#}");
        assert_eq!(
            sink.events()[0],
            Event::Phase {
                name: "first".into()
            }
        );
        assert_eq!(phases.times.len(), 1);
    }

    #[test]
    fn an_error_during_a_cancelled_phase_is_marked_cancelled() {
        let cancel = Cancel::new();
        let cancellation = Cancellation::new(&cancel);
        let mut phases = Phases {
            started: Instant::now(),
            times: Vec::new(),
            cancellation: &cancellation,
            progress: &keel_common::progress::Discard,
        };
        let err = phases
            .run("install", || -> anyhow::Result<()> {
                cancel.cancel();
                anyhow::bail!("dpkg was killed")
            })
            .unwrap_err();
        assert!(err.downcast_ref::<Cancelled>().is_some(), "{err:#}");
        assert!(format!("{err:#}").contains("dpkg was killed"), "{err:#}");
    }

    #[test]
    fn two_tokens_reach_only_their_own_cancellables() {
        let (a, b) = (Cancel::new(), Cancel::new());
        let (on_a, on_b) = (Cancellation::new(&a), Cancellation::new(&b));
        a.cancel();
        assert!(on_a.cancellable().is_cancelled());
        assert!(!on_b.cancellable().is_cancelled());
    }
}
