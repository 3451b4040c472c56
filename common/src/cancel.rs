//! Cancellation handed to long operations instead of a process-wide flag.
//!
//! Whoever may stop the work (the CLI's Ctrl-C handler, a D-Bus `Cancel` call, a test) holds a
//! clone of the same [`Cancel`]. The work checks it between steps ([`Cancel::check`]) and may
//! register hooks that run once when it is cancelled ([`Cancel::on_cancel`]): cancelling a
//! libostree `GCancellable`, ending a sandboxed process. Nothing here is global, so two
//! operations in one process (a daemon serving two callers) cancel independently.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

type Hook = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    hooks: Mutex<Vec<Hook>>,
}

/// A cancellation token; clones share one state.
#[derive(Clone, Default)]
pub struct Cancel(Arc<Inner>);

/// The error an operation returns when its [`Cancel`] was triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the operation: sets the flag and runs every registered hook, once.
    pub fn cancel(&self) {
        if self.0.cancelled.swap(true, Ordering::SeqCst) {
            return;
        }
        let hooks = match self.0.hooks.lock() {
            Ok(hooks) => hooks,
            Err(poisoned) => poisoned.into_inner(),
        };
        for hook in hooks.iter() {
            hook();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// `Err(Cancelled)` once [`Cancel::cancel`] was called.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// Runs `hook` when the token is cancelled; at once if it already is.
    pub fn on_cancel(&self, hook: impl Fn() + Send + Sync + 'static) {
        let mut hooks = match self.0.hooks.lock() {
            Ok(hooks) => hooks,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Checked under the lock, so a concurrent `cancel` either sees this hook or we see
        // its flag.
        if self.is_cancelled() {
            drop(hooks);
            hook();
            return;
        }
        hooks.push(Box::new(hook));
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn clones_share_the_state_and_hooks_run_once() {
        let cancel = Cancel::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        cancel.on_cancel(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let other = cancel.clone();
        assert_eq!(other.check(), Ok(()));
        other.cancel();
        other.cancel();
        assert_eq!(cancel.check(), Err(Cancelled));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_hook_registered_after_cancel_runs_at_once() {
        let cancel = Cancel::new();
        cancel.cancel();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        cancel.on_cancel(move || flag.store(true, Ordering::SeqCst));
        assert!(ran.load(Ordering::SeqCst));
    }

    #[test]
    fn two_tokens_are_independent() {
        let a = Cancel::new();
        let b = Cancel::new();
        a.cancel();
        assert!(a.is_cancelled());
        assert!(!b.is_cancelled());
    }
}
