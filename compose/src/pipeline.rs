//! The compose pipeline: treefile -> packages -> tree -> ostree commit, phase by phase.
//!
//! Order and guarantees:
//! 1. `load` the treefile and `resolve` its packages. Both only read (the index cache under the
//!    cachedir aside): a bad treefile or a missing package fails here, before the repository
//!    is created or touched.
//! 2. `fetch` the `.deb` files into the cachedir. `base`: the base layer (see
//!    `install::layers`) is reused from the package cache, or installed and stored there, and
//!    checked out with hardlinks into a scratch tree under `CACHEDIR/tmp/` (the cache's file
//!    system). An overlay is mounted over it, and on that overlay run `install` (the top layer),
//!    `customize` (add-files, remove-files, units, postprocess) and `initramfs`: whatever
//!    they change becomes new files in the overlay's upper dir, never a write into a cached
//!    file. `merge` folds the upper dir into the tree by renames; `ostreeify` (our own code,
//!    which replaces files rather than rewriting them) works on the tree itself. Without a
//!    base layer, everything is installed into the scratch tree directly.
//! 3. `passwd` check against the ref's previous commit; `commit` in one repository
//!    transaction (through the base checkout's devino map: unchanged files are not read);
//!    then the release steps (publishing: signatures, deltas, summary).
//!
//! The scratch tree is removed on every exit path, including errors and Ctrl-C: SIGINT sets a
//! flag that the pipeline checks between phases, cancels libostree's work and terminates our
//! child processes (the running bubblewrap step: a maintainer script, dracut), so the current
//! phase fails at once. A repository transaction that was interrupted is aborted: the refs
//! stay as they were. A compose killed outright (SIGKILL) leaves its scratch tree; the next
//! compose with the same cachedir removes it (its owner process is gone).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use anyhow::{bail, Context};
use cap_std::fs::Dir;
use ostree::gio;
use ostree::gio::prelude::CancellableExt;
use serde::Serialize;

use crate::apt::depsolve::Request;
use crate::apt::sources::{machine_sources, LocalRepo, RepoSpec};
use crate::commit::{self, CommitMetadata};
use crate::install::{self, layers, PackageCache};
use crate::overlay::{self, Overlay, OverlayDirs};
use crate::package::ResolvedPackage;
use crate::release;
use crate::sandbox::Sandbox;
use crate::treefile::{self, Repo, Treefile};
use crate::{
    cachedir_lock, customize, fetch, initramfs, ostreeify, passwd, resolve_cache, scratch,
};

/// Where the machine's apt sources are read for `machine-sources = true` repositories.
pub const MACHINE_SOURCES_DIR: &str = "/etc/apt/sources.list.d";
/// Parallel package downloads.
const FETCH_JOBS: usize = 4;

/// What `keel-compose tree` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub treefile: PathBuf,
    pub repo: PathBuf,
    pub cachedir: PathBuf,
    /// Accept an `InRelease` older than the last one the cache saw (`--allow-older-metadata`).
    pub allow_older_metadata: bool,
}

/// How long one phase took.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTime {
    pub phase: String,
    pub seconds: f64,
}

/// The outcome of a compose; `--json` prints it, humans read [`Report::render`].
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub commit: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub version: String,
    pub packages: usize,
    pub kernel: String,
    /// Bytes of regular files in the committed tree.
    pub tree_bytes: u64,
    /// Bytes the repository's objects grew by.
    pub repo_bytes_added: u64,
    pub phases: Vec<PhaseTime>,
    pub seconds: f64,
    pub no_op: bool,
    /// The cached base layer the tree was built on (`null`: no base layer, see
    /// `install::layers`).
    pub base_layer: Option<install::base::BaseReport>,
    /// Signature, static deltas and lockfile (see `release::steps`).
    pub release: release::steps::ReleaseReport,
}

impl Report {
    /// A short human summary.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} => {}\nversion {}, {} packages, kernel {}, tree {} MB, repository +{} MB, {:.1} s",
            self.reference,
            self.commit,
            self.version,
            self.packages,
            self.kernel,
            self.tree_bytes / 1_000_000,
            self.repo_bytes_added / 1_000_000,
            self.seconds
        );
        if self.no_op {
            out.push_str("\nnothing changed since the ref's current commit; nothing was written");
        }
        out
    }
}

/// Ctrl-C handling shared by every compose of this process.
#[derive(Clone)]
struct Interrupt {
    flag: Arc<AtomicBool>,
    /// Cancels libostree's work; replaced for each compose, as a cancelled one stays so.
    cancellable: Arc<Mutex<gio::Cancellable>>,
}

impl Interrupt {
    /// Installs the SIGINT handler once per process and resets the state for a new compose.
    fn install() -> Interrupt {
        static INTERRUPT: OnceLock<Interrupt> = OnceLock::new();
        let interrupt = INTERRUPT.get_or_init(|| {
            let interrupt = Interrupt {
                flag: Arc::new(AtomicBool::new(false)),
                cancellable: Arc::new(Mutex::new(gio::Cancellable::new())),
            };
            let handler = interrupt.clone();
            // Without a handler Ctrl-C still stops us, only less tidily; not fatal.
            let _ = ctrlc::set_handler(move || {
                eprintln!("keel-compose: interrupted; stopping and cleaning up");
                handler.flag.store(true, Ordering::SeqCst);
                if let Ok(cancellable) = handler.cancellable.lock() {
                    cancellable.cancel();
                }
                // A SIGINT sent to us alone (not the terminal's process group) must still
                // stop a running maintainer script or dracut: end our sandbox processes.
                terminate_children();
            });
            interrupt
        });
        interrupt.flag.store(false, Ordering::SeqCst);
        if let Ok(mut cancellable) = interrupt.cancellable.lock() {
            *cancellable = gio::Cancellable::new();
        }
        interrupt.clone()
    }

    /// The cancellable for libostree calls of the current compose.
    fn cancellable(&self) -> gio::Cancellable {
        match self.cancellable.lock() {
            Ok(cancellable) => cancellable.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.flag.load(Ordering::SeqCst) {
            bail!("interrupted; the scratch tree is removed and the repository is unchanged");
        }
        Ok(())
    }
}

/// Times phases and prints one line per phase to stderr.
struct Phases {
    started: Instant,
    times: Vec<PhaseTime>,
    interrupt: Interrupt,
}

impl Phases {
    fn run<T>(&mut self, phase: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        self.interrupt.check()?;
        eprintln!("keel-compose: {phase}...");
        let started = Instant::now();
        let result = f();
        let seconds = started.elapsed().as_secs_f64();
        self.times.push(PhaseTime {
            phase: phase.to_owned(),
            seconds,
        });
        match result {
            Ok(value) => {
                eprintln!("keel-compose: {phase} done in {seconds:.1} s");
                Ok(value)
            }
            // An interruption explains whatever error it caused.
            Err(err) if self.interrupt.flag.load(Ordering::SeqCst) => {
                Err(err.context("interrupted by Ctrl-C"))
            }
            Err(err) => Err(err.context(format!("phase {phase} failed"))),
        }
    }
}

/// An elapsed-time spinner on stderr for a long step with no progress of its own; hidden when
/// stderr is not a terminal, cleared when dropped.
struct Spinner(indicatif::ProgressBar);

impl Spinner {
    fn start(message: &str) -> Spinner {
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            bar.set_style(style);
        }
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Spinner(bar)
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Runs the whole compose (see the module documentation).
pub fn compose(options: &Options) -> anyhow::Result<Report> {
    compose_with(options, &release::steps::ReleaseOptions::default())
}

/// [`compose`] with release options (`--version`, `--sign-key`, `--force`, lockfiles, deltas).
pub fn compose_with(
    options: &Options,
    release_options: &release::steps::ReleaseOptions,
) -> anyhow::Result<Report> {
    let interrupt = Interrupt::install();
    let mut phases = Phases {
        started: Instant::now(),
        times: Vec::new(),
        interrupt: interrupt.clone(),
    };

    let tf = phases.run("load", || {
        treefile::load(&options.treefile)
            .with_context(|| format!("loading the treefile {}", options.treefile.display()))
    })?;
    crate::cachedir::create(&options.cachedir).with_context(|| {
        format!(
            "creating the cache directory {}",
            options.cachedir.display()
        )
    })?;
    let _cachedir_lock = cachedir_lock::lock(&options.cachedir)?;
    let prepared = release::steps::prepare(release_options, &tf.reference)?;
    let packages = phases.run("resolve", || {
        resolve(&tf, options, prepared.lockfile.as_ref())
    })?;
    eprintln!("keel-compose: {} packages", packages.len());
    let input_hash =
        release::inputs::input_hash(&tf.hash, &packages, release::inputs::COMPOSER_VERSION);

    if let Some(unchanged) = release::steps::unchanged_commit(
        &options.repo,
        &tf.reference,
        &input_hash,
        release_options.force,
    )? {
        eprintln!(
            "keel-compose: {} already has these inputs; nothing to do (--force composes anyway)",
            tf.reference
        );
        return Ok(Report {
            commit: unchanged.commit,
            reference: tf.reference.clone(),
            version: unchanged.version,
            packages: packages.len(),
            kernel: unchanged.kernel,
            tree_bytes: 0,
            repo_bytes_added: 0,
            seconds: phases.started.elapsed().as_secs_f64(),
            phases: phases.times,
            no_op: true,
            base_layer: None,
            release: Default::default(),
        });
    }

    // Nothing is written to the repository before this point.
    let repo = commit::open_or_create(&options.repo)?;
    let version = choose_version(&repo, &tf, release_options.version.as_deref())?;

    let debs = phases.run("fetch", || {
        let client = keel_io::http::Client::from_env().context("setting up downloads")?;
        let bar = crate::terminal_progress::TerminalProgress::new("fetching");
        let cancel = keel_common::cancel::Cancel::new();
        let token = cancel.clone();
        gio::prelude::CancellableExtManual::connect_cancelled(
            &interrupt.cancellable(),
            move |_| token.cancel(),
        );
        fetch::fetch(
            &client,
            &packages,
            &options.cachedir,
            FETCH_JOBS,
            &bar,
            &cancel,
        )
        .context("fetching packages")
    })?;

    // Removed when dropped, whichever way this function returns.
    let scratch = scratch::create(&options.cachedir)?;
    let tree = scratch.path().join("tree");
    let cache = PackageCache::open(&options.cachedir).context("opening the package cache")?;
    let split = layers::split(&packages, &tf.top_layer_repos);
    let (base_packages, base_debs) = (pick(&packages, &split.base), pick(&debs, &split.base));
    let (top_packages, top_debs) = (pick(&packages, &split.top), pick(&debs, &split.top));

    // The base layer, reused or installed and stored, checked out at `tree` with hardlinks.
    let base = if base_packages.is_empty() {
        std::fs::create_dir(&tree).with_context(|| format!("creating {}", tree.display()))?;
        None
    } else {
        let key = layers::base_key(&packages, &split.base);
        let base = phases.run("base", || {
            let build = Sandbox::new(&scratch.path().join("base")).env("INITRD", "No");
            install::base::prepare(
                &tree,
                &build,
                &base_packages,
                &base_debs,
                &key,
                &cache,
                &interrupt.cancellable(),
            )
            .context("preparing the base layer")
        })?;
        eprintln!(
            "keel-compose: base layer of {} packages {} ({} packages over it)",
            base.report.packages,
            if base.report.reused {
                "reused from the cache"
            } else {
                "installed and stored in the cache"
            },
            top_packages.len()
        );
        Some(base)
    };
    // Everything that runs code on the tree (dpkg, scripts, dracut) works on an overlay over a
    // checked-out base layer, so no file of the cache is ever written in place.
    let overlay = match &base {
        Some(_) => Some(
            Overlay::mount(&OverlayDirs::beside(&tree))
                .context("mounting an overlay over the base layer")?,
        ),
        None => None,
    };
    let work_tree = overlay
        .as_ref()
        .map_or(tree.clone(), |o| o.merged().to_path_buf());
    let sandbox = Sandbox::new(&work_tree);

    phases.run("install", || {
        // INITRD=No: the kernel's postinst must not build an initramfs; ours comes later.
        let sandbox = sandbox.clone().env("INITRD", "No");
        let report = match &base {
            Some(_) if top_packages.is_empty() => return Ok(()),
            Some(_) => install::install_over(&sandbox, &top_packages, &top_debs),
            None => install::install_with(&sandbox, &packages, &debs, &cache),
        }
        .context("installing packages")?;
        eprintln!(
            "keel-compose: {} packages installed ({} from the package cache)",
            report.packages,
            report.from_cache.len()
        );
        Ok(())
    })?;
    let root = Dir::open_ambient_dir(&work_tree, cap_std::ambient_authority())
        .with_context(|| format!("opening {}", work_tree.display()))?;

    phases.run("customize", || {
        customize::add_files(&root, &tf.add_files)?;
        customize::remove_files(&root, &tf.remove_files)?;
        customize::enable_units(&sandbox, &tf.units, tf.default_target.as_deref())?;
        customize::run_postprocess(&sandbox, &tf.postprocess, scratch.path())?;
        Ok(())
    })?;

    let kernel = phases.run("initramfs", || {
        let _spinner = Spinner::start("running dracut");
        let kernel = ostreeify::find_kernel(&root)?;
        initramfs::write_config(&root, &tf.initramfs)?;
        initramfs::generate(&sandbox, &kernel.version)?;
        Ok(kernel)
    })?;
    drop(root);

    if let Some(overlay) = overlay {
        phases.run("merge", || {
            let upper = overlay.dirs().upper.clone();
            overlay.unmount().context("unmounting the overlay")?;
            overlay::apply_upper(&upper, &tree)
                .context("folding the overlay's changes into the tree")?;
            Ok(())
        })?;
    }
    let root = Dir::open_ambient_dir(&tree, cap_std::ambient_authority())
        .with_context(|| format!("opening {}", tree.display()))?;

    let layout = phases.run("ostreeify", || {
        let layout = ostreeify::ostreeify(&root)?;
        if !layout.dropped_var_files.is_empty() {
            eprintln!(
                "keel-compose: dropped {} files under /var (logs, caches; /var starts empty)",
                layout.dropped_var_files.len()
            );
        }
        Ok(layout)
    })?;

    if tf.passwd.check {
        phases.run("passwd", || check_passwd(&repo, &tf.reference, &root))?;
    }

    let repo_bytes_before = commit::objects_bytes(&options.repo)?;
    let metadata = CommitMetadata {
        version: version.clone(),
        reference: tf.reference.clone(),
        input_hash,
        packages: packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect(),
        treefile: tf.canonical.clone(),
        treefile_hash: tf.hash.clone(),
        composer_version: release::inputs::COMPOSER_VERSION.to_owned(),
        kernel_version: kernel.version.clone(),
    };
    let checksum = phases.run("commit", || {
        let _spinner = Spinner::start("writing the tree into the repository");
        let linked = base.as_ref().map(|b| commit::LinkedTree {
            source: b.cache.repo(),
            devino: &b.checkout.devino,
        });
        commit::commit_tree(
            &repo,
            &tree,
            &metadata,
            linked.as_ref(),
            &interrupt.cancellable(),
        )
        .context("committing the tree")
    })?;
    eprintln!("keel-compose: {} is now {checksum}", tf.reference);
    if let Some(base) = &base {
        // The tree was staged in the package cache on its way; drop such leftovers now and then.
        base.cache
            .tidy(&interrupt.cancellable())
            .context("tidying the package cache")?;
    }

    let release_report = phases.run("publish", || {
        release::steps::publish_commit(
            &repo,
            &options.repo,
            &checksum,
            &tf.reference,
            tf.static_deltas,
            &packages,
            release_options,
            &prepared,
        )
    })?;

    let repo_bytes_after = commit::objects_bytes(&options.repo)?;
    Ok(Report {
        commit: checksum,
        reference: tf.reference.clone(),
        version,
        packages: packages.len(),
        kernel: layout.kernel_version,
        tree_bytes: layout.tree_bytes,
        repo_bytes_added: repo_bytes_after.saturating_sub(repo_bytes_before),
        seconds: phases.started.elapsed().as_secs_f64(),
        phases: phases.times,
        no_op: false,
        base_layer: base.as_ref().map(|b| b.report.clone()),
        release: release_report,
    })
}

/// The parent pid field of a `/proc/PID/stat` line.
fn parent_pid(stat: &str) -> Option<i32> {
    // The command name may hold spaces and parentheses; the fields after its last `)` do not.
    let after_comm = stat.rsplit_once(')')?.1;
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

/// Sends SIGTERM to this process's direct children (the `bwrap` of a running sandbox step,
/// whose sandboxed processes die with it).
fn terminate_children() {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let is_child = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| parent_pid(&stat))
            == Some(me);
        if let (true, Some(pid)) = (is_child, rustix::process::Pid::from_raw(pid)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::Term);
        }
    }
}

/// The `items` at `indices`, in that order.
fn pick<T: Clone>(items: &[T], indices: &[usize]) -> Vec<T> {
    indices.iter().map(|&i| items[i].clone()).collect()
}

/// The treefile's repositories as the apt module's sources.
pub fn repo_sources(
    repos: &[Repo],
    machine_dir: &Path,
) -> anyhow::Result<(Vec<RepoSpec>, Vec<LocalRepo>)> {
    let mut specs = Vec::new();
    let mut locals = Vec::new();
    for repo in repos {
        match repo {
            Repo::Machine { name } => {
                let found = machine_sources(machine_dir).with_context(|| {
                    format!("reading the machine's apt sources for repository {name}")
                })?;
                if found.is_empty() {
                    bail!(
                        "repository {name} uses the machine's apt sources, but {} has no enabled deb822 `*.sources` entry",
                        machine_dir.display()
                    );
                }
                specs.extend(found.into_iter().map(|spec| RepoSpec {
                    name: name.clone(),
                    ..spec
                }));
            }
            Repo::Apt(apt) => specs.push(RepoSpec {
                name: apt.name.clone(),
                url: apt.url.clone(),
                suites: apt.suites.clone(),
                components: apt.components.clone(),
                architectures: apt.architectures.clone(),
                keyring: apt.keyring.clone(),
            }),
            Repo::Local { name, path } => locals.push(LocalRepo {
                name: name.clone(),
                path: path.clone(),
            }),
        }
    }
    Ok((specs, locals))
}

/// Debian's name for the machine's architecture.
pub fn debian_arch(rust_arch: &str) -> Option<&'static str> {
    Some(match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        _ => return None,
    })
}

fn resolve(
    tf: &Treefile,
    options: &Options,
    locked: Option<&(release::lockfile::Lockfile, PathBuf)>,
) -> anyhow::Result<Vec<ResolvedPackage>> {
    let (specs, locals) = repo_sources(&tf.repos, Path::new(MACHINE_SOURCES_DIR))?;
    let arch = debian_arch(std::env::consts::ARCH).with_context(|| {
        format!(
            "no Debian architecture known for {}",
            std::env::consts::ARCH
        )
    })?;
    let request = Request {
        packages: tf.packages.clone(),
        exclude: tf.exclude_packages.clone(),
        recommends: tf.recommends,
        base_system: crate::apt::depsolve::BaseSystem::Repos(tf.base_system_repos.clone()),
    };
    let freshness = crate::apt::universe::Freshness {
        allow_older: options.allow_older_metadata,
        ..Default::default()
    };
    let cachedir = &options.cachedir;
    let resolution = resolve_cache::resolve(
        &specs, &locals, arch, cachedir, &request, locked, &freshness,
    )
    .with_context(|| format!("resolving the packages of {}", tf.path.display()))?;
    if resolution.cache_hit {
        eprintln!(
            "keel-compose: package set unchanged since an earlier resolution (resolve cache)"
        );
    }
    Ok(resolution.packages)
}

fn choose_version(
    repo: &ostree::Repo,
    tf: &Treefile,
    explicit: Option<&str>,
) -> anyhow::Result<String> {
    let existing = release::version::ref_history_versions(repo, &tf.reference)
        .with_context(|| format!("reading the versions on {}", tf.reference))?;
    let today = chrono::Local::now().date_naive();
    let chosen = release::version::choose(
        explicit,
        tf.automatic_version_prefix.as_deref(),
        today,
        &existing,
    )
    .context("choosing the commit's version")?;
    // Without a prefix, the date stands in (`20261122.0`), so every commit has a version.
    Ok(match chosen {
        Some(version) => version,
        None => release::version::next_version(&today.format("%Y%m%d").to_string(), &existing),
    })
}

fn check_passwd(repo: &ostree::Repo, reference: &str, root: &Dir) -> anyhow::Result<()> {
    let previous_passwd = commit::read_previous_file(repo, reference, "usr/etc/passwd")?;
    let previous_group = commit::read_previous_file(repo, reference, "usr/etc/group")?;
    let (Some(previous_passwd), Some(previous_group)) = (previous_passwd, previous_group) else {
        return Ok(());
    };
    let new_passwd = root
        .read_to_string("usr/etc/passwd")
        .context("reading the new tree's /usr/etc/passwd")?;
    let new_group = root
        .read_to_string("usr/etc/group")
        .context("reading the new tree's /usr/etc/group")?;
    passwd::check(&previous_passwd, &previous_group, &new_passwd, &new_group).with_context(
        || format!("users and groups changed ids since the last commit of {reference}"),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::treefile::AptRepo;

    fn report(no_op: bool) -> Report {
        Report {
            commit: "ab12".into(),
            reference: "keel/test/host".into(),
            version: "20261122.1".into(),
            packages: 199,
            kernel: "6.1.0-56-amd64".into(),
            tree_bytes: 928_836_608,
            repo_bytes_added: 328_485_251,
            phases: vec![PhaseTime {
                phase: "commit".into(),
                seconds: 16.7,
            }],
            seconds: 109.3,
            no_op,
            base_layer: None,
            release: Default::default(),
        }
    }

    #[test]
    fn report_renders_for_people_and_serializes_for_scripts() {
        assert_eq!(
            report(false).render(),
            "keel/test/host => ab12\nversion 20261122.1, 199 packages, kernel 6.1.0-56-amd64, \
             tree 928 MB, repository +328 MB, 109.3 s"
        );
        assert!(report(true).render().ends_with("nothing was written"));
        let json: serde_json::Value = serde_json::to_value(report(true)).unwrap();
        assert_eq!(json["ref"], "keel/test/host");
        assert_eq!(json["no_op"], true);
        assert_eq!(json["phases"][0]["phase"], "commit");
    }

    #[test]
    fn parent_pid_from_stat_lines() {
        for (stat, want) in [
            ("1234 (bwrap) S 99 1234 1234 0 -1", Some(99)),
            ("1234 (odd name) x) R 7 1 1", Some(7)),
            ("garbage", None),
        ] {
            assert_eq!(parent_pid(stat), want, "{stat}");
        }
        let mine = std::fs::read_to_string("/proc/self/stat").unwrap();
        let parent = std::os::unix::process::parent_id() as i32;
        assert_eq!(parent_pid(&mine), Some(parent));
    }

    #[test]
    fn debian_arch_names() {
        assert_eq!(debian_arch("x86_64"), Some("amd64"));
        assert_eq!(debian_arch("aarch64"), Some("arm64"));
        assert_eq!(debian_arch("sparc"), None);
    }

    #[test]
    fn treefile_repos_map_to_apt_sources() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mirror.sources"),
            "Types: deb\nURIs: http://127.0.0.1:9/debian\nSuites: bookworm\nComponents: main\nSigned-By: /k.gpg\n",
        )
        .unwrap();
        let repos = vec![
            Repo::Machine {
                name: "debian".into(),
            },
            Repo::Apt(AptRepo {
                name: "extra".into(),
                url: "http://127.0.0.1:9/extra".into(),
                suites: vec!["stable".into()],
                components: vec!["main".into()],
                architectures: vec![],
                keyring: "/extra.gpg".into(),
            }),
            Repo::Local {
                name: "overlay".into(),
                path: "/srv/debs".into(),
            },
        ];
        let (specs, locals) = repo_sources(&repos, dir.path()).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(
            specs[0].name, "debian",
            "machine sources carry the treefile's name"
        );
        assert_eq!(specs[0].url, "http://127.0.0.1:9/debian");
        assert_eq!(specs[1].name, "extra");
        assert_eq!(
            locals,
            vec![LocalRepo {
                name: "overlay".into(),
                path: "/srv/debs".into()
            }]
        );
    }

    #[test]
    fn machine_sources_that_are_empty_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = repo_sources(
            &[Repo::Machine {
                name: "debian".into(),
            }],
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("has no enabled deb822"), "{err}");
    }
}
