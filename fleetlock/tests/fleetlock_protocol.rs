//! The FleetLock protocol against a real etcd, one server: the answers Zincati gets, slot
//! counts changed in the config, expiry, the admin verbs and the metrics.

mod support;

use std::time::Duration;
use support::{admin, holder_ids, write_config, Client, Etcd, Server};

#[test]
fn protocol_errors_have_the_protocols_kinds_and_statuses() {
    let etcd = Etcd::start();
    let server = Server::start(&[&etcd.url], None);
    let client = Client::default();
    let pre = format!("{}/v1/pre-reboot", server.base);
    let good = r#"{"client_params":{"id":"node-a","group":"default"}}"#;

    // (what, url, header, body, status, kind)
    type Case<'a> = (&'a str, String, Option<&'a str>, String, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no header",
            pre.clone(),
            None,
            good.into(),
            400,
            "invalid_client_identity",
        ),
        (
            "header false",
            pre.clone(),
            Some("false"),
            good.into(),
            400,
            "invalid_client_identity",
        ),
        (
            "not JSON",
            pre.clone(),
            Some("true"),
            "{\"client_params\":".into(),
            400,
            "invalid_client_identity",
        ),
        (
            "no id",
            pre.clone(),
            Some("true"),
            r#"{"client_params":{"group":"default"}}"#.into(),
            400,
            "invalid_client_identity",
        ),
        (
            "empty group",
            pre.clone(),
            Some("true"),
            r#"{"client_params":{"id":"a","group":""}}"#.into(),
            400,
            "invalid_client_identity",
        ),
        (
            "bad group",
            pre.clone(),
            Some("true"),
            r#"{"client_params":{"id":"a","group":"a/b"}}"#.into(),
            400,
            "invalid_client_identity",
        ),
        (
            "oversized",
            pre.clone(),
            Some("true"),
            format!(
                r#"{{"client_params":{{"id":"{}","group":"default"}}}}"#,
                "x".repeat(20_000)
            ),
            413,
            "body_too_large",
        ),
        (
            "unknown group",
            pre.clone(),
            Some("true"),
            r#"{"client_params":{"id":"a","group":"workers"}}"#.into(),
            400,
            "unknown_group",
        ),
        (
            "other path",
            format!("{}/v1/reboot", server.base),
            Some("true"),
            good.into(),
            404,
            "not_found",
        ),
    ];
    for (what, url, header, body, status, kind) in cases {
        let answer = client.raw("POST", &url, header, &body);
        assert_eq!(
            (answer.status, answer.kind().as_str()),
            (status, kind),
            "{what}: {answer:?}"
        );
        let value = serde_json::from_str::<serde_json::Value>(&answer.body).expect("JSON");
        assert!(
            !value["value"].as_str().unwrap_or_default().is_empty(),
            "{what}: a value"
        );
    }
    let get = client.raw("GET", &pre, Some("true"), "");
    assert_eq!(
        (get.status, get.kind().as_str()),
        (405, "method_not_allowed")
    );
    assert!(
        etcd.group("default").holders.is_empty(),
        "no refused request took a slot"
    );

    // Zincati's own request (pretty JSON, no content type) works, and repeats are no-ops.
    for _ in 0..2 {
        let answer = client.pre_reboot(&server.base, "node-a", "default");
        assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    }
    let full = client.pre_reboot(&server.base, "node-b", "default");
    assert_eq!(
        (full.status, full.kind().as_str()),
        (409, "failed_lock_semaphore_full")
    );
    assert!(
        full.body.contains("node-a"),
        "names the holder: {}",
        full.body
    );
    assert_eq!(holder_ids(&etcd.group("default")), vec!["node-a"]);

    let metrics = server.scrape();
    for line in [
        "keel_fleetlock_requests_total{endpoint=\"pre-reboot\"} 12",
        "keel_fleetlock_errors_total{endpoint=\"pre-reboot\",kind=\"invalid_client_identity\"} 6",
        "keel_fleetlock_errors_total{endpoint=\"pre-reboot\",kind=\"failed_lock_semaphore_full\"} 1",
        "keel_fleetlock_errors_total{endpoint=\"pre-reboot\",kind=\"unknown_group\"} 1",
        "keel_fleetlock_errors_total{endpoint=\"pre-reboot\",kind=\"body_too_large\"} 1",
        "keel_fleetlock_holders{group=\"default\"} 1",
        "keel_fleetlock_slots{group=\"default\"} 1",
        "keel_fleetlock_etcd_up 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
}

#[test]
fn steady_state_by_a_non_holder_is_a_no_op_and_the_holder_keeps_its_slot() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "[groups.workers]\nslots = 2\n");
    let server = Server::start(&[&etcd.url], Some(&config));
    let client = Client::default();
    assert_eq!(client.pre_reboot(&server.base, "a", "workers").status, 200);
    for _ in 0..2 {
        let answer = client.steady_state(&server.base, "stranger", "workers");
        assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    }
    assert_eq!(holder_ids(&etcd.group("workers")), vec!["a"]);
    for _ in 0..2 {
        assert_eq!(
            client.steady_state(&server.base, "a", "workers").status,
            200
        );
    }
    assert!(etcd.group("workers").holders.is_empty());
}

#[test]
fn a_slot_count_raised_in_the_config_takes_effect_without_a_restart() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "[groups.default]\nslots = 1\n");
    let server = Server::start(&[&etcd.url], Some(&config));
    let client = Client::default();
    assert_eq!(client.pre_reboot(&server.base, "a", "default").status, 200);
    assert_eq!(client.pre_reboot(&server.base, "b", "default").status, 409);

    write_config(dir.path(), "[groups.default]\nslots = 2\n");
    assert_eq!(client.pre_reboot(&server.base, "b", "default").status, 200);
    assert_eq!(client.pre_reboot(&server.base, "c", "default").status, 409);
    assert_eq!(holder_ids(&etcd.group("default")), vec!["a", "b"]);
    assert!(server
        .scrape()
        .contains("keel_fleetlock_slots{group=\"default\"} 2"));

    // A restarted replica with a higher count also gets it (airlock keeps the first count).
    drop(server);
    write_config(dir.path(), "[groups.default]\nslots = 3\n");
    let server = Server::start(&[&etcd.url], Some(&config));
    assert_eq!(client.pre_reboot(&server.base, "c", "default").status, 200);
    assert_eq!(etcd.group("default").slots, 3);

    // A broken edit keeps the last good config.
    write_config(dir.path(), "[groups.default]\nslots = \n");
    assert_eq!(client.pre_reboot(&server.base, "d", "default").status, 409);
    assert!(server
        .scrape()
        .contains("keel_fleetlock_config_reload_errors_total 1"));
}

#[test]
fn a_dead_holder_expires_and_admin_verbs_show_and_free_holders() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "[groups.default]\nslots = 1\nexpire_after_seconds = 2\n[groups.db]\nslots = 1\n",
    );
    let server = Server::start(&[&etcd.url], Some(&config));
    let client = Client::default();
    assert_eq!(
        client.pre_reboot(&server.base, "dead", "default").status,
        200
    );
    assert_eq!(client.pre_reboot(&server.base, "b", "default").status, 409);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(client.pre_reboot(&server.base, "b", "default").status, 200);
    assert_eq!(holder_ids(&etcd.group("default")), vec!["b"]);
    assert!(server
        .scrape()
        .contains("keel_fleetlock_expired_holders_total{group=\"default\"} 1"));
    assert!(server
        .log
        .lock()
        .map(|l| l.iter().any(|l| l.contains("dropped dead")))
        .unwrap_or(false));

    assert_eq!(client.pre_reboot(&server.base, "node-db", "db").status, 200);
    let config_arg = config.display().to_string();
    let text = admin(&["status", "--etcd", &etcd.url, "--config", &config_arg]);
    assert!(
        text.contains("group db: 1/1 slot(s) held\n  node-db for "),
        "{text}"
    );
    assert!(
        text.contains("group default: 1/1 slot(s) held\n  b for "),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&admin(&["status", "--etcd", &etcd.url, "--json"])).expect("JSON");
    assert_eq!(json["groups"][0]["name"], "db");
    assert_eq!(json["groups"][0]["holders"][0]["id"], "node-db");

    let out = admin(&[
        "release", "--etcd", &etcd.url, "--group", "db", "--id", "node-db",
    ]);
    assert_eq!(out, "released node-db in group db\n");
    assert!(etcd.group("db").holders.is_empty());
    // The replica saw node-db holding; its next answer comes from etcd, not from that.
    assert_eq!(client.pre_reboot(&server.base, "other", "db").status, 200);
    let out = admin(&[
        "release", "--etcd", &etcd.url, "--group", "db", "--id", "node-db",
    ]);
    assert!(out.contains("nothing to release"), "{out}");
}
