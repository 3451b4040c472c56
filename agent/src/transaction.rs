//! One change of the host at a time: the daemon's transaction slot. A caller [`Slot::begin`]s
//! a transaction and gets its id and cancel token, or [`Busy`] naming the running one and who
//! started it; [`Slot::end`] frees the slot; [`Slot::cancel`] triggers the running one's token.

use keel_common::cancel::Cancel;
use serde::Serialize;
use std::sync::{Mutex, MutexGuard};

/// What a transaction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Check,
    Download,
    Stage,
    Reboot,
    Rollback,
    /// A tick of the automatic update agent.
    Automatic,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Check => "check",
            Kind::Download => "download",
            Kind::Stage => "stage",
            Kind::Reboot => "reboot",
            Kind::Rollback => "rollback",
            Kind::Automatic => "automatic update",
        }
    }
}

/// Who asked: the caller's unique bus name and uid (the daemon itself for automatic runs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Caller {
    pub bus_name: String,
    pub uid: Option<u32>,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.uid {
            Some(uid) => write!(f, "{} (uid {uid})", self.bus_name),
            None => write!(f, "{}", self.bus_name),
        }
    }
}

/// The running transaction, as status shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Running {
    pub id: u64,
    pub kind: Kind,
    pub caller: Caller,
    #[serde(skip)]
    cancel: Cancel,
}

/// A transaction is already running.
#[derive(Debug, Clone, thiserror::Error)]
#[error("transaction {} ({}) started by {} is running; wait for it to finish or call Cancel", .0.id, .0.kind.name(), .0.caller)]
pub struct Busy(pub Running);

#[derive(Debug, Default)]
pub struct Slot {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    running: Option<Running>,
    last_id: u64,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn begin(&self, kind: Kind, caller: Caller) -> Result<(u64, Cancel), Busy> {
        let mut inner = self.lock();
        if let Some(running) = &inner.running {
            return Err(Busy(running.clone()));
        }
        inner.last_id += 1;
        let cancel = Cancel::new();
        inner.running = Some(Running {
            id: inner.last_id,
            kind,
            caller,
            cancel: cancel.clone(),
        });
        Ok((inner.last_id, cancel))
    }

    /// Frees the slot if transaction `id` holds it.
    pub fn end(&self, id: u64) {
        let mut inner = self.lock();
        if inner.running.as_ref().is_some_and(|r| r.id == id) {
            inner.running = None;
        }
    }

    pub fn running(&self) -> Option<Running> {
        self.lock().running.clone()
    }

    /// Cancels the running transaction; returns it, or `None` when none runs.
    pub fn cancel(&self) -> Option<Running> {
        let running = self.lock().running.clone();
        if let Some(r) = &running {
            r.cancel.cancel();
        }
        running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(name: &str, uid: u32) -> Caller {
        Caller {
            bus_name: name.into(),
            uid: Some(uid),
        }
    }

    #[test]
    fn one_at_a_time_and_the_second_caller_is_told_who_runs() {
        let slot = Slot::default();
        let (id, cancel) = slot.begin(Kind::Download, caller(":1.7", 0)).unwrap();
        let busy = slot
            .begin(Kind::Rollback, caller(":1.9", 1000))
            .unwrap_err();
        assert_eq!(
            busy.to_string(),
            "transaction 1 (download) started by :1.7 (uid 0) is running; wait for it to finish or call Cancel"
        );
        assert!(!cancel.is_cancelled());
        assert_eq!(slot.cancel().map(|r| r.id), Some(id));
        assert!(cancel.is_cancelled());
        slot.end(id + 1);
        assert!(slot.running().is_some(), "another id freed the slot");
        slot.end(id);
        assert!(slot.cancel().is_none());
        let (second, _) = slot.begin(Kind::Check, caller(":1.9", 1000)).unwrap();
        assert_eq!(second, 2);
    }
}
