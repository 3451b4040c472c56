//! The agent's configuration: the `[updates]` section of Keel's TOML drop-ins (the same files
//! as the remote's, see `keel_host::config` and `keel_host::dropins`), parsed per file, merged
//! by a pure fold that remembers which file set each key, then validated into [`Settings`]
//! with errors that name the file and the key.
//!
//! ```toml
//! [updates]
//! enabled = true                    # default true
//! strategy = "periodic"             # "immediate" (default) | "periodic" | "fleet_lock"
//! check_interval_minutes = 60       # default 60
//! check_jitter_minutes = 10         # default 10: a random extra 0..N minutes per check
//! max_postpone_minutes = 60         # default 60: reboot waits this long for users to log out
//!
//! [updates.periodic]
//! time_zone = "Europe/Berlin"       # default "UTC", for windows that name none
//! [[updates.periodic.window]]
//! days = ["Sat", "Sun"]
//! start_time = "22:30"
//! length_minutes = 120
//! time_zone = "UTC"                 # optional, overrides the section's
//!
//! [updates.fleet_lock]
//! base_url = "http://lock.example:8080"
//! group = "default"                 # default "default"
//! ```
//! Windows, when configured, apply to every strategy: `periodic` needs at least one, and a
//! `fleet_lock` host with windows takes the lock only inside one (Zincati cannot combine
//! them). A later file's `window` list replaces an earlier one's (`window = []` clears it).

use crate::window::{self, Schedule, Window};
use chrono::NaiveTime;
use keel_common::fleetlock::ClientParams;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Drop-in directories under the config root, lowest priority first: the `config.d` of each
/// of `keel_host::config::DROPIN_DIRS` (`/usr/lib`, `/etc`, then `/run`, as Zincati orders them).
pub fn dropin_dirs(root: &Path) -> Vec<PathBuf> {
    keel_host::config::DROPIN_DIRS
        .iter()
        .map(|d| root.join(d).join("config.d"))
        .collect()
}

/// One drop-in file as written; every key optional. Other sections belong to other readers.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct File {
    #[serde(default)]
    pub updates: Option<Updates>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Updates {
    pub enabled: Option<bool>,
    pub strategy: Option<String>,
    pub check_interval_minutes: Option<u64>,
    pub check_jitter_minutes: Option<u64>,
    pub max_postpone_minutes: Option<u64>,
    pub periodic: Option<Periodic>,
    pub fleet_lock: Option<FleetLock>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Periodic {
    pub time_zone: Option<String>,
    pub window: Option<Vec<WindowFragment>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowFragment {
    pub days: Vec<String>,
    pub start_time: String,
    pub length_minutes: u32,
    pub time_zone: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetLock {
    pub base_url: Option<String>,
    pub group: Option<String>,
}

/// A value and the file that set it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sourced<T> {
    pub value: T,
    pub file: PathBuf,
}

/// The fold of every file: each key holds the last value set and where.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Merged {
    pub enabled: Option<Sourced<bool>>,
    pub strategy: Option<Sourced<String>>,
    pub check_interval_minutes: Option<Sourced<u64>>,
    pub check_jitter_minutes: Option<Sourced<u64>>,
    pub max_postpone_minutes: Option<Sourced<u64>>,
    pub time_zone: Option<Sourced<String>>,
    pub windows: Option<Sourced<Vec<WindowFragment>>>,
    pub base_url: Option<Sourced<String>>,
    pub group: Option<Sourced<String>>,
}

fn set<T>(slot: &mut Option<Sourced<T>>, value: Option<T>, file: &Path) {
    if let Some(value) = value {
        *slot = Some(Sourced {
            value,
            file: file.to_path_buf(),
        });
    }
}

/// Folds the files in merge order; a key set in a later file replaces the earlier value.
pub fn merge(files: impl IntoIterator<Item = (PathBuf, File)>) -> Merged {
    let mut m = Merged::default();
    for (path, file) in files {
        let Some(u) = file.updates else { continue };
        set(&mut m.enabled, u.enabled, &path);
        set(&mut m.strategy, u.strategy, &path);
        set(
            &mut m.check_interval_minutes,
            u.check_interval_minutes,
            &path,
        );
        set(&mut m.check_jitter_minutes, u.check_jitter_minutes, &path);
        set(&mut m.max_postpone_minutes, u.max_postpone_minutes, &path);
        if let Some(p) = u.periodic {
            set(&mut m.time_zone, p.time_zone, &path);
            set(&mut m.windows, p.window, &path);
        }
        if let Some(f) = u.fleet_lock {
            set(&mut m.base_url, f.base_url, &path);
            set(&mut m.group, f.group, &path);
        }
    }
    m
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Reboot as soon as an update is staged (inside a window, when any are configured).
    Immediate,
    /// Reboot only inside a window.
    Periodic,
    /// Reboot only holding a FleetLock slot (and inside a window, when any are configured).
    FleetLock,
}

/// The validated settings the agent runs with.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Settings {
    pub enabled: bool,
    pub strategy: Strategy,
    pub check_interval: Duration,
    pub check_jitter: Duration,
    pub max_postpone: Duration,
    pub schedule: Schedule,
    /// Set for [`Strategy::FleetLock`].
    pub fleet_lock: Option<FleetLockSettings>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FleetLockSettings {
    pub base_url: String,
    pub group: String,
}

impl Default for Settings {
    fn default() -> Self {
        validate(Merged::default()).unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

/// A setting that cannot be used, with the file and key that set it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {key}: {reason}", file.as_deref().map(|f| f.display().to_string()).unwrap_or_else(|| "(defaults)".into()))]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub key: &'static str,
    pub reason: String,
}

fn error<T>(at: &Option<Sourced<T>>, key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        file: at.as_ref().map(|s| s.file.clone()),
        key,
        reason: reason.into(),
    }
}

fn value<T: Clone>(slot: &Option<Sourced<T>>, default: T) -> T {
    slot.as_ref().map(|s| s.value.clone()).unwrap_or(default)
}

/// Turns the merged files into settings.
pub fn validate(m: Merged) -> Result<Settings, ConfigError> {
    let strategy = match value(&m.strategy, "immediate".into()).as_str() {
        "immediate" => Strategy::Immediate,
        "periodic" => Strategy::Periodic,
        "fleet_lock" => Strategy::FleetLock,
        other => {
            return Err(error(
                &m.strategy,
                "updates.strategy",
                format!(
                "{other:?} is not a strategy; use \"immediate\", \"periodic\" or \"fleet_lock\""
            ),
            ))
        }
    };
    let interval = value(&m.check_interval_minutes, 60);
    if interval == 0 {
        return Err(error(
            &m.check_interval_minutes,
            "updates.check_interval_minutes",
            "must be at least 1",
        ));
    }
    let default_zone = value(&m.time_zone, "UTC".into());
    let default_zone: chrono_tz::Tz = default_zone.parse().map_err(|_| {
        error(
            &m.time_zone,
            "updates.periodic.time_zone",
            format!("{default_zone:?} is not a time zone of the zoneinfo database (e.g. \"Europe/Berlin\")"),
        )
    })?;
    let mut windows = Vec::new();
    for (i, w) in value(&m.windows, Vec::new()).into_iter().enumerate() {
        windows.push(window_from(&m.windows, i, w, default_zone)?);
    }
    if strategy == Strategy::Periodic && windows.is_empty() {
        return Err(error(
            &m.strategy,
            "updates.strategy",
            "\"periodic\" needs at least one [[updates.periodic.window]]",
        ));
    }
    let fleet_lock = if strategy == Strategy::FleetLock {
        let base_url = value(&m.base_url, String::new());
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(error(
                if m.base_url.is_some() {
                    &m.base_url
                } else {
                    &m.strategy
                },
                "updates.fleet_lock.base_url",
                format!("\"fleet_lock\" needs an http:// or https:// base_url (got {base_url:?})"),
            ));
        }
        let group = value(&m.group, "default".into());
        let params = ClientParams {
            id: "x".into(),
            group: group.clone(),
        };
        params
            .validate()
            .map_err(|e| error(&m.group, "updates.fleet_lock.group", e.to_string()))?;
        Some(FleetLockSettings {
            base_url: base_url.trim_end_matches('/').to_string(),
            group,
        })
    } else {
        None
    };
    Ok(Settings {
        enabled: value(&m.enabled, true),
        strategy,
        check_interval: Duration::from_secs(interval * 60),
        check_jitter: Duration::from_secs(value(&m.check_jitter_minutes, 10) * 60),
        max_postpone: Duration::from_secs(value(&m.max_postpone_minutes, 60) * 60),
        schedule: Schedule { windows },
        fleet_lock,
    })
}

fn window_from(
    at: &Option<Sourced<Vec<WindowFragment>>>,
    index: usize,
    w: WindowFragment,
    default_zone: chrono_tz::Tz,
) -> Result<Window, ConfigError> {
    let key = "updates.periodic.window";
    let bad = |reason: String| error(at, key, format!("window {}: {reason}", index + 1));
    if w.days.is_empty() {
        return Err(bad("`days` is empty".into()));
    }
    let mut days = Vec::new();
    for day in &w.days {
        days.push(window::parse_day(day).ok_or_else(|| {
            bad(format!(
                "{day:?} is not a day (use Mon..Sun or Monday..Sunday)"
            ))
        })?);
    }
    let start = NaiveTime::parse_from_str(&w.start_time, "%H:%M")
        .map_err(|_| bad(format!("start_time {:?} is not HH:MM", w.start_time)))?;
    if w.length_minutes == 0 || w.length_minutes > window::MAX_LENGTH_MINUTES {
        return Err(bad(format!(
            "length_minutes {} is not within 1..={}",
            w.length_minutes,
            window::MAX_LENGTH_MINUTES
        )));
    }
    let time_zone = match &w.time_zone {
        None => default_zone,
        Some(zone) => zone.parse().map_err(|_| {
            bad(format!(
                "{zone:?} is not a time zone of the zoneinfo database"
            ))
        })?,
    };
    Ok(Window {
        days,
        start,
        length_minutes: w.length_minutes,
        time_zone,
    })
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Scan(#[from] keel_host::dropins::ScanError),
    #[error("reading {}: {source}", .file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}; fix or remove this file", .file.display())]
    Parse { file: PathBuf, message: String },
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Reads, merges and validates the drop-ins under `root` (`/` on a booted host).
pub fn load(root: &Path) -> Result<Settings, LoadError> {
    let dirs = dropin_dirs(root);
    let mut files = Vec::new();
    for file in keel_host::dropins::scan(&dirs)? {
        let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Read {
            file: file.clone(),
            source,
        })?;
        let parsed: File = toml::from_str(&text).map_err(|e| LoadError::Parse {
            file: file.clone(),
            message: e.message().to_string(),
        })?;
        files.push((file, parsed));
    }
    Ok(validate(merge(files))?)
}

#[cfg(test)]
mod tests;
