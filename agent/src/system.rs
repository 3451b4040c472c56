//! The real [`Clock`] and [`Host`] the daemon drives the state machine with: the system clock
//! and `getrandom` for jitter; keel-host's upgrade pipeline for check, download and stage; the
//! utmp user list (`who`) and `wall` for users; `systemctl` for the boot state and the reboot.

use crate::machine::{Clock, Host, Release};
use chrono::{DateTime, Utc};
use keel_common::cancel::Cancel;
use keel_common::progress::Progress;
use keel_host::upgrade::{self, Mode, Request};
use keel_io::command::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn jitter(&self, max: Duration) -> Duration {
        let mut bytes = [0u8; 8];
        if getrandom::getrandom(&mut bytes).is_err() || max.is_zero() {
            return Duration::ZERO;
        }
        let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(u64::from_le_bytes(bytes) % millis.saturating_add(1))
    }
}

/// The host at `sysroot` (`None`: the booted one), worked on through keel-host.
pub struct SystemHost<'a> {
    pub sysroot: Option<PathBuf>,
    pub cancel: Cancel,
    pub progress: &'a dyn Progress,
}

impl SystemHost<'_> {
    fn open(&self) -> Result<keel_host::Host, String> {
        keel_host::Host::open(self.sysroot.as_deref()).map_err(|e| format!("{e:#}"))
    }

    fn upgrade(&self, mode: Mode) -> Result<upgrade::Report, String> {
        let host = self.open()?;
        upgrade::run(&host, &Request::upgrade(mode), &self.cancel, self.progress)
            .map_err(|e| format!("{e:#}"))
    }

    fn is_booted(&self) -> bool {
        self.open().is_ok_and(|h| h.is_booted())
    }
}

impl Host for SystemHost<'_> {
    fn boot_is_good(&mut self) -> bool {
        if !self.is_booted() {
            return true;
        }
        Command::new("systemctl")
            .args(["is-active", "--quiet", "boot-complete.target"])
            .run()
            .is_ok()
    }

    fn check(&mut self) -> Result<Release, String> {
        let report = self.upgrade(Mode::Check)?;
        Ok(Release {
            checksum: report.available.checksum,
            version: report.available.version,
        })
    }

    fn local_deployments(&mut self) -> Vec<String> {
        self.open()
            .map(|h| {
                h.deployments()
                    .iter()
                    .map(|d| d.csum().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn booted(&mut self) -> Option<String> {
        let host = self.open().ok()?;
        host.booted_deployment()
            .or_else(|| host.deployments().first().cloned())
            .map(|d| d.csum().to_string())
    }

    fn download(&mut self, release: &Release) -> Result<(), String> {
        let report = self.upgrade(Mode::DownloadOnly)?;
        if report.available.checksum != release.checksum {
            return Err(format!(
                "the remote moved on from {} to {} while downloading; the next check takes the new one",
                release.describe(),
                report.available.checksum
            ));
        }
        Ok(())
    }

    fn stage(&mut self, release: &Release) -> Result<(), String> {
        let report = self.upgrade(Mode::Deploy)?;
        if report.available.checksum != release.checksum {
            return Err(format!(
                "deployed {} instead of {}: the remote moved on",
                report.available.checksum,
                release.describe()
            ));
        }
        Ok(())
    }

    fn logged_in_users(&mut self) -> Vec<String> {
        let Ok(text) = Command::new("who").run_text() else {
            return Vec::new();
        };
        let mut users: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect();
        users.sort();
        users.dedup();
        users
    }

    fn tell_users(&mut self, message: &str) {
        // Best effort: a host without a terminal has nobody to tell.
        let _ = Command::new("wall").arg(message).run();
    }

    fn reboot(&mut self) -> Result<(), String> {
        let host = self.open()?;
        keel_host::host::reboot(&host, "the staged deployment").map_err(|e| format!("{e:#}"))
    }
}
