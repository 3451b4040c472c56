//! The server's groups and their slot counts, from a TOML file:
//!
//! ```toml
//! [groups.default]
//! slots = 1
//!
//! [groups.workers]
//! slots = 3
//! expire_after_seconds = 7200   # a holder that never reports steady state is dropped
//! ```
//!
//! With no file, or a file with no group, there is one group `default` with 1 slot. Slot counts
//! are read from here at every request and never stored as the truth in etcd (airlock writes
//! its count once, when the key is created, so changing it later does nothing): the file is
//! re-read when it changes ([`ConfigSource`]), and a raised count takes effect at the next
//! request. A count of 0 freezes a group (no new holder; holders still release).

use keel_common::fleetlock::is_group_name;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// What the server enforces for one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPolicy {
    pub slots: u32,
    /// Holders older than this are dropped at the next write to the group.
    pub expire_after: Option<Duration>,
}

/// Every configured group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub groups: BTreeMap<String, GroupPolicy>,
}

impl Default for Config {
    fn default() -> Self {
        let policy = GroupPolicy {
            slots: 1,
            expire_after: None,
        };
        Config {
            groups: BTreeMap::from([("default".to_string(), policy)]),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
    #[error("{path}: group {group:?} is not a FleetLock group name (letters, digits, '.', '-')")]
    BadGroup { path: String, group: String },
    #[error("{path}: group {group:?} has expire_after_seconds = 0; leave it out for no expiry")]
    ZeroExpiry { path: String, group: String },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    groups: BTreeMap<String, RawGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    slots: u32,
    expire_after_seconds: Option<u64>,
}

impl Config {
    /// Parses and checks a config file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Toml {
            path: path.to_string(),
            source,
        })?;
        if raw.groups.is_empty() {
            return Ok(Config::default());
        }
        let mut groups = BTreeMap::new();
        for (name, group) in raw.groups {
            if !is_group_name(&name) {
                return Err(ConfigError::BadGroup {
                    path: path.to_string(),
                    group: name,
                });
            }
            if group.expire_after_seconds == Some(0) {
                return Err(ConfigError::ZeroExpiry {
                    path: path.to_string(),
                    group: name,
                });
            }
            let policy = GroupPolicy {
                slots: group.slots,
                expire_after: group.expire_after_seconds.map(Duration::from_secs),
            };
            groups.insert(name, policy);
        }
        Ok(Config { groups })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    pub fn group(&self, name: &str) -> Option<GroupPolicy> {
        self.groups.get(name).copied()
    }
}

/// The config as of now: the file is stat'ed at each call and re-read when its size or mtime
/// changed. A file that stops parsing keeps the last good config (and says so once per change).
pub struct ConfigSource {
    path: Option<PathBuf>,
    state: Mutex<Loaded>,
}

struct Loaded {
    stamp: Option<(SystemTime, u64)>,
    config: Arc<Config>,
}

/// What [`ConfigSource::current`] found besides the config: a reload, or a reload that failed.
#[derive(Debug)]
pub enum Reload {
    Unchanged,
    Reloaded,
    Failed(ConfigError),
}

impl ConfigSource {
    /// Loads the file once; an error here is fatal (the server does not start on a bad file).
    pub fn open(path: Option<PathBuf>) -> Result<ConfigSource, ConfigError> {
        let (stamp, config) = match &path {
            None => (None, Config::default()),
            Some(path) => (stamp(path), Config::load(path)?),
        };
        Ok(ConfigSource {
            path,
            state: Mutex::new(Loaded {
                stamp,
                config: Arc::new(config),
            }),
        })
    }

    pub fn current(&self) -> (Arc<Config>, Reload) {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(path) = &self.path else {
            return (state.config.clone(), Reload::Unchanged);
        };
        let now = stamp(path);
        if now == state.stamp {
            return (state.config.clone(), Reload::Unchanged);
        }
        state.stamp = now;
        match Config::load(path) {
            Ok(config) => {
                state.config = Arc::new(config);
                (state.config.clone(), Reload::Reloaded)
            }
            Err(err) => (state.config.clone(), Reload::Failed(err)),
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_group_means_default_with_one_slot() {
        for text in ["", "[groups]\n"] {
            let config = Config::parse(text, "c.toml").expect("parses");
            assert_eq!(config, Config::default());
            assert_eq!(config.group("default").map(|g| g.slots), Some(1));
        }
    }

    #[test]
    fn groups_with_slots_and_expiry_parse() {
        let text =
            "[groups.workers]\nslots = 3\nexpire_after_seconds = 60\n[groups.db]\nslots = 0\n";
        let config = Config::parse(text, "c.toml").expect("parses");
        assert_eq!(
            config.group("workers"),
            Some(GroupPolicy {
                slots: 3,
                expire_after: Some(Duration::from_secs(60))
            })
        );
        assert_eq!(config.group("db").map(|g| g.slots), Some(0));
        assert_eq!(
            config.group("default"),
            None,
            "a configured file has only its groups"
        );
    }

    #[test]
    fn bad_files_are_refused_naming_the_file() {
        let cases = [
            ("[groups.a]\n", "missing field `slots`"),
            ("[groups.a]\nslots = -1\n", "c.toml"),
            ("[groups.a]\nslots = 1\nslot = 2\n", "unknown field `slot`"),
            (
                "[groups.\"a b\"]\nslots = 1\n",
                "not a FleetLock group name",
            ),
            (
                "[groups.a]\nslots = 1\nexpire_after_seconds = 0\n",
                "leave it out",
            ),
        ];
        for (text, want) in cases {
            let err = Config::parse(text, "c.toml").expect_err(text).to_string();
            assert!(
                err.contains(want) && err.contains("c.toml"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_last_good_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fleetlock.toml");
        std::fs::write(&path, "[groups.a]\nslots = 1\n").expect("write");
        let source = ConfigSource::open(Some(path.clone())).expect("opens");
        assert!(matches!(source.current().1, Reload::Unchanged));

        std::fs::write(&path, "[groups.a]\nslots = 25\n").expect("write");
        let (config, reload) = source.current();
        assert!(matches!(reload, Reload::Reloaded), "{reload:?}");
        assert_eq!(config.group("a").map(|g| g.slots), Some(25));

        std::fs::write(&path, "[groups.a]\nslots = \n").expect("write");
        let (config, reload) = source.current();
        assert!(matches!(reload, Reload::Failed(_)), "{reload:?}");
        assert_eq!(config.group("a").map(|g| g.slots), Some(25));
        assert!(matches!(source.current().1, Reload::Unchanged));
    }
}
