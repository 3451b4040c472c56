//! `keel upgrade` / `keel rebase` against a real archive repo served over loopback HTTP: the
//! server repo is made with the ostree CLI, signed with keel_common, and given a static delta;
//! the client is a directory sysroot deployed with `ostree admin deploy`.
//!
//! Every rejection asserts that deployments and refs are unchanged and that the rejected
//! commit never reached the client's repo.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_common::keys::SecretKey;
use keel_common::sign;
use keel_tests::http::{Fault, FileServer};
use keel_tests::sysroot::{run, TestSysroot, TreeBuilder};
use keel_updater::config::RemoteConfig;
use keel_updater::host::Host;
use keel_updater::upgrade::{self, Mode, Report, Request};
use ostree::gio::prelude::*;
use ostree::{gio, glib};

const REF: &str = "keel/test/x86_64/stable";
const OTHER_REF: &str = "keel/test/x86_64/testing";
const T1: i64 = 1_700_000_000;

/// A publisher (archive repo + key + HTTP server) and a client sysroot deployed from it.
struct World {
    _server_dir: tempfile::TempDir,
    server_repo: PathBuf,
    server: FileServer,
    key: SecretKey,
    sysroot: TestSysroot,
    v1: String,
}

/// Pseudo-random bytes (xorshift), so the big file neither compresses nor dedups.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn ostree(args: &[&str]) -> String {
    run(Command::new("ostree").args(args)).unwrap()
}

/// The v1 tree; `big` bytes of noise that stay the same in later versions.
fn tree(version: &str, big: usize) -> TreeBuilder {
    TreeBuilder::new(version)
        .package("bash", "5.2.15-2")
        .file("usr/share/keel-test/big", noise(big, 42))
        .file("usr/share/keel-test/small", format!("version {version}\n"))
}

impl World {
    fn new(big: usize) -> World {
        let server_dir = tempfile::tempdir().unwrap();
        let server_repo = server_dir.path().join("repo");
        ostree(&[
            "init",
            "--mode=archive",
            &format!("--repo={}", server_repo.display()),
        ]);
        let key = SecretKey::generate().unwrap();
        let server = FileServer::serve(&server_repo).unwrap();
        let sysroot = TestSysroot::new("keel").unwrap();
        let mut world = World {
            _server_dir: server_dir,
            server_repo,
            server,
            key,
            sysroot,
            v1: String::new(),
        };
        world.v1 = world.publish(tree("1", big).timestamp(T1), REF);

        // First deployment the independent way, then configure keel on it.
        let repo = format!("--repo={}", world.sysroot.repo_path().display());
        ostree(&[
            "remote",
            "add",
            "--no-gpg-verify",
            &repo,
            "keel",
            world.server.url(),
        ]);
        ostree(&["pull", &repo, "keel", REF]);
        world
            .sysroot
            .deploy_cli(&format!("keel:{REF}"), &["root=/dev/vda"])
            .unwrap();
        let keys = world._server_dir.path().join("trusted.pub");
        std::fs::write(&keys, format!("{}\n", world.key.public())).unwrap();
        let remote = RemoteConfig {
            name: "keel".into(),
            url: world.server.url().into(),
            reference: REF.into(),
        };
        keel_updater::cli::remote::add(&world.host(), &remote, &keys).unwrap();
        world.server.reset_counters();
        world
    }

    fn host(&self) -> Host {
        Host::open(Some(self.sysroot.path())).unwrap()
    }

    fn repo_arg(&self) -> String {
        format!("--repo={}", self.server_repo.display())
    }

    fn server_repo(&self) -> ostree::Repo {
        let repo = ostree::Repo::new_for_path(&self.server_repo);
        repo.open(gio::Cancellable::NONE).unwrap();
        repo
    }

    /// Commits `tree` to `branch`, signs it with the publisher's key, refreshes the summary.
    fn publish(&self, tree: TreeBuilder, branch: &str) -> String {
        let csum = self.commit_unsigned(tree, branch);
        self.sign_commit(&csum, &self.key);
        self.refresh_summary();
        csum
    }

    fn commit_unsigned(&self, tree: TreeBuilder, branch: &str) -> String {
        tree.commit(&self.server_repo, branch).unwrap()
    }

    fn commit_bytes(&self, csum: &str) -> Vec<u8> {
        let v = self
            .server_repo()
            .load_variant(ostree::ObjectType::Commit, csum)
            .unwrap();
        v.data_as_bytes().to_vec()
    }

    fn sign_commit(&self, csum: &str, key: &SecretKey) {
        let signature = sign::sign(key, &self.commit_bytes(csum));
        self.set_detached(csum, &sign::add_signature(None, &signature).unwrap());
    }

    fn set_detached(&self, csum: &str, detached: &glib::Variant) {
        self.server_repo()
            .write_commit_detached_metadata(csum, Some(detached), gio::Cancellable::NONE)
            .unwrap();
    }

    fn detached(&self, csum: &str) -> glib::Variant {
        self.server_repo()
            .read_commit_detached_metadata(csum, gio::Cancellable::NONE)
            .unwrap()
            .unwrap()
    }

    /// `ostree summary -u` (which drops summary.sig), then a fresh summary.sig.
    fn refresh_summary(&self) {
        ostree(&["summary", "-u", &self.repo_arg()]);
        let summary = std::fs::read(self.server_repo.join("summary")).unwrap();
        let sig = sign::add_signature(None, &sign::sign(&self.key, &summary)).unwrap();
        std::fs::write(self.server_repo.join("summary.sig"), sig.data()).unwrap();
    }

    fn static_delta(&self, from: &str, to: &str) {
        ostree(&[
            "static-delta",
            "generate",
            &self.repo_arg(),
            &format!("--from={from}"),
            &format!("--to={to}"),
        ]);
        self.refresh_summary();
    }

    /// Deployments (checksum, origin) in boot order and every ref of the client's repo.
    fn state(&self) -> (Vec<(String, Option<String>)>, String) {
        let host = self.host();
        let deployments = host
            .deployments()
            .iter()
            .map(|d| (d.csum().to_string(), Host::origin_refspec(d)))
            .collect();
        let refs = ostree(&[
            "refs",
            "--list",
            &format!("--repo={}", self.sysroot.repo_path().display()),
        ]);
        let mut refs: Vec<String> = refs
            .lines()
            .map(|r| {
                let csum = ostree(&[
                    "rev-parse",
                    &format!("--repo={}", self.sysroot.repo_path().display()),
                    r,
                ]);
                format!("{r} {}", csum.trim())
            })
            .collect();
        refs.sort();
        (deployments, refs.join("\n"))
    }

    /// The server's `.filez` object holding `path` of `commit`.
    fn object_of(&self, commit: &str, path: &str) -> PathBuf {
        let line = ostree(&["ls", "-C", &self.repo_arg(), commit, path]);
        let csum = line.split_whitespace().nth(4).unwrap().to_string();
        let (dir, rest) = csum.split_at(2);
        self.server_repo.join(format!("objects/{dir}/{rest}.filez"))
    }

    fn client_has_commit(&self, csum: &str) -> bool {
        self.host()
            .repo()
            .has_object(ostree::ObjectType::Commit, csum, gio::Cancellable::NONE)
            .unwrap()
    }

    fn upgrade(&self, request: &Request) -> anyhow::Result<Report> {
        upgrade::run(
            &self.host(),
            request,
            Box::new(|_| {}),
            &gio::Cancellable::new(),
        )
    }

    /// Runs an upgrade that must fail with `expected` in its message and change nothing.
    fn assert_rejected(&self, rejected: &str, expected: &str) -> String {
        let before = self.state();
        let mut request = Request::upgrade(Mode::Deploy);
        request.network_retries = 0;
        let err = format!("{:#}", self.upgrade(&request).unwrap_err());
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
        assert_eq!(
            self.state(),
            before,
            "a rejected upgrade changed deployments or refs"
        );
        if !rejected.is_empty() {
            assert!(
                !self.client_has_commit(rejected),
                "rejected commit {rejected} reached the repo"
            );
        }
        err
    }
}

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

    // A flipped byte in the delta part: libostree's pull fails, the ref does not move.
    let delta_dir = w
        .server_repo
        .join(keel_updater::delta::delta_dir(&w.v1, &v2));
    let part = delta_dir.join("0");
    let mut bytes = std::fs::read(&part).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&part, &bytes).unwrap();
    w.assert_rejected("", "nothing was deployed and the ref did not move");

    // Without the delta, a flipped byte in a content object fails the same way.
    std::fs::remove_dir_all(&delta_dir).unwrap();
    w.refresh_summary();
    let object = w.object_of(&v2, "/usr/share/keel-test/small");
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&object, &bytes).unwrap();
    w.assert_rejected("", "nothing was deployed");
}

fn biggest_file(dir: &Path) -> PathBuf {
    let mut best = (0, PathBuf::new());
    for sub in std::fs::read_dir(dir).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let len = f.metadata().unwrap().len();
            if len > best.0 && f.path().extension().is_some_and(|e| e == "filez") {
                best = (len, f.path());
            }
        }
    }
    best.1
}

#[test]
fn remote_404_server_down_and_cancelled_pull_change_nothing() {
    let w = World::new(1024);
    let v2 = w.publish(tree("2", 1024), REF);

    w.server.inject("/summary", Fault::Status(404));
    w.assert_rejected(&v2, "HTTP 404");
    w.server.clear_faults();
    w.server.inject(".commit", Fault::Status(404));
    w.assert_rejected(&v2, "HTTP 404");
    w.server.clear_faults();

    // Rebase onto a ref the remote does not publish.
    let before = w.state();
    let err = w
        .upgrade(&Request::rebase("keel/nowhere", Mode::Deploy))
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("lists no ref keel/nowhere"),
        "{err:#}"
    );
    assert_eq!(w.state(), before);

    // Cancelled (Ctrl-C) before the content arrives.
    let cancellable = gio::Cancellable::new();
    cancellable.cancel();
    let err = upgrade::run(
        &w.host(),
        &Request::upgrade(Mode::Deploy),
        Box::new(|_| {}),
        &cancellable,
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("run the command again to resume"),
        "{err:#}"
    );
    assert_eq!(w.state(), before);

    // Server down: the remote points at a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let repo = format!("--repo={}", w.sysroot.repo_path().display());
    ostree(&["remote", "delete", &repo, "keel"]);
    ostree(&[
        "remote",
        "add",
        "--no-gpg-verify",
        &repo,
        "keel",
        &format!("http://127.0.0.1:{port}"),
    ]);
    w.assert_rejected(&v2, "cannot reach the remote");
}

#[test]
fn a_dropped_connection_is_resumed_by_the_next_run() {
    const BIG: usize = 1 << 20;
    let w = World::new(1024);
    let v2 = w.publish(tree("2", BIG), REF);
    // No delta: objects one by one; the connection drops on the big object.
    let object = biggest_file(&w.server_repo.join("objects"));
    let name = object.file_name().unwrap().to_string_lossy().into_owned();
    w.server.inject(&name, Fault::Truncate(1000));
    w.assert_rejected("", "nothing was deployed");
    w.server.clear_faults();
    w.server.reset_counters();
    let report = w.upgrade(&Request::upgrade(Mode::Deploy)).unwrap();
    assert!(report.deployed);
    assert_eq!(w.state().0[0].0, v2);
    let refetched: Vec<String> = w
        .server
        .requests()
        .into_iter()
        .filter(|r| r.contains("/objects/"))
        .collect();
    assert!(
        refetched.iter().any(|r| r.ends_with(&name)),
        "{refetched:?}"
    );
    // The dropped object, and at most one other that was in flight when the drop failed
    // the pull; everything that had arrived is kept.
    let content = refetched.iter().filter(|r| r.ends_with(".filez")).count();
    assert!(
        content <= 2,
        "objects fetched before the drop were fetched again: {refetched:?}"
    );
}

#[test]
fn rebase_switches_ref_origin_and_config() {
    let w = World::new(1024);
    let other = w.publish(tree("t1", 1024), OTHER_REF);
    let check = w.upgrade(&Request::rebase(OTHER_REF, Mode::Check)).unwrap();
    assert!(check.rebase);
    assert!(!w.client_has_commit(&other));

    let report = w
        .upgrade(&Request::rebase(OTHER_REF, Mode::Deploy))
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
    let config = keel_updater::config::load(&host.config_root()).unwrap();
    assert_eq!(config.remote.unwrap().reference, OTHER_REF);

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
        .upgrade(&Request::rebase("keel/test/x86_64/alias", Mode::Deploy))
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
    let server_delta = w
        .server_repo
        .join(keel_updater::delta::delta_dir(&w.v1, &v2));

    // What an interrupted earlier run left: part 0 complete, in the repo's tmp dir.
    // The repo's path is /proc/self/fd/N/...: keep its host open while using it.
    let host = w.host();
    let cache = keel_updater::delta::cache_dir(&host.repo(), &w.v1, &v2).unwrap();
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
    let cache = keel_updater::delta::cache_dir(&host.repo(), &w.v1, &v2).unwrap();
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

/// The client sysroot copied onto a small tmpfs and bind-mounted over its own path; unmounted
/// on drop (even on panic), before the `TestSysroot` beneath it is removed.
struct SmallDisk {
    backing: tempfile::TempDir,
    target: PathBuf,
}

impl SmallDisk {
    fn over(target: &Path) -> SmallDisk {
        let backing = tempfile::Builder::new()
            .prefix("keel-tmpfs-")
            .tempdir()
            .unwrap();
        let dir = backing.path().display().to_string();
        run(Command::new("mount").args(["-t", "tmpfs", "-o", "size=64m", "tmpfs", &dir])).unwrap();
        let disk = SmallDisk {
            backing,
            target: target.to_path_buf(),
        };
        run(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", target.display()))
            .arg(&dir))
        .unwrap();
        run(Command::new("mount").arg("--bind").arg(&dir).arg(target)).unwrap();
        disk
    }

    fn used(&self) -> u64 {
        let out = run(Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(self.backing.path()))
        .unwrap();
        out.lines().nth(1).unwrap().trim().parse().unwrap()
    }

    fn resize(&self, bytes: u64) {
        let kib = bytes.div_ceil(4096) * 4;
        run(Command::new("mount")
            .args(["-o", &format!("remount,size={kib}k")])
            .arg(self.backing.path()))
        .unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.target).status();
        // Deployment directories are immutable; tmpfs drops them anyway, but a failed
        // unmount must not leave undeletable files for the tempdir's cleanup.
        let _ = Command::new("chattr")
            .args(["-R", "-f", "-i"])
            .arg(self.backing.path())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.backing.path())
            .status();
    }
}

#[test]
fn disk_full_during_pull_leaves_the_host_as_it_was() {
    const NEW: usize = 6 << 20;
    let w = World::new(1024);
    let v2 = w.publish(
        tree("2", 1024).file("usr/share/keel-test/new", noise(NEW, 7)),
        REF,
    );
    w.static_delta(&w.v1, &v2);
    let disk = SmallDisk::over(w.sysroot.path());
    disk.resize(disk.used() + (2 << 20));

    let before = w.state();
    let mut request = Request::upgrade(Mode::Deploy);
    request.network_retries = 0;
    let full = |what: &str| {
        let err = format!("{:#}", w.upgrade(&request).unwrap_err());
        assert!(err.contains("not enough free space in"), "{what}: {err}");
        assert!(err.contains("keel cleanup"), "{what}: {err}");
        assert!(err.contains("nothing was deployed"), "{what}: {err}");
        assert_eq!(w.state(), before, "{what}: deployments or refs changed");
        assert!(!w.client_has_commit(&v2), "{what}");
    };
    // libostree checks the delta's size against the free space first ...
    full("with a delta");
    // ... and without one, its object writes run into ENOSPC.
    std::fs::remove_dir_all(w.server_repo.join("deltas")).unwrap();
    w.refresh_summary();
    full("object by object");
    // ... and with that reserve switched off, the kernel's ENOSPC.
    ostree(&[
        "config",
        &format!("--repo={}", w.sysroot.repo_path().display()),
        "set",
        "core.min-free-space-percent",
        "0",
    ]);
    full("ENOSPC");

    disk.resize(64 << 20);
    let report = w.upgrade(&request).unwrap();
    assert!(report.deployed);
    let (deployments, refs) = w.state();
    assert_eq!(deployments[0].0, v2);
    assert!(refs.contains(&format!("keel:{REF} {v2}")), "{refs}");
    drop(disk);
}

#[test]
fn interrupted_transfer_mid_pull_changes_nothing_and_resumes() {
    const FILES: usize = 32;
    const EACH: usize = 256 * 1024;
    let w = World::new(1024);
    let mut v2 = tree("2", 1024);
    for i in 0..FILES {
        v2 = v2.file(
            &format!("usr/share/keel-test/new{i}"),
            noise(EACH, 1000 + 2 * i as u64),
        );
    }
    let v2 = w.publish(v2, REF);
    // Distinct even seeds: `noise` sets the low bit, so seeds n and n + 1 would collide.
    let total = EACH * FILES;

    // Ctrl-C from another thread once half the objects have left the server (it counts a
    // response when it queues it, so the client has taken in less).
    let before = w.state();
    let cancellable = gio::Cancellable::new();
    let done = std::sync::atomic::AtomicBool::new(false);
    let err = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if w.server.bytes_sent() > total as u64 / 2 {
                    cancellable.cancel();
                    return;
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        });
        let result = upgrade::run(
            &w.host(),
            &Request::upgrade(Mode::Deploy),
            Box::new(|_| {}),
            &cancellable,
        );
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        format!("{:#}", result.unwrap_err())
    });
    assert!(err.contains("run the command again to resume"), "{err}");
    let interrupted = w.server.bytes_sent();
    assert!(
        interrupted < total as u64,
        "cancelled after {interrupted} bytes of a {total}-byte change"
    );
    assert_eq!(
        w.state(),
        before,
        "an interrupted pull changed deployments or refs"
    );
    assert!(!w.client_has_commit(&v2));

    w.server.reset_counters();
    let report = w.upgrade(&Request::upgrade(Mode::Deploy)).unwrap();
    assert!(report.deployed);
    let resumed = w.server.bytes_sent();
    assert!(
        resumed + 4 * (EACH as u64) < total as u64,
        "the second run sent {resumed} bytes of {total}; the first had sent {interrupted}"
    );
    let (deployments, refs) = w.state();
    assert_eq!(deployments[0], (v2.clone(), Some(format!("keel:{REF}"))));
    assert_eq!(deployments[1].0, w.v1);
    assert!(refs.contains(&format!("keel:{REF} {v2}")), "{refs}");
}
