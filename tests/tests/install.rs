//! Fetching, sandboxing and installing packages, with tiny test packages served on loopback.
//!
//! The test trees carry no programs of their own: [`Sandbox::with_host_usr`] lends them the
//! host's `/usr` read-only (dpkg, a shell, coreutils), so the test packages ship their files
//! outside `/usr` (`/opt`, `/etc`, `/var`).

use keel_common::cancel::Cancel;
use keel_common::progress::Discard;
use keel_compose::cachedir::CacheDir;
use keel_compose::fetch::{cache_path, FetchError};
use keel_compose::install::{install_with, InstallError, PackageCache};
use keel_compose::package::{PackageSource, ResolvedPackage};
use keel_compose::sandbox::Sandbox;
use keel_tests::deb::Deb;
use keel_tests::http::FileServer;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Builds `deb` into `dir` and describes it as the resolver would.
fn resolved(deb: &Deb, dir: &Path, base_url: Option<&str>) -> ResolvedPackage {
    let path = deb.build(dir).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let field = |key: &str| -> Vec<String> {
        deb.fields
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| {
                v.split(',')
                    .map(|d| d.split_whitespace().next().unwrap_or("").to_string())
            })
            .collect()
    };
    ResolvedPackage {
        name: deb.name.clone(),
        version: deb.version.clone(),
        arch: deb.arch.clone(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        size: bytes.len() as u64,
        source: match base_url {
            Some(url) => PackageSource::Url(format!("{url}/{}", deb.file_name())),
            None => PackageSource::Path(path),
        },
        repo: "test".into(),
        essential: deb
            .fields
            .iter()
            .any(|(k, v)| k == "Essential" && v == "yes"),
        priority: "optional".into(),
        pre_depends: field("Pre-Depends"),
        depends: field("Depends"),
    }
}

/// Fetches with a client from the environment, no progress sink and no cancellation.
fn fetch(
    packages: &[ResolvedPackage],
    cachedir: &Path,
    jobs: usize,
) -> Result<Vec<PathBuf>, FetchError> {
    let client = keel_io::http::Client::from_env().unwrap();
    keel_compose::fetch::fetch(&client, packages, cachedir, jobs, &Discard, &Cancel::new())
}

fn sandbox(root: &Path) -> Sandbox {
    Sandbox::new(root).with_host_usr()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

fn small_debs() -> Vec<Deb> {
    (0..6)
        .map(|i| {
            Deb::new(&format!("pkg{i}"), "1.0")
                .file(&format!("/opt/pkg{i}/data"), vec![i as u8; 2000 + i * 100])
        })
        .collect()
}

#[test]
fn fetch_in_parallel_fills_the_cache_and_reuses_it() {
    let served = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = FileServer::serve(served.path()).unwrap();
    let packages: Vec<_> = small_debs()
        .iter()
        .map(|d| resolved(d, served.path(), Some(server.url())))
        .collect();
    let paths = fetch(&packages, cache.path(), 4).unwrap();
    for (p, path) in packages.iter().zip(&paths) {
        assert_eq!(*path, cache_path(cache.path(), &p.sha256));
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), p.sha256);
    }
    let total: u64 = packages.iter().map(|p| p.size).sum();
    assert_eq!(server.bytes_sent(), total);
    assert_eq!(server.requests().len(), packages.len());

    server.reset_counters();
    assert_eq!(fetch(&packages, cache.path(), 4).unwrap(), paths);
    assert_eq!(server.bytes_sent(), 0, "a second fetch must use the cache");
}

#[test]
fn tampered_deb_fails_naming_the_package_and_both_hashes_and_leaves_nothing() {
    let served = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = FileServer::serve(served.path()).unwrap();
    let deb = Deb::new("victim", "1.0").file("/opt/victim", "good");
    let package = resolved(&deb, served.path(), Some(server.url()));
    let on_server = served.path().join(deb.file_name());
    let mut bytes = std::fs::read(&on_server).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&on_server, &bytes).unwrap();
    let actual = hex::encode(Sha256::digest(&bytes));

    let err = fetch(std::slice::from_ref(&package), cache.path(), 2).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, FetchError::Checksum { .. }), "{text}");
    assert!(text.contains("victim"), "{text}");
    assert!(text.contains(&package.sha256), "{text}");
    assert!(text.contains(&actual), "{text}");
    assert!(text.contains(server.url()), "{text}");
    assert_eq!(
        files_in(cache.path()),
        Vec::<PathBuf>::new(),
        "no partial file may stay"
    );
}

#[test]
fn corrupted_cached_file_is_detected_and_fetched_again() {
    let served = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = FileServer::serve(served.path()).unwrap();
    let package = resolved(
        &Deb::new("fragile", "1.0").file("/opt/f", "x"),
        served.path(),
        Some(server.url()),
    );
    let paths = fetch(std::slice::from_ref(&package), cache.path(), 1).unwrap();
    std::fs::write(&paths[0], b"bit rot").unwrap();
    server.reset_counters();

    let again = fetch(std::slice::from_ref(&package), cache.path(), 1).unwrap();
    assert_eq!(
        server.requests().len(),
        1,
        "the corrupt copy must be fetched again"
    );
    let bytes = std::fs::read(&again[0]).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), package.sha256);
}

#[test]
fn local_debs_enter_the_cache_and_server_errors_name_the_url() {
    let local = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let package = resolved(
        &Deb::new("local", "1.0").file("/opt/l", "x"),
        local.path(),
        None,
    );
    let paths = fetch(std::slice::from_ref(&package), cache.path(), 1).unwrap();
    assert_eq!(paths[0], cache_path(cache.path(), &package.sha256));

    let served = tempfile::tempdir().unwrap();
    let server = FileServer::serve(served.path()).unwrap();
    let mut missing = resolved(&Deb::new("gone", "1.0"), served.path(), Some(server.url()));
    missing.source = PackageSource::Url(format!("{}/nothing-here.deb", server.url()));
    let err = fetch(&[missing], cache.path(), 1).unwrap_err().to_string();
    assert!(
        err.contains("gone") && err.contains("nothing-here.deb") && err.contains("404"),
        "{err}"
    );
}

/// A small distribution: an Essential base, a pre-dependency whose postinst must have run before
/// its dependent is unpacked, a file trigger, and a package without scripts (cacheable).
fn distribution() -> Vec<Deb> {
    vec![
        // Like libc-bin with its ldconfig trigger.
        Deb::new("base", "1")
            .field("Essential", "yes")
            .file("/etc/keel-base.conf", "base\n")
            .script("triggers", "interest-noawait keel-ldconfig\n")
            .script(
                "postinst",
                "#!/bin/sh\nset -e\nmkdir -p /var/lib/keel\n\
                 if [ \"$1\" = triggered ]; then echo \"$2\" >> /var/lib/keel/base-triggered; exit 0; fi\n\
                 echo base >> /var/lib/keel/configured\n",
            ),
        // Like a shared library: no scripts, only `activate-noawait ldconfig`.
        Deb::new("libthing1", "1")
            .depends("base")
            .file("/opt/lib/libthing.so.1", "ELF")
            .script("triggers", "# added by a helper\nactivate-noawait keel-ldconfig\n"),
        Deb::new("helper", "1").depends("base").script(
            "postinst",
            "#!/bin/sh\nset -e\nmkdir -p /var/lib/keel\necho helper > /var/lib/keel/helper-ready\n",
        ),
        Deb::new("app", "2")
            .field("Pre-Depends", "helper")
            .file("/opt/app/bin", "#!/bin/sh\n")
            .script(
                "preinst",
                "#!/bin/sh\n[ -e /var/lib/keel/helper-ready ] || { echo 'helper not configured'; exit 1; }\n",
            )
            .script("postinst", "#!/bin/sh\nset -e\necho app > /var/lib/keel/app-configured\n"),
        Deb::new("watcher", "1")
            .script("triggers", "interest /opt/watched\n")
            .script(
                "postinst",
                "#!/bin/sh\nset -e\nif [ \"$1\" = triggered ]; then echo \"$2\" >> /var/lib/keel/trigger-ran; fi\n",
            ),
        // Pre-Depends, so watcher is configured when feeder's files arrive: dpkg runs no trigger
        // for a package it configures in the same run anyway.
        Deb::new("feeder", "1").field("Pre-Depends", "watcher").file("/opt/watched/feed", "food"),
        Deb::new("plain", "3").file("/opt/plain/data.txt", "plain data\n").file("/etc/plain/settings", "x=1\n"),
    ]
}

fn dpkg_status(root: &Path) -> String {
    sandbox(root)
        .run(
            &[
                "dpkg-query",
                "--show",
                "--showformat=${Package} ${db:Status-Abbrev}\\n",
            ],
            "listing",
        )
        .unwrap()
}

#[test]
fn install_configures_everything_runs_postinst_and_triggers() {
    let debs_dir = tempfile::tempdir().unwrap();
    let packages: Vec<_> = distribution()
        .iter()
        .map(|d| resolved(d, debs_dir.path(), None))
        .collect();
    let cachedir = tempfile::tempdir().unwrap();
    let debs = fetch(&packages, cachedir.path(), 4).unwrap();
    let root = tempfile::tempdir().unwrap();

    let report = install_with(
        &sandbox(root.path()),
        &packages,
        &debs,
        &PackageCache::disabled(),
    )
    .unwrap();
    assert_eq!(report.packages, 7);
    assert_eq!(report.essential, 1);

    let status = dpkg_status(root.path());
    for p in &packages {
        assert!(
            status.contains(&format!("{} ii ", p.name)),
            "{} not ii in:\n{status}",
            p.name
        );
    }
    let keel = root.path().join("var/lib/keel");
    assert_eq!(
        std::fs::read_to_string(keel.join("configured")).unwrap(),
        "base\n"
    );
    assert!(
        keel.join("app-configured").exists(),
        "app's postinst did not run"
    );
    let activated = std::fs::read_to_string(keel.join("base-triggered")).unwrap();
    // At unpack and again at configure, depending on when dpkg processes triggers.
    assert!(
        activated.lines().next().is_some(),
        "libthing1 activated nothing"
    );
    assert!(
        activated.lines().all(|l| l == "keel-ldconfig"),
        "{activated}"
    );
    let triggered = std::fs::read_to_string(keel.join("trigger-ran")).unwrap();
    assert!(triggered.contains("/opt/watched"), "{triggered}");
    assert_eq!(
        std::fs::read_to_string(root.path().join("opt/watched/feed")).unwrap(),
        "food"
    );
    assert!(
        !root.path().join("usr/sbin/policy-rc.d").exists(),
        "policy-rc.d must be removed"
    );
    assert!(
        !root.path().join("run/keel-debs").exists(),
        "the debs must not stay in the tree"
    );
}

#[test]
fn failing_postinst_names_the_package_and_script_and_shows_the_output() {
    let debs_dir = tempfile::tempdir().unwrap();
    let bad = Deb::new("broken", "1").script(
        "postinst",
        "#!/bin/sh\necho 'the-broken-postinst-was-here'\nexit 3\n",
    );
    let packages = vec![resolved(&bad, debs_dir.path(), None)];
    let debs: Vec<PathBuf> = vec![debs_dir.path().join(bad.file_name())];
    let root = tempfile::tempdir().unwrap();
    let err = install_with(
        &sandbox(root.path()),
        &packages,
        &debs,
        &PackageCache::disabled(),
    )
    .unwrap_err();
    let text = err.to_string();
    match &err {
        InstallError::Script {
            package,
            script,
            status,
            ..
        } => {
            assert_eq!(package, "broken");
            assert_eq!(*script, "postinst");
            assert!(status.contains("exit status 3"), "{status}");
        }
        other => panic!("want a script error, got {other:?}"),
    }
    assert!(text.contains("the-broken-postinst-was-here"), "{text}");
}

#[test]
fn sandbox_has_no_network_and_does_not_see_the_host_tmp() {
    let root = tempfile::tempdir().unwrap();
    for link in ["bin", "sbin", "lib", "lib64"] {
        std::os::unix::fs::symlink(format!("usr/{link}"), root.path().join(link)).unwrap();
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
    let host = std::process::Command::new("bash")
        .args(["-c", &connect])
        .status()
        .unwrap();
    assert!(host.success(), "the host itself must reach the listener");
    let err = sandbox(root.path())
        .run(&["bash", "-c", &connect], "connecting out")
        .unwrap_err();
    assert!(err.to_string().contains("connecting out"), "{err}");

    let links = sandbox(root.path())
        .run(&["ip", "-o", "link"], "listing links")
        .unwrap();
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(str::trim)
        .collect();
    assert_eq!(names, vec!["lo"], "{links}");

    let marker = std::env::temp_dir().join(format!("keel-marker-{}", std::process::id()));
    std::fs::write(&marker, "host").unwrap();
    let check = format!("test ! -e {} && echo unseen", marker.display());
    let out = sandbox(root.path()).run(&["sh", "-c", &check], "looking for the marker");
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(out.unwrap().trim(), "unseen");
}

#[test]
fn warm_install_places_cached_script_free_packages_and_dpkg_accepts_them() {
    let debs_dir = tempfile::tempdir().unwrap();
    let packages: Vec<_> = distribution()
        .iter()
        .map(|d| resolved(d, debs_dir.path(), None))
        .collect();
    let cachedir = tempfile::tempdir().unwrap();
    let cachedir = CacheDir::open(cachedir.path(), &Discard).unwrap();
    let debs = fetch(&packages, &cachedir.debs(), 4).unwrap();
    let cache = cachedir.package_cache().unwrap();

    let cold = tempfile::tempdir().unwrap();
    let report = install_with(&sandbox(cold.path()), &packages, &debs, &cache).unwrap();
    assert!(report.from_cache.is_empty());
    // Only the packages without maintainer scripts are cacheable: libthing1, feeder and plain.
    assert_eq!(report.cached, 3, "{report:?}");
    let plain = packages.iter().find(|p| p.name == "plain").unwrap();
    assert!(cache.contains(&plain.sha256));

    let warm = tempfile::tempdir().unwrap();
    let report = install_with(&sandbox(warm.path()), &packages, &debs, &cache).unwrap();
    // feeder is not placed: watcher's file trigger is interested in its files.
    assert_eq!(report.from_cache, vec!["libthing1", "plain"], "{report:?}");
    assert_eq!(report.cached, 0);
    // Configuring the placed libthing1 activated base's trigger, as unpacking it does.
    let activated =
        std::fs::read_to_string(warm.path().join("var/lib/keel/base-triggered")).unwrap();
    assert!(
        activated.lines().next().is_some(),
        "libthing1 activated nothing"
    );
    assert!(
        activated.lines().all(|l| l == "keel-ldconfig"),
        "{activated}"
    );
    let status = dpkg_status(warm.path());
    for p in &packages {
        assert!(
            status.contains(&format!("{} ii ", p.name)),
            "{} not ii in:\n{status}",
            p.name
        );
    }
    assert_eq!(
        std::fs::read_to_string(warm.path().join("opt/plain/data.txt")).unwrap(),
        "plain data\n"
    );
    let listed = sandbox(warm.path())
        .run(&["dpkg", "-L", "plain"], "listing plain")
        .unwrap();
    assert!(listed.contains("/opt/plain/data.txt"), "{listed}");
    let verify = sandbox(warm.path())
        .run(&["dpkg", "--verify", "plain"], "verifying plain")
        .unwrap();
    assert_eq!(verify.trim(), "", "dpkg --verify found differences");
    assert!(
        std::fs::read_to_string(warm.path().join("var/lib/keel/trigger-ran"))
            .unwrap()
            .contains("/opt/watched")
    );
}

fn test_cache() -> PathBuf {
    std::env::var_os("KEEL_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/keel-tests"))
        .join("install")
}

fn verify_all(root: &Path) -> String {
    // dpkg --verify exits 1 when it finds differences; the report itself is what we compare.
    match Sandbox::new(root).run(&["dpkg", "--verify"], "verifying all packages") {
        Ok(out) => out,
        Err(e) => e.output().unwrap_or_default().to_string(),
    }
}

/// Debian's required set (what mmdebstrap's `required` variant installs) from the machine's apt
/// sources: installed cold, then again warm from the package cache; both trees must pass the
/// same `dpkg --verify`.
#[test]
fn heavy_install_debian_required_set_cold_then_warm() {
    use keel_compose::apt;
    let cachedir = test_cache();
    let layout = CacheDir::open(&cachedir, &Discard).unwrap();
    let specs = apt::machine_sources(Path::new("/etc/apt/sources.list.d")).unwrap();
    let universe = apt::load(&specs, &[], "amd64", &layout.indices(), &Discard).unwrap();
    let packages = apt::resolve(&universe, &apt::Request::default()).unwrap();
    let debs = fetch(&packages, &layout.debs(), 4).unwrap();
    let pkgcache_dir = tempfile::tempdir_in(&cachedir).unwrap();
    let cache = PackageCache::open(pkgcache_dir.path()).unwrap();

    let cold = tempfile::tempdir_in(&cachedir).unwrap();
    let report = keel_compose::install::install(cold.path(), &packages, &debs, &cache).unwrap();
    eprintln!(
        "cold: {} packages ({} essential, {} rounds) in {:.1} s, {} cached, phases {:?}",
        report.packages,
        report.essential,
        report.rounds,
        report.seconds,
        report.cached,
        report.phases
    );
    assert!(report.cached > 0, "{report:?}");
    assert!(!cold.path().join("usr/sbin/policy-rc.d").exists());

    let warm = tempfile::tempdir_in(&cachedir).unwrap();
    let report = keel_compose::install::install(warm.path(), &packages, &debs, &cache).unwrap();
    eprintln!(
        "warm: {} packages in {:.1} s, phases {:?}, {} placed from the cache: {:?}",
        report.packages,
        report.seconds,
        report.phases,
        report.from_cache.len(),
        report.from_cache
    );
    assert!(!report.from_cache.is_empty(), "{report:?}");
    assert_eq!(verify_all(warm.path()), verify_all(cold.path()));
    for dir in ["usr", "etc", "var/lib/dpkg/info"] {
        let (cold_entries, warm_entries) = (entries(cold.path(), dir), entries(warm.path(), dir));
        let differ: Vec<_> = cold_entries
            .symmetric_difference(&warm_entries)
            .take(20)
            .collect();
        assert!(differ.is_empty(), "cold and warm {dir} differ: {differ:#?}");
    }
}

/// Path, type, mode, owner, size and link target of everything under `root/dir`.
fn entries(root: &Path, dir: &str) -> std::collections::BTreeSet<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeSet::new();
    let mut todo = vec![root.join(dir)];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let target = std::fs::read_link(&path)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        let size = if meta.is_file() { meta.len() } else { 0 };
        out.insert(format!(
            "{rel} {:o} {}:{} {size} {target}",
            meta.mode(),
            meta.uid(),
            meta.gid()
        ));
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out
}
