//! Repository loading and dependency resolution against signed apt repositories served on
//! loopback: what gets chosen, and what the errors say.

use keel_common::progress::Discard;
use keel_compose::apt::{self, AptError, DepsolveError, LocalRepo, RepoSpec, Request, Universe};
use keel_compose::cachedir::CacheDir;
use keel_compose::package::{PackageSource, ResolvedPackage};
use keel_compose::release::lockfile::Lockfile;
use keel_compose::resolve_cache::{self, Resolution};
use keel_tests::aptrepo::{AptRepo, SigningKey};
use keel_tests::deb::Deb;
use keel_tests::http::{Fault, FileServer};
use std::path::Path;

struct Fixture {
    repo: AptRepo,
    server: FileServer,
    cache: CacheDir,
    /// Files of the test itself (keys, lockfiles), beside the cache directory.
    scratch: tempfile::TempDir,
}

impl Fixture {
    fn new(debs: &[Deb]) -> Self {
        let repo = AptRepo::new("keel").unwrap();
        repo.add(debs).unwrap();
        repo.publish().unwrap();
        let server = FileServer::serve(&repo.root()).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        Self {
            repo,
            server,
            cache: CacheDir::open(&scratch.path().join("cache"), &Discard).unwrap(),
            scratch,
        }
    }

    fn spec(&self, keyring: &Path) -> RepoSpec {
        RepoSpec {
            name: "test".into(),
            url: self.server.url().to_string(),
            suites: vec!["keel".into()],
            components: vec!["main".into()],
            architectures: vec![],
            keyring: keyring.to_path_buf(),
        }
    }

    fn load(&self) -> Result<Universe, AptError> {
        apt::load(
            &[self.spec(self.repo.keyring())],
            &[],
            "amd64",
            &self.cache.indices(),
            &Discard,
        )
    }

    fn resolve(&self, packages: &[&str]) -> Result<Vec<ResolvedPackage>, DepsolveError> {
        apt::resolve(&self.load().unwrap(), &request(packages))
    }
}

fn request(packages: &[&str]) -> Request {
    Request {
        packages: packages.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    }
}

/// `name=version` of each resolved package, sorted by name.
fn chosen(packages: &[ResolvedPackage]) -> Vec<String> {
    packages
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect()
}

#[test]
fn version_constraints_pick_the_highest_matching_version() {
    let f = Fixture::new(&[
        Deb::new("app", "1.0").depends("lib (>= 2), lib (<< 3~)"),
        Deb::new("lib", "1.5"),
        Deb::new("lib", "2.4"),
        Deb::new("lib", "3.0"),
    ]);
    let got = f.resolve(&["app"]).unwrap();
    assert_eq!(chosen(&got), ["app=1.0", "lib=2.4"]);
    let app = &got[0];
    assert_eq!(app.depends, ["lib"]);
    assert_eq!(app.repo, "test");
    assert_eq!(app.arch, "amd64");
    assert_eq!(
        app.source,
        PackageSource::Url(format!("{}/pool/main/app_1.0_amd64.deb", f.server.url()))
    );
    let deb = std::fs::read(f.repo.root().join("pool/main/app_1.0_amd64.deb")).unwrap();
    assert_eq!(app.size, deb.len() as u64);
    assert_eq!(app.sha256, keel_compose::apt::index::sha256_hex(&deb));
    // A pinned request takes exactly that version.
    assert_eq!(chosen(&f.resolve(&["lib=1.5"]).unwrap()), ["lib=1.5"]);
    assert_eq!(chosen(&f.resolve(&["lib"]).unwrap()), ["lib=3.0"]);
}

#[test]
fn alternatives_prefer_the_first_satisfiable_one() {
    let f = Fixture::new(&[
        Deb::new("app", "1").depends("missing | second | third"),
        Deb::new("second", "1"),
        Deb::new("third", "1"),
        Deb::new("other", "1").depends("third | second"),
    ]);
    assert_eq!(chosen(&f.resolve(&["app"]).unwrap()), ["app=1", "second=1"]);
    // Once `second` is installed anyway, `other`'s group is satisfied by it.
    assert_eq!(
        chosen(&f.resolve(&["second", "other"]).unwrap()),
        ["other=1", "second=1"]
    );
}

#[test]
fn virtual_packages_are_satisfied_through_provides() {
    let f = Fixture::new(&[
        Deb::new("mailer", "1").depends("mail-transport-agent"),
        Deb::new("postfix", "3").field("Provides", "mail-transport-agent"),
        Deb::new("needs-versioned", "1").depends("libvirt-api (>= 2)"),
        Deb::new("old-impl", "1").field("Provides", "libvirt-api (= 1)"),
        Deb::new("new-impl", "1").field("Provides", "libvirt-api (= 2)"),
        Deb::new("unversioned-impl", "9").field("Provides", "libvirt-api"),
    ]);
    let got = f.resolve(&["mailer"]).unwrap();
    assert_eq!(chosen(&got), ["mailer=1", "postfix=3"]);
    assert_eq!(
        got[0].depends,
        ["postfix"],
        "the virtual name resolves to its provider"
    );
    assert_eq!(
        chosen(&f.resolve(&["needs-versioned"]).unwrap()),
        ["needs-versioned=1", "new-impl=1"]
    );
}

#[test]
fn conflicts_and_breaks_steer_the_choice() {
    let f = Fixture::new(&[
        Deb::new("app", "1").depends("impl-a | impl-b, helper"),
        Deb::new("impl-a", "1"),
        Deb::new("impl-b", "1"),
        Deb::new("helper", "1").field("Conflicts", "impl-a"),
        Deb::new("tool", "1").depends("lib"),
        Deb::new("lib", "1"),
        Deb::new("lib", "2").field("Breaks", "tool (<< 2)"),
    ]);
    assert_eq!(
        chosen(&f.resolve(&["app"]).unwrap()),
        ["app=1", "helper=1", "impl-b=1"],
        "Conflicts rule out the first alternative"
    );
    assert_eq!(
        chosen(&f.resolve(&["tool"]).unwrap()),
        ["lib=1", "tool=1"],
        "Breaks rule out the newer lib"
    );
}

#[test]
fn pre_depends_are_hard_and_reported() {
    let f = Fixture::new(&[
        Deb::new("app", "1")
            .field("Pre-Depends", "early (>= 1)")
            .depends("late"),
        Deb::new("early", "1"),
        Deb::new("late", "1"),
    ]);
    let got = f.resolve(&["app"]).unwrap();
    assert_eq!(chosen(&got), ["app=1", "early=1", "late=1"]);
    assert_eq!(got[0].pre_depends, ["early"]);
    assert_eq!(got[0].depends, ["late"]);
}

#[test]
fn essential_and_required_packages_are_always_installed() {
    let f = Fixture::new(&[
        Deb::new("app", "1"),
        Deb::new("base-files", "1")
            .field("Essential", "yes")
            .depends("base-dep"),
        Deb::new("base-dep", "1"),
        Deb::new("apt", "1").field("Priority", "required"),
        Deb::new("nice", "1").field("Priority", "important"),
    ]);
    let got = f.resolve(&["app"]).unwrap();
    assert_eq!(
        chosen(&got),
        ["app=1", "apt=1", "base-dep=1", "base-files=1"]
    );
    assert!(got[3].essential);
    assert_eq!(got[1].priority, "required");
}

#[test]
fn missing_package_error_names_it_and_the_repository() {
    let f = Fixture::new(&[Deb::new("app", "1")]);
    let e = f.resolve(&["nosuch"]).unwrap_err();
    assert_eq!(e.to_string(), "nosuch: no such package in test (keel main)");
}

#[test]
fn unsatisfiable_dependency_names_the_chain() {
    let f = Fixture::new(&[
        Deb::new("podman", "1").depends("conmon"),
        Deb::new("conmon", "1").depends("libfoo (>= 2)"),
        Deb::new("libfoo", "1"),
        Deb::new("uses-ghost", "1").depends("ghost"),
    ]);
    let e = f.resolve(&["podman"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "podman -> conmon -> libfoo (>= 2): only libfoo 1 available in test (keel main)"
    );
    let e = f.resolve(&["uses-ghost"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "uses-ghost -> ghost: no such package in test (keel main)"
    );
}

#[test]
fn conflicting_request_names_both_packages() {
    let f = Fixture::new(&[
        Deb::new("left", "1").field("Conflicts", "right"),
        Deb::new("right", "1"),
    ]);
    let e = f.resolve(&["left", "right"]).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, DepsolveError::Conflict { .. }), "{text}");
    assert!(text.starts_with("left 1 conflicts with right 1"), "{text}");
}

#[test]
fn exclude_removes_candidates_and_names_who_needed_them() {
    let f = Fixture::new(&[
        Deb::new("app", "1").depends("impl-a | impl-b"),
        Deb::new("impl-a", "1"),
        Deb::new("impl-b", "1"),
        Deb::new("strict", "1").depends("impl-a"),
    ]);
    let universe = f.load().unwrap();
    let mut req = request(&["app"]);
    req.exclude = vec!["impl-a".into()];
    assert_eq!(
        chosen(&apt::resolve(&universe, &req).unwrap()),
        ["app=1", "impl-b=1"]
    );
    req.packages = vec!["strict".into()];
    let e = apt::resolve(&universe, &req).unwrap_err();
    assert_eq!(
        e.to_string(),
        "strict -> impl-a: impl-a is excluded by the request"
    );
}

#[test]
fn recommends_only_when_requested_and_only_if_installable() {
    let f = Fixture::new(&[
        Deb::new("app", "1").field("Recommends", "extra, ghost"),
        Deb::new("extra", "1").field("Recommends", "extra-extra"),
        Deb::new("extra-extra", "1"),
    ]);
    let universe = f.load().unwrap();
    let mut req = request(&["app"]);
    assert_eq!(chosen(&apt::resolve(&universe, &req).unwrap()), ["app=1"]);
    req.recommends = true;
    assert_eq!(
        chosen(&apt::resolve(&universe, &req).unwrap()),
        ["app=1", "extra=1", "extra-extra=1"]
    );
}

#[test]
fn signature_by_another_key_fails_naming_the_repository() {
    let f = Fixture::new(&[Deb::new("app", "1")]);
    let intruder = SigningKey::generate("intruder").unwrap();
    f.repo.publish_signed_by(&intruder).unwrap();
    let e = f.load().unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, AptError::BadSignature { .. }), "{text}");
    assert!(
        text.contains(f.server.url()) && text.contains("suite keel"),
        "{text}"
    );
    assert!(
        text.contains(&f.repo.keyring().display().to_string()),
        "{text}"
    );
    assert!(text.contains("Signed-By"), "{text}");
}

#[test]
fn armored_keyrings_verify_too() {
    let f = Fixture::new(&[Deb::new("app", "1")]);
    let asc = f.scratch.path().join("key.asc");
    f.repo.key().export(&asc, true).unwrap();
    let universe = apt::load(&[f.spec(&asc)], &[], "amd64", &f.cache.indices(), &Discard).unwrap();
    assert_eq!(universe.packages().len(), 1);
}

#[test]
fn tampered_packages_file_fails_naming_the_file_and_hashes() {
    let f = Fixture::new(&[Deb::new("app", "1")]);
    let gz = f.repo.index_dir().join("Packages.gz");
    let mut bytes = std::fs::read(&gz).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&gz, &bytes).unwrap();
    let e = f.load().unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, AptError::HashMismatch { .. }), "{text}");
    assert!(
        text.contains("/dists/keel/main/binary-amd64/Packages.gz"),
        "{text}"
    );
    assert!(
        text.contains(&keel_compose::apt::index::sha256_hex(&bytes)),
        "{text}"
    );
}

#[test]
fn unchanged_inrelease_reuses_cached_packages() {
    let f = Fixture::new(&[Deb::new("app", "1")]);
    f.load().unwrap();
    // Index files only: `dates/` beside them records the suite's Date (replay protection).
    let cached = std::fs::read_dir(f.cache.indices())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_file())
        .count();
    assert_eq!(
        cached, 3,
        "the verified InRelease, Packages.gz and its decompressed text"
    );
    f.server.reset_counters();
    f.load().unwrap();
    assert_eq!(f.server.requests(), ["/dists/keel/InRelease"]);
    // A new publication changes InRelease and the index is fetched again.
    f.repo.add(&[Deb::new("app", "2")]).unwrap();
    f.repo.publish().unwrap();
    f.server.reset_counters();
    let universe = f.load().unwrap();
    assert_eq!(universe.packages().len(), 2);
    assert!(f.server.requests().iter().any(|r| r.contains("Packages")));
}

#[test]
fn local_packages_win_only_with_a_higher_version() {
    let f = Fixture::new(&[Deb::new("tool", "2.0"), Deb::new("other", "1.0")]);
    let local_dir = tempfile::tempdir().unwrap();
    Deb::new("tool", "2.1").build(local_dir.path()).unwrap();
    Deb::new("other", "0.9").build(local_dir.path()).unwrap();
    let local = LocalRepo {
        name: "overlay".into(),
        path: local_dir.path().to_path_buf(),
    };
    let spec = f.spec(f.repo.keyring());
    let universe = apt::load(&[spec], &[local], "amd64", &f.cache.indices(), &Discard).unwrap();
    let got = apt::resolve(&universe, &request(&["tool", "other"])).unwrap();
    assert_eq!(chosen(&got), ["other=1.0", "tool=2.1"]);
    assert_eq!(got[1].repo, "overlay");
    assert_eq!(
        got[1].source,
        PackageSource::Path(local_dir.path().join("tool_2.1_amd64.deb"))
    );
    assert_eq!(got[0].repo, "test");
}

#[test]
fn a_missing_compressed_index_falls_back_to_the_next_listed_one() {
    let f = Fixture::new(&[Deb::new("app", "1")]);
    f.server.inject("Packages.gz", Fault::Status(404));
    let universe = f.load().unwrap();
    assert_eq!(universe.packages().len(), 1);
    let requests = f.server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.ends_with("/binary-amd64/Packages")),
        "{requests:?}"
    );
}

#[test]
fn a_repository_that_is_down_is_named() {
    let f = Fixture::new(&[Deb::new("app", "1")]);
    f.server.inject("InRelease", Fault::Status(503));
    let e = f.load().unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&format!("{}/dists/keel/InRelease", f.server.url())),
        "{text}"
    );
    assert!(text.contains("503"), "{text}");
}

// The resolution cache (`keel_compose::resolve_cache`): same inputs, same answer, without
// parsing the indices; any changed input is a miss; the signature is checked every time.

fn cached(f: &Fixture, packages: &[&str], locals: &[LocalRepo]) -> anyhow::Result<Resolution> {
    resolve_cache::resolve(
        &resolve_cache::Sources {
            specs: &[f.spec(f.repo.keyring())],
            locals,
            arch: "amd64",
        },
        &f.cache,
        &request(packages),
        None,
        &Default::default(),
        &Discard,
    )
}

fn cache_entries(f: &Fixture) -> Vec<std::path::PathBuf> {
    let dir = f.cache.resolutions();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

#[test]
fn resolve_cache_hits_on_the_same_inputs_and_misses_on_a_new_publication() {
    let f = Fixture::new(&[Deb::new("app", "1").depends("lib"), Deb::new("lib", "1")]);
    let first = cached(&f, &["app"], &[]).unwrap();
    assert!(!first.cache_hit);
    assert_eq!(chosen(&first.packages), ["app=1", "lib=1"]);
    assert_eq!(cache_entries(&f).len(), 1);

    f.server.reset_counters();
    let second = cached(&f, &["app"], &[]).unwrap();
    assert!(second.cache_hit);
    assert_eq!(second.packages, first.packages);
    assert_eq!(
        f.server.requests(),
        ["/dists/keel/InRelease"],
        "a hit still fetches InRelease, and nothing else"
    );

    // A new version, published and re-signed: the listed Packages hashes change.
    f.repo.add(&[Deb::new("lib", "2")]).unwrap();
    f.repo.publish().unwrap();
    let third = cached(&f, &["app"], &[]).unwrap();
    assert!(!third.cache_hit);
    assert_eq!(chosen(&third.packages), ["app=1", "lib=2"]);
    assert!(cached(&f, &["app"], &[]).unwrap().cache_hit);
    assert_eq!(cache_entries(&f).len(), 2);
}

#[test]
fn resolve_cache_misses_on_a_changed_request_and_keeps_its_errors() {
    let f = Fixture::new(&[
        Deb::new("app", "1").field("Recommends", "extra"),
        Deb::new("extra", "1"),
    ]);
    assert!(!cached(&f, &["app"], &[]).unwrap().cache_hit);
    let other = cached(&f, &["extra"], &[]).unwrap();
    assert!(!other.cache_hit);
    assert_eq!(chosen(&other.packages), ["extra=1"]);
    let with_recommends = resolve_cache::resolve(
        &resolve_cache::Sources {
            specs: &[f.spec(f.repo.keyring())],
            locals: &[],
            arch: "amd64",
        },
        &f.cache,
        &Request {
            recommends: true,
            ..request(&["app"])
        },
        None,
        &Default::default(),
        &Discard,
    )
    .unwrap();
    assert!(!with_recommends.cache_hit);
    assert_eq!(chosen(&with_recommends.packages), ["app=1", "extra=1"]);
    // An unknown package fails as without a cache, every time, and stores nothing.
    for _ in 0..2 {
        let e = cached(&f, &["nosuch"], &[]).unwrap_err();
        assert_eq!(
            e.downcast_ref::<DepsolveError>().map(|e| e.to_string()),
            Some("nosuch: no such package in test (keel main)".to_string()),
            "{e:#}"
        );
    }
    assert_eq!(cache_entries(&f).len(), 3);
}

#[test]
fn resolve_cache_still_checks_the_signature_of_inrelease() {
    let f = Fixture::new(&[Deb::new("app", "1")]);
    assert!(!cached(&f, &["app"], &[]).unwrap().cache_hit);
    assert!(cached(&f, &["app"], &[]).unwrap().cache_hit);
    // The same indices, signed by someone else: the cached entry must not be used.
    let intruder = SigningKey::generate("intruder").unwrap();
    f.repo.publish_signed_by(&intruder).unwrap();
    let e = cached(&f, &["app"], &[]).unwrap_err();
    let text = format!("{e:#}");
    assert!(
        matches!(
            e.downcast_ref::<AptError>(),
            Some(AptError::BadSignature { .. })
        ),
        "{text}"
    );
    assert!(text.contains("Signed-By"), "{text}");
    // Back to the right key, then a body edited after signing.
    f.repo.publish().unwrap();
    assert!(cached(&f, &["app"], &[]).unwrap().cache_hit);
    let inrelease = f.repo.root().join("dists/keel/InRelease");
    let text = std::fs::read_to_string(&inrelease).unwrap();
    let tampered = text.replacen("Suite: keel", "Suite: kee1", 1);
    assert_ne!(tampered, text, "the fixture's InRelease names its suite");
    std::fs::write(&inrelease, tampered).unwrap();
    let e = cached(&f, &["app"], &[]).unwrap_err();
    assert!(
        matches!(
            e.downcast_ref::<AptError>(),
            Some(AptError::BadSignature { .. })
        ),
        "{e:#}"
    );
}

#[test]
fn resolve_cache_treats_a_corrupt_entry_as_a_miss() {
    let f = Fixture::new(&[Deb::new("app", "1")]);
    let first = cached(&f, &["app"], &[]).unwrap();
    let entries = cache_entries(&f);
    assert_eq!(entries.len(), 1);
    std::fs::write(&entries[0], b"{\"format\": 1, \"packa").unwrap();
    let again = cached(&f, &["app"], &[]).unwrap();
    assert!(!again.cache_hit);
    assert_eq!(again.packages, first.packages);
    assert!(cached(&f, &["app"], &[]).unwrap().cache_hit, "rewritten");
}

#[test]
fn resolve_cache_misses_when_a_local_deb_is_rebuilt_with_other_content() {
    let f = Fixture::new(&[Deb::new("other", "1")]);
    let local_dir = tempfile::tempdir().unwrap();
    let local = LocalRepo {
        name: "overlay".into(),
        path: local_dir.path().to_path_buf(),
    };
    let tool = |content: &str| Deb::new("tool", "1.0").file("/usr/share/tool/data", content);
    let built = tool("first").build(local_dir.path()).unwrap();
    let first = cached(&f, &["tool"], std::slice::from_ref(&local)).unwrap();
    assert!(!first.cache_hit);
    assert!(
        cached(&f, &["tool"], std::slice::from_ref(&local))
            .unwrap()
            .cache_hit
    );

    // Same name, version and file name; different bytes.
    let rebuilt = tool("second, longer").build(local_dir.path()).unwrap();
    assert_eq!(rebuilt, built);
    let second = cached(&f, &["tool"], std::slice::from_ref(&local)).unwrap();
    assert!(!second.cache_hit);
    let sha = keel_compose::apt::index::sha256_hex(&std::fs::read(&rebuilt).unwrap());
    assert_eq!(second.packages[0].sha256, sha);
    assert_ne!(second.packages[0].sha256, first.packages[0].sha256);
}

#[test]
fn resolve_cache_keys_locked_resolutions_on_the_lockfile() {
    let f = Fixture::new(&[Deb::new("app", "1").depends("lib"), Deb::new("lib", "1")]);
    let locked = |lock: &Lockfile| {
        let path = f.scratch.path().join("test.lock.json");
        resolve_cache::resolve(
            &resolve_cache::Sources {
                specs: &[f.spec(f.repo.keyring())],
                locals: &[],
                arch: "amd64",
            },
            &f.cache,
            &request(&["app"]),
            Some(&(lock.clone(), path)),
            &Default::default(),
            &Discard,
        )
    };
    let unlocked = cached(&f, &["app"], &[]).unwrap();
    let lock = Lockfile::from_resolved("keel/test", &unlocked.packages);
    let first = locked(&lock).unwrap();
    assert!(!first.cache_hit, "a lockfile is an input of its own");
    assert_eq!(first.packages, unlocked.packages);
    assert!(locked(&lock).unwrap().cache_hit);

    // A newer lib is published; the lockfile still holds lib 1 and is still honoured.
    f.repo.add(&[Deb::new("lib", "2")]).unwrap();
    f.repo.publish().unwrap();
    let relocked = locked(&lock).unwrap();
    assert!(!relocked.cache_hit);
    assert_eq!(chosen(&relocked.packages), ["app=1", "lib=1"]);
    // A lockfile naming a package that is not there fails as without a cache.
    let mut gone = lock.clone();
    gone.packages[1].version = "9".into();
    let e = locked(&gone).unwrap_err();
    assert!(format!("{e:#}").contains("is gone from the repos"), "{e:#}");
}

// The decompressed text of a compressed index is kept in the cache under the hash InRelease
// lists for the uncompressed `Packages`, and used only while it matches that hash.

/// Makes the fixture's repository serve only `Packages.xz`, while its InRelease still lists
/// `Packages` and `Packages.gz` (as Debian's does).
fn serve_only_xz(f: &Fixture) {
    let dir = f.repo.index_dir();
    let status = std::process::Command::new("xz")
        .args(["-k", "-f"])
        .arg(dir.join("Packages"))
        .status()
        .unwrap();
    assert!(status.success());
    f.repo.publish().unwrap();
    let inrelease = std::fs::read_to_string(f.repo.root().join("dists/keel/InRelease")).unwrap();
    assert!(
        inrelease.contains("main/binary-amd64/Packages.xz"),
        "{inrelease}"
    );
    std::fs::remove_file(dir.join("Packages")).unwrap();
    std::fs::remove_file(dir.join("Packages.gz")).unwrap();
}

/// The cache file holding the decompressed `Packages` text (named by its listed sha256).
fn kept_text(f: &Fixture) -> std::path::PathBuf {
    let inrelease = std::fs::read_to_string(f.repo.root().join("dists/keel/InRelease")).unwrap();
    let sha256 = inrelease
        .lines()
        .skip_while(|l| !l.starts_with("SHA256:"))
        .find(|l| l.trim_end().ends_with(" main/binary-amd64/Packages"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let url = format!("{}/dists/keel/main/binary-amd64/Packages", f.server.url());
    keel_compose::apt::index::cache_path(&f.cache.indices(), &url, &sha256)
}

#[test]
fn an_xz_only_repository_is_read_from_the_kept_text_the_second_time() {
    let f = Fixture::new(&[Deb::new("app", "1"), Deb::new("lib", "2")]);
    serve_only_xz(&f);
    f.server.reset_counters();
    assert_eq!(f.load().unwrap().packages().len(), 2);
    let requests = f.server.requests();
    assert_eq!(
        requests,
        [
            "/dists/keel/InRelease",
            "/dists/keel/main/binary-amd64/Packages.xz"
        ]
    );
    let kept = kept_text(&f);
    assert!(kept.exists(), "{} was not written", kept.display());
    // Without the cached .xz, only the kept text can give the packages.
    for entry in std::fs::read_dir(f.cache.indices()).unwrap() {
        let path = entry.unwrap().path();
        if path != kept && path.is_file() {
            std::fs::remove_file(path).unwrap();
        }
    }
    f.server.reset_counters();
    let universe = f.load().unwrap();
    assert_eq!(f.server.requests(), ["/dists/keel/InRelease"]);
    assert_eq!(universe.by_name("app").len(), 1);
    assert_eq!(universe.by_name("lib").len(), 1);
}

#[test]
fn a_tampered_kept_text_is_not_used_and_is_rewritten() {
    let f = Fixture::new(&[Deb::new("app", "1")]);
    serve_only_xz(&f);
    f.load().unwrap();
    let kept = kept_text(&f);
    let real = std::fs::read_to_string(&kept).unwrap();
    // Same name and size, another package: a tampered or corrupted cache.
    let evil = real.replace("Package: app", "Package: evl");
    assert_eq!(evil.len(), real.len());
    std::fs::write(&kept, &evil).unwrap();
    let universe = f.load().unwrap();
    assert_eq!(universe.by_name("app").len(), 1);
    assert!(universe.by_name("evl").is_empty());
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), real);
}
