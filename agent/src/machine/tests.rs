//! Every transition, driven with fakes of the agent's own traits.

use super::*;
use crate::config::{FleetLockSettings, Settings, Strategy};
use crate::window::{Schedule, Window};
use chrono::{NaiveTime, Weekday};
use std::cell::Cell;

struct FakeClock {
    now: Cell<DateTime<Utc>>,
    jitter: Duration,
}

impl FakeClock {
    fn at(text: &str) -> Self {
        FakeClock {
            now: Cell::new(utc(text)),
            jitter: Duration::from_secs(90),
        }
    }
    fn advance(&self, minutes: i64) {
        self.now
            .set(self.now.get() + chrono::Duration::minutes(minutes));
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        self.now.get()
    }
    fn jitter(&self, max: Duration) -> Duration {
        self.jitter.min(max)
    }
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instant")
        .with_timezone(&Utc)
}

#[derive(Default)]
struct FakeHost {
    good: bool,
    remote: Option<Result<Release, String>>,
    booted: Option<String>,
    local: Vec<String>,
    download_error: Option<String>,
    downloaded: Vec<String>,
    staged: Vec<String>,
    users: Vec<String>,
    told: Vec<String>,
    reboots: u32,
    reboot_error: Option<String>,
    checks: u32,
}

impl Host for FakeHost {
    fn boot_is_good(&mut self) -> bool {
        self.good
    }
    fn check(&mut self) -> Result<Release, String> {
        self.checks += 1;
        self.remote
            .clone()
            .unwrap_or_else(|| Err("no remote".into()))
    }
    fn local_deployments(&mut self) -> Vec<String> {
        self.local.clone()
    }
    fn booted(&mut self) -> Option<String> {
        self.booted.clone()
    }
    fn download(&mut self, release: &Release) -> Result<(), String> {
        if let Some(e) = &self.download_error {
            return Err(e.clone());
        }
        self.downloaded.push(release.checksum.clone());
        Ok(())
    }
    fn stage(&mut self, release: &Release) -> Result<(), String> {
        self.staged.push(release.checksum.clone());
        self.local.push(release.checksum.clone());
        Ok(())
    }
    fn logged_in_users(&mut self) -> Vec<String> {
        self.users.clone()
    }
    fn tell_users(&mut self, message: &str) {
        self.told.push(message.to_string());
    }
    fn reboot(&mut self) -> Result<(), String> {
        self.reboots += 1;
        match &self.reboot_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

#[derive(Default)]
struct FakeLock {
    refuse: Option<LockError>,
    calls: Vec<&'static str>,
}

impl Lock for FakeLock {
    fn pre_reboot(&mut self) -> Result<(), LockError> {
        self.calls.push("pre-reboot");
        self.refuse.clone().map_or(Ok(()), Err)
    }
    fn steady_state(&mut self) -> Result<(), LockError> {
        self.calls.push("steady-state");
        self.refuse.clone().map_or(Ok(()), Err)
    }
}

fn v2() -> Release {
    Release {
        checksum: "b2".repeat(32),
        version: Some("2".into()),
    }
}

fn settings(strategy: Strategy, windows: Vec<Window>) -> Settings {
    Settings {
        strategy,
        schedule: Schedule { windows },
        fleet_lock: (strategy == Strategy::FleetLock).then(|| FleetLockSettings {
            base_url: "http://127.0.0.1:1".into(),
            group: "default".into(),
        }),
        ..Settings::default()
    }
}

/// Saturdays 22:00-00:00 UTC.
fn saturday_night() -> Window {
    Window {
        days: vec![Weekday::Sat],
        start: NaiveTime::from_hms_opt(22, 0, 0).expect("time"),
        length_minutes: 120,
        time_zone: chrono_tz::UTC,
    }
}

fn host_with_update() -> FakeHost {
    FakeHost {
        good: true,
        remote: Some(Ok(v2())),
        booted: Some("a1".repeat(32)),
        local: vec!["a1".repeat(32)],
        ..FakeHost::default()
    }
}

/// Ticks until the state stops changing (at most 20 ticks).
fn settle(agent: &mut Agent, host: &mut FakeHost, lock: &mut FakeLock, clock: &FakeClock) {
    for _ in 0..20 {
        if !agent.tick(host, lock, clock) {
            return;
        }
    }
}

// 2026-03-07 is a Saturday.
const SAT_NOON: &str = "2026-03-07T12:00:00Z";
const SAT_NIGHT: &str = "2026-03-07T22:30:00Z";

#[test]
fn immediate_checks_downloads_stages_and_reboots() {
    let (clock, mut host, mut lock) = (
        FakeClock::at(SAT_NOON),
        host_with_update(),
        FakeLock::default(),
    );
    let mut agent = Agent::new(settings(Strategy::Immediate, vec![]));
    assert_eq!(agent.state, State::ReportingSteadyState);
    settle(&mut agent, &mut host, &mut lock, &clock);
    assert_eq!(agent.state, State::Rebooting { release: v2() });
    assert_eq!(host.staged, vec![v2().checksum]);
    assert_eq!(host.reboots, 1);
    assert_eq!(agent.last_check, Some(clock.now()));
    // Interval 60 min plus the clock's 90 s of jitter.
    assert_eq!(
        agent.next_check,
        Some(clock.now() + chrono::Duration::seconds(3690))
    );
    assert_eq!(agent.lock, LockState::None);
}

#[test]
fn steady_state_waits_for_a_good_boot_and_a_released_lock() {
    let clock = FakeClock::at(SAT_NOON);
    let mut host = FakeHost::default();
    let mut lock = FakeLock {
        refuse: Some(LockError {
            kind: None,
            message: "connection refused".into(),
        }),
        ..FakeLock::default()
    };
    let mut agent = Agent::new(settings(Strategy::FleetLock, vec![]));
    agent.tick(&mut host, &mut lock, &clock);
    assert_eq!(agent.state, State::ReportingSteadyState);
    assert!(
        lock.calls.is_empty(),
        "released the lock before the boot was good"
    );
    host.good = true;
    agent.tick(&mut host, &mut lock, &clock);
    assert_eq!(agent.state, State::ReportingSteadyState);
    assert!(matches!(agent.lock, LockState::Error(_)));
    lock.refuse = None;
    agent.tick(&mut host, &mut lock, &clock);
    assert_eq!(agent.state, State::Idle);
    assert_eq!(agent.lock, LockState::Released);
    assert_eq!(lock.calls, vec!["steady-state", "steady-state"]);
}

#[test]
fn disabled_reports_steady_state_and_then_never_checks() {
    let (clock, mut host, mut lock) = (
        FakeClock::at(SAT_NOON),
        host_with_update(),
        FakeLock::default(),
    );
    let mut agent = Agent::new(Settings {
        enabled: false,
        ..Settings::default()
    });
    settle(&mut agent, &mut host, &mut lock, &clock);
    assert_eq!(agent.state, State::Disabled);
    assert_eq!(host.checks, 0);
}

#[test]
fn nothing_new_or_an_error_goes_back_to_idle_until_the_next_check() {
    let clock = FakeClock::at(SAT_NOON);
    let mut host = FakeHost {
        good: true,
        remote: Some(Ok(Release {
            checksum: "a1".repeat(32),
            version: None,
        })),
        booted: Some("a1".repeat(32)),
        ..FakeHost::default()
    };
    let mut lock = FakeLock::default();
    let mut agent = Agent::new(settings(Strategy::Immediate, vec![]));
    settle(&mut agent, &mut host, &mut lock, &clock);
    assert_eq!((agent.state.clone(), host.checks), (State::Idle, 1));
    clock.advance(30);
    agent.tick(&mut host, &mut lock, &clock);
    assert_eq!(host.checks, 1, "checked before the interval passed");
    clock.advance(32);
    host.remote = Some(Err("remote unreachable".into()));
    agent.tick(&mut host, &mut lock, &clock);
    assert_eq!((agent.state.clone(), host.checks), (State::Idle, 2));
    assert_eq!(
        agent.last_error.as_deref(),
        Some("check: remote unreachable")
    );
}

#[test]
fn a_release_that_is_already_a_local_deployment_is_never_retried() {
    let (clock, mut host, mut lock) = (
        FakeClock::at(SAT_NOON),
        host_with_update(),
        FakeLock::default(),
    );
    // The host booted v2, failed, and rolled back to v1: v2 is still a local deployment.
    host.local.push(v2().checksum);
    let mut agent = Agent::new(settings(Strategy::Immediate, vec![]));
    settle(&mut agent, &mut host, &mut lock, &clock);
    assert_eq!(agent.state, State::Idle);
    assert_eq!(agent.skipped, Some(v2()));
    assert!(host.downloaded.is_empty());
}

#[test]
fn a_failed_download_is_reported_and_retried_at_the_next_check() {
    let (clock, mut host, mut lock) = (
        FakeClock::at(SAT_NOON),
        host_with_update(),
        FakeLock::default(),
    );
    host.download_error = Some("disk full".into());
    let mut agent = Agent::new(settings(Strategy::Immediate, vec![]));
    settle(&mut agent, &mut host, &mut lock, &clock);
    assert_eq!(agent.state, State::Idle);
    assert!(agent
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("disk full")));
    host.download_error = None;
    clock.advance(62);
    settle(&mut agent, &mut host, &mut lock, &clock);
    assert_eq!(host.reboots, 1);
}

#[test]
fn periodic_stages_at_once_but_reboots_only_inside_the_window() {
    let (clock, mut host, mut lock) = (
        FakeClock::at(SAT_NOON),
        host_with_update(),
        FakeLock::default(),
    );
    let mut agent = Agent::new(settings(Strategy::Periodic, vec![saturday_night()]));
    settle(&mut agent, &mut host, &mut lock, &clock);
    let opens = utc("2026-03-07T22:00:00Z");
    assert_eq!(
        agent.state,
        State::WaitingForWindow {
            release: v2(),
            opens: Some(opens)
        }
    );
    assert_eq!(agent.next_window, Some(opens));
    assert_eq!(host.staged, vec![v2().checksum]);
    assert_eq!(host.reboots, 0);
    clock.now.set(SAT_NIGHT.parse().expect("instant"));
    settle(&mut agent, &mut host, &mut lock, &clock);
    assert_eq!(agent.state, State::Rebooting { release: v2() });
    assert_eq!(host.reboots, 1);
}

#[test]
fn begin_reboot_refuses_outside_a_window_whoever_asks() {
    let clock = FakeClock::at(SAT_NOON);
    let mut agent = Agent::new(settings(Strategy::Periodic, vec![saturday_night()]));
    agent.state = State::Staged { release: v2() };
    let err = agent.begin_reboot(&clock).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot reboot while outside every maintenance window"
    );
    assert_eq!(agent.state, State::Staged { release: v2() });
}

#[test]
fn users_are_told_and_waited_for_up_to_the_limit() {
    let (clock, mut host, mut lock) = (
        FakeClock::at(SAT_NOON),
        host_with_update(),
        FakeLock::default(),
    );
    host.users = vec!["alice".into()];
    let mut agent = Agent::new(Settings {
        max_postpone: Duration::from_secs(30 * 60),
        ..settings(Strategy::Immediate, vec![])
    });
    settle(&mut agent, &mut host, &mut lock, &clock);
    let since = clock.now();
    assert_eq!(
        agent.state,
        State::WaitingForUsers {
            release: v2(),
            since,
            users: vec!["alice".into()]
        }
    );
    assert_eq!(host.told.len(), 1, "{:?}", host.told);
    assert!(
        host.told[0].contains("within 30 minutes"),
        "{:?}",
        host.told
    );
    clock.advance(10);
    agent.tick(&mut host, &mut lock, &clock);
    assert_eq!(host.told.len(), 1, "told again: {:?}", host.told);
    assert_eq!(host.reboots, 0);
    clock.advance(21);
    agent.tick(&mut host, &mut lock, &clock);
    assert_eq!(agent.state, State::Rebooting { release: v2() });
    assert!(host.told[1].contains("rebooting now"), "{:?}", host.told);

    // Users who log out end the wait at once.
    let (clock, mut host, mut lock) = (
        FakeClock::at(SAT_NOON),
        host_with_update(),
        FakeLock::default(),
    );
    host.users = vec!["bob".into()];
    let mut agent = Agent::new(settings(Strategy::Immediate, vec![]));
    settle(&mut agent, &mut host, &mut lock, &clock);
    host.users.clear();
    clock.advance(1);
    agent.tick(&mut host, &mut lock, &clock);
    assert_eq!(host.reboots, 1);
}

#[test]
fn fleet_lock_waits_for_a_slot_and_shows_the_kind() {
    let (clock, mut host, mut lock) = (
        FakeClock::at(SAT_NOON),
        host_with_update(),
        FakeLock::default(),
    );
    let mut agent = Agent::new(settings(Strategy::FleetLock, vec![]));
    agent.tick(&mut host, &mut lock, &clock); // steady state
    lock.refuse = Some(LockError {
        kind: Some(ErrorKind::SemaphoreFull),
        message: "all 1 slots are held".into(),
    });
    settle(&mut agent, &mut host, &mut lock, &clock);
    assert_eq!(agent.state, State::WaitingForLock { release: v2() });
    let LockState::Error(e) = &agent.lock else {
        panic!("{:?}", agent.lock)
    };
    assert_eq!(e.kind, Some(ErrorKind::SemaphoreFull));
    assert_eq!(host.reboots, 0);
    lock.refuse = None;
    agent.tick(&mut host, &mut lock, &clock);
    assert_eq!(agent.state, State::Rebooting { release: v2() });
    assert_eq!(agent.lock, LockState::Held);
    // Refused twice (settling ticks until nothing changes), then granted.
    assert_eq!(
        lock.calls,
        vec!["steady-state", "pre-reboot", "pre-reboot", "pre-reboot"]
    );
}

#[test]
fn windows_and_the_fleet_lock_together_take_the_lock_only_inside_a_window() {
    let (clock, mut host, mut lock) = (
        FakeClock::at(SAT_NOON),
        host_with_update(),
        FakeLock::default(),
    );
    let mut agent = Agent::new(settings(Strategy::FleetLock, vec![saturday_night()]));
    settle(&mut agent, &mut host, &mut lock, &clock);
    assert!(matches!(agent.state, State::WaitingForWindow { .. }));
    assert_eq!(
        lock.calls,
        vec!["steady-state"],
        "took the lock outside the window"
    );
    clock.now.set(SAT_NIGHT.parse().expect("instant"));
    settle(&mut agent, &mut host, &mut lock, &clock);
    assert_eq!(agent.state, State::Rebooting { release: v2() });
    assert_eq!(lock.calls, vec!["steady-state", "pre-reboot"]);
}

#[test]
fn the_window_closing_while_waiting_for_users_goes_back_to_waiting_for_it() {
    let (clock, mut host, mut lock) = (
        FakeClock::at(SAT_NIGHT),
        host_with_update(),
        FakeLock::default(),
    );
    host.users = vec!["alice".into()];
    let mut agent = Agent::new(settings(Strategy::Periodic, vec![saturday_night()]));
    settle(&mut agent, &mut host, &mut lock, &clock);
    assert!(matches!(agent.state, State::WaitingForUsers { .. }));
    clock.advance(100); // 00:10 Sunday: the window closed, the users stayed.
    agent.tick(&mut host, &mut lock, &clock);
    assert_eq!(
        agent.state,
        State::WaitingForWindow {
            release: v2(),
            opens: Some(utc("2026-03-14T22:00:00Z"))
        }
    );
    assert_eq!(host.reboots, 0);
}

#[test]
fn a_failed_reboot_goes_back_to_staged_and_is_tried_again() {
    let (clock, mut host, mut lock) = (
        FakeClock::at(SAT_NOON),
        host_with_update(),
        FakeLock::default(),
    );
    host.reboot_error = Some("systemctl failed".into());
    let mut agent = Agent::new(settings(Strategy::Immediate, vec![]));
    for _ in 0..4 {
        agent.tick(&mut host, &mut lock, &clock);
    }
    assert_eq!(agent.state, State::Staged { release: v2() });
    assert_eq!(
        agent.last_error.as_deref(),
        Some("reboot: systemctl failed")
    );
    host.reboot_error = None;
    agent.tick(&mut host, &mut lock, &clock);
    assert_eq!(agent.state, State::Rebooting { release: v2() });
    assert_eq!(host.reboots, 2);
}

#[test]
fn transitions_refuse_the_states_they_cannot_start_from() {
    let clock = FakeClock::at(SAT_NOON);
    let mut host = FakeHost::default();
    let mut lock = FakeLock::default();
    let mut agent = Agent::new(Settings::default());
    let err = |from: &'static str, transition: &'static str| TransitionError { transition, from };
    assert_eq!(
        agent.begin_check(),
        Err(err("reporting_steady_state", "check"))
    );
    assert_eq!(
        agent.finish_download(Ok(())),
        Err(err("reporting_steady_state", "finish a download"))
    );
    assert_eq!(
        agent.begin_reboot(&clock),
        Err(err("reporting_steady_state", "reboot"))
    );
    agent.report_steady_state(&mut lock, &clock).unwrap();
    assert_eq!(
        agent.report_steady_state(&mut lock, &clock),
        Err(err("idle", "report steady state"))
    );
    assert_eq!(
        agent.finish_check(Ok(v2()), None, &[], &clock),
        Err(err("idle", "finish a check"))
    );
    assert_eq!(
        agent.wait_for_window(&clock),
        Err(err("idle", "wait for a window"))
    );
    assert_eq!(
        agent.wait_for_users(vec![], &mut host, &clock),
        Err(err("idle", "wait for users"))
    );
    assert_eq!(
        agent.wait_for_lock(LockError {
            kind: None,
            message: String::new()
        }),
        Err(err("idle", "wait for the lock"))
    );
    assert_eq!(
        agent.reboot_failed(String::new()),
        Err(err("idle", "note a failed reboot"))
    );
    agent.begin_check().unwrap();
    assert_eq!(agent.begin_check(), Err(err("checking", "check")));
    agent.finish_check(Ok(v2()), None, &[], &clock).unwrap();
    assert_eq!(
        agent.begin_reboot(&clock),
        Err(err("downloading", "reboot"))
    );
    agent.finish_download(Ok(())).unwrap();
    agent.begin_reboot(&clock).unwrap();
    assert_eq!(agent.begin_reboot(&clock), Err(err("rebooting", "reboot")));
}
