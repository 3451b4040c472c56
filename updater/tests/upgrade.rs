//! `keel upgrade` / `keel rebase` against a real archive repo served over loopback HTTP: the
//! server repo is made with the ostree CLI, signed with keel_common, and given a static delta;
//! the client is a directory sysroot deployed with `ostree admin deploy`.
//!
//! Every rejection asserts that deployments and refs are unchanged and that the rejected
//! commit never reached the client's repo.

mod common;
use common::*;

#[test]
fn upgrade_goes_through_the_static_delta_and_then_is_up_to_date() {
    const BIG: usize = 4 << 20;
    let w = World::new(BIG);
    let v2 = w.publish(
        tree("2", BIG)
            .package("bash", "5.2.15-3")
            .package("jq", "1.6"),
        REF,
    );
    w.static_delta(&w.v1, &v2);

    let check = w.upgrade(&Request::upgrade(Mode::Check)).unwrap();
    assert!(!check.up_to_date);
    assert_eq!(check.available.checksum, v2);
    assert_eq!(check.available.version.as_deref(), Some("2"));
    assert_eq!(
        check.packages.added,
        vec![("jq".to_string(), "1.6".to_string())]
    );
    assert_eq!(
        check.packages.changed,
        vec![("bash".into(), "5.2.15-2".into(), "5.2.15-3".into())]
    );
    let delta_size = check
        .delta_size
        .expect("the remote publishes a v1 -> v2 delta");
    assert!(
        delta_size < 64 * 1024,
        "delta of a two-file change is {delta_size} bytes"
    );
    assert_eq!(check.signed_by, Some(w.key.public().to_base64()));
    assert!(!w.client_has_commit(&v2), "--check wrote the new commit");

    w.server.reset_counters();
    let before = w.state().0;
    let report = w.upgrade(&Request::upgrade(Mode::DownloadOnly)).unwrap();
    let sent = w.server.bytes_sent();
    let pulled = report.pulled.clone().unwrap();
    assert!(
        pulled.used_delta,
        "{pulled:?}; requests: {:?}",
        w.server.requests()
    );
    assert!(!report.deployed);
    assert_eq!(w.state().0, before, "--download-only deployed");
    assert!(w.client_has_commit(&v2));
    // The commit holds 4 MiB of noise; the whole run (summary, commit, superblock, delta part)
    // stays near the delta's size.
    assert!(
        sent < 128 * 1024,
        "sent {sent} bytes for a {delta_size}-byte delta (commit holds {BIG})"
    );
    assert!(
        w.server
            .requests()
            .iter()
            .any(|r| r.starts_with("/deltas/")),
        "{:?}",
        w.server.requests()
    );

    w.server.reset_counters();
    let report = w.upgrade(&Request::upgrade(Mode::Deploy)).unwrap();
    assert!(report.deployed);
    assert!(
        !w.server
            .requests()
            .iter()
            .any(|r| r.starts_with("/deltas/")),
        "the delta was fetched again after --download-only: {:?}",
        w.server.requests()
    );
    assert!(
        w.server.bytes_sent() < 16 * 1024,
        "content was fetched twice"
    );
    let (deployments, refs) = w.state();
    assert_eq!(deployments[0], (v2.clone(), Some(format!("keel:{REF}"))));
    assert_eq!(deployments[1].0, w.v1);
    assert!(refs.contains(&format!("keel:{REF} {v2}")), "{refs}");

    let again = w.upgrade(&Request::upgrade(Mode::Deploy)).unwrap();
    assert!(again.up_to_date);
    assert!(again.render().starts_with("Already up to date"));
    assert_eq!(w.state().0.len(), 2);
}

#[test]
fn unsigned_unknown_revoked_transplanted_and_malformed_signatures_are_refused() {
    let w = World::new(1024);
    let v2 = w.commit_unsigned(tree("2", 1024), REF);
    w.refresh_summary();
    w.assert_rejected(&v2, "not signed");

    w.sign_commit(&v2, &SecretKey::generate().unwrap());
    w.assert_rejected(&v2, "none of its 1 signature(s) is valid for a trusted key");

    // v1's valid signature transplanted onto v2.
    w.set_detached(&v2, &w.detached(&w.v1));
    w.assert_rejected(&v2, "signature check failed");

    // Wrong length, then wrong type.
    let dict = glib::VariantDict::new(None);
    dict.insert_value(sign::ED25519_KEY, &vec![vec![7u8; 10]].to_variant());
    w.set_detached(&v2, &dict.end());
    w.assert_rejected(&v2, "(1 malformed)");
    let dict = glib::VariantDict::new(None);
    dict.insert_value(sign::ED25519_KEY, &"AAAA".to_variant());
    w.set_detached(&v2, &dict.end());
    w.assert_rejected(&v2, "has type s, expected aay");

    // Properly signed, but the key is revoked on the host.
    w.sign_commit(&v2, &w.key);
    let root = w.host().config_root();
    let revoked = root.join("etc/keel/revoked.ed25519.d");
    std::fs::create_dir_all(&revoked).unwrap();
    std::fs::write(revoked.join("old.pub"), format!("{}\n", w.key.public())).unwrap();
    // The summary is signed by the same (now revoked) key: refused there first.
    w.assert_rejected(&v2, "signed only by revoked key");
    std::fs::remove_file(revoked.join("old.pub")).unwrap();

    let report = w.upgrade(&Request::upgrade(Mode::Deploy)).unwrap();
    assert_eq!(
        report.available.checksum, v2,
        "accepted once properly signed"
    );
}

#[test]
fn downgrade_foreign_ref_binding_and_unsigned_summary_are_refused() {
    let w = World::new(1024);
    let old = w.publish(tree("0", 1024).timestamp(T1 - 86_400), REF);
    let err = w.assert_rejected(&old, "older than the running one");
    assert!(err.contains("--allow-downgrade"), "{err}");

    // A commit made for another ref, published under ours.
    let foreign = w.publish(tree("2", 1024), OTHER_REF);
    ostree(&["refs", &w.repo_arg(), "--force", "--create", REF, &foreign]);
    w.refresh_summary();
    w.assert_rejected(&foreign, &format!("not to the followed ref {REF}"));

    let good = w.publish(tree("3", 1024), REF);
    std::fs::remove_file(w.server_repo.join("summary.sig")).unwrap();
    w.assert_rejected(&good, "summary signature failed: not signed");
    std::fs::write(w.server_repo.join("summary.sig"), b"\x01\x02junk").unwrap();
    w.assert_rejected(&good, "summary");
}

#[test]
fn corrupted_objects_on_the_server_are_refused() {
    let w = World::new(64 * 1024);
    let v2 = w.publish(tree("2", 64 * 1024), REF);
    w.static_delta(&w.v1, &v2);

    // A flipped byte in the commit object: caught before anything is written.
    let (dir, rest) = v2.split_at(2);
    let commit_path = w.server_repo.join(format!("objects/{dir}/{rest}.commit"));
    let good_commit = std::fs::read(&commit_path).unwrap();
    let mut bad = good_commit.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    std::fs::write(&commit_path, &bad).unwrap();
    w.assert_rejected(&v2, "hash to");
    std::fs::write(&commit_path, &good_commit).unwrap();

    // A flipped byte in the delta part is caught by its sha256 and the delta is given up
    // for an object pull (`upgrade_delta.rs`); with a flipped byte in a content object too,
    // that pull fails and the ref does not move.
    let delta_dir = w.server_repo.join(keel_host::delta::delta_dir(&w.v1, &v2));
    let part = delta_dir.join("0");
    let mut bytes = std::fs::read(&part).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&part, &bytes).unwrap();
    let object = w.object_of(&v2, "/usr/share/keel-test/small");
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&object, &bytes).unwrap();
    w.assert_rejected("", "nothing was deployed and the ref did not move");

    // Without the delta, a flipped byte in a content object fails the same way.
    std::fs::remove_dir_all(&delta_dir).unwrap();
    w.refresh_summary();
    w.assert_rejected("", "nothing was deployed");
}

#[test]
fn rebase_switches_ref_origin_and_config() {
    let w = World::new(1024);
    let other = w.publish(tree("t1", 1024), OTHER_REF);
    let check = w
        .upgrade(&Request::rebase(&OTHER_REF.parse().unwrap(), Mode::Check))
        .unwrap();
    assert!(check.rebase);
    assert!(!w.client_has_commit(&other));

    let report = w
        .upgrade(&Request::rebase(&OTHER_REF.parse().unwrap(), Mode::Deploy))
        .unwrap();
    assert!(report.deployed);
    let (deployments, refs) = w.state();
    assert_eq!(
        deployments[0],
        (other.clone(), Some(format!("keel:{OTHER_REF}")))
    );
    assert!(
        refs.contains(&format!("keel:{OTHER_REF} {other}")),
        "{refs}"
    );
    let host = w.host();
    let config = keel_host::config::load(&host.config_root()).unwrap();
    assert_eq!(config.remote.unwrap().reference.as_str(), OTHER_REF);

    // From now on `keel upgrade` follows the new ref.
    let next = w.publish(tree("t2", 1024), OTHER_REF);
    let report = w.upgrade(&Request::upgrade(Mode::Deploy)).unwrap();
    assert_eq!(report.available.checksum, next);

    // A commit bound to the old ref is refused as a rebase target.
    ostree(&[
        "refs",
        &w.repo_arg(),
        "--force",
        "--create",
        "keel/test/x86_64/alias",
        &w.v1,
    ]);
    w.refresh_summary();
    let before = w.state();
    let err = w
        .upgrade(&Request::rebase(
            &"keel/test/x86_64/alias".parse().unwrap(),
            Mode::Deploy,
        ))
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("not to the followed ref keel/test/x86_64/alias"),
        "{err:#}"
    );
    assert_eq!(w.state(), before);
}

#[test]
fn cli_upgrade_check_prints_json() {
    let w = World::new(1024);
    let v2 = w.publish(tree("2", 1024), REF);
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["upgrade", "--check", "--json", "--sysroot"])
        .arg(w.sysroot.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["available"]["checksum"], v2.as_str());
    assert_eq!(json["mode"], "check");
    assert_eq!(json["up_to_date"], false);

    w.server.inject("/summary", Fault::Status(404));
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["upgrade", "--sysroot"])
        .arg(w.sysroot.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HTTP 404") && stderr.contains("keel remote show"),
        "{stderr}"
    );
}

#[test]
fn delta_parts_already_downloaded_are_not_fetched_again() {
    let w = World::new(256 * 1024);
    let v2 = w.publish(tree("2", 256 * 1024).package("jq", "1.6"), REF);
    w.static_delta(&w.v1, &v2);
    let server_delta = w.server_repo.join(keel_host::delta::delta_dir(&w.v1, &v2));

    // What an interrupted earlier run left: part 0 complete, in the repo's tmp dir.
    // The repo's path is /proc/self/fd/N/...: keep its host open while using it.
    let host = w.host();
    let cache = keel_host::delta::cache_dir(&host.repo(), &w.v1, &v2).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::copy(server_delta.join("0"), cache.join("0")).unwrap();
    w.server.reset_counters();
    let report = w.upgrade(&Request::upgrade(Mode::Deploy)).unwrap();
    assert!(report.pulled.unwrap().used_delta);
    let parts: Vec<String> = w
        .server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("/deltas/") && !r.ends_with("/superblock"))
        .collect();
    assert!(parts.is_empty(), "kept part fetched again: {parts:?}");
    assert_eq!(w.state().0[0].0, v2);
    assert!(
        !cache.exists(),
        "the applied delta's download dir is left behind"
    );
}

#[test]
fn a_damaged_kept_part_is_fetched_again() {
    let w = World::new(1024);
    let v2 = w.publish(tree("2", 1024), REF);
    w.static_delta(&w.v1, &v2);
    let host = w.host();
    let cache = keel_host::delta::cache_dir(&host.repo(), &w.v1, &v2).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("0"), b"half a part").unwrap();
    w.server.reset_counters();
    w.upgrade(&Request::upgrade(Mode::Deploy)).unwrap();
    assert!(w
        .server
        .requests()
        .iter()
        .any(|r| r.starts_with("/deltas/") && r.ends_with("/0")));
    assert_eq!(w.state().0[0].0, v2);
}

#[test]
fn cli_rebase_check_and_reboot_refusal() {
    let w = World::new(1024);
    let other = w.publish(tree("t1", 1024), OTHER_REF);
    let keel = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(args)
            .arg("--sysroot")
            .arg(w.sysroot.path())
            .output()
            .unwrap()
    };
    let out = keel(&["rebase", OTHER_REF, "--check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("Rebase to keel:{OTHER_REF}: 1 -> t1 ({other}")),
        "{text}"
    );
    assert!(!w.client_has_commit(&other));

    let before = w.state();
    let out = keel(&["upgrade", "--reboot"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reboot needs a booted host"));
    assert_eq!(w.state(), before);
}
