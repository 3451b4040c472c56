//! Turning resolved packages and their cached `.deb` files into a configured Debian root, as
//! dpkg would, with every maintainer script and trigger run inside the [`Sandbox`].
//!
//! The recipe is mmdebstrap's:
//! 1. Lay out the merged-/usr links (`bin -> usr/bin`, ...) and an empty dpkg database.
//! 2. Extract the Essential set (see [`order`]) on the host side, so the tree has a shell, dpkg
//!    and the tools maintainer scripts use. The extraction is ours (module `extract`), through a
//!    [`TreeDir`]: links a package ships resolve inside the tree as in a chroot, never onto the
//!    build host; `..` names, hard links out of the tree and device nodes are refused naming
//!    the package.
//! 3. In the sandbox, `dpkg --install --force-depends` the Essential set: this records the
//!    packages in dpkg's database and runs their scripts.
//! 4. Unpack the rest in rounds ordered by Pre-Depends, configuring pre-dependencies between
//!    rounds, then `dpkg --configure --pending`, which also runs the pending triggers.
//! 5. Check that `dpkg-query` reports every package `ii`.
//!
//! The `.deb` files are bind-mounted read-only at `/run/keel-debs/N/` (`/run` is a tmpfs, so
//! nothing of them stays in the tree). `/usr/sbin/policy-rc.d` (exit 101) forbids starting
//! services while installing and is removed afterwards; the sandbox has no network.
//! A failing maintainer script is reported with its package, the script and the tail of dpkg's
//! output; a package dpkg refuses is named (name, version, repo), not by its `.deb` path.
//! Device nodes and FIFOs are refused wherever Keel reads a package's archive itself (the
//! Essential set, the package cache): an ostree commit cannot hold them. A package with
//! maintainer scripts, which only dpkg unpacks (never cached), is not checked here yet. Packages the [`PackageCache`] holds may skip dpkg's unpack (see that module).

pub mod base;
mod dpkg;
pub mod dpkg_log;
mod extract;
pub mod layer_cache;
pub mod layers;
pub mod order;
mod pkgcache;

pub use layer_cache::{LayerCache, LayerCacheError};
pub use pkgcache::{PackageCache, PackageCacheError};

use crate::package::ResolvedPackage;
use crate::sandbox::{Sandbox, SandboxError};
use crate::tree_dir::TreeDir;
use dpkg::{check_all_installed, dpkg, run_dpkg, Namer};
use order::OrderError;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";
const POLICY_RC_D_BODY: &str = "#!/bin/sh\n# Written by keel-compose while installing packages: start no services.\nexit 101\n";
const DEBS_INSIDE: &str = "/run/keel-debs";
/// What [`install`] did.
#[derive(Clone, Debug, Serialize)]
pub struct InstallReport {
    pub packages: usize,
    /// Size of the Essential set installed first.
    pub essential: usize,
    /// Unpack rounds after the Essential set.
    pub rounds: usize,
    /// Packages placed from the [`PackageCache`] instead of unpacked by dpkg.
    pub from_cache: Vec<String>,
    /// Packages newly added to the [`PackageCache`].
    pub cached: usize,
    pub seconds: f64,
    /// Seconds per step: bootstrap, essential, rounds, configure, check, cache-import.
    pub phases: Vec<(String, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{packages} packages but {debs} .deb files were given; pass fetch()'s result for the same package list")]
    Mismatch { packages: usize, debs: usize },
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error("preparing the tree: {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `package` is [`describe`]'s text; `reason` follows it ("ships a device node ...").
    #[error("{package} {reason} (extracting {})", deb.display())]
    Extract {
        package: String,
        deb: PathBuf,
        reason: String,
    },
    #[error(
        "the {script} script of package {package} failed ({status}) during {step}; fix or drop \
         the package, or its postprocess input; last lines of dpkg's output:\n{tail}"
    )]
    Script {
        package: String,
        script: &'static str,
        status: String,
        step: String,
        tail: String,
    },
    #[error(
        "dpkg refused {} during {step}; read dpkg's reason below, then fix or drop the package \
         (or report it to its maintainer); last lines of dpkg's output:\n{tail}",
        packages.join(", ")
    )]
    Refused {
        /// Each as [`describe`] names it.
        packages: Vec<String>,
        step: String,
        tail: String,
    },
    #[error("{step} failed (packages {packages:?})")]
    Dpkg {
        step: String,
        packages: Vec<String>,
        #[source]
        source: SandboxError,
    },
    #[error("package {package} is not installed after dpkg ran (dpkg status {status:?}, want \"ii\"); run `dpkg --audit` in the tree to see why")]
    NotInstalled { package: String, status: String },
    #[error(transparent)]
    Cache(#[from] PackageCacheError),
}

/// Each package by name, with its `.deb` on the host and inside the sandbox.
type ByName<'a> = HashMap<&'a str, (&'a ResolvedPackage, &'a PathBuf, &'a String)>;

/// Installs `packages` (whose `.deb` files are `debs`, in the same order, as [`crate::fetch::fetch`]
/// returns them) into the tree `root`.
pub fn install(
    root: &Path,
    packages: &[ResolvedPackage],
    debs: &[PathBuf],
    cache: &PackageCache,
) -> Result<InstallReport, InstallError> {
    install_with(&Sandbox::new(root), packages, debs, cache)
}

/// [`install`] into `sandbox`'s tree, with that sandbox's options (tests use
/// [`Sandbox::with_host_usr`]).
pub fn install_with(
    sandbox: &Sandbox,
    packages: &[ResolvedPackage],
    debs: &[PathBuf],
    cache: &PackageCache,
) -> Result<InstallReport, InstallError> {
    let started = Instant::now();
    check_lengths(packages, debs)?;
    let plan = order::plan(packages)?;
    let root = sandbox.root().to_path_buf();
    let arch = packages.first().map_or("amd64", |p| p.arch.as_str());
    prepare_tree(&root, arch)?;

    let (sandbox, inside) = bind_debs(sandbox, debs);
    let by_name = by_name(packages, debs, &inside);
    let names = Namer::new(&by_name);
    let deb_of = |name: &str| by_name.get(name).map(|(_, _, i)| i.as_str()).unwrap_or("");

    let mut laps = Laps::new();

    // Cached script-free packages are placed first; the rest is extracted for the bootstrap.
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let mut from_cache = Vec::new();
    let mut essential = Vec::new();
    for name in &plan.essential {
        let Some((p, _, _)) = by_name.get(name.as_str()) else {
            continue;
        };
        if cache.place(&root, p)? {
            from_cache.push(name.clone());
        } else {
            essential.push(name.clone());
        }
    }
    let to_extract: Vec<(&ResolvedPackage, &Path)> = essential
        .iter()
        .filter_map(|n| by_name.get(n.as_str()).map(|(p, d, _)| (*p, d.as_path())))
        .collect();
    extract_all(&to_extract, &root, jobs)?;
    write_policy_rc_d(&root)?;
    laps.done("bootstrap");
    if !essential.is_empty() {
        let mut argv = dpkg(&["--install", "--force-depends"]);
        argv.extend(essential.iter().map(|n| deb_of(n)));
        run_dpkg(
            &sandbox,
            &argv,
            "installing the Essential set",
            &essential,
            &names,
        )?;
    }
    if !from_cache.is_empty() {
        // Configured now, as `dpkg --install` would have, so later Pre-Depends are satisfied.
        let mut argv = dpkg(&["--configure", "--force-depends"]);
        argv.extend(from_cache.iter().map(|n| n.as_str()));
        let step = "configuring the cached part of the Essential set";
        run_dpkg(&sandbox, &argv, step, &from_cache, &names)?;
    }
    laps.done("essential");

    run_rounds(
        &sandbox,
        &plan.rounds,
        cache,
        &root,
        &by_name,
        &mut from_cache,
    )?;
    laps.done("rounds");
    let everything: Vec<String> = packages.iter().map(|p| p.name.clone()).collect();
    run_dpkg(
        &sandbox,
        &dpkg(&["--configure", "--pending"]),
        "configuring all packages and running triggers",
        &everything,
        &names,
    )?;
    laps.done("configure");
    check_all_installed(&sandbox, packages)?;
    remove_policy_rc_d(&root)?;
    laps.done("check");

    let cached = cache.import_all(packages, debs, jobs)?;
    laps.done("cache-import");
    Ok(InstallReport {
        packages: packages.len(),
        essential: plan.essential.len(),
        rounds: plan.rounds.len(),
        from_cache,
        cached,
        seconds: started.elapsed().as_secs_f64(),
        phases: laps.phases,
    })
}

/// Installs `packages` over a tree that already holds a configured Debian system (a base
/// layer), as `apt install` installs new packages on a running one: unpacked in rounds ordered
/// by Pre-Depends, then everything pending configured and the triggers run. Dependencies on
/// packages outside `packages` must be installed in the tree already.
pub fn install_over(
    sandbox: &Sandbox,
    packages: &[ResolvedPackage],
    debs: &[PathBuf],
) -> Result<InstallReport, InstallError> {
    let started = Instant::now();
    check_lengths(packages, debs)?;
    let mut plan = order::plan(packages)?;
    if !plan.essential.is_empty() {
        // Only an essential package over a base could land here; unpack those first.
        let configure = plan.essential.clone();
        plan.rounds.insert(
            0,
            order::Round {
                unpack: std::mem::take(&mut plan.essential),
                configure,
            },
        );
    }
    let root = sandbox.root().to_path_buf();
    let (sandbox, inside) = bind_debs(sandbox, debs);
    let by_name = by_name(packages, debs, &inside);
    let names = Namer::new(&by_name);
    let mut laps = Laps::new();
    write_policy_rc_d(&root)?;
    let mut unused = Vec::new();
    let no_cache = PackageCache::disabled();
    run_rounds(
        &sandbox,
        &plan.rounds,
        &no_cache,
        &root,
        &by_name,
        &mut unused,
    )?;
    laps.done("rounds");
    let top: Vec<String> = packages.iter().map(|p| p.name.clone()).collect();
    run_dpkg(
        &sandbox,
        &dpkg(&["--configure", "--pending"]),
        "configuring the top layer and running triggers",
        &top,
        &names,
    )?;
    laps.done("configure");
    check_all_installed(&sandbox, packages)?;
    remove_policy_rc_d(&root)?;
    laps.done("check");
    Ok(InstallReport {
        packages: packages.len(),
        essential: 0,
        rounds: plan.rounds.len(),
        from_cache: Vec::new(),
        cached: 0,
        seconds: started.elapsed().as_secs_f64(),
        phases: laps.phases,
    })
}

/// The unpack rounds of a plan: cached packages placed, the others `dpkg --unpack`ed, then the
/// round's pre-dependencies configured.
fn run_rounds(
    sandbox: &Sandbox,
    rounds: &[order::Round],
    cache: &PackageCache,
    root: &Path,
    by_name: &ByName,
    from_cache: &mut Vec<String>,
) -> Result<(), InstallError> {
    let deb_of = |name: &str| by_name.get(name).map(|(_, _, i)| i.as_str()).unwrap_or("");
    let names = Namer::new(by_name);
    for (i, round) in rounds.iter().enumerate() {
        let mut unpack = Vec::new();
        for name in &round.unpack {
            let Some((p, _, _)) = by_name.get(name.as_str()) else {
                continue;
            };
            if cache.place(root, p)? {
                from_cache.push(name.clone());
            } else {
                unpack.push(name.clone());
            }
        }
        if !unpack.is_empty() {
            let mut argv = dpkg(&["--unpack"]);
            argv.extend(unpack.iter().map(|n| deb_of(n)));
            let step = format!("unpacking round {}", i + 1);
            run_dpkg(sandbox, &argv, &step, &unpack, &names)?;
        }
        if !round.configure.is_empty() {
            let mut argv = dpkg(&["--configure"]);
            argv.extend(round.configure.iter().map(|n| n.as_str()));
            let step = format!("configuring pre-dependencies after round {}", i + 1);
            run_dpkg(sandbox, &argv, &step, &round.configure, &names)?;
        }
    }
    Ok(())
}

fn check_lengths(packages: &[ResolvedPackage], debs: &[PathBuf]) -> Result<(), InstallError> {
    if packages.len() != debs.len() {
        return Err(InstallError::Mismatch {
            packages: packages.len(),
            debs: debs.len(),
        });
    }
    Ok(())
}

fn by_name<'a>(
    packages: &'a [ResolvedPackage],
    debs: &'a [PathBuf],
    inside: &'a [String],
) -> ByName<'a> {
    packages
        .iter()
        .zip(debs)
        .zip(inside)
        .map(|((p, d), i)| (p.name.as_str(), (p, d, i)))
        .collect()
}

/// Seconds per step of an install, for its report.
struct Laps {
    phases: Vec<(String, f64)>,
    lap: Instant,
}

impl Laps {
    fn new() -> Self {
        Laps {
            phases: Vec::new(),
            lap: Instant::now(),
        }
    }

    fn done(&mut self, name: &str) {
        self.phases
            .push((name.to_string(), self.lap.elapsed().as_secs_f64()));
        self.lap = Instant::now();
    }
}

/// Extracts the `(package, deb)` pairs into `root`, `jobs` at a time. Order does not matter:
/// `dpkg --install` unpacks every one of them again over the result.
fn extract_all(
    debs: &[(&ResolvedPackage, &Path)],
    root: &Path,
    jobs: usize,
) -> Result<(), InstallError> {
    let next = AtomicUsize::new(0);
    let first_error = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((package, deb)) = debs.get(i) else {
                    break;
                };
                if let Err(reason) = extract::unpack_data(deb, root) {
                    if let Ok(mut slot) = first_error.lock() {
                        slot.get_or_insert(InstallError::Extract {
                            package: describe(package),
                            deb: deb.to_path_buf(),
                            reason,
                        });
                    }
                    break;
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// How errors name a package: `package NAME (version V from repo R)`.
pub fn describe(p: &ResolvedPackage) -> String {
    format!(
        "package {} (version {} from repo {})",
        p.name, p.version, p.repo
    )
}

/// Binds each distinct directory holding `.deb` files at `/run/keel-debs/N` and returns the
/// sandbox and each file's path inside it.
fn bind_debs(sandbox: &Sandbox, debs: &[PathBuf]) -> (Sandbox, Vec<String>) {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut sandbox = sandbox.clone();
    let mut inside = Vec::with_capacity(debs.len());
    for deb in debs {
        let dir = deb.parent().unwrap_or(Path::new("/")).to_path_buf();
        let n = match dirs.iter().position(|d| *d == dir) {
            Some(n) => n,
            None => {
                sandbox = sandbox.bind_ro(&dir, &format!("{DEBS_INSIDE}/{}", dirs.len()));
                dirs.push(dir);
                dirs.len() - 1
            }
        };
        let file = deb.file_name().map(|f| f.to_string_lossy().into_owned());
        inside.push(format!("{DEBS_INSIDE}/{n}/{}", file.unwrap_or_default()));
    }
    (sandbox, inside)
}

/// The merged-/usr links for `arch` (as Debian bookworm lays them out).
pub(crate) fn usr_links(arch: &str) -> Vec<&'static str> {
    let mut links = vec!["bin", "sbin", "lib"];
    match arch {
        "amd64" | "ppc64el" => links.push("lib64"),
        _ => {}
    }
    links
}

fn prepare_tree(root: &Path, arch: &str) -> Result<(), InstallError> {
    let io = |action, path: &Path| {
        let path = root.join(path);
        move |source| InstallError::Io {
            action,
            path,
            source,
        }
    };
    let tree = TreeDir::open(root).map_err(io("opening", Path::new("")))?;
    for dir in [
        "usr",
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "var/lib/dpkg/alternatives",
        "etc",
        "tmp",
        "run",
        "proc",
        "dev",
        "root",
    ] {
        let path = Path::new(dir);
        tree.create_dir_all(path, 0o755)
            .map_err(io("creating", path))?;
    }
    for link in usr_links(arch) {
        let path = Path::new(link);
        if tree.kind(path).map_err(io("reading", path))?.is_none() {
            let target = format!("usr/{link}");
            tree.create_dir_all(Path::new(&target), 0o755)
                .map_err(io("creating", path))?;
            tree.symlink(path, Path::new(&target))
                .map_err(io("linking", path))?;
        }
    }
    for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        let path = Path::new(file);
        if tree.kind(path).map_err(io("reading", path))?.is_none() {
            tree.write(path, b"", 0o644).map_err(io("creating", path))?;
        }
    }
    Ok(())
}

/// Writes `/usr/sbin/policy-rc.d` through the tree's handle: a package may have planted a link
/// at that name or on the way to it.
fn write_policy_rc_d(root: &Path) -> Result<(), InstallError> {
    let path = root.join(POLICY_RC_D);
    let io = |action| {
        let path = path.clone();
        move |source| InstallError::Io {
            action,
            path,
            source,
        }
    };
    let tree = TreeDir::open(root).map_err(io("opening the tree for"))?;
    let rel = Path::new(POLICY_RC_D);
    if let Some(dir) = rel.parent() {
        tree.create_dir_all(dir, 0o755)
            .map_err(io("creating the directory of"))?;
    }
    tree.write(rel, POLICY_RC_D_BODY.as_bytes(), 0o755)
        .map_err(io("writing"))
}

fn remove_policy_rc_d(root: &Path) -> Result<(), InstallError> {
    let path = root.join(POLICY_RC_D);
    TreeDir::open(root)
        .and_then(|tree| tree.remove_file(Path::new(POLICY_RC_D)))
        .map_err(|source| InstallError::Io {
            action: "removing",
            path,
            source,
        })
}

#[cfg(test)]
#[path = "install_tests.rs"]
mod tests;
