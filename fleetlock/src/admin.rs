//! `status` and `release`: what etcd holds, per group, rendered for people or as JSON; and
//! freeing a holder that will never report steady state (a node that was decommissioned).

use crate::config::Config;
use crate::lock::{LockError, Locker};
use crate::semaphore::Release;
use crate::store::Store;
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub groups: Vec<GroupStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStatus {
    pub name: String,
    /// From the config given to `status`, else what the last writer enforced.
    pub slots: u32,
    /// Whether the group is in the config given (`None`: no config given).
    pub configured: Option<bool>,
    pub holders: Vec<HolderStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HolderStatus {
    pub id: String,
    /// Seconds since the epoch.
    pub since: u64,
    pub held_seconds: u64,
    /// When the group's config sets an expiry.
    pub expires_in_seconds: Option<u64>,
}

/// Reads every group from etcd (and every configured group, held or not).
pub fn status<S: Store>(
    locker: &Locker<S>,
    config: Option<&Config>,
    now: u64,
) -> Result<Status, LockError> {
    let mut stored = locker.all()?;
    if let Some(config) = config {
        for name in config.groups.keys() {
            if !stored.iter().any(|(g, _)| g == name) {
                stored.push((name.clone(), Default::default()));
            }
        }
    }
    stored.sort_by(|a, b| a.0.cmp(&b.0));
    let groups = stored
        .into_iter()
        .map(|(name, semaphore)| {
            let policy = config.and_then(|c| c.group(&name));
            let holders = semaphore
                .holders
                .iter()
                .map(|h| {
                    let held_seconds = now.saturating_sub(h.since);
                    HolderStatus {
                        id: h.id.clone(),
                        since: h.since,
                        held_seconds,
                        expires_in_seconds: policy
                            .and_then(|p| p.expire_after)
                            .map(|limit| limit.as_secs().saturating_sub(held_seconds)),
                    }
                })
                .collect();
            GroupStatus {
                slots: policy.map_or(semaphore.slots, |p| p.slots),
                configured: config.map(|_| policy.is_some()),
                name,
                holders,
            }
        })
        .collect();
    Ok(Status { groups })
}

/// The human view of [`Status`].
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    if status.groups.is_empty() {
        out.push_str("no group has ever been locked\n");
    }
    for group in &status.groups {
        let note = match group.configured {
            Some(false) => " (not in the config)",
            _ => "",
        };
        let _ = writeln!(
            out,
            "group {}: {}/{} slot(s) held{note}",
            group.name,
            group.holders.len(),
            group.slots
        );
        for h in &group.holders {
            let expiry = match h.expires_in_seconds {
                Some(s) => format!(", expires in {s} s"),
                None => String::new(),
            };
            let _ = writeln!(out, "  {} for {} s{expiry}", h.id, h.held_seconds);
        }
    }
    out
}

/// Frees `id`'s slot in `group`; says whether it held one.
pub fn release<S: Store>(locker: &Locker<S>, group: &str, id: &str) -> Result<Release, LockError> {
    Ok(locker.apply(group, |s| s.release(id))?.outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GroupPolicy;
    use crate::store::MemoryStore;
    use std::time::Duration;

    #[test]
    fn status_shows_holders_with_age_and_expiry_and_configured_empty_groups() {
        let locker = Locker::new(MemoryStore::default());
        let policy = GroupPolicy {
            slots: 2,
            expire_after: Some(Duration::from_secs(100)),
        };
        locker
            .apply("workers", |s| s.acquire("node-a", &policy, 1000))
            .expect("takes");
        let config = Config::parse(
            "[groups.workers]\nslots = 2\nexpire_after_seconds = 100\n[groups.db]\nslots = 1\n",
            "c.toml",
        )
        .expect("parses");
        let status = status(&locker, Some(&config), 1030).expect("reads");
        assert_eq!(
            render(&status),
            "group db: 0/1 slot(s) held\ngroup workers: 1/2 slot(s) held\n  node-a for 30 s, expires in 70 s\n"
        );
        let json = serde_json::to_value(&status).unwrap_or_default();
        assert_eq!(json["groups"][1]["holders"][0]["id"], "node-a");
    }

    #[test]
    fn release_frees_a_holder_and_says_when_there_was_none() {
        let locker = Locker::new(MemoryStore::default());
        let policy = GroupPolicy {
            slots: 1,
            expire_after: None,
        };
        locker
            .apply("g", |s| s.acquire("a", &policy, 1))
            .expect("takes");
        assert_eq!(
            release(&locker, "g", "a").expect("releases"),
            Release::Released
        );
        assert_eq!(
            release(&locker, "g", "a").expect("answers"),
            Release::NotHeld
        );
        let status = status(&locker, None, 2).expect("reads");
        assert_eq!(render(&status), "group g: 0/1 slot(s) held\n");
    }
}
