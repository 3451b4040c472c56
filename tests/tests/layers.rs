//! Warm composes through a cached base layer, with tiny test packages: the base layer is
//! installed once and stored, later trees check it out with hardlinks, the top layer's
//! packages are installed over an overlay, and the result is committed through the checkout's
//! devino map. What a user relies on: the tree is the same whether the base was reused or
//! built, and a maintainer script that edits a base file in place never damages the cache.
//!
//! Like `install.rs`, the trees borrow the host's `/usr` ([`Sandbox::with_host_usr`]).

use anyhow::Context;
use keel_common::cancel::Cancel;
use keel_common::progress::Discard;
use keel_compose::cachedir::CacheDir;
use keel_compose::commit::{self, CommitMetadata, LinkedTree};
use keel_compose::fetch::fetch;
use keel_compose::install::{base, install_over, layer_cache, layers};
use keel_compose::overlay::{self, Overlay, OverlayDirs};
use keel_compose::package::{PackageSource, ResolvedPackage};
use keel_compose::pipeline::Cancellation;
use keel_compose::sandbox::Sandbox;
use keel_tests::deb::Deb;
use keel_tests::ostree_cli::ostree;
use ostree::gio::prelude::CancellableExt;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

const REF: &str = "keel/test/x86_64/layers";

fn resolved(deb: &Deb, dir: &Path, repo: &str) -> ResolvedPackage {
    let path = deb.build(dir).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let field = |key: &str| -> Vec<String> {
        deb.fields
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(',').map(|d| d.trim().to_string()))
            .collect()
    };
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
        pre_depends: field("Pre-Depends"),
        depends: field("Depends"),
    }
}

/// A small distribution (repo "debian"), built once: `dpkg-deb` stamps the build time, so a
/// rebuild would be a new package.
fn distribution(dir: &Path) -> Vec<ResolvedPackage> {
    let debian = [
        Deb::new("base", "1")
            .field("Essential", "yes")
            .file("/etc/keel-base.conf", "base\n")
            .script("triggers", "interest-noawait keel-ldconfig\n")
            .script(
                "postinst",
                "#!/bin/sh\nset -e\nmkdir -p /var/lib/keel\n\
                 if [ \"$1\" = triggered ]; then echo \"$2\" >> /var/lib/keel/base-triggered; fi\n",
            ),
        Deb::new("plain", "3")
            .depends("base")
            .file("/opt/plain/data.txt", "plain data\n"),
        Deb::new("daemon", "1")
            .depends("base")
            .file("/opt/daemon/bin", "#!/bin/sh\n")
            .script(
                "postinst",
                "#!/bin/sh\nset -e\necho daemon > /var/lib/keel/daemon-configured\n",
            ),
    ];
    debian.iter().map(|d| resolved(d, dir, "debian")).collect()
}

/// `distribution` plus one package of the maintainer's own (repo "overlay", version
/// `tool_version`) whose postinst edits base files in place.
fn with_tool(
    distribution: &[ResolvedPackage],
    dir: &Path,
    tool_version: &str,
) -> Vec<ResolvedPackage> {
    let tool = Deb::new("tool", tool_version)
        .depends("base, plain")
        .file("/opt/tool/version", tool_version)
        .script("triggers", "activate-noawait keel-ldconfig\n")
        .script(
            "postinst",
            &format!(
                "#!/bin/sh\nset -e\n\
                 echo 'tuned by tool {tool_version}' >> /etc/keel-base.conf\n\
                 chmod 0600 /opt/plain/data.txt\n\
                 printf 'edited' > /opt/daemon/bin\n"
            ),
        );
    let mut all = distribution.to_vec();
    all.push(resolved(&tool, dir, "overlay"));
    all
}

fn metadata(version: &str) -> CommitMetadata {
    CommitMetadata {
        version: version.into(),
        reference: REF.into(),
        input_hash: "ab".repeat(32),
        packages: Vec::new(),
        treefile: String::new(),
        treefile_hash: "cd".repeat(32),
        composer_version: "test".into(),
        kernel_version: "none".into(),
    }
}

struct Built {
    commit: String,
    base: base::BaseReport,
    layer_commit: String,
}

/// The pipeline's steps from the base layer to the commit, in scratch dir `scratch`.
fn build(
    packages: &[ResolvedPackage],
    cachedir: &CacheDir,
    scratch: &Path,
    repo: &ostree::Repo,
    version: &str,
) -> Built {
    let cancellation = Cancellation::new(&Cancel::new());
    try_build(
        packages,
        cachedir,
        scratch,
        repo,
        version,
        &cancellation,
        || {},
    )
    .unwrap()
}

/// [`build`], stopped by `cancellation` as the pipeline is, calling `before_install` when the
/// base layer is in place.
fn try_build(
    packages: &[ResolvedPackage],
    cachedir: &CacheDir,
    scratch: &Path,
    repo: &ostree::Repo,
    version: &str,
    cancellation: &Cancellation,
    before_install: impl FnOnce(),
) -> anyhow::Result<Built> {
    let client = keel_io::http::Client::from_env()?;
    let debs = fetch(
        &client,
        packages,
        &cachedir.debs(),
        2,
        &Discard,
        &Cancel::new(),
    )?;
    let split = layers::split(packages, &BTreeSet::from(["overlay".to_string()]));
    let pick = |indices: &[usize]| -> (Vec<ResolvedPackage>, Vec<PathBuf>) {
        (
            indices.iter().map(|&i| packages[i].clone()).collect(),
            indices.iter().map(|&i| debs[i].clone()).collect(),
        )
    };
    let (base_packages, base_debs) = pick(&split.base);
    let (top_packages, top_debs) = pick(&split.top);
    assert_eq!(
        top_packages
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["tool"]
    );

    std::fs::create_dir_all(scratch).unwrap();
    let tree = scratch.join("tree");
    let cache = cachedir.package_cache()?;
    let key = layers::base_key(packages, &split.base);
    let build_sandbox = cancellation.sandbox(Sandbox::new(&scratch.join("base")).with_host_usr());
    let base = base::prepare(
        &keel_compose::format::debian::Debian,
        &tree,
        &build_sandbox,
        &base_packages,
        &base_debs,
        &key,
        &cache,
        cancellation.cancellable(),
    )?;

    before_install();
    let mounted = Overlay::mount(&OverlayDirs::beside(&tree))?;
    let sandbox = cancellation.sandbox(Sandbox::new(mounted.merged()).with_host_usr());
    let installed = install_over(&sandbox, &top_packages, &top_debs).context("install");
    mounted.unmount()?;
    installed?;
    overlay::apply_upper(&OverlayDirs::beside(&tree).upper, &tree)?;
    // dpkg's log holds times; the pipeline drops /var's files the same way.
    if tree.join("var/log").exists() {
        std::fs::remove_dir_all(tree.join("var/log"))?;
    }

    let linked = LinkedTree {
        source: base.cache.repo(),
        devino: &base.checkout.devino,
    };
    let commit = commit::commit_tree(
        repo,
        &tree,
        &metadata(version),
        Some(&linked),
        cancellation.cancellable(),
    )?;
    base.cache.tidy(cancellation.cancellable())?;
    Ok(Built {
        commit,
        base: base.report,
        layer_commit: base.checkout.commit,
    })
}

#[test]
fn a_reused_base_layer_gives_the_same_tree_and_in_place_edits_never_reach_the_cache() {
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let debs_dir = work.path().join("debs");
    std::fs::create_dir(&debs_dir).unwrap();
    let cachedir = CacheDir::open(&work.path().join("cache"), &Discard).unwrap();
    let repo_dir = work.path().join("repo");
    let repo = commit::open_or_create(&repo_dir).unwrap();
    let distribution = distribution(&debs_dir);
    let v1 = with_tool(&distribution, &debs_dir, "1");

    let cold = build(&v1, &cachedir, &work.path().join("s1"), &repo, "1");
    assert!(!cold.base.reused, "{:?}", cold.base);
    assert_eq!(cold.base.packages, 3);
    let cat = |rev: &str, path: &str| ostree(&repo_dir, &["cat", rev, path]);
    assert_eq!(
        cat(&cold.commit, "/etc/keel-base.conf"),
        "base\ntuned by tool 1\n"
    );
    assert_eq!(cat(&cold.commit, "/opt/daemon/bin"), "edited");
    let listing = ostree(&repo_dir, &["ls", &cold.commit, "/opt/plain/data.txt"]);
    assert!(listing.starts_with("-00600"), "{listing}");
    let triggered = cat(&cold.commit, "/var/lib/keel/base-triggered");
    assert!(triggered.contains("keel-ldconfig"), "{triggered}");

    // The cache still holds the base layer exactly as dpkg left it.
    let pkgcache = cachedir.package_repo();
    let layer_cat = |path: &str| ostree(&pkgcache, &["cat", &cold.layer_commit, path]);
    assert_eq!(layer_cat("/etc/keel-base.conf"), "base\n");
    assert_eq!(layer_cat("/opt/daemon/bin"), "#!/bin/sh\n");
    let layer_ls = ostree(
        &pkgcache,
        &["ls", &cold.layer_commit, "/opt/plain/data.txt"],
    );
    assert!(layer_ls.starts_with("-00644"), "{layer_ls}");
    ostree(&pkgcache, &["fsck"]);
    ostree(&repo_dir, &["fsck"]);

    // Same inputs again: the base layer is reused and the tree is the same, byte for byte.
    let warm = build(&v1, &cachedir, &work.path().join("s2"), &repo, "2");
    assert!(warm.base.reused, "{:?}", warm.base);
    assert_eq!(warm.layer_commit, cold.layer_commit);
    let diff = ostree(&repo_dir, &["diff", &cold.commit, &warm.commit]);
    assert_eq!(diff, "", "a reused base layer changed the tree");

    // The maintainer bumps their package: the base layer is reused, only the top layer reruns.
    let v2 = with_tool(&distribution, &debs_dir, "2");
    let bumped = build(&v2, &cachedir, &work.path().join("s3"), &repo, "3");
    assert!(bumped.base.reused);
    assert_eq!(cat(&bumped.commit, "/opt/tool/version"), "2");
    assert_eq!(
        cat(&bumped.commit, "/etc/keel-base.conf"),
        "base\ntuned by tool 2\n"
    );
    let diff = ostree(&repo_dir, &["diff", &warm.commit, &bumped.commit]);
    for changed in ["/etc/keel-base.conf", "/opt/tool/version"] {
        assert!(diff.contains(changed), "{changed} not in:\n{diff}");
    }
    assert!(!diff.contains("/opt/plain"), "{diff}");
    ostree(&pkgcache, &["fsck"]);
    ostree(&repo_dir, &["fsck"]);
    assert_eq!(layer_cat("/etc/keel-base.conf"), "base\n");
}

/// Commit objects in `repo` that no ref names.
fn unreferenced_commits(repo: &Path) -> usize {
    let refs = ostree(repo, &["refs"]);
    let referenced: HashSet<String> = refs
        .lines()
        .map(|r| ostree(repo, &["rev-parse", r]).trim().to_string())
        .collect();
    let mut count = 0;
    for dir in std::fs::read_dir(repo.join("objects")).unwrap() {
        for entry in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let prefix = entry
                .path()
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if let Some(rest) = name.strip_suffix(".commit") {
                if !referenced.contains(&format!("{prefix}{rest}")) {
                    count += 1;
                }
            }
        }
    }
    count
}

#[test]
fn trees_staged_in_the_package_cache_do_not_pile_up() {
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let debs_dir = work.path().join("debs");
    std::fs::create_dir(&debs_dir).unwrap();
    let cachedir = CacheDir::open(&work.path().join("cache"), &Discard).unwrap();
    let repo = commit::open_or_create(&work.path().join("repo")).unwrap();
    let distribution = distribution(&debs_dir);
    let pkgcache = cachedir.package_repo();
    let mut most = 0;
    for i in 0..layer_cache::MAX_UNREFERENCED + 3 {
        let packages = with_tool(&distribution, &debs_dir, &format!("{}", i + 1));
        build(
            &packages,
            &cachedir,
            &work.path().join(format!("s{i}")),
            &repo,
            "1",
        );
        most = most.max(unreferenced_commits(&pkgcache));
    }
    assert!(
        most >= 2,
        "each compose stages its tree in the cache ({most})"
    );
    assert!(
        most <= layer_cache::MAX_UNREFERENCED,
        "{most} staged trees kept"
    );
    ostree(&pkgcache, &["fsck", "--quiet"]);
}

/// Two composes in one process, each with its own token: cancelling one before its install
/// step stops it there (its sandboxed dpkg is killed, libostree is cancelled, its ref is never
/// written) while the other installs and commits. A process-wide cancel flag fails this.
#[test]
fn two_composes_in_one_process_cancel_independently() {
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let debs_dir = work.path().join("debs");
    std::fs::create_dir(&debs_dir).unwrap();
    let distribution = distribution(&debs_dir);
    let packages = with_tool(&distribution, &debs_dir, "1");
    // Separate cache directories: composes sharing one take turns (its lock).
    let caches = ["a", "b"]
        .map(|name| CacheDir::open(&work.path().join(format!("cache-{name}")), &Discard).unwrap());
    let repo_dirs = ["a", "b"].map(|name| work.path().join(format!("repo-{name}")));
    let (token_a, token_b) = (Cancel::new(), Cancel::new());
    let (cancellation_a, cancellation_b) =
        (Cancellation::new(&token_a), Cancellation::new(&token_b));

    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| {
            try_build(
                &packages,
                &caches[0],
                &work.path().join("sa"),
                &commit::open_or_create(&repo_dirs[0])?,
                "a",
                &cancellation_a,
                || token_a.cancel(),
            )
        });
        let b = scope.spawn(|| {
            try_build(
                &packages,
                &caches[1],
                &work.path().join("sb"),
                &commit::open_or_create(&repo_dirs[1])?,
                "b",
                &cancellation_b,
                || {},
            )
        });
        (a.join().unwrap(), b.join().unwrap())
    });

    let err = match a {
        Ok(built) => panic!("the cancelled compose committed {}", built.commit),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        err.starts_with("install") && err.contains("interrupted; the command was killed"),
        "the cancelled compose stops at its install step: {err}"
    );
    assert!(cancellation_a.cancellable().is_cancelled());
    assert!(
        !work.path().join("sa/tree/opt/tool").exists(),
        "the top layer of the cancelled compose was installed"
    );
    assert_eq!(
        ostree(&repo_dirs[0], &["refs"]),
        "",
        "the cancelled compose wrote a ref"
    );

    let b = b.expect("the compose whose token was not cancelled completes");
    assert!(!token_b.is_cancelled() && !cancellation_b.cancellable().is_cancelled());
    assert_eq!(
        ostree(&repo_dirs[1], &["cat", &b.commit, "/opt/tool/version"]),
        "1"
    );
    assert_eq!(ostree(&repo_dirs[1], &["rev-parse", REF]).trim(), b.commit);
}
