//! Hostile packages must never touch the build host (issue 9): archives with `..` and absolute
//! member names, a link then a write through it (in one package and across two, Essential and
//! not, base layer and top layer), hard links to host files, device nodes and setuid files.
//!
//! Every case ends either in an error that names the package or in a tree (and commit) without
//! the hostile entry outside it; and a canary directory on the host, plus every name the
//! packages aim at in the host's `/tmp`, are the same before and after. (Only those names of
//! `/tmp` are compared: the rest belongs to other processes on a shared build machine.)
//!
//! Like `install.rs`, the trees borrow the host's `/usr` read-only ([`Sandbox::with_host_usr`]),
//! so the packages ship their files under `/opt`.

use keel_common::cancel::Cancel;
use keel_common::progress::Discard;
use keel_compose::cachedir::CacheDir;
use keel_compose::commit::{self, CommitMetadata, LinkedTree};
use keel_compose::fetch::fetch;
use keel_compose::install::{base, install_over, install_with, InstallError};
use keel_compose::overlay::{self, Overlay, OverlayDirs};
use keel_compose::package::{PackageSource, ResolvedPackage};
use keel_compose::sandbox::Sandbox;
use keel_tests::deb::{Deb, Member};
use keel_tests::ostree_cli::ostree;
use ostree::gio;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Fetches into the cache directory's `.deb` store, with no progress and no cancellation.
fn fetch_all(packages: &[ResolvedPackage], cachedir: &CacheDir) -> Vec<PathBuf> {
    let client = keel_io::http::Client::from_env().unwrap();
    fetch(
        &client,
        packages,
        &cachedir.debs(),
        2,
        &Discard,
        &Cancel::new(),
    )
    .unwrap()
}

/// A name in the host's `/tmp` unique to this test run and case.
fn tmp_name(case: &str) -> String {
    format!("keel-hostile-{}-{case}", std::process::id())
}

/// Paths, types, modes, owners and content hashes of everything under `dir` (links not
/// followed), keyed by relative path.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        let what = if meta.is_symlink() {
            format!("link {}", std::fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            "dir".to_string()
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            format!("file {}", hex::encode(Sha256::digest(&bytes)))
        } else {
            "other".to_string()
        };
        let rel = path.strip_prefix(dir).unwrap().display().to_string();
        let line = format!(
            "{what} {:o} {}:{} nlink {}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.nlink()
        );
        out.insert(rel, line);
    }
    out
}

/// The host state a case must leave alone: a canary directory (holding a "secret" file the
/// packages aim hard links at) and the names in `/tmp` they aim at.
struct Host {
    canary: tempfile::TempDir,
    tmp_names: Vec<String>,
    before: (BTreeMap<String, String>, Vec<bool>),
}

impl Host {
    fn watch(tmp_names: &[&str]) -> Self {
        let canary = tempfile::Builder::new()
            .prefix("keel-canary-")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::create_dir(canary.path().join("sub")).unwrap();
        std::fs::write(canary.path().join("secret"), "host secret\n").unwrap();
        std::fs::write(canary.path().join("sub/file"), "keep me\n").unwrap();
        let mut host = Host {
            canary,
            tmp_names: tmp_names.iter().map(|n| n.to_string()).collect(),
            before: (BTreeMap::new(), Vec::new()),
        };
        host.before = host.state();
        host
    }

    fn path(&self) -> &Path {
        self.canary.path()
    }

    fn state(&self) -> (BTreeMap<String, String>, Vec<bool>) {
        let tmp = self
            .tmp_names
            .iter()
            .map(|n| Path::new("/tmp").join(n).symlink_metadata().is_ok())
            .collect();
        (snapshot(self.canary.path()), tmp)
    }

    fn assert_untouched(&self) {
        let after = self.state();
        assert_eq!(self.before.0, after.0, "the canary directory changed");
        for (name, existed) in self.tmp_names.iter().zip(&after.1) {
            assert!(!existed, "/tmp/{name} was written on the host");
        }
    }
}

fn resolved_from(deb: &Deb, path: PathBuf, repo: &str) -> ResolvedPackage {
    let bytes = std::fs::read(&path).unwrap();
    let depends = deb
        .fields
        .iter()
        .filter(|(k, _)| k == "Depends")
        .flat_map(|(_, v)| v.split(',').map(|d| d.trim().to_string()))
        .collect();
    ResolvedPackage {
        name: deb.name.clone(),
        version: deb.version.clone(),
        arch: deb.arch.clone(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        size: bytes.len() as u64,
        source: PackageSource::Path(path),
        repo: repo.into(),
        essential: deb
            .fields
            .iter()
            .any(|(k, v)| k == "Essential" && v == "yes"),
        priority: "optional".into(),
        pre_depends: Vec::new(),
        depends,
    }
}

/// A package whose filesystem archive is `data`, exactly.
fn raw(deb: Deb, data: &[Member], dir: &Path, repo: &str) -> ResolvedPackage {
    let path = deb.build_raw(dir, data).unwrap();
    resolved_from(&deb, path, repo)
}

fn essential(name: &str) -> Deb {
    Deb::new(name, "1").field("Essential", "yes")
}

/// `/opt/x -> target` in one package, and a big file then `/opt/x/NAME` in a second one
/// (the big file makes the second archive reach `/opt/x` after the first made the link, as in
/// the confirmed escape).
fn link_then_write(
    dir: &Path,
    target: &str,
    name: &str,
    make: fn(&str) -> Deb,
    repo: &str,
) -> Vec<ResolvedPackage> {
    let link = raw(
        make("hostile-a-link"),
        &[
            Member::dir("./"),
            Member::dir("./opt/"),
            Member::symlink("./opt/x", target),
        ],
        dir,
        repo,
    );
    let write = raw(
        make("hostile-b-write"),
        &[
            Member::dir("./"),
            Member::dir("./opt/"),
            Member::file("./opt/big", vec![0u8; 8 << 20], 0o644),
            Member::file(&format!("./opt/x/{name}"), "written by a package\n", 0o644),
        ],
        dir,
        repo,
    );
    vec![link, write]
}

/// Installs `packages` as the base layer installs them (Essential set extracted on the host
/// side, the rest through dpkg), with a package cache, into a new tree.
fn install(
    packages: &[ResolvedPackage],
    work: &Path,
) -> (
    PathBuf,
    Result<keel_compose::install::InstallReport, InstallError>,
) {
    let cachedir = CacheDir::open(&work.join("cache"), &Discard).unwrap();
    let debs = fetch_all(packages, &cachedir);
    let cache = cachedir.package_cache().unwrap();
    let mut n = 0;
    let root = loop {
        let root = work.join(format!("tree{n}"));
        if !root.exists() {
            break root;
        }
        n += 1;
    };
    std::fs::create_dir(&root).unwrap();
    let result = install_with(
        &Sandbox::new(&root).with_host_usr(),
        packages,
        &debs,
        &cache,
    );
    (root, result)
}

fn work() -> tempfile::TempDir {
    tempfile::tempdir_in("/var/tmp").unwrap()
}

/// The error a user sees (the chain, as `keel-compose` prints it); shown in the test's output.
fn error_text(result: Result<keel_compose::install::InstallReport, InstallError>) -> String {
    match result {
        Ok(_) => panic!("the install succeeded; want an error"),
        Err(e) => {
            let text = format!("{:#}", anyhow::Error::from(e));
            eprintln!("{text}");
            text
        }
    }
}

#[test]
fn essential_link_to_host_tmp_then_a_write_through_it_stays_in_the_tree() {
    // The confirmed escape: one Essential package ships `/opt/x -> /tmp`, a second one ships
    // `/opt/x/NAME`; the host-side extraction of the Essential set wrote NAME into the host's
    // /tmp.
    let work = work();
    let name = tmp_name("essential-across");
    let host = Host::watch(&[&name]);
    let packages = link_then_write(work.path(), "/tmp", &name, essential, "hostile");
    let (root, result) = install(&packages, work.path());
    host.assert_untouched();
    match result {
        // Inside the tree the link leads to the tree's own /tmp, as dpkg sees it in a chroot.
        Ok(_) => {
            assert!(root.join("tmp").join(&name).is_file());
            assert!(root.join("opt/x").symlink_metadata().unwrap().is_symlink());
        }
        Err(e) => assert_extraction_race(e),
    }
}

#[test]
fn essential_link_to_a_host_directory_inside_one_package_is_refused_naming_it() {
    let work = work();
    let host = Host::watch(&[]);
    let target = host.path().display().to_string();
    let package = raw(
        essential("hostile-one"),
        &[
            Member::dir("./"),
            Member::dir("./opt/"),
            Member::symlink("./opt/y", &target),
            Member::file("./opt/y/planted", "x", 0o644),
            Member::file("./opt/y/secret", "overwritten\n", 0o644),
        ],
        work.path(),
        "hostile",
    );
    let (_root, result) = install(&[package], work.path());
    host.assert_untouched();
    let text = error_text(result);
    assert!(
        text.contains("package hostile-one (version 1 from repo hostile)"),
        "{text}"
    );
    assert!(
        text.contains("writes ./opt/y/planted through the symlink /opt/y, which leads nowhere"),
        "{text}"
    );
}

#[test]
fn non_essential_link_then_write_across_two_packages_stays_in_the_tree_cold_and_warm() {
    let work = work();
    let name = tmp_name("dpkg-across");
    let host = Host::watch(&[&name]);
    let mut packages = link_then_write(
        work.path(),
        &host.path().join("sub").display().to_string(),
        &name,
        |n| Deb::new(n, "1"),
        "hostile",
    );
    packages[1].depends = vec!["hostile-a-link".into()];
    // Cold (dpkg unpacks, the cache imports both), then warm (the cache may place them).
    for _ in 0..2 {
        let (root, result) = install(&packages, work.path());
        host.assert_untouched();
        match result {
            // dpkg, in the sandbox's chroot, finds no /var/tmp/keel-canary-*/sub in the tree.
            Err(e) => {
                let text = format!("{:#}", anyhow::Error::from(e));
                eprintln!("{text}");
                assert!(
                    text.contains("package hostile-b-write (version 1 from repo hostile)"),
                    "{text}"
                );
                // dpkg's own lines (the tail) name its paths; ours name the package.
                let ours = text.split("last lines of").next().unwrap_or("");
                assert!(
                    !ours.contains("/run/keel-debs/"),
                    "names a cache path: {text}"
                );
            }
            Ok(_) => assert!(root.join("opt/x").symlink_metadata().unwrap().is_symlink()),
        }
    }
}

#[test]
fn parent_and_absolute_member_names_are_refused_or_kept_inside() {
    let work = work();
    let name = tmp_name("dotdot");
    let host = Host::watch(&[&name]);
    let up = format!("./../../../../../../../../tmp/{name}");
    let package = raw(
        essential("hostile-dotdot"),
        &[Member::dir("./"), Member::file(&up, "x", 0o644)],
        work.path(),
        "hostile",
    );
    let (_root, result) = install(&[package], work.path());
    host.assert_untouched();
    let text = error_text(result);
    assert!(
        text.contains("package hostile-dotdot (version 1 from repo hostile) has a member named"),
        "{text}"
    );
    assert!(text.contains("leaves the package's tree"), "{text}");

    // An absolute name is the tree's path, as tar and dpkg take it.
    let abs = format!("/tmp/{name}");
    let package = raw(
        essential("hostile-abs"),
        &[Member::dir("./"), Member::file(&abs, "x", 0o644)],
        work.path(),
        "hostile",
    );
    let (root, result) = install(&[package], work.path());
    host.assert_untouched();
    result.unwrap();
    assert!(root.join("tmp").join(&name).is_file());
}

#[test]
fn hard_links_to_host_files_are_refused_naming_the_package() {
    let work = work();
    let host = Host::watch(&[]);
    let secret = host.path().join("secret").display().to_string();
    for (i, target) in [
        "/etc/shadow".to_string(),
        "../../../../../../etc/shadow".to_string(),
        secret,
    ]
    .iter()
    .enumerate()
    {
        let package = raw(
            essential(&format!("hostile-hardlink{i}")),
            &[
                Member::dir("./"),
                Member::dir("./opt/"),
                Member::hard_link("./opt/stolen", target),
            ],
            work.path(),
            "hostile",
        );
        let (root, result) = install(&[package], work.path());
        host.assert_untouched();
        let text = error_text(result);
        assert!(
            text.contains(&format!(
                "package hostile-hardlink{i} (version 1 from repo hostile) has a hard link ./opt/stolen"
            )),
            "{text}"
        );
        assert!(!root.join("opt/stolen").exists());
    }
}

#[test]
fn device_nodes_are_refused_naming_the_package_essential_or_not() {
    let work = work();
    let host = Host::watch(&[]);
    let members = [
        Member::dir("./"),
        Member::dir("./opt/"),
        Member::char_device("./opt/mem", 1, 1),
    ];
    for (make, name) in [
        (essential as fn(&str) -> Deb, "hostile-dev-essential"),
        (|n: &str| Deb::new(n, "1"), "hostile-dev"),
    ] {
        let package = raw(make(name), &members, work.path(), "hostile");
        let (_root, result) = install(&[package], work.path());
        host.assert_untouched();
        let text = error_text(result);
        // The Essential set is extracted by our code, which refuses the node by name; any
        // other package meets dpkg in the sandbox, which has no CAP_MKNOD, and dpkg's refusal
        // is reported naming the package.
        let ours =
            format!("package {name} (version 1 from repo hostile) ships a device node /opt/mem");
        let dpkgs = format!("dpkg refused package {name} (version 1 from repo hostile)");
        assert!(
            text.contains(&ours)
                || (text.contains(&dpkgs) && text.contains("error creating device './opt/mem'")),
            "{text}"
        );
    }
}

#[test]
fn setuid_files_keep_their_mode_inside_the_tree_only() {
    let work = work();
    let name = tmp_name("setuid");
    let host = Host::watch(&[&name]);
    let mut packages = link_then_write(work.path(), "/tmp", &name, essential, "hostile");
    packages[1] = raw(
        essential("hostile-b-write"),
        &[
            Member::dir("./"),
            Member::dir("./opt/"),
            Member::file("./opt/big", vec![0u8; 8 << 20], 0o644),
            Member::file(&format!("./opt/x/{name}"), "#!/bin/sh\n", 0o4755),
        ],
        work.path(),
        "hostile",
    );
    let (root, result) = install(&packages, work.path());
    host.assert_untouched();
    match result {
        // dpkg ran in the sandbox, whose /tmp is a tmpfs: the host-side copy in the tree's
        // /tmp is what the Essential extraction wrote.
        Ok(_) => {
            let meta = root.join("tmp").join(&name).metadata().unwrap();
            assert_eq!(meta.mode() & 0o7777, 0o4755);
        }
        Err(e) => assert_extraction_race(e),
    }
}

/// The Essential set is extracted in parallel: when the second package's directory `/opt/x`
/// comes first, the first package's link cannot replace it, and that package is named.
fn assert_extraction_race(e: InstallError) {
    let text = format!("{:#}", anyhow::Error::from(e));
    eprintln!("{text}");
    assert!(
        text.contains("package hostile-a-link (version 1 from repo hostile) cannot be extracted: creating the symlink ./opt/x"),
        "{text}"
    );
}

#[test]
fn top_layer_link_then_write_across_two_packages_commits_without_touching_the_host() {
    let work = work();
    let name = tmp_name("top");
    let host = Host::watch(&[&name]);
    let debs_dir = work.path().join("debs");
    let base_deb = essential("base").file("/opt/base/ok", "base\n");
    let base_pkg = resolved_from(&base_deb, base_deb.build(&debs_dir).unwrap(), "debian");
    let top = link_then_write(&debs_dir, "/tmp", &name, |n| Deb::new(n, "1"), "overlay");
    let cachedir = CacheDir::open(&work.path().join("cache"), &Discard).unwrap();
    let base_debs = fetch_all(std::slice::from_ref(&base_pkg), &cachedir);
    let top_debs = fetch_all(&top, &cachedir);
    let cache = cachedir.package_cache().unwrap();
    let scratch = work.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let tree = scratch.join("tree");
    let prepared = base::prepare(
        &keel_compose::format::debian::Debian,
        &tree,
        &Sandbox::new(&scratch.join("base")).with_host_usr(),
        std::slice::from_ref(&base_pkg),
        &base_debs,
        "hostile-top",
        &cache,
        &gio::Cancellable::new(),
    )
    .unwrap();
    let mounted = Overlay::mount(&OverlayDirs::beside(&tree)).unwrap();
    let sandbox = Sandbox::new(mounted.merged()).with_host_usr();
    let installed = install_over(&sandbox, &top, &top_debs);
    mounted.unmount().unwrap();
    host.assert_untouched();
    installed.unwrap();
    overlay::apply_upper(&OverlayDirs::beside(&tree).upper, &tree).unwrap();
    host.assert_untouched();

    let repo_path = work.path().join("repo");
    ostree(&repo_path, &["init", "--mode=bare"]);
    let repo = ostree::Repo::new_for_path(&repo_path);
    repo.open(gio::Cancellable::NONE).unwrap();
    let metadata = CommitMetadata {
        version: "1".into(),
        reference: "keel/test/x86_64/hostile".into(),
        input_hash: "ab".repeat(32),
        packages: Vec::new(),
        treefile: String::new(),
        treefile_hash: "cd".repeat(32),
        composer_version: "test".into(),
        kernel_version: "none".into(),
    };
    let linked = LinkedTree {
        source: prepared.cache.repo(),
        devino: &prepared.checkout.devino,
    };
    let commit = commit::commit_tree(
        &repo,
        &tree,
        &metadata,
        Some(&linked),
        &gio::Cancellable::new(),
    )
    .unwrap();
    host.assert_untouched();
    let listing = ostree(&repo_path, &["ls", &commit, "/opt"]);
    assert!(listing.contains("x -> /tmp"), "{listing}");
}
