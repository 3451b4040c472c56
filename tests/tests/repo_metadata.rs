//! Repository metadata a compose must not believe, against signed repositories on loopback:
//! malformed names in an index, a `.deb` that is not the package its index entry describes,
//! an expired or replayed `InRelease`, signatures gpgv accepts but apt does not (expired or
//! revoked key, SHA-1), a key outside the keyring; Essential packages only from the base
//! system's repositories; and a published repository that another user can serve.

use keel_common::cancel::Cancel;
use keel_common::progress::Discard;
use keel_compose::apt::universe::{self, Freshness};
use keel_compose::apt::{self, AptError, RepoSpec, Request};
use keel_compose::fetch::{self, FetchError};
use keel_compose::package::ResolvedPackage;
use keel_tests::aptrepo::{AptRepo, SigningKey};
use keel_tests::deb::Deb;
use keel_tests::http::FileServer;
use std::path::{Path, PathBuf};

/// Fetches with a client from the environment, no progress sink and no cancellation.
fn fetch_all(packages: &[ResolvedPackage], cachedir: &Path) -> Result<Vec<PathBuf>, FetchError> {
    let client = keel_io::http::Client::from_env().unwrap();
    fetch::fetch(&client, packages, cachedir, 2, &Discard, &Cancel::new())
}

struct Fixture {
    repo: AptRepo,
    server: FileServer,
    cache: tempfile::TempDir,
}

impl Fixture {
    /// A repository holding `debs`, not yet published.
    fn new(debs: &[Deb]) -> Self {
        let repo = AptRepo::new("keel").unwrap();
        repo.add(debs).unwrap();
        let server = FileServer::serve(&repo.root()).unwrap();
        Self {
            repo,
            server,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn spec(&self) -> RepoSpec {
        RepoSpec {
            name: "extra".into(),
            url: self.server.url().to_string(),
            suites: vec!["keel".into()],
            components: vec!["main".into()],
            architectures: vec![],
            keyring: self.repo.keyring().to_path_buf(),
        }
    }

    fn load(&self) -> Result<apt::Universe, AptError> {
        apt::load(&[self.spec()], &[], "amd64", self.cache.path(), &Discard)
    }

    fn verify(&self, allow_older: bool) -> Result<(), AptError> {
        let freshness = Freshness {
            allow_older,
            ..Default::default()
        };
        universe::verify_suites(&[self.spec()], "amd64", self.cache.path(), &freshness).map(|_| ())
    }

    /// Publishes with `release_fields` set in Release, signed by `key` with `sign_args`.
    fn publish(&self, release_fields: &[(&str, &str)], key: &SigningKey, sign_args: &[&str]) {
        self.repo
            .publish_edited(|text| text.to_string(), release_fields, key, sign_args)
            .unwrap();
    }
}

fn error_text(result: Result<impl std::fmt::Debug, AptError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn malformed_names_versions_and_architectures_in_an_index_are_refused() {
    let cases = [
        (
            "Package: hello\n",
            "Package: ../../hello\n",
            "Package \"../../hello\"",
        ),
        (
            "Version: 1.0\n",
            "Version: 1.0/../../x\n",
            "Version \"1.0/../../x\"",
        ),
        (
            "Architecture: amd64\n",
            "Architecture: AMD_64\n",
            "Architecture \"AMD_64\"",
        ),
    ];
    for (from, to, shown) in cases {
        let f = Fixture::new(&[Deb::new("hello", "1.0")]);
        f.repo
            .publish_edited(|text| text.replace(from, to), &[], f.repo.key(), &[])
            .unwrap();
        let e = error_text(f.load());
        let index = format!("{}/dists/keel/main/binary-amd64/Packages", f.server.url());
        assert!(
            e.starts_with(&format!(
                "repository extra: index {index}: {shown} is malformed"
            )),
            "{e}"
        );
        assert!(e.contains("refusing it"), "{e}");
    }
}

#[test]
fn a_deb_whose_control_data_disagrees_with_its_index_entry_is_refused() {
    let f = Fixture::new(&[Deb::new("hello", "1.0")]);
    let hello = Request {
        packages: vec!["hello".into()],
        ..Default::default()
    };
    // The package as published is fetched, and what its control data says is kept.
    f.publish(&[], f.repo.key(), &[]);
    let packages = apt::resolve(&f.load().unwrap(), &hello).unwrap();
    fetch_all(&packages, f.cache.path()).unwrap();
    let record = keel_compose::apt::deb_control::record_path(f.cache.path(), &packages[0].sha256);
    assert!(std::fs::read_to_string(record)
        .unwrap()
        .contains("Package: hello"));
    // Another package served under hello's file name, and an index entry (made from the
    // served file: its hash and size) that says hello: only the control data can tell.
    let other = tempfile::tempdir().unwrap();
    let evil = Deb::new("evil", "1.0").build(other.path()).unwrap();
    let evil_bytes = std::fs::read(&evil).unwrap();
    let served = f.repo.root().join("pool/main/hello_1.0_amd64.deb");
    let hello_bytes = std::fs::read(&served).unwrap();
    std::fs::write(&served, &evil_bytes).unwrap();
    let sha = |b: &[u8]| keel_compose::apt::index::sha256_hex(b);
    f.repo
        .publish_edited(
            |text| {
                assert!(!text.contains(&sha(&hello_bytes)));
                text.replace("Package: evil\n", "Package: hello\n")
            },
            &[],
            f.repo.key(),
            &[],
        )
        .unwrap();
    let packages = apt::resolve(&f.load().unwrap(), &hello).unwrap();
    assert_eq!(packages[0].sha256, sha(&evil_bytes));
    let e = fetch_all(&packages, f.cache.path()).unwrap_err();
    assert!(matches!(e, FetchError::Control(_)), "{e}");
    let url = format!("{}/pool/main/hello_1.0_amd64.deb", f.server.url());
    assert_eq!(
        e.to_string(),
        format!(
            "package hello 1.0 from repository extra: its .deb ({url}) says Package: evil, but \
             the repository's index says Package: hello; the repository is inconsistent or \
             tampered with, refusing the package (ask its maintainer to fix the index, or \
             remove the repository)"
        )
    );
}

#[test]
fn an_expired_valid_until_is_refused_naming_the_suite_and_date() {
    let f = Fixture::new(&[Deb::new("hello", "1.0")]);
    let past = "Sat, 01 Jan 2022 00:00:00 UTC";
    f.publish(&[("Valid-Until", past)], f.repo.key(), &[]);
    let e = error_text(f.load());
    assert_eq!(
        e,
        format!(
            "InRelease of {} suite keel expired at {past} (Valid-Until); the mirror is stale \
             or replays old metadata: use a current mirror",
            f.server.url()
        )
    );
}

#[test]
fn a_date_going_backwards_is_refused_then_accepted_with_the_flag() {
    let f = Fixture::new(&[Deb::new("hello", "1.0")]);
    let newer = "Tue, 01 Dec 2026 00:00:00 UTC";
    let older = "Sun, 01 Nov 2026 00:00:00 UTC";
    f.publish(&[("Date", newer)], f.repo.key(), &[]);
    f.verify(false).unwrap();
    f.publish(&[("Date", older)], f.repo.key(), &[]);
    let e = error_text(f.verify(false));
    assert_eq!(
        e,
        format!(
            "InRelease of {} suite keel is dated {older}, older than {newer}, the Date this \
             cache saw last: the mirror may be replaying old metadata to hide updates; use a \
             current mirror, or pass --allow-older-metadata if you moved to an older snapshot \
             on purpose",
            f.server.url()
        )
    );
    assert!(f.load().is_err(), "apt::load refuses it too");
    f.verify(true).unwrap();
    // The older Date is now the last one seen: composes without the flag go on from it.
    f.verify(false).unwrap();
    f.publish(&[("Date", newer)], f.repo.key(), &[]);
    f.verify(false).unwrap();
}

/// The detail of a refused signature.
fn signature_error(f: &Fixture) -> String {
    match f.load() {
        Err(e @ AptError::BadSignature { .. }) => e.to_string(),
        other => panic!("expected a refused signature, got {other:?}"),
    }
}

#[test]
fn a_signature_by_an_expired_key_is_refused() {
    let f = Fixture::new(&[Deb::new("hello", "1.0")]);
    let key = SigningKey::generate_expired("old-repo").unwrap();
    key.export(f.repo.keyring(), false).unwrap();
    f.publish(&[], &key, &["--faked-system-time", "20200101T120000!"]);
    let e = signature_error(&f);
    assert!(e.contains("EXPKEYSIG: signed by key"), "{e}");
    assert!(e.contains("which has expired"), "{e}");
}

#[test]
fn a_signature_by_a_revoked_key_is_refused() {
    let f = Fixture::new(&[Deb::new("hello", "1.0")]);
    f.publish(&[], f.repo.key(), &[]);
    f.load().expect("accepted before the revocation");
    f.repo.key().revoke().unwrap();
    f.repo.key().export(f.repo.keyring(), false).unwrap();
    let e = signature_error(&f);
    assert!(e.contains("REVKEYSIG: signed by key"), "{e}");
    assert!(e.contains("which its owner revoked"), "{e}");
}

#[test]
fn a_sha1_signature_is_refused() {
    let f = Fixture::new(&[Deb::new("hello", "1.0")]);
    f.publish(&[], f.repo.key(), &["--digest-algo", "SHA1"]);
    let e = signature_error(&f);
    assert!(
        e.contains("uses SHA-1 (OpenPGP hash algorithm 2), which is too weak"),
        "{e}"
    );
}

#[test]
fn a_signature_by_a_key_outside_the_keyring_is_refused() {
    let f = Fixture::new(&[Deb::new("hello", "1.0")]);
    let stranger = SigningKey::generate("stranger").unwrap();
    f.publish(&[], &stranger, &[]);
    let e = signature_error(&f);
    assert!(
        e.starts_with(&format!(
            "InRelease of {} suite keel is not validly signed by a key in {}: NO_PUBKEY: \
             signed by key",
            f.server.url(),
            f.repo.keyring().display()
        )),
        "{e}"
    );
    assert!(e.contains("which is not in the keyring"), "{e}");
}

#[test]
fn an_added_repos_essential_packages_come_only_when_the_treefile_makes_it_base() {
    let debian = Fixture::new(&[
        Deb::new("base-files", "1").field("Essential", "yes"),
        Deb::new("coreutils", "1").field("Priority", "required"),
    ]);
    debian.publish(&[], debian.repo.key(), &[]);
    let vendor = Fixture::new(&[
        Deb::new("vendor-agent", "1"),
        Deb::new("vendor-hook", "1").field("Essential", "yes"),
    ]);
    vendor.publish(&[], vendor.repo.key(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let repo = |name: &str, f: &Fixture, extra: &str| {
        format!(
            "[[repos]]\nname = \"{name}\"\nurl = \"{}\"\nsuites = [\"keel\"]\nkeyring = \"{}\"\n{extra}",
            f.server.url(),
            f.repo.keyring().display()
        )
    };
    let chosen = |vendor_extra: &str| -> Vec<String> {
        let text = format!(
            "ref = \"keel/test/x86_64/host\"\npackages = [\"vendor-agent\"]\n{}{}",
            repo("debian", &debian, ""),
            repo("vendor", &vendor, vendor_extra)
        );
        let path = dir.path().join("host.toml");
        std::fs::write(&path, text).unwrap();
        let tf = keel_compose::treefile::load(&path).unwrap();
        let (specs, locals) =
            keel_compose::pipeline::repo_sources(&tf.repos, Path::new("/nonexistent")).unwrap();
        let universe = apt::load(&specs, &locals, "amd64", debian.cache.path(), &Discard).unwrap();
        let request = Request {
            packages: tf.packages.clone(),
            base_system: apt::depsolve::BaseSystem::Repos(tf.base_system_repos.clone()),
            ..Default::default()
        };
        apt::resolve(&universe, &request)
            .unwrap()
            .iter()
            .map(|p| format!("{}={} ({})", p.name, p.version, p.repo))
            .collect()
    };
    assert_eq!(
        chosen(""),
        [
            "base-files=1 (debian)",
            "coreutils=1 (debian)",
            "vendor-agent=1 (vendor)"
        ]
    );
    assert_eq!(
        chosen("base-system = true\n"),
        [
            "base-files=1 (debian)",
            "coreutils=1 (debian)",
            "vendor-agent=1 (vendor)",
            "vendor-hook=1 (vendor)"
        ]
    );
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Every file and directory under `dir` with its mode, but `dir/tmp`.
fn modes(dir: &Path, top: &Path, out: &mut Vec<(String, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == top.join("tmp") {
            continue;
        }
        let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
        let shown = path.strip_prefix(top).unwrap().display().to_string();
        out.push((shown, mode(&path)));
        if kind.is_dir() {
            modes(&path, top, out);
        }
    }
}

fn ostree(args: &[&str]) -> String {
    let out = std::process::Command::new("ostree")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ostree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_repo_published_under_umask_077_is_servable_by_another_user() {
    use keel_compose::release::publish::{self, PublishOptions};
    use rustix::fs::Mode;
    use std::os::unix::fs::PermissionsExt;
    // This test's own process (nextest runs each test in one): everything below, libostree
    // and the ostree CLI included, writes with this umask.
    rustix::process::umask(Mode::from_raw_mode(0o077));
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo_path = dir.path().join("repo");
    let repo = keel_compose::commit::open_or_create(&repo_path).unwrap();
    let repo_arg = format!("--repo={}", repo_path.display());
    let mut commit = String::new();
    for version in ["1", "2"] {
        let tree = dir.path().join(format!("tree{version}"));
        std::fs::create_dir_all(tree.join("usr/share")).unwrap();
        std::fs::write(tree.join("usr/share/content"), version).unwrap();
        commit = ostree(&[
            &repo_arg,
            "commit",
            "--branch=keel/test/x86_64/host",
            &format!("--tree=dir={}", tree.display()),
        ]);
    }
    let key = keel_common::keys::SecretKey::generate().unwrap();
    let report = publish::publish(
        &repo,
        &commit,
        &PublishOptions {
            sign_key: Some(key),
            static_deltas: 1,
            delta_from_empty: false,
        },
    )
    .unwrap();
    assert!(report.summary_signed && report.deltas.len() == 1);
    let mut found = Vec::new();
    modes(&repo_path, &repo_path, &mut found);
    for must in [
        "summary",
        "summary.sig",
        "config",
        "refs/heads/keel/test/x86_64/host",
    ] {
        assert!(found.iter().any(|(p, _)| p == must), "{must} in {found:?}");
    }
    assert!(
        found.iter().any(|(p, _)| p.starts_with("deltas/")),
        "{found:?}"
    );
    let wrong: Vec<_> = found
        .iter()
        .filter(|(p, m)| {
            let is_dir = repo_path.join(p).is_dir();
            *m != if is_dir { 0o755 } else { 0o644 }
        })
        .collect();
    assert!(wrong.is_empty(), "not servable: {wrong:?}");
    // Read every published file as `nobody`, as a web server of another user would.
    let script = format!(
        "find {0} -path {0}/tmp -prune -o -type f -print0 | xargs -0 cat > /dev/null",
        repo_path.display()
    );
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "sh",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "as nobody: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_compose_cache_dir_is_made_private_even_when_it_exists_with_a_looser_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("debs")).unwrap();
    let treefile = dir.path().join("host.toml");
    std::fs::write(
        &treefile,
        "ref = \"keel/test/host\"\npackages = [\"keel-no-such-package\"]\n\
         [[repos]]\nname = \"mine\"\npath = \"debs\"\n",
    )
    .unwrap();
    for existing in [false, true] {
        let cachedir = dir.path().join(format!("cache-{existing}"));
        if existing {
            std::fs::create_dir(&cachedir).unwrap();
            std::fs::set_permissions(&cachedir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let e = keel_compose::pipeline::compose(
            &keel_compose::pipeline::Options {
                treefile: treefile.clone(),
                repo: dir.path().join("repo"),
                cachedir: cachedir.clone(),
                allow_older_metadata: false,
            },
            &Cancel::new(),
            &Discard,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("keel-no-such-package"), "{e:#}");
        assert_eq!(mode(&cachedir), 0o700, "existing: {existing}");
    }
}
