//! The update agent as a state machine: one [`State`] enum, one method per transition, each
//! checking where it may come from, and [`Agent::tick`] that decides which transition to take
//! from what the [`Host`], the [`Lock`] and the [`Clock`] say. Side effects are behind those
//! three traits, so tests drive every transition with fakes; the daemon ticks it with the real
//! ones.
//!
//! Rules (Zincati's, plus windows with the fleet lock):
//! - Steady state is reported (the lock released) only once the boot is good.
//! - A release that is already a local deployment is never retried: that is how a release the
//!   host rolled back from is not installed again.
//! - Nothing reboots outside a window: [`Agent::begin_reboot`] refuses it, whoever asks.
//! - Before a reboot: the window, then logged-in users (told, and waited for up to
//!   `max_postpone`), then the lock, taken last so that a slot is not held while waiting.

use crate::config::{Settings, Strategy};
use chrono::{DateTime, Utc};
use keel_common::fleetlock::ErrorKind;
use serde::Serialize;
use std::time::Duration;

/// A release the remote offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Release {
    pub checksum: String,
    pub version: Option<String>,
}

impl Release {
    pub fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!("{v} ({})", short(&self.checksum)),
            None => short(&self.checksum).to_string(),
        }
    }
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

/// Where the agent is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Just started: the boot must be good and the lock released before anything else.
    ReportingSteadyState,
    /// Automatic updates are off (`[updates] enabled = false`).
    Disabled,
    /// Waiting for the next check.
    Idle,
    Checking,
    Downloading {
        release: Release,
    },
    /// Deployed; it boots at the next reboot.
    Staged {
        release: Release,
    },
    WaitingForWindow {
        release: Release,
        opens: Option<DateTime<Utc>>,
    },
    WaitingForUsers {
        release: Release,
        since: DateTime<Utc>,
        users: Vec<String>,
    },
    WaitingForLock {
        release: Release,
    },
    Rebooting {
        release: Release,
    },
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::ReportingSteadyState => "reporting_steady_state",
            State::Disabled => "disabled",
            State::Idle => "idle",
            State::Checking => "checking",
            State::Downloading { .. } => "downloading",
            State::Staged { .. } => "staged",
            State::WaitingForWindow { .. } => "waiting_for_window",
            State::WaitingForUsers { .. } => "waiting_for_users",
            State::WaitingForLock { .. } => "waiting_for_lock",
            State::Rebooting { .. } => "rebooting",
        }
    }

    /// The release the agent is working on, if any.
    pub fn release(&self) -> Option<&Release> {
        match self {
            State::Downloading { release }
            | State::Staged { release }
            | State::WaitingForWindow { release, .. }
            | State::WaitingForUsers { release, .. }
            | State::WaitingForLock { release }
            | State::Rebooting { release } => Some(release),
            _ => None,
        }
    }
}

/// A transition asked for from a state it cannot start from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {transition} while {from}")]
pub struct TransitionError {
    pub transition: &'static str,
    pub from: &'static str,
}

/// Why a lock call failed: the protocol's error kind when the server sent one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct LockError {
    /// `None` when no FleetLock answer came (the server could not be reached).
    pub kind: Option<ErrorKind>,
    pub message: String,
}

/// Time, and the randomness for jitter.
pub trait Clock {
    fn now(&self) -> DateTime<Utc>;
    /// A random duration in `0..=max`.
    fn jitter(&self, max: Duration) -> Duration;
}

/// The host the agent updates.
pub trait Host {
    /// The boot is good (systemd's `boot-complete.target` reached).
    fn boot_is_good(&mut self) -> bool;
    /// The newest release of the followed ref on the remote.
    fn check(&mut self) -> Result<Release, String>;
    /// Commit checksums of every local deployment (booted, rollback, staged).
    fn local_deployments(&mut self) -> Vec<String>;
    /// The booted deployment's commit, when booted.
    fn booted(&mut self) -> Option<String>;
    /// Pulls and verifies the release.
    fn download(&mut self, release: &Release) -> Result<(), String>;
    /// Deploys the downloaded release for the next boot.
    fn stage(&mut self, release: &Release) -> Result<(), String>;
    fn logged_in_users(&mut self) -> Vec<String>;
    fn tell_users(&mut self, message: &str);
    fn reboot(&mut self) -> Result<(), String>;
}

/// The reboot lock: FleetLock for `fleet_lock`, nothing otherwise.
pub trait Lock {
    fn pre_reboot(&mut self) -> Result<(), LockError>;
    fn steady_state(&mut self) -> Result<(), LockError>;
}

/// A lock that is always free, for strategies without one.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLock;

impl Lock for NoLock {
    fn pre_reboot(&mut self) -> Result<(), LockError> {
        Ok(())
    }
    fn steady_state(&mut self) -> Result<(), LockError> {
        Ok(())
    }
}

/// What the status shows about the lock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockState {
    /// No lock configured.
    #[default]
    None,
    Released,
    Held,
    /// The last call failed.
    Error(LockError),
}

/// The agent and what `keel status` shows of it.
#[derive(Clone, Debug, Serialize)]
pub struct Agent {
    #[serde(skip)]
    settings: Settings,
    pub state: State,
    pub last_check: Option<DateTime<Utc>>,
    pub next_check: Option<DateTime<Utc>>,
    /// When the next window opens (now when inside one), `None` when windows are not used.
    pub next_window: Option<DateTime<Utc>>,
    pub lock: LockState,
    /// The last failure (check, download, stage, reboot), for status.
    pub last_error: Option<String>,
    /// Releases skipped because they already are local deployments.
    pub skipped: Option<Release>,
}

impl Agent {
    pub fn new(settings: Settings) -> Self {
        Agent {
            lock: if settings.strategy == Strategy::FleetLock {
                LockState::Released
            } else {
                LockState::None
            },
            settings,
            state: State::ReportingSteadyState,
            last_check: None,
            next_check: None,
            next_window: None,
            last_error: None,
            skipped: None,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn only_from(
        &self,
        transition: &'static str,
        allowed: impl Fn(&State) -> bool,
    ) -> Result<(), TransitionError> {
        if allowed(&self.state) {
            Ok(())
        } else {
            Err(TransitionError {
                transition,
                from: self.state.name(),
            })
        }
    }

    fn schedule_next_check(&mut self, clock: &dyn Clock) {
        let now = clock.now();
        let wait = self.settings.check_interval + clock.jitter(self.settings.check_jitter);
        self.next_check = chrono::Duration::from_std(wait).ok().map(|w| now + w);
    }

    /// ReportingSteadyState -> Idle (or Disabled): the boot is good and the lock released.
    pub fn report_steady_state(
        &mut self,
        lock: &mut dyn Lock,
        clock: &dyn Clock,
    ) -> Result<(), TransitionError> {
        self.only_from("report steady state", |s| *s == State::ReportingSteadyState)?;
        if let Err(e) = lock.steady_state() {
            self.lock = LockState::Error(e);
            return Ok(());
        }
        if self.settings.strategy == Strategy::FleetLock {
            self.lock = LockState::Released;
        }
        self.state = if self.settings.enabled {
            State::Idle
        } else {
            State::Disabled
        };
        self.next_check = Some(clock.now());
        Ok(())
    }

    /// Idle -> Checking.
    pub fn begin_check(&mut self) -> Result<(), TransitionError> {
        self.only_from("check", |s| *s == State::Idle)?;
        self.state = State::Checking;
        Ok(())
    }

    /// Checking -> Downloading (a new release) or Idle (none, or it failed).
    pub fn finish_check(
        &mut self,
        result: Result<Release, String>,
        booted: Option<&str>,
        local: &[String],
        clock: &dyn Clock,
    ) -> Result<(), TransitionError> {
        self.only_from("finish a check", |s| *s == State::Checking)?;
        self.last_check = Some(clock.now());
        self.schedule_next_check(clock);
        self.state = State::Idle;
        match result {
            Err(e) => self.last_error = Some(format!("check: {e}")),
            Ok(release) if booted == Some(release.checksum.as_str()) => {
                self.last_error = None;
            }
            Ok(release) if local.contains(&release.checksum) => {
                self.last_error = None;
                self.skipped = Some(release);
            }
            Ok(release) => {
                self.last_error = None;
                self.state = State::Downloading { release };
            }
        }
        Ok(())
    }

    /// Downloading -> Staged, or Idle when the download or the deploy failed.
    pub fn finish_download(&mut self, result: Result<(), String>) -> Result<(), TransitionError> {
        self.only_from("finish a download", |s| {
            matches!(s, State::Downloading { .. })
        })?;
        let State::Downloading { release } = self.state.clone() else {
            return Ok(());
        };
        self.state = match result {
            Ok(()) => State::Staged { release },
            Err(e) => {
                self.last_error = Some(format!("{}: {e}", release.describe()));
                State::Idle
            }
        };
        Ok(())
    }

    fn is_before_reboot(s: &State) -> bool {
        matches!(
            s,
            State::Staged { .. }
                | State::WaitingForWindow { .. }
                | State::WaitingForUsers { .. }
                | State::WaitingForLock { .. }
        )
    }

    fn current_release(&self) -> Release {
        self.state.release().cloned().unwrap_or_else(|| Release {
            checksum: String::new(),
            version: None,
        })
    }

    /// Staged or waiting -> WaitingForWindow: outside every window.
    pub fn wait_for_window(&mut self, clock: &dyn Clock) -> Result<(), TransitionError> {
        self.only_from("wait for a window", Self::is_before_reboot)?;
        let opens = self.settings.schedule.next_open(clock.now());
        self.next_window = opens;
        self.state = State::WaitingForWindow {
            release: self.current_release(),
            opens,
        };
        Ok(())
    }

    /// Staged or waiting -> WaitingForUsers: someone is logged in; they are told once.
    pub fn wait_for_users(
        &mut self,
        users: Vec<String>,
        host: &mut dyn Host,
        clock: &dyn Clock,
    ) -> Result<(), TransitionError> {
        self.only_from("wait for users", Self::is_before_reboot)?;
        let release = self.current_release();
        let since = match &self.state {
            State::WaitingForUsers { since, .. } => *since,
            _ => {
                host.tell_users(&format!(
                    "keel: {} is staged; this host reboots into it within {} minutes. Log out to let it reboot sooner.",
                    release.describe(),
                    self.settings.max_postpone.as_secs() / 60
                ));
                clock.now()
            }
        };
        self.state = State::WaitingForUsers {
            release,
            since,
            users,
        };
        Ok(())
    }

    /// Staged or waiting -> WaitingForLock: the lock was refused (the kind is in status).
    pub fn wait_for_lock(&mut self, error: LockError) -> Result<(), TransitionError> {
        self.only_from("wait for the lock", Self::is_before_reboot)?;
        self.lock = LockState::Error(error);
        self.state = State::WaitingForLock {
            release: self.current_release(),
        };
        Ok(())
    }

    /// Staged or waiting -> Rebooting, only inside a window.
    pub fn begin_reboot(&mut self, clock: &dyn Clock) -> Result<(), TransitionError> {
        self.only_from("reboot", Self::is_before_reboot)?;
        if !self.settings.schedule.contains(clock.now()) {
            return Err(TransitionError {
                transition: "reboot",
                from: "outside every maintenance window",
            });
        }
        self.state = State::Rebooting {
            release: self.current_release(),
        };
        Ok(())
    }

    /// Rebooting -> Staged: the reboot command failed; the next tick tries again.
    pub fn reboot_failed(&mut self, error: String) -> Result<(), TransitionError> {
        self.only_from("note a failed reboot", |s| {
            matches!(s, State::Rebooting { .. })
        })?;
        self.last_error = Some(format!("reboot: {error}"));
        self.state = State::Staged {
            release: self.current_release(),
        };
        Ok(())
    }

    /// One step: what the state allows now. Returns whether something changed.
    pub fn tick(&mut self, host: &mut dyn Host, lock: &mut dyn Lock, clock: &dyn Clock) -> bool {
        let before = (self.state.clone(), self.lock.clone());
        let outcome = self.step(host, lock, clock);
        if let Err(e) = outcome {
            self.last_error = Some(e.to_string());
        }
        before != (self.state.clone(), self.lock.clone())
    }

    fn step(
        &mut self,
        host: &mut dyn Host,
        lock: &mut dyn Lock,
        clock: &dyn Clock,
    ) -> Result<(), TransitionError> {
        let now = clock.now();
        if !self.settings.schedule.is_always() {
            self.next_window = self.settings.schedule.next_open(now);
        }
        match &self.state {
            State::ReportingSteadyState => {
                if host.boot_is_good() {
                    self.report_steady_state(lock, clock)?;
                }
            }
            State::Disabled | State::Rebooting { .. } => {}
            State::Idle => {
                if self.next_check.is_none_or(|t| t <= now) {
                    self.begin_check()?;
                    let result = host.check();
                    let booted = host.booted();
                    let local = host.local_deployments();
                    self.finish_check(result, booted.as_deref(), &local, clock)?;
                }
            }
            State::Checking => {}
            State::Downloading { release } => {
                let release = release.clone();
                let result = host.download(&release).and_then(|()| host.stage(&release));
                self.finish_download(result)?;
            }
            State::Staged { .. }
            | State::WaitingForWindow { .. }
            | State::WaitingForUsers { .. }
            | State::WaitingForLock { .. } => self.before_reboot(host, lock, clock)?,
        }
        Ok(())
    }

    /// The checks before a reboot, in order: window, users, lock; then reboot.
    fn before_reboot(
        &mut self,
        host: &mut dyn Host,
        lock: &mut dyn Lock,
        clock: &dyn Clock,
    ) -> Result<(), TransitionError> {
        let now = clock.now();
        if !self.settings.schedule.contains(now) {
            return self.wait_for_window(clock);
        }
        let users = host.logged_in_users();
        if !users.is_empty() {
            let since = match &self.state {
                State::WaitingForUsers { since, .. } => *since,
                _ => now,
            };
            let waited = (now - since).to_std().unwrap_or_default();
            if waited < self.settings.max_postpone {
                return self.wait_for_users(users, host, clock);
            }
        }
        if let Err(e) = lock.pre_reboot() {
            return self.wait_for_lock(e);
        }
        if self.settings.strategy == Strategy::FleetLock {
            self.lock = LockState::Held;
        }
        self.begin_reboot(clock)?;
        if !users.is_empty() {
            host.tell_users(&format!(
                "keel: rebooting now into {}",
                self.current_release().describe()
            ));
        }
        if let Err(e) = host.reboot() {
            self.reboot_failed(e)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
