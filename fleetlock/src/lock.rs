//! The lock operations on a [`Store`]: read a group's semaphore, decide
//! ([`crate::semaphore`]), write back by compare-and-swap, and start over from the value that
//! won when another replica wrote first. Every answer, a refusal or a no-op included, is
//! checked against the store in the same compare-and-swap, so no replica answers from a stale
//! view; the last value each replica saw is kept as its first guess, which makes an
//! uncontended request one round trip.

use crate::semaphore::{Decision, Holder, Semaphore};
use crate::store::{Cas, Store, StoreError, Versioned};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Where the semaphores live: one key per group.
pub const KEY_PREFIX: &str = "keel-fleetlock/v1/groups/";

/// How many times a request goes back to the store when other writers keep winning.
const MAX_ATTEMPTS: u32 = 200;

pub fn group_key(group: &str) -> String {
    format!("{KEY_PREFIX}{group}")
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the semaphore of group {group:?} in etcd (key {key}) is not Keel's JSON ({reason}); \
         look at it with `etcdctl get {key}` and delete it if it is garbage"
    )]
    Corrupt {
        group: String,
        key: String,
        reason: String,
    },
    #[error("group {group:?} stayed contended for {MAX_ATTEMPTS} attempts; try again")]
    Contended { group: String },
}

/// What an operation did, with the state it left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<T> {
    pub outcome: T,
    pub state: Semaphore,
    pub expired: Vec<Holder>,
    /// How often another writer won first.
    pub conflicts: u32,
}

pub struct Locker<S> {
    store: S,
    last_seen: Mutex<HashMap<String, (i64, Semaphore)>>,
}

impl<S: Store> Locker<S> {
    pub fn new(store: S) -> Self {
        Locker {
            store,
            last_seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    fn last_seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Semaphore)>> {
        match self.last_seen.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Applies `decide` to the group's semaphore until the decision holds in the store.
    pub fn apply<T>(
        &self,
        group: &str,
        decide: impl Fn(&Semaphore) -> Decision<T>,
    ) -> Result<Applied<T>, LockError> {
        let key = group_key(group);
        let guess = self.last_seen().get(group).cloned();
        let (mut revision, mut semaphore) = guess.unwrap_or_default();
        for attempt in 0..MAX_ATTEMPTS {
            let decision = decide(&semaphore);
            let bytes = match &decision.next {
                Some(next) => Some(serde_json::to_vec(next).map_err(|e| LockError::Corrupt {
                    group: group.to_string(),
                    key: key.clone(),
                    reason: e.to_string(),
                })?),
                None => None,
            };
            match self
                .store
                .compare_and_swap(&key, revision, bytes.as_deref())?
            {
                Cas::Done { mod_revision } => {
                    let state = decision.next.unwrap_or(semaphore);
                    self.last_seen()
                        .insert(group.to_string(), (mod_revision, state.clone()));
                    return Ok(Applied {
                        outcome: decision.outcome,
                        state,
                        expired: decision.expired,
                        conflicts: attempt,
                    });
                }
                Cas::Conflict { current } => {
                    (revision, semaphore) = decode(group, &key, current)?;
                    if attempt >= 2 {
                        std::thread::sleep(jitter(attempt));
                    }
                }
            }
        }
        Err(LockError::Contended {
            group: group.to_string(),
        })
    }

    /// The group's semaphore as etcd holds it now (empty when the key does not exist).
    pub fn state(&self, group: &str) -> Result<Semaphore, LockError> {
        let key = group_key(group);
        let current = self.store.get(&key)?;
        Ok(decode(group, &key, current)?.1)
    }

    /// Every group that has a key in etcd, by name.
    pub fn all(&self) -> Result<Vec<(String, Semaphore)>, LockError> {
        let mut groups = Vec::new();
        for (key, value) in self.store.list(KEY_PREFIX)? {
            let group = key.trim_start_matches(KEY_PREFIX).to_string();
            let (_, semaphore) = decode(&group, &key, Some(value))?;
            groups.push((group, semaphore));
        }
        Ok(groups)
    }
}

fn decode(
    group: &str,
    key: &str,
    current: Option<Versioned>,
) -> Result<(i64, Semaphore), LockError> {
    let Some(current) = current else {
        return Ok((0, Semaphore::default()));
    };
    let semaphore = serde_json::from_slice(&current.value).map_err(|e| LockError::Corrupt {
        group: group.to_string(),
        key: key.to_string(),
        reason: e.to_string(),
    })?;
    Ok((current.mod_revision, semaphore))
}

/// A short pause that spreads racing writers apart: up to `attempt` × 100 µs (capped at 5 ms).
fn jitter(attempt: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let max_micros = (u64::from(attempt) * 100).min(5_000);
    Duration::from_micros(u64::from(nanos) % max_micros.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GroupPolicy;
    use crate::semaphore::{Acquire, Release};
    use crate::store::MemoryStore;

    fn one_slot() -> GroupPolicy {
        GroupPolicy {
            slots: 1,
            expire_after: None,
        }
    }

    #[test]
    fn take_and_release_go_through_the_store() {
        let locker = Locker::new(MemoryStore::default());
        let taken = locker
            .apply("g", |s| s.acquire("a", &one_slot(), 10))
            .expect("takes");
        assert_eq!(taken.outcome, Acquire::Taken);
        assert!(locker.state("g").expect("reads").holds("a"));
        let full = locker
            .apply("g", |s| s.acquire("b", &one_slot(), 11))
            .expect("answers");
        assert!(matches!(full.outcome, Acquire::Full { .. }));
        let released = locker.apply("g", |s| s.release("a")).expect("releases");
        assert_eq!(released.outcome, Release::Released);
        assert!(locker.state("g").expect("reads").holders.is_empty());
    }

    #[test]
    fn a_no_op_writes_nothing() {
        let locker = Locker::new(MemoryStore::default());
        locker
            .apply("g", |s| s.acquire("a", &one_slot(), 10))
            .expect("takes");
        let writes = locker.store().writes();
        let again = locker
            .apply("g", |s| s.acquire("a", &one_slot(), 20))
            .expect("answers");
        assert_eq!(again.outcome, Acquire::AlreadyHeld);
        let stranger = locker.apply("g", |s| s.release("b")).expect("answers");
        assert_eq!(stranger.outcome, Release::NotHeld);
        assert_eq!(locker.store().writes(), writes);
    }

    #[test]
    fn a_racing_replicas_write_is_seen_and_the_slot_is_not_given_twice() {
        let store = MemoryStore::default();
        let other = Semaphore {
            slots: 1,
            holders: vec![Holder {
                id: "other".into(),
                since: 1,
            }],
        };
        store.race_next_write(
            &group_key("g"),
            &serde_json::to_vec(&other).unwrap_or_default(),
        );
        let locker = Locker::new(store);
        let applied = locker
            .apply("g", |s| s.acquire("a", &one_slot(), 10))
            .expect("answers");
        assert_eq!(applied.conflicts, 1);
        assert_eq!(
            applied.outcome,
            Acquire::Full {
                slots: 1,
                holders: vec!["other".into()]
            }
        );
        assert_eq!(locker.state("g").expect("reads"), other);
    }

    #[test]
    fn a_stale_guess_is_corrected_before_answering_a_no_op() {
        // Replica 1 saw "a" holding; an admin released it through replica 2 since.
        let store = MemoryStore::default();
        let locker = Locker::new(store);
        locker
            .apply("g", |s| s.acquire("a", &one_slot(), 10))
            .expect("takes");
        locker.store().put(
            &group_key("g"),
            &serde_json::to_vec(&Semaphore::default()).unwrap_or_default(),
        );
        let applied = locker
            .apply("g", |s| s.acquire("a", &one_slot(), 20))
            .expect("answers");
        assert_eq!(
            applied.outcome,
            Acquire::Taken,
            "not AlreadyHeld from the cache"
        );
    }

    #[test]
    fn store_outages_and_garbage_are_errors() {
        let locker = Locker::new(MemoryStore::default());
        locker.store().set_down(true);
        let err = locker
            .apply("g", |s| s.acquire("a", &one_slot(), 1))
            .expect_err("down");
        assert!(matches!(err, LockError::Store(StoreError::Unavailable(_))));
        locker.store().set_down(false);
        locker.store().put(&group_key("g"), b"{\"total_slots\":1}");
        let err = locker
            .apply("g", |s| s.acquire("a", &one_slot(), 1))
            .expect_err("garbage");
        assert!(
            err.to_string()
                .contains("etcdctl get keel-fleetlock/v1/groups/g"),
            "{err}"
        );
    }

    #[test]
    fn all_lists_groups_by_name() {
        let locker = Locker::new(MemoryStore::default());
        for group in ["b", "a"] {
            locker
                .apply(group, |s| s.acquire("x", &one_slot(), 1))
                .expect("takes");
        }
        let names: Vec<String> = locker
            .all()
            .expect("lists")
            .into_iter()
            .map(|g| g.0)
            .collect();
        assert_eq!(names, vec!["a", "b"]);
    }
}
