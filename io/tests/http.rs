//! The HTTP client against a real server on loopback with faults injected: timeouts, retries,
//! caps, `file://`, resumable downloads, cancellation and proxies.

mod support;

use keel_common::cancel::Cancel;
use keel_common::progress::{Discard, Event, Progress, Recorder};
use keel_io::http::{part_path, Client, Download, HttpError, Limits, Proxies, Settings};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use support::{Reply, Server};

fn client(read_timeout_ms: u64, attempts: u32) -> Client {
    Client::new(
        Settings {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_millis(read_timeout_ms),
            attempts,
            backoff: Duration::from_millis(10),
            ..Settings::default()
        },
        Proxies::none(),
    )
    .unwrap()
}

/// `n` bytes that differ from one offset to the next (a splice shows in the hash).
fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

const CAP: Limits = Limits {
    max_bytes: 1 << 30,
    deadline: None,
};

#[test]
fn a_slow_but_steady_download_outlasts_the_read_timeout() {
    let server = Server::start();
    let body = data(30 * 1024);
    server.route(
        "/slow",
        vec![Reply::ok(&body).drip(1024, Duration::from_millis(50))],
    );
    let started = Instant::now();
    let got = client(300, 1)
        .get(&server.url("/slow"), CAP, &Cancel::new())
        .unwrap();
    assert_eq!(got, body);
    assert!(
        started.elapsed() > Duration::from_millis(1200),
        "the drip was too fast to prove anything"
    );
}

#[test]
fn a_stall_hits_the_read_timeout_and_is_retried() {
    let server = Server::start();
    let body = data(10_000);
    let stall = Reply::ok(&body).stall_after(1000, Duration::from_secs(3));
    server.route("/stall", vec![stall.clone()]);
    let started = Instant::now();
    let err = client(300, 1)
        .get(&server.url("/stall"), CAP, &Cancel::new())
        .unwrap_err();
    assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains(&server.url("/stall")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));

    server.route("/stall-once", vec![stall, Reply::ok(&body)]);
    let got = client(300, 2)
        .get(&server.url("/stall-once"), CAP, &Cancel::new())
        .unwrap();
    assert_eq!(got, body);
}

#[test]
fn server_errors_and_rate_limits_are_retried() {
    let server = Server::start();
    server.route(
        "/busy",
        vec![
            Reply::status(503),
            Reply::status(429),
            Reply::ok(b"at last"),
        ],
    );
    let got = client(2000, 4)
        .get(&server.url("/busy"), CAP, &Cancel::new())
        .unwrap();
    assert_eq!(got, b"at last");
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn retries_stop_after_the_configured_attempts() {
    let server = Server::start();
    server.route("/down", vec![Reply::status(503)]);
    let err = client(2000, 3)
        .get(&server.url("/down"), CAP, &Cancel::new())
        .unwrap_err();
    assert!(
        matches!(err, HttpError::Status { status: 503, .. }),
        "{err}"
    );
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn not_found_is_final_and_not_retried() {
    let server = Server::start();
    let c = client(2000, 4);
    let err = c
        .get(&server.url("/nope"), CAP, &Cancel::new())
        .unwrap_err();
    assert!(matches!(err, HttpError::NotFound { .. }), "{err}");
    assert_eq!(err.url(), server.url("/nope"));
    assert_eq!(server.seen().len(), 1);
    assert_eq!(
        c.get_optional(&server.url("/nope"), CAP, &Cancel::new())
            .unwrap(),
        None
    );
    server.route("/forbidden", vec![Reply::status(403)]);
    let err = c
        .get(&server.url("/forbidden"), CAP, &Cancel::new())
        .unwrap_err();
    assert!(
        matches!(err, HttpError::Status { status: 403, .. }),
        "{err}"
    );
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn a_body_cut_short_is_retried() {
    let server = Server::start();
    let body = data(50_000);
    server.route(
        "/cut",
        vec![Reply::ok(&body).cut_after(20_000), Reply::ok(&body)],
    );
    let got = client(2000, 2)
        .get(&server.url("/cut"), CAP, &Cancel::new())
        .unwrap();
    assert_eq!(got, body);
    assert_eq!(server.seen().len(), 2);
}

#[test]
fn the_size_cap_holds_for_announced_and_for_streamed_bodies() {
    let server = Server::start();
    let c = client(2000, 3);
    // A huge Content-Length is refused before any body is read, and not retried.
    server.route("/huge", vec![Reply::ok(&data(100)).claim_length(50 << 30)]);
    let err = c
        .get(
            &server.url("/huge"),
            Limits::max_bytes(1 << 20),
            &Cancel::new(),
        )
        .unwrap_err();
    assert!(
        matches!(err, HttpError::TooLarge { limit: 1048576, size: Some(s), .. } if s == 50 << 30),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&server.url("/huge")) && text.contains("1048576"),
        "{text}"
    );
    assert_eq!(server.seen().len(), 1);

    // Without a Content-Length the cap is counted while the body streams.
    server.route(
        "/unannounced",
        vec![Reply::ok(&data(300_000)).without_length()],
    );
    let err = c
        .get(
            &server.url("/unannounced"),
            Limits::max_bytes(100_000),
            &Cancel::new(),
        )
        .unwrap_err();
    assert!(
        matches!(err, HttpError::TooLarge { size: None, .. }),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f");
    let err = c
        .download(
            &server.url("/unannounced"),
            &dest,
            &Download::new(Limits::max_bytes(100_000)),
            &Discard,
            &Cancel::new(),
        )
        .unwrap_err();
    assert!(matches!(err, HttpError::TooLarge { .. }), "{err}");
    assert!(!dest.exists() && !part_path(&dest).exists());

    // At the cap exactly is fine.
    server.route("/exact", vec![Reply::ok(&data(1000)).without_length()]);
    let got = c
        .get(
            &server.url("/exact"),
            Limits::max_bytes(1000),
            &Cancel::new(),
        )
        .unwrap();
    assert_eq!(got.len(), 1000);
}

#[test]
fn file_urls_go_through_the_same_calls() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.bin");
    let body = data(70_000);
    std::fs::write(&source, &body).unwrap();
    let url = format!("file://{}", source.display());
    let c = client(2000, 3);
    assert_eq!(c.get(&url, CAP, &Cancel::new()).unwrap(), body);
    let err = c
        .get(&url, Limits::max_bytes(10), &Cancel::new())
        .unwrap_err();
    assert!(matches!(err, HttpError::TooLarge { .. }), "{err}");
    let err = c
        .get(
            &format!("file://{}", dir.path().display()),
            CAP,
            &Cancel::new(),
        )
        .unwrap_err();
    assert!(matches!(err, HttpError::Io { .. }), "a directory: {err}");
    let missing = format!("file://{}/missing", dir.path().display());
    assert!(matches!(
        c.get(&missing, CAP, &Cancel::new()),
        Err(HttpError::NotFound { .. })
    ));
    let dest = dir.path().join("copy");
    let recorder = Recorder::default();
    let done = c
        .download(
            &url,
            &dest,
            &Download::new(CAP).sha256(&sha(&body)),
            &recorder,
            &Cancel::new(),
        )
        .unwrap();
    assert_eq!(done.bytes, 70_000);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(
        recorder.events().last(),
        Some(&Event::Bytes {
            done: 70_000,
            total: Some(70_000)
        })
    );
}

#[test]
fn a_download_with_the_wrong_checksum_leaves_nothing() {
    let server = Server::start();
    server.route("/f", vec![Reply::ok(&data(5000))]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f");
    let wrong = "0".repeat(64);
    let err = client(2000, 3)
        .download(
            &server.url("/f"),
            &dest,
            &Download::new(CAP).sha256(&wrong).resume(),
            &Discard,
            &Cancel::new(),
        )
        .unwrap_err();
    assert!(matches!(err, HttpError::Checksum { .. }), "{err}");
    assert!(!dest.exists() && !part_path(&dest).exists());
    assert_eq!(server.seen().len(), 1, "a checksum mismatch is not retried");
}

#[test]
fn a_resumable_download_continues_its_part_file_with_a_range_request() {
    let server = Server::start();
    let body = data(100_000);
    server.route("/big", vec![Reply::ok(&body).with_ranges()]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("big");
    std::fs::write(part_path(&dest), &body[..40_000]).unwrap();
    let done = client(2000, 3)
        .download(
            &server.url("/big"),
            &dest,
            &Download::new(CAP).sha256(&sha(&body)).resume(),
            &Discard,
            &Cancel::new(),
        )
        .unwrap();
    assert_eq!(done.resumed_from, 40_000);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert!(!part_path(&dest).exists());
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers.get("range").map(String::as_str),
        Some("bytes=40000-")
    );
}

#[test]
fn a_server_without_ranges_makes_the_download_start_over() {
    let server = Server::start();
    let body = data(30_000);
    server.route("/plain", vec![Reply::ok(&body)]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("plain");
    std::fs::write(part_path(&dest), b"stale bytes of something else").unwrap();
    let done = client(2000, 3)
        .download(
            &server.url("/plain"),
            &dest,
            &Download::new(CAP).sha256(&sha(&body)).resume(),
            &Discard,
            &Cancel::new(),
        )
        .unwrap();
    assert_eq!(done.resumed_from, 0);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

#[test]
fn an_interrupted_resumable_download_keeps_its_part_and_resumes_later() {
    let server = Server::start();
    let body = data(100_000);
    server.route(
        "/r",
        vec![
            Reply::ok(&body).with_ranges().cut_after(30_000),
            Reply::ok(&body).with_ranges(),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("r");
    let sum = sha(&body);
    let how = Download::new(CAP).sha256(&sum).resume();
    let err = client(2000, 1)
        .download(&server.url("/r"), &dest, &how, &Discard, &Cancel::new())
        .unwrap_err();
    assert!(matches!(err, HttpError::Transport { .. }), "{err}");
    assert_eq!(std::fs::metadata(part_path(&dest)).unwrap().len(), 30_000);
    let done = client(2000, 1)
        .download(&server.url("/r"), &dest, &how, &Discard, &Cancel::new())
        .unwrap();
    assert_eq!(done.resumed_from, 30_000);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

#[test]
fn a_retry_within_one_download_resumes_where_the_body_broke_off() {
    let server = Server::start();
    let body = data(100_000);
    server.route(
        "/r",
        vec![
            Reply::ok(&body).with_ranges().cut_after(60_000),
            Reply::ok(&body).with_ranges(),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("r");
    let sum = sha(&body);
    let done = client(2000, 2)
        .download(
            &server.url("/r"),
            &dest,
            &Download::new(CAP).sha256(&sum).resume(),
            &Discard,
            &Cancel::new(),
        )
        .unwrap();
    assert_eq!((done.resumed_from, done.sha256), (60_000, sum));
    assert_eq!(
        server.seen()[1].headers.get("range").map(String::as_str),
        Some("bytes=60000-")
    );
}

/// Cancels its token once `after` bytes were reported.
struct CancelAfter {
    after: u64,
    cancel: Cancel,
}

impl Progress for CancelAfter {
    fn report(&self, event: Event) {
        if matches!(event, Event::Bytes { done, .. } if done >= self.after) {
            self.cancel.cancel();
        }
    }
}

#[test]
fn cancelling_mid_download_leaves_no_part_unless_the_download_is_resumable() {
    let server = Server::start();
    let body = data(40_000);
    server.route(
        "/c",
        vec![Reply::ok(&body)
            .with_ranges()
            .drip(1000, Duration::from_millis(10))],
    );
    let dir = tempfile::tempdir().unwrap();
    let sum = sha(&body);
    for (name, how, keeps_part) in [
        ("plain", Download::new(CAP).sha256(&sum), false),
        ("resumable", Download::new(CAP).sha256(&sum).resume(), true),
    ] {
        let dest = dir.path().join(name);
        let cancel = Cancel::new();
        let progress = CancelAfter {
            after: 5000,
            cancel: cancel.clone(),
        };
        let started = Instant::now();
        let err = client(2000, 3)
            .download(&server.url("/c"), &dest, &how, &progress, &cancel)
            .unwrap_err();
        assert!(matches!(err, HttpError::Cancelled { .. }), "{name}: {err}");
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{name}: cancelled late"
        );
        assert!(!dest.exists(), "{name}");
        assert_eq!(part_path(&dest).exists(), keeps_part, "{name}");
    }
}

#[test]
fn the_deadline_covers_the_whole_request() {
    let server = Server::start();
    server.route(
        "/slow",
        vec![Reply::ok(&data(40_000)).drip(1000, Duration::from_millis(50))],
    );
    let started = Instant::now();
    let err = client(2000, 3)
        .get(
            &server.url("/slow"),
            CAP.with_deadline(Duration::from_millis(500)),
            &Cancel::new(),
        )
        .unwrap_err();
    assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("deadline"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[test]
fn a_refused_connection_is_a_connect_error_after_the_retries() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = client(2000, 2)
        .get(&format!("http://127.0.0.1:{port}/x"), CAP, &Cancel::new())
        .unwrap_err();
    assert!(matches!(err, HttpError::Connect { .. }), "{err}");
}

#[test]
fn proxies_are_used_and_no_proxy_bypasses_them() {
    let target = Server::start();
    let proxy = Server::start();
    target.route("/x", vec![Reply::ok(b"direct")]);
    proxy.route("/x", vec![Reply::ok(b"via proxy")]);
    let settings = Settings::default();
    let proxies = Proxies {
        http: Some(format!("http://127.0.0.1:{}", proxy.port)),
        ..Proxies::none()
    };
    let via = Client::new(settings.clone(), proxies.clone()).unwrap();
    assert_eq!(
        via.get(&target.url("/x"), CAP, &Cancel::new()).unwrap(),
        b"via proxy"
    );
    assert_eq!(
        proxy.seen()[0].line,
        format!("GET {} HTTP/1.1", target.url("/x"))
    );
    assert!(target.seen().is_empty());

    let bypass = Proxies {
        no_proxy: vec!["127.0.0.1".into()],
        ..proxies
    };
    let direct = Client::new(settings, bypass).unwrap();
    assert_eq!(
        direct.get(&target.url("/x"), CAP, &Cancel::new()).unwrap(),
        b"direct"
    );
    assert_eq!(proxy.seen().len(), 1);
}
