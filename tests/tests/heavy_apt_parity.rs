//! Our resolver against apt itself, on the real archive the machine's apt sources name: for
//! the package list of `treefiles/debian-host.toml`, plus the base mmdebstrap's `required`
//! variant installs (`?essential` and `?priority(required)`), both must choose the same
//! packages at the same versions, without and with Recommends.

use keel_compose::apt::{self, Request};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Packages we choose on purpose where apt chooses differently, with the reason. Each entry
/// is `(package=version only in ours or only in apt's, why)`; the test fails if any other
/// difference appears, and also if a listed one disappears (so this list stays true).
const INTENDED_DIFFERENCES: &[(&str, &str)] = &[];

fn cache_dir() -> PathBuf {
    std::env::var_os("KEEL_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/keel-tests"))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `packages` of the host treefile, read with the toml crate directly.
fn host_packages() -> Vec<String> {
    let path = workspace_root().join("treefiles/debian-host.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: toml::Value = toml::from_str(&text).unwrap();
    value["packages"]
        .as_array()
        .expect("packages is an array")
        .iter()
        .map(|p| p.as_str().expect("package names are strings").to_string())
        .collect()
}

fn apt_get(scratch: &Path, args: &[&str]) -> String {
    let status = scratch.join("status");
    let out = Command::new("apt-get")
        .arg("-q")
        .arg("-o")
        .arg(format!("Dir={}", scratch.display()))
        .arg("-o")
        .arg(format!("Dir::State::status={}", status.display()))
        .args([
            "-o",
            "Dir::Etc::SourceParts=/etc/apt/sources.list.d",
            "-o",
            "Dir::Etc::SourceList=/dev/null",
            "-o",
            "APT::Architecture=amd64",
            "-o",
            "APT::Architectures=amd64",
            "-o",
            "Debug::NoLocking=1",
        ])
        .args(args)
        .output()
        .expect("running apt-get");
    assert!(
        out.status.success(),
        "apt-get {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `name=version` of each `Inst` line of `apt-get -s` output:
/// `Inst libc6 (2.36-9+deb12u10 Debian:12.11/stable [amd64])`.
fn parse_inst(output: &str) -> BTreeSet<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .map(|rest| {
            let (name, tail) = rest.split_once(" (").expect("Inst NAME (VERSION ...)");
            let version = tail.split_whitespace().next().expect("a version");
            format!("{name}={version}")
        })
        .collect()
}

/// An empty root whose apt lists are up to date with the machine's sources.
fn apt_root() -> PathBuf {
    let scratch = cache_dir().join("apt-parity-root");
    for dir in [
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "etc/apt",
    ] {
        std::fs::create_dir_all(scratch.join(dir)).unwrap();
    }
    std::fs::write(scratch.join("status"), "").unwrap();
    apt_get(&scratch, &["update"]);
    scratch
}

/// What apt installs into the empty `root` for `packages` plus the required base.
fn apt_choice(root: &Path, packages: &[String], recommends: bool) -> BTreeSet<String> {
    let recommends = format!("APT::Install-Recommends={recommends}");
    let mut args = vec![
        "-o",
        &recommends,
        "-s",
        "install",
        "?essential",
        "?priority(required)",
    ];
    args.extend(packages.iter().map(String::as_str));
    parse_inst(&apt_get(root, &args))
}

#[test]
fn heavy_apt_parity_host_set() {
    let packages = host_packages();
    assert!(packages.iter().any(|p| p == "systemd"), "{packages:?}");

    let specs = apt::machine_sources(Path::new("/etc/apt/sources.list.d")).unwrap();
    let started = std::time::Instant::now();
    let universe = apt::load(
        &specs,
        &[],
        "amd64",
        &cache_dir().join("apt"),
        &keel_common::progress::Discard,
    )
    .unwrap();
    let loaded = started.elapsed();
    eprintln!(
        "{} packages in the universe, loaded in {loaded:?}",
        universe.packages().len()
    );
    let root = apt_root();
    for recommends in [false, true] {
        let request = Request {
            packages: packages.clone(),
            exclude: vec![],
            recommends,
            ..Default::default()
        };
        compare(
            &universe,
            &request,
            &apt_choice(&root, &packages, recommends),
        );
    }

    // On the real archive, errors name the package and the suites searched.
    let missing = Request {
        packages: vec!["keel-no-such-package".into()],
        ..Default::default()
    };
    let e = apt::resolve(&universe, &missing).unwrap_err().to_string();
    assert!(
        e.starts_with("keel-no-such-package: no such package in debian ("),
        "{e}"
    );
}

/// Resolves `request` and asserts the result equals apt's `theirs` (up to
/// [`INTENDED_DIFFERENCES`]).
fn compare(universe: &apt::Universe, request: &Request, theirs: &BTreeSet<String>) {
    let started = std::time::Instant::now();
    let ours = apt::resolve(universe, request).unwrap_or_else(|e| panic!("{e}"));
    let solved = started.elapsed();
    eprintln!(
        "recommends={}: resolved {} packages in {solved:?}",
        request.recommends,
        ours.len()
    );
    assert!(solved.as_secs() < 20, "resolution took {solved:?}");
    let ours: BTreeSet<String> = ours
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect();
    let only_ours: Vec<&String> = ours.difference(theirs).collect();
    let only_theirs: Vec<&String> = theirs.difference(&ours).collect();
    let mut unexplained: Vec<String> = only_ours
        .iter()
        .map(|p| format!("only ours: {p}"))
        .chain(only_theirs.iter().map(|p| format!("only apt's: {p}")))
        .filter(|d| {
            !INTENDED_DIFFERENCES
                .iter()
                .any(|(p, _)| d.ends_with(&format!(": {p}")))
        })
        .collect();
    for (p, why) in INTENDED_DIFFERENCES {
        if !only_ours
            .iter()
            .chain(&only_theirs)
            .any(|d| d.as_str() == *p)
        {
            unexplained.push(format!("listed difference {p} ({why}) no longer occurs"));
        }
    }
    assert!(
        unexplained.is_empty(),
        "recommends={}: {} ours vs {} apt's; differences:\n{}",
        request.recommends,
        ours.len(),
        theirs.len(),
        unexplained.join("\n")
    );
}
