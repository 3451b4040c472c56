//! Release engineering on real ostree repos made by the `ostree` CLI: signatures on commits and
//! summaries in ostree's format (and what must not verify), static deltas listed in the summary,
//! automatic versions from a ref's history, the no-op check, and the keygen/sign/verify verbs.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_common::keys::SecretKey;
use keel_common::sign::{self, SignError};
use keel_compose::release::publish::{self, PublishOptions};
use keel_compose::release::signing::{self, SigningError};
use keel_compose::release::{inputs, version};
use ostree::gio;
use ostree::glib::{self, prelude::*};

const REF: &str = "keel/test/x86_64/host";

/// A temp archive repo with helpers to commit small trees through the `ostree` CLI.
struct TestRepo {
    dir: tempfile::TempDir,
}

impl TestRepo {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        ostree(&[
            &format!("--repo={}", dir.path().join("repo").display()),
            "init",
            "--mode=archive",
        ]);
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn open(&self) -> ostree::Repo {
        let repo = ostree::Repo::new_for_path(self.path());
        repo.open(gio::Cancellable::NONE).unwrap();
        repo
    }

    /// Commits a tree with one file `usr/share/content` on `REF`, with extra metadata strings.
    fn commit(&self, content: &str, metadata: &[(&str, &str)]) -> String {
        let tree = self.dir.path().join(format!("tree-{}", content.len()));
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::create_dir_all(tree.join("usr/share")).unwrap();
        std::fs::write(tree.join("usr/share/content"), content).unwrap();
        let mut args = vec![
            format!("--repo={}", self.path().display()),
            "commit".into(),
            format!("--branch={REF}"),
            format!("--tree=dir={}", tree.display()),
        ];
        for (k, v) in metadata {
            args.push(format!("--add-metadata-string={k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ostree(&args).trim().to_string()
    }
}

fn ostree(args: &[&str]) -> String {
    let out = Command::new("ostree").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ostree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn key() -> SecretKey {
    SecretKey::generate().unwrap()
}

fn sign_error(result: Result<keel_common::keys::PublicKey, SigningError>) -> SignError {
    match result {
        Err(SigningError::Commit { source, .. } | SigningError::Summary { source, .. }) => source,
        other => panic!("expected a signature error, got {other:?}"),
    }
}

fn write_detached(repo: &ostree::Repo, commit: &str, value: &glib::Variant) {
    let dict = glib::VariantDict::new(None);
    dict.insert_value(sign::ED25519_KEY, value);
    repo.write_commit_detached_metadata(commit, Some(&dict.end()), gio::Cancellable::NONE)
        .unwrap();
}

#[test]
fn signed_commit_verifies_and_has_ostrees_detached_format() {
    let t = TestRepo::new();
    let commit = t.commit("v1", &[("version", "1")]);
    let repo = t.open();
    let k = key();
    signing::sign_commit(&repo, &commit, &k).unwrap();
    // Signing twice with the same key does not add a second copy; another key adds one.
    signing::sign_commit(&repo, &commit, &k).unwrap();
    let other = key();
    signing::sign_commit(&repo, &commit, &other).unwrap();

    assert_eq!(
        signing::verify_commit(&repo, &commit, &[k.public()], &[]).unwrap(),
        k.public()
    );
    assert_eq!(
        signing::verify_commit(&repo, &commit, &[other.public()], &[]).unwrap(),
        other.public()
    );

    let detached = repo
        .read_commit_detached_metadata(&commit, gio::Cancellable::NONE)
        .unwrap()
        .unwrap();
    assert_eq!(detached.type_().as_str(), "a{sv}");
    let value = glib::VariantDict::new(Some(&detached))
        .lookup_value(sign::ED25519_KEY, None)
        .unwrap();
    assert_eq!(value.type_().as_str(), "aay");
    assert_eq!(value.n_children(), 2);
    assert_eq!(value.child_value(0).fixed_array::<u8>().unwrap().len(), 64);

    // What libostree itself reads back: an array of byte arrays under ostree's key.
    let shown = ostree(&[
        &format!("--repo={}", t.path().display()),
        "show",
        "--print-detached-metadata-key=ostree.sign.ed25519",
        REF,
    ]);
    let shown = shown.trim();
    assert!(shown.starts_with('[') && shown.ends_with(']'), "{shown}");
    let parsed = glib::Variant::parse(Some(glib::VariantTy::new("aay").unwrap()), shown).unwrap();
    assert_eq!(parsed, value, "ostree prints the same aay we wrote");
    // The signature covers exactly the bytes whose sha256 is the commit checksum.
    let bytes = signing::commit_bytes(&repo, &commit).unwrap();
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), commit);
}

#[test]
fn signature_copied_from_commit_a_onto_commit_b_fails() {
    let t = TestRepo::new();
    let a = t.commit("a", &[]);
    let b = t.commit("bb", &[]);
    let repo = t.open();
    let k = key();
    signing::sign_commit(&repo, &a, &k).unwrap();
    let detached = repo
        .read_commit_detached_metadata(&a, gio::Cancellable::NONE)
        .unwrap();
    repo.write_commit_detached_metadata(&b, detached.as_ref(), gio::Cancellable::NONE)
        .unwrap();
    assert!(signing::verify_commit(&repo, &a, &[k.public()], &[]).is_ok());
    assert_eq!(
        sign_error(signing::verify_commit(&repo, &b, &[k.public()], &[])),
        SignError::NoValidSignature {
            count: 1,
            malformed: 0
        }
    );
}

#[test]
fn malformed_signatures_are_rejected_without_a_crash() {
    let t = TestRepo::new();
    let commit = t.commit("x", &[]);
    let repo = t.open();
    let k = key();
    let trusted = [k.public()];

    // Wrong lengths: 0, 63 and 65 bytes.
    let wrong_len: Vec<Vec<u8>> = vec![vec![], vec![1; 63], vec![2; 65]];
    write_detached(&repo, &commit, &wrong_len.to_variant());
    assert_eq!(
        sign_error(signing::verify_commit(&repo, &commit, &trusted, &[])),
        SignError::NoValidSignature {
            count: 3,
            malformed: 3
        }
    );

    // A wrong GVariant type under ostree's key.
    write_detached(&repo, &commit, &vec!["sig".to_string()].to_variant());
    assert_eq!(
        sign_error(signing::verify_commit(&repo, &commit, &trusted, &[])),
        SignError::WrongType { found: "as".into() }
    );

    // Ten thousand well-sized junk signatures: all checked, none valid, then a real one wins.
    let mut junk: Vec<Vec<u8>> = (0..10_000u32).map(|i| i.to_be_bytes().repeat(16)).collect();
    write_detached(&repo, &commit, &junk.to_variant());
    assert_eq!(
        sign_error(signing::verify_commit(&repo, &commit, &trusted, &[])),
        SignError::NoValidSignature {
            count: 10_000,
            malformed: 0
        }
    );
    let data = signing::commit_bytes(&repo, &commit).unwrap();
    junk.push(sign::sign(&k, &data).to_vec());
    write_detached(&repo, &commit, &junk.to_variant());
    assert_eq!(
        signing::verify_commit(&repo, &commit, &trusted, &[]).unwrap(),
        k.public()
    );

    // No detached metadata at all.
    let unsigned = t.commit("unsigned", &[]);
    assert_eq!(
        sign_error(signing::verify_commit(&repo, &unsigned, &trusted, &[])),
        SignError::Unsigned
    );
}

#[test]
fn revoked_and_unknown_keys_fail() {
    let t = TestRepo::new();
    let commit = t.commit("x", &[]);
    let repo = t.open();
    let (signer, stranger) = (key(), key());
    signing::sign_commit(&repo, &commit, &signer).unwrap();
    assert!(matches!(
        sign_error(signing::verify_commit(
            &repo,
            &commit,
            &[stranger.public()],
            &[]
        )),
        SignError::NoValidSignature { .. }
    ));
    assert_eq!(
        sign_error(signing::verify_commit(
            &repo,
            &commit,
            &[signer.public(), stranger.public()],
            &[signer.public()]
        )),
        SignError::Revoked {
            key: signer.public().to_base64()
        }
    );
}

#[test]
fn summary_is_signed_and_a_tampered_summary_fails() {
    let t = TestRepo::new();
    let commit = t.commit("x", &[]);
    let repo = t.open();
    let k = key();
    publish::update_summary(&repo, Some(&k)).unwrap();
    assert_eq!(
        signing::verify_summary(&t.path(), &[k.public()], &[]).unwrap(),
        k.public()
    );

    // summary.sig is an a{sv} in normal form holding an aay under ostree's key.
    let sig_bytes = std::fs::read(t.path().join("summary.sig")).unwrap();
    let sig = signing::parse_summary_sig(sig_bytes.clone());
    assert!(sig.is_normal_form());
    assert_eq!(sign::signatures(&sig).unwrap().len(), 1);

    // A summary changed after signing (here: regenerated after a new commit, old sig kept).
    let old_sig = sig_bytes.clone();
    t.commit("y", &[]);
    repo.regenerate_summary(None, gio::Cancellable::NONE)
        .unwrap();
    std::fs::write(t.path().join("summary.sig"), &old_sig).unwrap();
    assert!(matches!(
        sign_error(signing::verify_summary(&t.path(), &[k.public()], &[])),
        SignError::NoValidSignature { .. }
    ));
    // Flipping one byte of a signed summary fails too.
    publish::update_summary(&repo, Some(&k)).unwrap();
    let mut summary = std::fs::read(t.path().join("summary")).unwrap();
    let last = summary.len() - 1;
    summary[last] ^= 1;
    std::fs::write(t.path().join("summary"), &summary).unwrap();
    assert!(signing::verify_summary(&t.path(), &[k.public()], &[]).is_err());

    // Junk in summary.sig is an error, not a crash.
    std::fs::write(t.path().join("summary.sig"), b"\x00\x01junk").unwrap();
    assert!(signing::verify_summary(&t.path(), &[k.public()], &[]).is_err());

    // Regenerating without a key removes the stale signature: the summary is then unsigned.
    publish::update_summary(&repo, None).unwrap();
    assert!(!t.path().join("summary.sig").exists());
    assert_eq!(
        sign_error(signing::verify_summary(&t.path(), &[k.public()], &[])),
        SignError::Unsigned
    );
    let _ = commit;
}

#[test]
fn publish_makes_deltas_from_previous_commits_and_lists_them_in_the_summary() {
    let t = TestRepo::new();
    let c1 = t.commit("one", &[]);
    let c2 = t.commit("two!", &[]);
    let c3 = t.commit("three", &[]);
    let c4 = t.commit("four!!", &[]);
    let repo = t.open();
    let k = key();
    let opts = PublishOptions {
        sign_key: Some(k.clone()),
        static_deltas: 2,
        delta_from_empty: false,
    };
    let report = publish::publish(&repo, &c4, &opts).unwrap();
    let froms: Vec<_> = report.deltas.iter().map(|d| d.from.clone()).collect();
    assert_eq!(
        froms,
        [Some(c3.clone()), Some(c2.clone())],
        "parent first, N = 2"
    );
    assert!(report.deltas.iter().all(|d| d.bytes > 0 && d.to == c4));
    assert!(report.commit_signed && report.summary_signed);

    let listed = ostree(&[
        &format!("--repo={}", t.path().display()),
        "static-delta",
        "list",
    ]);
    assert!(listed.contains(&format!("{c3}-{c4}")), "{listed}");
    assert!(listed.contains(&format!("{c2}-{c4}")), "{listed}");
    assert!(
        !listed.contains(&c1),
        "no delta from the third ancestor: {listed}"
    );

    // The summary was regenerated after the deltas: it lists them, and it is signed.
    let summary = ostree(&[
        &format!("--repo={}", t.path().display()),
        "summary",
        "--view",
    ]);
    assert!(summary.contains("Static Deltas"), "{summary}");
    assert_eq!(
        signing::verify_summary(&t.path(), &[k.public()], &[]).unwrap(),
        k.public()
    );
    assert_eq!(
        signing::verify_commit(&repo, &c4, &[k.public()], &[]).unwrap(),
        k.public()
    );

    // From nothing only on request.
    let empty = publish::publish(
        &repo,
        &c4,
        &PublishOptions {
            sign_key: None,
            static_deltas: 0,
            delta_from_empty: true,
        },
    )
    .unwrap();
    assert_eq!(empty.deltas.len(), 1);
    assert_eq!(empty.deltas[0].from, None);
    let listed = ostree(&[
        &format!("--repo={}", t.path().display()),
        "static-delta",
        "list",
    ]);
    assert!(listed.lines().any(|l| l.trim() == c4), "{listed}");
}

#[test]
fn automatic_versions_count_up_from_the_refs_history() {
    let t = TestRepo::new();
    let repo = t.open();
    let today = version::NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
    let prefix = Some("<date:%Y%m%d>");
    assert!(version::ref_history_versions(&repo, REF)
        .unwrap()
        .is_empty());
    assert_eq!(
        version::choose(None, prefix, today, &[])
            .unwrap()
            .as_deref(),
        Some("20261122.0")
    );
    t.commit("a", &[("version", "20261121.4")]);
    t.commit("bb", &[("version", "20261122.0")]);
    t.commit("ccc", &[]);
    t.commit("dddd", &[("version", "20261122.1")]);
    let history = version::ref_history_versions(&repo, REF).unwrap();
    assert_eq!(history, ["20261122.1", "20261122.0", "20261121.4"]);
    assert_eq!(
        version::choose(None, prefix, today, &history)
            .unwrap()
            .as_deref(),
        Some("20261122.2")
    );
}

#[test]
fn no_op_check_compares_the_refs_input_hash() {
    let t = TestRepo::new();
    let repo = t.open();
    assert_eq!(
        inputs::check(&repo, REF, "h1").unwrap(),
        inputs::NoOp::Changed
    );
    let commit = t.commit("a", &[(keel_common::meta::INPUT_HASH, "h1")]);
    assert_eq!(
        inputs::check(&repo, REF, "h1").unwrap(),
        inputs::NoOp::Unchanged { commit }
    );
    assert_eq!(
        inputs::check(&repo, REF, "h2").unwrap(),
        inputs::NoOp::Changed
    );
}

fn cli(args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["keel-compose"];
    argv.extend_from_slice(args);
    keel_compose::cli::run_from_iter(argv)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn keygen_sign_verify_verbs() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestRepo::new();
    t.commit("x", &[]);
    let repo = t.open();
    publish::update_summary(&repo, None).unwrap();
    let keys = t.dir.path();
    let (secret, public) = (keys.join("k.secret"), keys.join("k.pub"));
    cli(&["keygen", "--secret", p(&secret), "--public", p(&public)]).unwrap();
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let err = cli(&[
        "keygen",
        "--secret",
        p(&secret),
        "--public",
        p(&keys.join("new.pub")),
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");

    let repo_arg = format!("--repo={}", t.path().display());
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", repo_arg.as_str(), "--trusted-keys", p(&public)];
        args.extend_from_slice(extra);
        args.push(REF);
        cli(&args)
    };
    let err = verify(&[]).unwrap_err();
    assert!(format!("{err:#}").contains("not signed"), "{err:#}");

    cli(&["sign", &repo_arg, "--key", p(&secret), REF]).unwrap();
    verify(&[]).unwrap();

    let err = verify(&["--revoked-keys", p(&public)]).unwrap_err();
    assert!(format!("{err:#}").contains("revoked key"), "{err:#}");

    let stranger = keys.join("stranger.pub");
    std::fs::write(&stranger, format!("{}\n", key().public())).unwrap();
    let err = cli(&["verify", &repo_arg, "--trusted-keys", p(&stranger), REF]).unwrap_err();
    assert!(
        format!("{err:#}").contains("none of its 1 signature(s) is valid"),
        "{err:#}"
    );
}
