//! Composes the shipped host treefile from Debian's archive (through the machine's apt
//! sources) and checks the commit is what a host can boot: kernel and an initramfs with
//! ostree's module, /usr/etc instead of /etc, an empty /var, podman, a complete dpkg database,
//! Keel's metadata. Packages are cached under $KEEL_TEST_CACHE, so only the first run
//! downloads them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use keel_common::cancel::Cancel;
use keel_common::meta;
use keel_common::progress::{Discard, Event, Recorder};
use keel_compose::pipeline::{self, Options};
use keel_compose::release::steps::ReleaseOptions;
use keel_tests::deb::Deb;
use keel_tests::ostree_cli::ostree;

fn cache_root() -> PathBuf {
    std::env::var_os("KEEL_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/keel-tests"))
}

/// Names of the entries `ostree ls` lists in `dir` (its fifth column is the path; symlinks
/// add `-> target` after it).
fn ls_names(repo: &Path, commit: &str, dir: &str) -> BTreeSet<String> {
    ostree(repo, &["ls", commit, dir])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|path| *path != dir)
        .filter_map(|path| path.rsplit('/').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn heavy_compose_host_treefile() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let treefile = workspace.join("treefiles/debian-host.toml");
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let options = Options {
        treefile,
        repo: repo.clone(),
        cachedir: cache_root().join("compose-host"),
        allow_older_metadata: false,
    };
    let sink = Recorder::default();
    let report = pipeline::compose(&options, &Cancel::new(), &sink)
        .expect("composing treefiles/debian-host.toml");
    let commit = report.commit.as_str();
    let events = sink.events();
    for phase in ["resolve", "fetch", "install", "initramfs", "commit"] {
        assert!(
            events.contains(&Event::Phase { name: phase.into() }),
            "the sink was told of phase {phase}: {events:?}"
        );
    }
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Items { done, total: Some(total) } if done == total && *total == report.packages as u64
        )),
        "fetching reports every package as done"
    );
    if let Some(base) = &report.base_layer {
        eprintln!("base layer install steps: {:?}", base.install_phases);
    }
    eprintln!(
        "host compose: {:.1} s, {} packages, tree {} MB, repository +{} MB, phases {:?}",
        report.seconds,
        report.packages,
        report.tree_bytes / 1_000_000,
        report.repo_bytes_added / 1_000_000,
        report
            .phases
            .iter()
            .map(|p| format!("{} {:.1}s", p.phase, p.seconds))
            .collect::<Vec<_>>()
    );

    ostree(&repo, &["fsck"]);
    assert_eq!(
        ostree(&repo, &["rev-parse", &report.reference]).trim(),
        commit
    );

    // Kernel and initramfs where ostree looks for them, with ostree's dracut module.
    let kver = &report.kernel;
    let moddir = format!("/usr/lib/modules/{kver}");
    let files = ls_names(&repo, commit, &moddir);
    assert!(files.contains("vmlinuz"), "{moddir}: {files:?}");
    assert!(files.contains("initramfs.img"), "{moddir}: {files:?}");
    let image = work.path().join("initramfs.img");
    let out = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["cat", commit, &format!("{moddir}/initramfs.img")])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&image, &out.stdout).unwrap();
    let listing = keel_compose::initramfs::list_file(&image).unwrap();
    assert!(
        listing
            .names
            .iter()
            .any(|n| n.ends_with("ostree-prepare-root")),
        "initramfs lacks ostree's module ({} entries)",
        listing.names.len()
    );
    drop(out);

    // The ostree layout.
    let top = ls_names(&repo, commit, "/");
    assert!(
        !top.contains("etc"),
        "/etc must not be in the commit: {top:?}"
    );
    assert!(top.contains("sysroot"), "{top:?}");
    let usr = ls_names(&repo, commit, "/usr");
    assert!(usr.contains("etc"), "/usr/etc missing: {usr:?}");
    let var = ls_names(&repo, commit, "/var");
    assert!(var.is_empty(), "/var must be empty: {var:?}");
    let boot = ls_names(&repo, commit, "/boot");
    assert!(boot.is_empty(), "/boot must be empty: {boot:?}");
    assert_eq!(ostree(&repo, &["cat", commit, "/usr/etc/machine-id"]), "");
    let storage = ostree(&repo, &["cat", commit, "/usr/etc/containers/storage.conf"]);
    assert!(storage.contains("overlay"), "{storage}");
    let tmpfiles = ostree(&repo, &["cat", commit, "/usr/lib/tmpfiles.d/keel-var.conf"]);
    assert!(tmpfiles.contains("L /var/lib/dpkg "), "{tmpfiles}");
    ostree(&repo, &["ls", commit, "/usr/bin/podman"]);

    // Units from the treefile are enabled; its postprocess script disabled apt's timers.
    let wants = ls_names(
        &repo,
        commit,
        "/usr/etc/systemd/system/multi-user.target.wants",
    );
    assert!(wants.contains("systemd-networkd.service"), "{wants:?}");
    let timers = ls_names(&repo, commit, "/usr/etc/systemd/system/timers.target.wants");
    assert!(!timers.contains("apt-daily.timer"), "{timers:?}");
    ostree(
        &repo,
        &["ls", commit, "/usr/etc/systemd/system/default.target"],
    );

    // Every resolved package is installed ('ii') in the dpkg database.
    let status = ostree(&repo, &["cat", commit, "/usr/lib/sysimage/dpkg/status"]);
    let mut installed = BTreeSet::new();
    for stanza in status.split("\n\n").filter(|s| !s.trim().is_empty()) {
        let field = |key: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .unwrap_or("")
        };
        assert_eq!(
            field("Status:"),
            "install ok installed",
            "package {}",
            field("Package:")
        );
        installed.insert(field("Package:").to_string());
    }
    assert_eq!(
        installed.len(),
        report.packages,
        "dpkg status vs resolved set"
    );
    for name in ["podman", "systemd", "ostree-boot", "dracut"] {
        assert!(installed.contains(name), "{name} not installed");
    }

    // Keel's metadata.
    for key in [
        meta::VERSION,
        meta::REF_BINDING,
        meta::INPUT_HASH,
        meta::PACKAGES,
        meta::TREEFILE,
        meta::TREEFILE_HASH,
        meta::COMPOSER_VERSION,
        meta::KERNEL_VERSION,
    ] {
        let value = ostree(
            &repo,
            &["show", &format!("--print-metadata-key={key}"), commit],
        );
        assert!(!value.trim().is_empty(), "metadata {key} empty");
    }
    let linux = ostree(
        &repo,
        &["show", "--print-metadata-key=ostree.linux", commit],
    );
    assert!(linux.contains(kver.as_str()), "{linux}");

    // Only this process's scratch trees: other test runs may be composing with the shared
    // cache directory right now (each scratch tree's `owner` file names its process).
    let ours = format!("{} ", std::process::id());
    let leftovers: Vec<_> = std::fs::read_dir(options.cachedir.join("tmp"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|dir| {
            std::fs::read_to_string(dir.join("owner")).is_ok_and(|owner| owner.starts_with(&ours))
        })
        .collect();
    assert!(leftovers.is_empty(), "scratch trees left: {leftovers:?}");

    // Unchanged inputs: a no-op that writes nothing and fetches no package.
    let refs_before = ostree(&repo, &["refs"]);
    let again = pipeline::compose(&options, &Cancel::new(), &Discard).expect("second compose");
    assert!(again.no_op, "unchanged inputs must be a no-op");
    assert_eq!(again.commit, report.commit);
    assert!(
        !again.phases.iter().any(|p| p.phase == "fetch"),
        "a no-op fetches nothing: {:?}",
        again.phases
    );
    assert_eq!(ostree(&repo, &["refs"]), refs_before);
    eprintln!("no-op compose: {:.1} s", again.seconds);

    // The lockfile every compose writes composes exactly that set (here: a no-op again), and a
    // locked package whose sha256 the archive no longer has fails, naming it, writing nothing.
    let lockfile = report
        .release
        .lockfile
        .clone()
        .expect("a lockfile was written");
    let locked = |path: &Path| {
        pipeline::compose_with(
            &options,
            &ReleaseOptions {
                lockfile: Some(path.to_path_buf()),
                ..Default::default()
            },
            &Cancel::new(),
            &Discard,
        )
    };
    assert!(locked(&lockfile).expect("composing the lockfile").no_op);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lockfile).unwrap()).unwrap();
    let first = &mut json["packages"][0];
    let name = first["name"].as_str().unwrap().to_string();
    first["sha256"] = serde_json::Value::String("0".repeat(64));
    let tampered = work.path().join("tampered.lock.json");
    std::fs::write(&tampered, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let err = format!(
        "{:#}",
        locked(&tampered).expect_err("a gone package must fail")
    );
    assert!(err.contains(&name), "the error must name {name}: {err}");
    assert_eq!(ostree(&repo, &["refs"]), refs_before);
    assert_eq!(
        ostree(&repo, &["rev-parse", &report.reference]).trim(),
        commit
    );

    // A maintainer's own package in a local repo goes in the top layer: the 199 packages of
    // the host are the base layer the compose above stored, and bumping the package reuses it.
    let overlay = work.path().join("overlay");
    let overlay_compose = |version: &str| {
        let _ = std::fs::remove_dir_all(&overlay);
        std::fs::create_dir_all(&overlay).unwrap();
        let mut marker = Deb::new("keel-test-marker", version)
            .file("/usr/share/keel-test/marker", format!("marker {version}\n"));
        marker.arch = "all".into();
        marker.build(&overlay).unwrap();
        let treefile = work.path().join("overlay.toml");
        std::fs::write(
            &treefile,
            format!(
                "include = [\"{}\"]\nref = \"keel/test/x86_64/overlay\"\npackages = [\"keel-test-marker\"]\n\n[[repos]]\nname = \"mine\"\npath = \"overlay\"\n",
                options.treefile.display()
            ),
        )
        .unwrap();
        pipeline::compose(
            &Options {
                treefile,
                ..options.clone()
            },
            &Cancel::new(),
            &Discard,
        )
        .expect("composing the host with an overlay package")
    };
    let v1 = overlay_compose("1");
    let base = v1.base_layer.clone().expect("a base layer");
    assert!(
        base.reused,
        "the host's packages are the stored base layer: {base:?}"
    );
    assert_eq!(base.packages, report.packages);
    let v2 = overlay_compose("2");
    assert!(v2.base_layer.as_ref().is_some_and(|b| b.reused));
    assert_eq!(
        ostree(&repo, &["cat", &v2.commit, "/usr/share/keel-test/marker"]),
        "marker 2\n"
    );
    let diff = ostree(&repo, &["diff", &v1.commit, &v2.commit]);
    let changed: Vec<&str> = diff
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    for path in &changed {
        assert!(
            path.starts_with("/usr/share/keel-test") || path.starts_with("/usr/lib/sysimage/dpkg"),
            "a package bump changed {path}; all changes:\n{diff}"
        );
    }
    // The same base, the same initramfs: the repository grows by the bumped files only.
    assert!(
        v2.repo_bytes_added < 2_000_000,
        "the bump added {} bytes to the repository",
        v2.repo_bytes_added
    );
    ostree(&repo, &["fsck", "--quiet"]);
    eprintln!(
        "warm compose, one overlay package bumped: {:.1} s (first host compose {:.1} s)",
        v2.seconds, report.seconds
    );
}
