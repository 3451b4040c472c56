//! The static delta when things go wrong, and two upgrades at once: a damaged or missing part
//! and a superblock for other commits or too big fall back to an object pull with a warning;
//! Ctrl-C while the delta is applied keeps its parts; a slow link finishes, a stalled part is
//! continued where it stopped; a second upgrade waits for the sysroot lock and names who holds
//! it.

mod common;
use common::*;

use keel_common::progress::{Event, Progress, Recorder};
use std::time::{Duration, Instant};

/// v1 deployed, v2 published with `new` bytes of noise and a v1 -> v2 delta.
fn world_with_delta(new: usize) -> (World, String) {
    let w = World::new(1024);
    let v2 = w.publish(
        tree("2", 1024).file("usr/share/keel-test/new", noise(new, 9)),
        REF,
    );
    w.static_delta(&w.v1, &v2);
    (w, v2)
}

fn delta_part_requests(w: &World) -> Vec<String> {
    w.server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("/deltas/") && !r.ends_with("/superblock"))
        .collect()
}

fn fast_failing() -> Request {
    let mut request = Request::upgrade(Mode::Deploy);
    request.network_retries = 0;
    request
}

/// Runs an upgrade that must fall back from the delta to objects, warning with `expected`.
fn assert_falls_back(w: &World, v2: &str, request: &Request, expected: &[&str]) {
    let sink = Recorder::default();
    let report = upgrade::run(&w.host(), request, &Cancel::new(), &sink).unwrap();
    assert!(report.deployed);
    assert!(!report.pulled.unwrap().used_delta);
    assert_eq!(w.state().0[0].0, v2);
    let warnings: Vec<String> = sink
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Warning { text } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    for needle in expected {
        assert!(warnings[0].contains(needle), "{needle:?} in {warnings:?}");
    }
}

#[test]
fn a_corrupt_or_missing_delta_part_falls_back_to_an_object_pull_with_a_warning() {
    let (w, v2) = world_with_delta(64 * 1024);
    let part = w
        .server_repo
        .join(keel_host::delta::delta_dir(&w.v1, &v2))
        .join("0");
    let good = std::fs::read(&part).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    std::fs::write(&part, &bad).unwrap();
    assert_falls_back(
        &w,
        &v2,
        &fast_failing(),
        &["static delta", "sha256", "object by object"],
    );
    assert!(w
        .server
        .requests()
        .iter()
        .any(|r| r.starts_with("/objects/")));

    let (w, v2) = world_with_delta(64 * 1024);
    let path = format!("/{}/0", keel_host::delta::delta_dir(&w.v1, &v2));
    w.server.inject(&path, Fault::Status(404));
    assert_falls_back(&w, &v2, &fast_failing(), &["HTTP 404", "object by object"]);
}

#[test]
fn a_superblock_for_other_commits_or_past_the_cap_is_refused_for_an_object_pull() {
    // The v1 -> v2 superblock served as v1 -> v3's: it would make v2, not the verified v3.
    let (w, v2) = world_with_delta(64 * 1024);
    let v3 = w.publish(tree("3", 1024), REF);
    let real = w.server_repo.join(keel_host::delta::delta_dir(&w.v1, &v2));
    let fake = w.server_repo.join(keel_host::delta::delta_dir(&w.v1, &v3));
    std::fs::create_dir_all(&fake).unwrap();
    for file in ["superblock", "0"] {
        std::fs::copy(real.join(file), fake.join(file)).unwrap();
    }
    w.refresh_summary();
    let check = w.upgrade(&Request::upgrade(Mode::Check)).unwrap();
    assert_eq!(
        check.delta_size, None,
        "a refused delta has no size to report"
    );
    assert_falls_back(
        &w,
        &v3,
        &fast_failing(),
        &[
            &format!(
                "{}/superblock",
                fake.strip_prefix(&w.server_repo).unwrap().display()
            ),
            "not for the verified update",
        ],
    );
    assert!(
        !w.client_has_commit(&v2),
        "the substituted delta was applied"
    );
    assert!(
        delta_part_requests(&w).is_empty(),
        "{:?}",
        w.server.requests()
    );

    // A real delta, but bigger than the host accepts.
    let (w, v2) = world_with_delta(64 * 1024);
    w.server.reset_counters();
    let mut request = fast_failing();
    request.max_delta_bytes = 1000;
    assert_falls_back(
        &w,
        &v2,
        &request,
        &["/superblock", "more than the limit of 1000 bytes"],
    );
    assert!(
        delta_part_requests(&w).is_empty(),
        "{:?}",
        w.server.requests()
    );
}

/// Cancels its token when the named phase starts.
struct CancelAt<'a> {
    phase: &'a str,
    cancel: Cancel,
}

impl Progress for CancelAt<'_> {
    fn report(&self, event: Event) {
        if matches!(&event, Event::Phase { name } if name == self.phase) {
            self.cancel.cancel();
        }
    }
}

#[test]
fn ctrl_c_while_the_delta_is_applied_keeps_its_parts_for_the_next_run() {
    let (w, v2) = world_with_delta(256 * 1024);
    let before = w.state();
    let sink = CancelAt {
        phase: "apply",
        cancel: Cancel::new(),
    };
    let err = upgrade::run(
        &w.host(),
        &Request::upgrade(Mode::Deploy),
        &sink.cancel,
        &sink,
    )
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("run the command again to resume"), "{err}");
    assert_eq!(w.state(), before);
    assert!(!delta_part_requests(&w).is_empty());

    w.server.reset_counters();
    let report = w.upgrade(&Request::upgrade(Mode::Deploy)).unwrap();
    assert!(report.deployed);
    assert!(report.pulled.unwrap().used_delta);
    assert_eq!(w.state().0[0].0, v2);
    assert!(
        delta_part_requests(&w).is_empty(),
        "parts downloaded before the Ctrl-C were fetched again: {:?}",
        w.server.requests()
    );
    assert!(
        w.server.bytes_sent() < 64 * 1024,
        "{}",
        w.server.bytes_sent()
    );
}

#[test]
fn on_a_slow_link_each_read_has_the_timeout_and_a_stalled_part_is_continued() {
    const NEW: usize = 256 * 1024;
    let (w, v2) = world_with_delta(NEW);
    let part = format!("/{}/0", keel_host::delta::delta_dir(&w.v1, &v2));
    // The part takes about 2.4 s to arrive, more than twice the read timeout.
    w.server.inject(
        &part,
        Fault::Slow {
            chunk: 16 * 1024,
            every: Duration::from_millis(150),
        },
    );
    let mut request = Request::upgrade(Mode::DownloadOnly);
    request.read_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let report = w.upgrade(&request).unwrap();
    assert!(report.pulled.unwrap().used_delta);
    assert!(
        started.elapsed() > 2 * request.read_timeout,
        "{:?}",
        started.elapsed()
    );
    assert!(w.client_has_commit(&v2));

    // Stalled after 100 kB for longer than the read timeout: the retry asks for the rest.
    let (w, v2) = world_with_delta(NEW);
    let part = format!("/{}/0", keel_host::delta::delta_dir(&w.v1, &v2));
    let size = std::fs::metadata(w.server_repo.join(part.trim_start_matches('/')))
        .unwrap()
        .len();
    w.server.inject_once(
        &part,
        Fault::Stall {
            after: 100_000,
            pause: Duration::from_secs(4),
        },
    );
    let mut request = Request::upgrade(Mode::Deploy);
    request.read_timeout = Duration::from_secs(1);
    request.network_retries = 2;
    let report = w.upgrade(&request).unwrap();
    assert!(report.deployed && report.pulled.unwrap().used_delta);
    assert_eq!(w.state().0[0].0, v2);
    assert_eq!(delta_part_requests(&w), vec![part.clone(), part]);
    let sent = w.server.bytes_sent();
    assert!(
        sent < size + 50_000,
        "sent {sent} bytes for a {size}-byte part: the first 100 kB were fetched again"
    );
}

#[test]
fn a_second_upgrade_waits_for_the_sysroot_lock_and_names_its_holder() {
    let (w, v2) = world_with_delta(256 * 1024);
    let part = format!("/{}/0", keel_host::delta::delta_dir(&w.v1, &v2));
    // The first upgrade holds the lock for about 2 s while the part trickles in.
    w.server.inject(
        &part,
        Fault::Slow {
            chunk: 16 * 1024,
            every: Duration::from_millis(120),
        },
    );
    let lock_file = w.sysroot.path().join("ostree/lock");
    let second = Recorder::default();
    let (first, later) = std::thread::scope(|scope| {
        let first = scope.spawn(|| {
            let report = w.upgrade(&Request::upgrade(Mode::Deploy));
            (report, Instant::now())
        });
        // Once the first holds the lock (its note is in the lock file), start the second.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&lock_file).is_ok_and(|n| n.contains("pid=")) {
            assert!(
                Instant::now() < deadline,
                "the first upgrade never took the lock"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let later = upgrade::run(
            &w.host(),
            &Request::upgrade(Mode::Deploy),
            &Cancel::new(),
            &second,
        )
        .map(|report| (report, Instant::now()));
        (first.join().unwrap(), later)
    });
    let (first, first_done) = first;
    let first = first.unwrap();
    let (later, later_done) = later.unwrap();
    assert!(first.deployed);
    assert!(later.up_to_date, "the second upgrade did the work again");
    assert!(!later.deployed);
    assert!(later_done >= first_done);
    let lines = second.lines();
    let waited = lines
        .iter()
        .find(|l| l.starts_with("waiting for the sysroot lock"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(
        waited.contains(&format!("held by process {}", std::process::id())),
        "{waited}"
    );
    let (deployments, _) = w.state();
    assert_eq!(
        deployments.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(),
        vec![v2.as_str(), w.v1.as_str()]
    );
}
