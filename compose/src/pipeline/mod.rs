//! The compose pipeline: treefile -> packages -> tree -> ostree commit, phase by phase.
//!
//! Order and guarantees:
//! 1. `load` the treefile and `resolve` its packages. Both only read (the index cache in the
//!    cache directory aside, see `cachedir`): a bad treefile or a missing package fails here,
//!    before the repository is created or touched.
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
//! The caller passes a [`Cancel`] token and a [`Progress`] sink; nothing here is process-wide,
//! so two composes in one process (a daemon's two callers) cancel independently. The scratch
//! tree is removed on every exit path, including errors and cancellation: the token is
//! checked between phases, cancels libostree's work and kills the running sandboxed process
//! (a maintainer script, dracut), so the current phase fails at once, with
//! `keel_common::cancel::Cancelled` in its error chain. A repository transaction that was
//! interrupted is aborted: the refs stay as they were. A compose killed outright (SIGKILL)
//! leaves its scratch tree; the next compose with the same cachedir removes it (its owner
//! process is gone). Phases, their times and what they found are reported to the sink,
//! never printed.

mod phases;
mod report;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use cap_std::fs::Dir;
use keel_common::cancel::Cancel;
use keel_common::progress::Progress;

use crate::cachedir::CacheDir;
use crate::commit::{self, CommitMetadata};
use crate::format::{self, PackageFormat, ResolveInput};
use crate::install::{self, layers};
use crate::overlay::{self, Overlay, OverlayDirs};
use crate::package::ResolvedPackage;
use crate::release;
use crate::sandbox::Sandbox;
use crate::treefile::{self, Treefile};
use crate::{customize, fetch, initramfs, ostreeify, passwd};

pub use crate::format::debian::{debian_arch, repo_sources, MACHINE_SOURCES_DIR};
pub use phases::Cancellation;
pub use report::{PhaseTime, Report};

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

/// Runs the whole compose (see the module documentation).
pub fn compose(
    options: &Options,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> anyhow::Result<Report> {
    compose_with(
        options,
        &release::steps::ReleaseOptions::default(),
        cancel,
        progress,
    )
}

/// [`compose`] with release options (`--version`, `--sign-key`, `--force`, lockfiles, deltas).
pub fn compose_with(
    options: &Options,
    release_options: &release::steps::ReleaseOptions,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> anyhow::Result<Report> {
    let cancellation = Cancellation::new(cancel);
    let mut phases = phases::Phases {
        started: Instant::now(),
        times: Vec::new(),
        cancellation: &cancellation,
        progress,
    };

    let tf = phases.run("load", || {
        treefile::load(&options.treefile)
            .with_context(|| format!("loading the treefile {}", options.treefile.display()))
    })?;
    let format = format::for_treefile(&tf);
    let cachedir = CacheDir::open(&options.cachedir, progress)?;
    let prepared = release::steps::prepare(release_options, &tf.reference, progress)?;
    let packages = phases.run("resolve", || {
        resolve(
            format,
            &tf,
            options,
            &cachedir,
            prepared.lockfile.as_ref(),
            progress,
        )
    })?;
    progress.message(&format!("{} packages", packages.len()));
    let input_hash =
        release::inputs::input_hash(&tf.hash, &packages, release::inputs::COMPOSER_VERSION);

    if let Some(unchanged) = release::steps::unchanged_commit(
        &options.repo,
        &tf.reference,
        &input_hash,
        release_options.force,
    )? {
        progress.message(&format!(
            "{} already has these inputs; nothing to do (--force composes anyway)",
            tf.reference
        ));
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

    // Nothing is written to the repository before this point; a compose cancelled while it
    // resolved stops here, before the repository is created.
    phases.check("fetch")?;
    let repo = commit::open_or_create(&options.repo)?;
    let version = choose_version(&repo, &tf, release_options.version.as_deref())?;

    let debs = phases.run("fetch", || {
        let client = keel_io::http::Client::from_env().context("setting up downloads")?;
        fetch::fetch(
            &client,
            &packages,
            &cachedir.debs(),
            FETCH_JOBS,
            progress,
            cancel,
        )
        .context("fetching packages")
    })?;

    // Removed when dropped, whichever way this function returns.
    let scratch = cachedir.scratch(progress)?;
    let tree = scratch.path().join("tree");
    let cache = cachedir
        .package_cache()
        .context("opening the package cache")?;
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
            let build = cancellation.sandbox(with_env(
                Sandbox::new(&scratch.path().join("base")),
                format.script_env(),
            ));
            install::base::prepare(
                format,
                &tree,
                &build,
                &base_packages,
                &base_debs,
                &key,
                &cache,
                cancellation.cancellable(),
            )
            .context("preparing the base layer")
        })?;
        progress.message(&format!(
            "base layer of {} packages {} ({} packages over it)",
            base.report.packages,
            if base.report.reused {
                "reused from the cache"
            } else {
                "installed and stored in the cache"
            },
            top_packages.len()
        ));
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
    let sandbox = cancellation.sandbox(Sandbox::new(&work_tree));

    phases.run("install", || {
        let sandbox = with_env(sandbox.clone(), format.script_env());
        let report = match &base {
            Some(_) if top_packages.is_empty() => return Ok(()),
            Some(_) => format.install_over(&sandbox, &top_packages, &top_debs),
            None => format.install(&sandbox, &packages, &debs, &cache),
        }
        .context("installing packages")?;
        progress.message(&format!(
            "{} packages installed ({} from the package cache)",
            report.packages,
            report.from_cache.len()
        ));
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
        let layout = ostreeify::ostreeify(&root, format.database())?;
        if !layout.dropped_var_files.is_empty() {
            progress.message(&format!(
                "dropped {} files under /var (logs, caches; /var starts empty)",
                layout.dropped_var_files.len()
            ));
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
        let linked = base.as_ref().map(|b| commit::LinkedTree {
            source: b.cache.repo(),
            devino: &b.checkout.devino,
        });
        commit::commit_tree(
            &repo,
            &tree,
            &metadata,
            linked.as_ref(),
            cancellation.cancellable(),
        )
        .context("committing the tree")
    })?;
    progress.message(&format!("{} is now {checksum}", tf.reference));
    if let Some(base) = &base {
        // The tree was staged in the package cache on its way; drop such leftovers now and then.
        base.cache
            .tidy(cancellation.cancellable())
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
            progress,
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

/// The `items` at `indices`, in that order.
fn pick<T: Clone>(items: &[T], indices: &[usize]) -> Vec<T> {
    indices.iter().map(|&i| items[i].clone()).collect()
}

/// `sandbox` with the package format's script environment set.
fn with_env(sandbox: Sandbox, env: &[(&str, &str)]) -> Sandbox {
    env.iter()
        .fold(sandbox, |sandbox, (name, value)| sandbox.env(name, value))
}

fn resolve(
    format: &dyn PackageFormat,
    tf: &Treefile,
    options: &Options,
    cachedir: &CacheDir,
    locked: Option<&(release::lockfile::Lockfile, PathBuf)>,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<ResolvedPackage>> {
    let input = ResolveInput {
        treefile: tf,
        cachedir,
        locked,
        allow_older_metadata: options.allow_older_metadata,
    };
    let resolution = format
        .resolve(&input, progress)
        .with_context(|| format!("resolving the packages of {}", tf.path.display()))?;
    if resolution.cache_hit {
        progress.message("package set unchanged since an earlier resolution (resolve cache)");
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
