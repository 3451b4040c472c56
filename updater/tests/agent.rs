//! The host agent's verbs on directory sysroots: commits made with the `ostree` CLI
//! (`keel_tests::sysroot::TreeBuilder`), a first deployment made with `ostree admin deploy`,
//! then Keel's library API (and the real binary for a few CLI checks).

use keel_common::cancel::Cancel;
use keel_common::keys::SecretKey;
use keel_common::progress::Discard;
use keel_common::sign;
use keel_host::config::RemoteConfig;
use keel_host::etc_plan::DefaultChange;
use keel_host::host::{Host, OVERRIDE_COMMIT};
use keel_host::status::{self, SignatureState};
use keel_host::{cleanup, deploy, etc, kargs, pin, remote, rollback};
use keel_tests::sysroot::{TestSysroot, TreeBuilder};
use std::path::{Path, PathBuf};
use std::process::Command;

const REF: &str = "keel/test/stable";
const T1: i64 = 1_700_000_000;

struct Fixture {
    sysroot: TestSysroot,
    v1: String,
}

/// A sysroot with `v1` committed on REF and deployed with `ostree admin deploy`.
fn deployed(v1: TreeBuilder) -> Fixture {
    let sysroot = TestSysroot::new("keel").unwrap();
    let v1 = v1.timestamp(T1).commit(&sysroot.repo_path(), REF).unwrap();
    sysroot
        .deploy_cli(REF, &["root=/dev/vda", "quiet", "console=tty0"])
        .unwrap();
    Fixture { sysroot, v1 }
}

impl Fixture {
    fn host(&self) -> Host {
        Host::open(Some(self.sysroot.path())).unwrap()
    }

    /// Commits `tree` as the next version on REF, `step` seconds after v1.
    fn commit(&self, tree: TreeBuilder, step: i64) -> String {
        tree.timestamp(T1 + step)
            .commit(&self.sysroot.repo_path(), REF)
            .unwrap()
    }

    /// Signs `commits` in the sysroot's repo with a new key and trusts that key in the
    /// default deployment's /etc (what `keel deploy` checks local commits against).
    fn sign_and_trust(&self, commits: &[&str]) -> SecretKey {
        let key = SecretKey::generate().unwrap();
        let host = self.host();
        let repo = host.repo();
        for commit in commits {
            let bytes = repo
                .load_variant(ostree::ObjectType::Commit, commit)
                .unwrap()
                .data_as_bytes()
                .to_vec();
            let detached = sign::add_signature(None, &sign::sign(&key, &bytes)).unwrap();
            repo.write_commit_detached_metadata(
                commit,
                Some(&detached),
                ostree::gio::Cancellable::NONE,
            )
            .unwrap();
        }
        let keys = host.config_root().join("etc/keel/trusted.ed25519.d");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::write(keys.join("test.pub"), format!("{}\n", key.public())).unwrap();
        key
    }
}

/// `checksum.serial` of each deployment in boot order.
fn order(host: &Host) -> Vec<String> {
    host.reload().unwrap();
    host.deployments()
        .iter()
        .map(|d| format!("{}.{}", d.csum(), d.deployserial()))
        .collect()
}

fn etc_of(host: &Host, index: usize) -> PathBuf {
    host.deployment_path(&host.deployments()[index]).join("etc")
}

/// Whether the sysroot's repo still holds commit `checksum`.
fn ostree_has(f: &Fixture, checksum: &str) -> bool {
    let repo = Host::open(Some(f.sysroot.path())).unwrap().repo();
    repo.load_variant_if_exists(ostree::ObjectType::Commit, checksum)
        .unwrap()
        .is_some()
}

fn keel(sysroot: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--sysroot")
        .arg(sysroot)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn status_on_a_fresh_sysroot_then_after_a_first_deploy() {
    let sysroot = TestSysroot::new("keel").unwrap();
    let host = Host::open(Some(sysroot.path())).unwrap();
    let no_deployment = keel(
        sysroot.path(),
        &[
            "remote",
            "add",
            "http://127.0.0.1:9/r",
            "--ref",
            REF,
            "--trusted-keys",
            "/dev/null",
        ],
    );
    assert!(String::from_utf8_lossy(&no_deployment.stderr).contains("no deployment yet"));
    let fresh = status::collect(&host).unwrap();
    assert!(fresh.deployments.is_empty() && !fresh.booted);
    assert_eq!(fresh.osname, "keel");
    let text = status::render(&fresh);
    assert!(
        text.contains("(not booted)") && text.ends_with("No deployments.\n"),
        "{text}"
    );

    let out = keel(sysroot.path(), &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["deployments"], serde_json::json!([]));
    assert_eq!(json["remote"], serde_json::Value::Null);

    let v1 = TreeBuilder::new("1")
        .package("bash", "5.2")
        .timestamp(T1)
        .commit(&sysroot.repo_path(), REF)
        .unwrap();
    sysroot.deploy_cli(REF, &["root=/dev/vda"]).unwrap();
    host.reload().unwrap();
    let s = status::collect(&host).unwrap();
    let d = &s.deployments[0];
    assert_eq!(
        (d.index, d.default, d.rollback, d.pinned),
        (0, true, false, false)
    );
    assert_eq!(d.checksum, v1);
    assert_eq!(d.version.as_deref(), Some("1"));
    assert_eq!(d.timestamp, T1 as u64);
    assert_eq!(d.origin.as_deref(), Some(REF));
    assert_eq!(d.kargs, vec!["root=/dev/vda"]);
    assert_eq!(d.signature, SignatureState::Unsigned);
    assert_eq!(d.packages, None, "the reference has no diff");
    let text = status::render(&s);
    assert!(
        text.contains(&format!("  0: 1 (default)\n    Commit: {v1}.0\n")),
        "{text}"
    );
    assert!(text.contains("Signature: unsigned\n"), "{text}");
}

#[test]
fn status_shows_signature_and_package_diff() {
    let f = deployed(
        TreeBuilder::new("1")
            .package("bash", "5.1")
            .package("vim", "9"),
    );
    let v2 = f.commit(
        TreeBuilder::new("2")
            .package("bash", "5.2")
            .package("jq", "1.6"),
        60,
    );
    let host = f.host();
    host.deploy(&v2, REF, None, &Cancel::new(), &Discard)
        .unwrap();
    // Sign v2 and trust the key in the default deployment's /etc (the config root).
    let key = SecretKey::generate().unwrap();
    let repo = host.repo();
    let bytes = repo
        .load_variant(ostree::ObjectType::Commit, &v2)
        .unwrap()
        .data_as_bytes()
        .to_vec();
    let detached = sign::add_signature(None, &sign::sign(&key, &bytes)).unwrap();
    repo.write_commit_detached_metadata(&v2, Some(&detached), ostree::gio::Cancellable::NONE)
        .unwrap();
    let keys = host.config_root().join("etc/keel/trusted.ed25519.d");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("test.pub"), format!("{}\n", key.public())).unwrap();

    let s = status::collect(&host).unwrap();
    assert_eq!(
        s.deployments[0].signature,
        SignatureState::Signed {
            key: key.public().to_base64()
        }
    );
    assert!(matches!(
        s.deployments[1].signature,
        SignatureState::Unsigned
    ));
    let diff = s.deployments[1].packages.as_ref().unwrap();
    assert_eq!(diff.added, vec![("vim".to_string(), "9".to_string())]);
    assert_eq!(diff.removed, vec![("jq".to_string(), "1.6".to_string())]);
    assert_eq!(
        diff.changed,
        vec![("bash".to_string(), "5.2".to_string(), "5.1".to_string())]
    );
    assert!(s.deployments[1].rollback && s.deployments[0].default);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let pending = s.pending_etc.clone().unwrap();
    assert_eq!(pending.checksum, v2);
    assert!(pending.applied && pending.conflicts.is_empty());

    // Every field the JSON has is documented in docs/status-json.md.
    let json = serde_json::to_value(&s).unwrap();
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/status-json.md"
    ))
    .unwrap();
    let mut fields = Vec::new();
    json_keys(&json, &mut fields);
    assert!(fields.len() > 25, "{fields:?}");
    for key in fields {
        assert!(
            docs.contains(&format!("`{key}`")),
            "{key} is not in docs/status-json.md"
        );
    }

    // A broken key file does not hide the deployments; it is named in a warning.
    std::fs::write(keys.join("broken.pub"), "not a key\n").unwrap();
    let s = status::collect(&host).unwrap();
    assert_eq!(s.deployments.len(), 2);
    assert!(matches!(
        s.deployments[0].signature,
        SignatureState::Invalid { .. }
    ));
    assert!(s.warnings[0].contains("broken.pub"), "{:?}", s.warnings);
}

fn json_keys(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                json_keys(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_keys(v, out)),
        _ => {}
    }
}

/// v1 ships `name` with `v1`; the admin does `local` to /etc; v2 ships `v2_tree`. Returns the
/// fixture, the v2 checksum and the plan keel computed before deploying.
fn merge_case(
    v1_tree: TreeBuilder,
    local: impl FnOnce(&Path),
    v2_tree: TreeBuilder,
) -> (Fixture, String, etc::PlanReport) {
    let f = deployed(v1_tree);
    let host = f.host();
    local(&etc_of(&host, 0));
    let v2 = f.commit(v2_tree, 60);
    let plan = etc::plan(&host, Some(&v2)).unwrap();
    (f, v2, plan)
}

#[test]
fn etc_merge_untouched_file_follows_new_default_including_deletion() {
    let (f, v2, plan) = merge_case(
        TreeBuilder::new("1")
            .file("usr/etc/follow.conf", "v1\n")
            .file("usr/etc/gone.conf", "v1\n"),
        |_| {},
        TreeBuilder::new("2")
            .file("usr/etc/follow.conf", "v2\n")
            .file("usr/etc/new.conf", "v2\n"),
    );
    let changes: Vec<(&str, DefaultChange)> = plan
        .plan
        .new_defaults_taken
        .iter()
        .map(|d| (d.path.as_str(), d.change))
        .collect();
    assert!(changes.contains(&("follow.conf", DefaultChange::Changed)));
    assert!(changes.contains(&("gone.conf", DefaultChange::Removed)));
    assert!(changes.contains(&("new.conf", DefaultChange::Added)));
    assert!(changes.contains(&("os-release", DefaultChange::Changed)));
    let host = f.host();
    host.deploy(&v2, REF, None, &Cancel::new(), &Discard)
        .unwrap();
    let etc = etc_of(&host, 0);
    assert_eq!(
        std::fs::read_to_string(etc.join("follow.conf")).unwrap(),
        "v2\n"
    );
    assert!(!etc.join("gone.conf").exists());
    assert_eq!(
        std::fs::read_to_string(etc.join("new.conf")).unwrap(),
        "v2\n"
    );
    // What `etc plan` reports afterwards for the written deployment matches.
    let after = etc::plan(&host, None).unwrap();
    assert!(after.applied);
    assert_eq!(after.plan, plan.plan);
}

#[test]
fn etc_merge_locally_modified_file_wins() {
    let (f, v2, plan) = merge_case(
        TreeBuilder::new("1").file("usr/etc/edit.conf", "v1\n"),
        |etc| std::fs::write(etc.join("edit.conf"), "mine\n").unwrap(),
        TreeBuilder::new("2").file("usr/etc/edit.conf", "v2\n"),
    );
    assert_eq!(plan.plan.local_edits_kept, vec!["edit.conf"]);
    let host = f.host();
    host.deploy(&v2, REF, None, &Cancel::new(), &Discard)
        .unwrap();
    let etc = etc_of(&host, 0);
    assert_eq!(
        std::fs::read_to_string(etc.join("edit.conf")).unwrap(),
        "mine\n"
    );
}

#[test]
fn etc_merge_locally_removed_file_stays_removed() {
    let (f, v2, plan) = merge_case(
        TreeBuilder::new("1").file("usr/etc/removed.conf", "v1\n"),
        |etc| std::fs::remove_file(etc.join("removed.conf")).unwrap(),
        TreeBuilder::new("2").file("usr/etc/removed.conf", "v2\n"),
    );
    assert_eq!(plan.plan.local_removals_kept, vec!["removed.conf"]);
    let host = f.host();
    host.deploy(&v2, REF, None, &Cancel::new(), &Discard)
        .unwrap();
    assert!(!etc_of(&host, 0).join("removed.conf").exists());
    assert!(host
        .deployment_path(&host.deployments()[0])
        .join("usr/etc/removed.conf")
        .exists());
}

#[test]
fn etc_merge_local_addition_is_kept() {
    let (f, v2, plan) = merge_case(
        TreeBuilder::new("1"),
        |etc| {
            std::fs::create_dir(etc.join("local.d")).unwrap();
            std::fs::write(etc.join("local.d/a.conf"), "mine\n").unwrap();
        },
        TreeBuilder::new("2"),
    );
    assert_eq!(plan.plan.local_additions_kept, vec!["local.d"]);
    let host = f.host();
    host.deploy(&v2, REF, None, &Cancel::new(), &Discard)
        .unwrap();
    let etc = etc_of(&host, 0);
    assert_eq!(
        std::fs::read_to_string(etc.join("local.d/a.conf")).unwrap(),
        "mine\n"
    );
}

#[test]
fn etc_merge_file_becoming_directory_is_refused_before_anything_changes() {
    let (f, v2, plan) = merge_case(
        TreeBuilder::new("1").file("usr/etc/foo.conf", "v1\n"),
        |etc| std::fs::write(etc.join("foo.conf"), "mine\n").unwrap(),
        TreeBuilder::new("2").file("usr/etc/foo.conf/default.conf", "v2\n"),
    );
    assert_eq!(plan.plan.conflicts.len(), 1, "{plan:?}");
    assert_eq!(plan.plan.conflicts[0].path, "foo.conf");
    let host = f.host();
    let before = order(&host);
    let err = format!(
        "{:#}",
        host.deploy(&v2, REF, None, &Cancel::new(), &Discard)
            .unwrap_err()
    );
    assert!(
        err.contains("/etc/foo.conf") && err.contains("makes it a directory"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(order(&host), before);

    // The CLI reports it and fails too.
    let out = keel(f.sysroot.path(), &["etc", "plan", "--commit", &v2]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Conflicts") && stdout.contains("/etc/foo.conf"),
        "{stdout}"
    );
    assert_eq!(order(&host), before);
}

#[test]
fn rollback_swaps_the_first_two_deployments_and_back() {
    let f = deployed(TreeBuilder::new("1"));
    let host = f.host();
    let v2 = f.commit(TreeBuilder::new("2"), 60);
    host.deploy(&v2, REF, None, &Cancel::new(), &Discard)
        .unwrap();
    let before = order(&host);
    assert_eq!(before.len(), 2);
    assert!(before[0].starts_with(&v2) && before[1].starts_with(&f.v1));

    assert_eq!(rollback::rollback(&host).unwrap(), f.v1);
    let after = order(&host);
    assert_eq!(after, vec![before[1].clone(), before[0].clone()]);
    // ostree's own view (which reads the loader entries) agrees.
    let dirs = f.sysroot.deployment_dirs().unwrap();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, after);

    rollback::rollback(&host).unwrap();
    assert_eq!(order(&host), before);
}

#[test]
fn pinned_deployment_survives_deploys_and_cleanup() {
    let f = deployed(TreeBuilder::new("1"));
    let host = f.host();
    let v2 = f.commit(TreeBuilder::new("2"), 60);
    host.deploy(&v2, REF, None, &Cancel::new(), &Discard)
        .unwrap();
    pin::pin(&host, "1", true).unwrap();
    assert!(host.deployments()[1].is_pinned());
    let v3 = f.commit(TreeBuilder::new("3"), 120);
    host.deploy(&v3, REF, None, &Cancel::new(), &Discard)
        .unwrap();
    let three = order(&host);
    assert_eq!(three.len(), 3, "v3, v2 (merge) and pinned v1");
    assert!(three[2].starts_with(&f.v1));

    let (removed, _) = cleanup::cleanup(&host).unwrap();
    assert_eq!(removed, vec![three[1].clone()]);
    assert_eq!(order(&host), vec![three[0].clone(), three[2].clone()]);
    // v2's commit is still on the ref's history, so the repo keeps it; its deployment is gone.
    assert!(!f
        .sysroot
        .path()
        .join(format!("ostree/deploy/keel/deploy/{}", three[1]))
        .exists());

    pin::pin(&host, &f.v1[..10], false).unwrap();
    let (removed, freed) = cleanup::cleanup(&host).unwrap();
    assert_eq!(removed, vec![three[2].clone()]);
    assert!(
        freed > 0,
        "v1's own objects (its os-release, initramfs) were pruned"
    );
    assert!(!ostree_has(&f, &f.v1));
    assert_eq!(order(&host), vec![three[0].clone()]);
}

#[test]
fn kargs_edits_land_in_the_new_deployments_boot_entry() {
    let f = deployed(TreeBuilder::new("1"));
    let host = f.host();
    assert_eq!(
        kargs::current(&host).unwrap(),
        vec!["root=/dev/vda", "quiet", "console=tty0"]
    );
    let edits = kargs::Edits {
        delete: vec!["quiet".into()],
        replace: vec!["root=/dev/vdb".into()],
        append: vec!["keel.test=1".into()],
    };
    let want = vec!["root=/dev/vdb", "console=tty0", "keel.test=1"];
    assert_eq!(
        kargs::change(&host, &edits, &Cancel::new(), &Discard).unwrap(),
        want
    );
    let deployments = host.deployments();
    assert_eq!(deployments.len(), 2, "a new deployment, the old one kept");
    assert_eq!(deployments[0].csum(), deployments[1].csum());
    assert_eq!(Host::kargs(&deployments[0]), want);
    assert_eq!(Host::origin_refspec(&deployments[0]).as_deref(), Some(REF));
    let entries = f.sysroot.boot_entry_options().unwrap();
    assert!(
        entries[0].starts_with("root=/dev/vdb console=tty0 keel.test=1"),
        "{entries:?}"
    );
    assert!(
        entries[1].starts_with("root=/dev/vda quiet console=tty0"),
        "{entries:?}"
    );

    let out = keel(f.sysroot.path(), &["kargs", "--json"]);
    assert!(out.status.success());
    let shown: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown, want);
    let bad = keel(f.sysroot.path(), &["kargs", "--delete", "nosuch"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--delete nosuch"));
    assert_eq!(host.deployments().len(), 2);
}

#[test]
fn deploy_older_needs_allow_downgrade_and_keeps_following_the_ref() {
    let f = deployed(TreeBuilder::new("1"));
    let host = f.host();
    let v2 = f.commit(TreeBuilder::new("2"), 60);
    f.sign_and_trust(&[&f.v1, &v2]);
    deploy::deploy(&host, "2", false, &Cancel::new(), &Discard).unwrap();
    let before = order(&host);
    assert!(before[0].starts_with(&v2));
    assert_eq!(
        Host::origin_override(&host.deployments()[0]),
        None,
        "the ref's head"
    );

    let err = format!(
        "{:#}",
        deploy::deploy(&host, "1", false, &Cancel::new(), &Discard).unwrap_err()
    );
    assert!(
        err.contains("older") && err.contains("--allow-downgrade"),
        "{err}"
    );
    assert_eq!(order(&host), before);
    let out = keel(f.sysroot.path(), &["deploy", &f.v1[..12]]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-downgrade"));
    assert_eq!(order(&host), before);

    let info = deploy::deploy(&host, &f.v1[..8], true, &Cancel::new(), &Discard).unwrap();
    assert_eq!(info.checksum, f.v1);
    let d = &host.deployments()[0];
    assert_eq!(d.csum().as_str(), f.v1);
    assert_eq!(Host::origin_refspec(d).as_deref(), Some(REF));
    let origin = d.origin().unwrap();
    assert_eq!(
        origin.string("origin", OVERRIDE_COMMIT).unwrap().as_str(),
        f.v1
    );

    let missing = format!(
        "{:#}",
        deploy::deploy(&host, "9", true, &Cancel::new(), &Discard).unwrap_err()
    );
    assert!(missing.contains("versions here: 2, 1"), "{missing}");
}

#[test]
fn remote_add_writes_config_keys_and_the_ostree_remote() {
    let f = deployed(TreeBuilder::new("1"));
    let key = SecretKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("keys.pub");
    std::fs::write(&key_file, format!("# publisher\n{}\n", key.public())).unwrap();
    let out = keel(
        f.sysroot.path(),
        &[
            "remote",
            "add",
            "http://127.0.0.1:9/repo",
            "--ref",
            REF,
            "--trusted-keys",
            key_file.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host = f.host();
    let shown = remote::show(&host).unwrap();
    assert_eq!(
        shown.remote,
        Some(RemoteConfig {
            name: "keel".into(),
            url: "http://127.0.0.1:9/repo".into(),
            reference: REF.parse().unwrap()
        })
    );
    assert_eq!(shown.ostree_url.as_deref(), Some("http://127.0.0.1:9/repo"));
    assert_eq!(shown.trusted_keys, vec![key.public().to_base64()]);
    assert!(!host.repo().remote_get_gpg_verify("keel").unwrap());
    let config = std::fs::read_to_string(f.sysroot.repo_path().join("config")).unwrap();
    assert!(config.contains("sign-verify=false"), "{config}");

    let json = keel(f.sysroot.path(), &["remote", "show", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["remote"]["ref"], REF);

    // A bad key file changes nothing.
    std::fs::write(&key_file, "not a key\n").unwrap();
    let bad = keel(
        f.sysroot.path(),
        &[
            "remote",
            "add",
            "http://127.0.0.1:9/other",
            "--ref",
            "x",
            "--trusted-keys",
        ],
    );
    assert!(!bad.status.success());
    let bad = keel(
        f.sysroot.path(),
        &[
            "remote",
            "add",
            "http://127.0.0.1:9/other",
            "--ref",
            "x",
            "--trusted-keys",
            key_file.to_str().unwrap(),
        ],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("keys.pub"));
    assert_eq!(remote::show(&host).unwrap().remote, shown.remote);
}

#[test]
fn failed_deploy_leaves_no_deployment_behind() {
    let f = deployed(TreeBuilder::new("1"));
    let host = f.host();
    let before = order(&host);
    let no_kernel = f.commit(
        TreeBuilder::new("2").remove("usr/lib/modules/6.1.0-keel"),
        60,
    );
    let err = format!(
        "{:#}",
        host.deploy(&no_kernel, REF, None, &Cancel::new(), &Discard)
            .unwrap_err()
    );
    assert!(err.contains("the deployments are unchanged"), "{err}");
    assert_eq!(order(&host), before);
    let dirs = std::fs::read_dir(f.sysroot.path().join("ostree/deploy/keel/deploy"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".origin"))
        .count();
    assert_eq!(dirs, 1, "only v1's checkout");
}

#[test]
fn cli_pin_rollback_cleanup_and_status_text() {
    let f = deployed(TreeBuilder::new("1"));
    let v2 = f.commit(TreeBuilder::new("2"), 60);
    f.sign_and_trust(&[&v2]);
    let path = f.sysroot.path();
    let ok = |args: &[&str]| {
        let out = keel(path, args);
        assert!(
            out.status.success(),
            "keel {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(ok(&["deploy", "2"]).contains(&v2));
    assert!(ok(&["pin", "1"]).starts_with(&format!("Pinned {}", f.v1)));
    let text = ok(&["status"]);
    assert!(text.contains("  0: 2 (default)\n"), "{text}");
    assert!(text.contains("  1: 1 (rollback, pinned)\n"), "{text}");
    assert!(ok(&["rollback"]).starts_with(&f.v1));
    assert!(ok(&["status"]).contains("  0: 1 (default, pinned)\n"));
    assert!(ok(&["rollback"]).starts_with(&v2));
    assert!(ok(&["cleanup"]).starts_with("Removed 0 deployment(s)"));
    ok(&["unpin", "1"]);
    let cleaned = ok(&["cleanup"]);
    assert!(cleaned.starts_with("Removed 1 deployment(s)"), "{cleaned}");
    let json: serde_json::Value = serde_json::from_str(&ok(&["status", "--json"])).unwrap();
    assert_eq!(json["deployments"].as_array().unwrap().len(), 1);
    assert_eq!(json["deployments"][0]["checksum"], v2.as_str());
}

#[test]
fn deploy_rechecks_the_signature_of_a_local_commit() {
    let f = deployed(TreeBuilder::new("1"));
    let host = f.host();
    // A commit that reached the repo without `keel upgrade` (no signature at all).
    let unsigned = f.commit(TreeBuilder::new("2"), 60);
    let before = order(&host);
    let err = format!(
        "{:#}",
        deploy::deploy(&host, "2", false, &Cancel::new(), &Discard).unwrap_err()
    );
    assert!(
        err.contains(&format!("not deploying {unsigned}")) && err.contains("not signed"),
        "{err}"
    );
    assert_eq!(order(&host), before);
    let out = keel(f.sysroot.path(), &["deploy", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not signed"));
    assert_eq!(order(&host), before);

    // Signed by a key trusted then, revoked since: refused too.
    let key = f.sign_and_trust(&[&unsigned]);
    let revoked = host.config_root().join("etc/keel/revoked.ed25519.d");
    std::fs::create_dir_all(&revoked).unwrap();
    std::fs::write(revoked.join("old.pub"), format!("{}\n", key.public())).unwrap();
    let err = format!(
        "{:#}",
        deploy::deploy(&host, "2", false, &Cancel::new(), &Discard).unwrap_err()
    );
    assert!(err.contains("revoked"), "{err}");
    assert_eq!(order(&host), before);

    // Trusted and not revoked: deployed.
    std::fs::remove_file(revoked.join("old.pub")).unwrap();
    let info = deploy::deploy(&host, "2", false, &Cancel::new(), &Discard).unwrap();
    assert_eq!(info.checksum, unsigned);
    assert_eq!(host.deployments()[0].csum().as_str(), unsigned);
}
