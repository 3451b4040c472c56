//! A group's reboot semaphore and the pure decisions on it: who holds a slot, who may take
//! one, who expired. No I/O and no clock: the caller passes `now` (seconds since the epoch)
//! and the group's policy, and writes the new state back by compare-and-swap.

use crate::config::GroupPolicy;
use serde::{Deserialize, Serialize};

/// What is stored in etcd for one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Semaphore {
    /// The slot count the last writer enforced; for `status` only, never read as the truth
    /// (the server's config is).
    #[serde(default)]
    pub slots: u32,
    /// In the order they took their slot.
    pub holders: Vec<Holder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub id: String,
    /// When the holder took its slot, seconds since the epoch (the server's clock).
    pub since: u64,
}

/// What a request decided, before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<T> {
    pub outcome: T,
    /// The state to write, when it changes.
    pub next: Option<Semaphore>,
    /// Holders dropped because they expired.
    pub expired: Vec<Holder>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// The id now holds a slot.
    Taken,
    /// It held one already: nothing changes.
    AlreadyHeld,
    /// Every slot is held by others.
    Full { slots: u32, holders: Vec<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Released,
    /// It held none: nothing changes.
    NotHeld,
}

impl Semaphore {
    pub fn holds(&self, id: &str) -> bool {
        self.holders.iter().any(|h| h.id == id)
    }

    /// The holders still valid at `now` under `policy`, and the expired ones.
    fn split_expired(&self, policy: &GroupPolicy, now: u64) -> (Vec<Holder>, Vec<Holder>) {
        let Some(limit) = policy.expire_after else {
            return (self.holders.clone(), Vec::new());
        };
        self.holders
            .iter()
            .cloned()
            .partition(|h| now.saturating_sub(h.since) < limit.as_secs())
    }

    /// `RecursiveLock`: take a slot for `id`, or keep the one it holds. Expired holders are
    /// dropped first (the caller itself included: it then takes a fresh slot if one is free).
    pub fn acquire(&self, id: &str, policy: &GroupPolicy, now: u64) -> Decision<Acquire> {
        let (mut live, expired) = self.split_expired(policy, now);
        let changed = !expired.is_empty() || self.slots != policy.slots;
        let write = |holders: Vec<Holder>| Semaphore {
            slots: policy.slots,
            holders,
        };
        if live.iter().any(|h| h.id == id) {
            let next = changed.then(|| write(live));
            return Decision {
                outcome: Acquire::AlreadyHeld,
                next,
                expired,
            };
        }
        if live.len() >= policy.slots as usize {
            let holders = live.iter().map(|h| h.id.clone()).collect();
            let next = changed.then(|| write(live));
            return Decision {
                outcome: Acquire::Full {
                    slots: policy.slots,
                    holders,
                },
                next,
                expired,
            };
        }
        live.push(Holder {
            id: id.to_string(),
            since: now,
        });
        Decision {
            outcome: Acquire::Taken,
            next: Some(write(live)),
            expired,
        }
    }

    /// `UnlockIfHeld`: free the slot `id` holds, if any. Expiry is left to writes that take
    /// slots, so a release by a stranger writes nothing.
    pub fn release(&self, id: &str) -> Decision<Release> {
        if !self.holds(id) {
            return Decision {
                outcome: Release::NotHeld,
                next: None,
                expired: Vec::new(),
            };
        }
        let holders = self
            .holders
            .iter()
            .filter(|h| h.id != id)
            .cloned()
            .collect();
        Decision {
            outcome: Release::Released,
            next: Some(Semaphore {
                slots: self.slots,
                holders,
            }),
            expired: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(slots: u32) -> GroupPolicy {
        GroupPolicy {
            slots,
            expire_after: None,
        }
    }

    fn holding(slots: u32, ids: &[(&str, u64)]) -> Semaphore {
        Semaphore {
            slots,
            holders: ids
                .iter()
                .map(|(id, since)| Holder {
                    id: id.to_string(),
                    since: *since,
                })
                .collect(),
        }
    }

    #[test]
    fn a_free_slot_is_taken_and_recorded_with_the_time() {
        let d = Semaphore::default().acquire("a", &policy(2), 100);
        assert_eq!(d.outcome, Acquire::Taken);
        assert_eq!(d.next, Some(holding(2, &[("a", 100)])));
    }

    #[test]
    fn taking_again_is_a_no_op() {
        let sem = holding(2, &[("a", 100)]);
        let d = sem.acquire("a", &policy(2), 500);
        assert_eq!(d.outcome, Acquire::AlreadyHeld);
        assert_eq!(d.next, None, "no write, the original time stays");
    }

    #[test]
    fn a_full_semaphore_refuses_and_names_the_holders() {
        let sem = holding(2, &[("a", 1), ("b", 2)]);
        let d = sem.acquire("c", &policy(2), 3);
        assert_eq!(
            d.outcome,
            Acquire::Full {
                slots: 2,
                holders: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(d.next, None);
    }

    #[test]
    fn a_raised_slot_count_takes_effect_at_once() {
        let sem = holding(1, &[("a", 1)]);
        assert!(matches!(
            sem.acquire("b", &policy(1), 2).outcome,
            Acquire::Full { .. }
        ));
        let d = sem.acquire("b", &policy(2), 2);
        assert_eq!(d.outcome, Acquire::Taken);
        assert_eq!(d.next, Some(holding(2, &[("a", 1), ("b", 2)])));
    }

    #[test]
    fn a_lowered_slot_count_keeps_holders_and_admits_nobody() {
        let sem = holding(3, &[("a", 1), ("b", 2)]);
        let d = sem.acquire("c", &policy(1), 3);
        assert!(matches!(d.outcome, Acquire::Full { slots: 1, .. }));
        assert_eq!(d.next, Some(holding(1, &[("a", 1), ("b", 2)])));
        assert_eq!(
            sem.acquire("a", &policy(1), 3).outcome,
            Acquire::AlreadyHeld
        );
    }

    #[test]
    fn expired_holders_are_dropped_when_a_slot_is_asked_for() {
        let expiring = GroupPolicy {
            slots: 1,
            expire_after: Some(Duration::from_secs(60)),
        };
        let sem = holding(1, &[("dead", 100)]);
        let d = sem.acquire("b", &expiring, 159);
        assert!(matches!(d.outcome, Acquire::Full { .. }), "59 s is not 60");
        let d = sem.acquire("b", &expiring, 160);
        assert_eq!(d.outcome, Acquire::Taken);
        assert_eq!(d.expired, holding(1, &[("dead", 100)]).holders);
        assert_eq!(d.next, Some(holding(1, &[("b", 160)])));
    }

    #[test]
    fn an_expired_holder_asking_again_takes_a_fresh_slot() {
        let expiring = GroupPolicy {
            slots: 1,
            expire_after: Some(Duration::from_secs(60)),
        };
        let d = holding(1, &[("a", 100)]).acquire("a", &expiring, 200);
        assert_eq!(d.outcome, Acquire::Taken);
        assert_eq!(d.next, Some(holding(1, &[("a", 200)])));
    }

    #[test]
    fn release_frees_only_the_callers_slot() {
        let sem = holding(2, &[("a", 1), ("b", 2)]);
        let d = sem.release("a");
        assert_eq!(d.outcome, Release::Released);
        assert_eq!(d.next, Some(holding(2, &[("b", 2)])));
        let d = sem.release("c");
        assert_eq!(d.outcome, Release::NotHeld);
        assert_eq!(d.next, None);
    }

    #[test]
    fn the_stored_form_is_slots_and_holders() {
        let json = serde_json::to_string(&holding(1, &[("a", 5)])).unwrap_or_default();
        assert_eq!(json, r#"{"slots":1,"holders":[{"id":"a","since":5}]}"#);
    }
}
