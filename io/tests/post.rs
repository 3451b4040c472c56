//! `Client::post_json` against a loopback server: the headers sent, every status returned as
//! an answer with its body, the answer's size cap, and a refused connection as an error.

mod support;

use keel_common::cancel::Cancel;
use keel_io::http::{Client, HttpError, Limits, Proxies, Settings};
use std::time::Duration;
use support::{Reply, Server};

fn client() -> Client {
    Client::new(
        Settings {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(10),
            ..Settings::default()
        },
        Proxies::none(),
    )
    .unwrap()
}

const CAP: Limits = Limits {
    max_bytes: 4096,
    deadline: None,
};

#[test]
fn a_post_sends_json_and_the_extra_headers_and_returns_any_status_with_its_body() {
    let server = Server::start();
    server.route("/v1/ok", vec![Reply::ok(b"")]);
    let mut conflict = Reply::ok(br#"{"kind":"failed_lock","value":"held"}"#);
    conflict.status = 409;
    server.route("/v1/full", vec![conflict]);
    let body = serde_json::json!({"client_params": {"id": "a", "group": "g"}});
    let headers = [("fleet-lock-protocol", "true")];

    let ok = client()
        .post_json(&server.url("/v1/ok"), &headers, &body, CAP, &Cancel::new())
        .unwrap();
    assert_eq!(ok.status, 200);
    assert!(ok.is_success());
    let full = client()
        .post_json(
            &server.url("/v1/full"),
            &headers,
            &body,
            CAP,
            &Cancel::new(),
        )
        .unwrap();
    assert_eq!(full.status, 409);
    assert!(!full.is_success());
    assert_eq!(full.body, br#"{"kind":"failed_lock","value":"held"}"#);

    let seen = server.seen();
    assert_eq!(seen.len(), 2, "a POST was retried: {seen:?}");
    assert!(
        seen[0].line.starts_with("POST /v1/ok "),
        "{:?}",
        seen[0].line
    );
    assert_eq!(
        seen[0]
            .headers
            .get("fleet-lock-protocol")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        seen[0].headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let length: usize = seen[0].headers["content-length"].parse().unwrap();
    assert_eq!(length, serde_json::to_string(&body).unwrap().len());
}

#[test]
fn an_answer_bigger_than_the_cap_is_refused() {
    let server = Server::start();
    server.route("/big", vec![Reply::ok(&[b'x'; 5000])]);
    let err = client()
        .post_json(&server.url("/big"), &[], &1, CAP, &Cancel::new())
        .unwrap_err();
    assert!(
        matches!(err, HttpError::TooLarge { limit: 4096, .. }),
        "{err}"
    );
}

#[test]
fn no_server_is_a_connect_error_and_file_urls_are_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1/pre-reboot");
    let err = client()
        .post_json(&url, &[], &1, CAP, &Cancel::new())
        .unwrap_err();
    assert!(matches!(err, HttpError::Connect { .. }), "{err}");
    let err = client()
        .post_json("file:///tmp/x", &[], &1, CAP, &Cancel::new())
        .unwrap_err();
    assert!(matches!(err, HttpError::BadUrl { .. }), "{err}");
    let cancel = Cancel::new();
    cancel.cancel();
    let err = client().post_json(&url, &[], &1, CAP, &cancel).unwrap_err();
    assert!(matches!(err, HttpError::Cancelled { .. }), "{err}");
}
