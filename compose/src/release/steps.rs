//! The release steps of `keel-compose tree`, called by the pipeline: the options they take
//! (`--version`, `--sign-key`, `--force`, `--lockfile`, `--write-lockfile`, `--delta-from-empty`),
//! the no-op check before anything is fetched, the locked resolution, and publishing after the
//! commit (signature, deltas, summary, lockfile).

use std::path::{Path, PathBuf};

use anyhow::Context;
use keel_common::progress::Progress;
use serde::Serialize;

use super::inputs::{self, NoOp};
use super::lockfile::{self, Lockfile};
use super::publish::{self, DeltaReport, PublishOptions};
use super::signing;
use crate::apt::depsolve::{self, Request};
use crate::apt::universe::Universe;
use crate::package::ResolvedPackage;

/// Release options of `keel-compose tree`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReleaseOptions {
    /// Use this version instead of the treefile's automatic-version-prefix numbering.
    #[arg(long = "version", value_name = "VERSION")]
    pub version: Option<String>,

    /// Sign the commit and the summary with this ed25519 secret key (from `keel-compose keygen`).
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,

    /// Compose even when the inputs equal those of the ref's current commit.
    #[arg(long)]
    pub force: bool,

    /// Compose exactly the packages of this lockfile instead of resolving the treefile's list.
    #[arg(long, value_name = "FILE")]
    pub lockfile: Option<PathBuf>,

    /// Write the lockfile here [default: next to the repo, REPO/../<ref with '-' for '/'>.lock.json].
    #[arg(long, value_name = "FILE")]
    pub write_lockfile: Option<PathBuf>,

    /// Also generate a static delta from nothing to the new commit (slow: minutes for a host).
    #[arg(long)]
    pub delta_from_empty: bool,
}

/// What the release steps did; part of the compose report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReleaseReport {
    pub signed: bool,
    pub deltas: Vec<DeltaReport>,
    pub lockfile: Option<PathBuf>,
    pub seconds: f64,
}

/// What a compose checks and carries before it starts: read once, up front, so a missing key
/// or lockfile fails before any work.
#[derive(Debug)]
pub struct Prepared {
    pub sign_key: Option<keel_common::keys::SecretKey>,
    pub lockfile: Option<(Lockfile, PathBuf)>,
}

/// Reads the signing key and the lockfile named by `options`.
pub fn prepare(
    options: &ReleaseOptions,
    reference: &str,
    progress: &dyn Progress,
) -> anyhow::Result<Prepared> {
    let sign_key = match &options.sign_key {
        Some(path) => Some(signing::read_secret_key(path)?),
        None => None,
    };
    let lockfile = match &options.lockfile {
        Some(path) => {
            let lock = Lockfile::read(path)?;
            if lock.reference != reference {
                progress.message(&format!(
                    "note: lockfile {} was written for {}, composing {}",
                    path.display(),
                    lock.reference,
                    reference
                ));
            }
            Some((lock, path.clone()))
        }
        None => None,
    };
    Ok(Prepared { sign_key, lockfile })
}

/// Resolves the locked set against `universe`: each locked package must be there with its
/// sha256, and the pinned resolution must be exactly the locked set.
pub fn resolve_locked(
    universe: &Universe,
    lock: &Lockfile,
    path: &Path,
) -> anyhow::Result<Vec<ResolvedPackage>> {
    lock.check_available(path, |name, version, arch| {
        universe
            .by_name(name)
            .iter()
            .map(|&id| universe.package(id))
            .filter(|p| p.arch == arch && p.version.to_string() == version)
            .map(|p| p.sha256.clone())
            .collect()
    })?;
    let request = Request {
        packages: lock.pinned_request(),
        exclude: Vec::new(),
        recommends: false,
        // The lockfile names every package, the base system's included.
        base_system: depsolve::BaseSystem::Repos(Default::default()),
    };
    let resolved = depsolve::resolve(universe, &request)
        .with_context(|| format!("resolving the locked packages of {}", path.display()))?;
    lock.check_resolved(path, &resolved)?;
    Ok(resolved)
}

/// The ref's current commit, found to have the same inputs as the compose at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchanged {
    pub commit: String,
    pub version: String,
    pub kernel: String,
}

/// The ref's current commit when it was composed from the same inputs (and `--force` was not
/// given): the compose then writes nothing. Never creates the repo.
pub fn unchanged_commit(
    repo_path: &Path,
    reference: &str,
    input_hash: &str,
    force: bool,
) -> anyhow::Result<Option<Unchanged>> {
    if force || !repo_path.join("config").exists() {
        return Ok(None);
    }
    let repo = ostree::Repo::new_for_path(repo_path);
    repo.open(ostree::gio::Cancellable::NONE)
        .with_context(|| format!("opening ostree repo {}", repo_path.display()))?;
    let found = inputs::check(&repo, reference, input_hash)
        .with_context(|| format!("reading the input hash of {reference}"))?;
    let NoOp::Unchanged { commit } = found else {
        return Ok(None);
    };
    let object = repo
        .load_variant(ostree::ObjectType::Commit, &commit)
        .with_context(|| format!("loading commit {commit}"))?;
    let field = |key| super::commit_metadata_string(&object, key).unwrap_or_default();
    Ok(Some(Unchanged {
        version: field(keel_common::meta::VERSION),
        kernel: field(keel_common::meta::KERNEL_VERSION),
        commit,
    }))
}

/// After the commit: sign it, generate its deltas, regenerate (and sign) the summary, write
/// the lockfile.
#[allow(clippy::too_many_arguments)]
pub fn publish_commit(
    repo: &ostree::Repo,
    repo_path: &Path,
    commit: &str,
    reference: &str,
    static_deltas: u32,
    packages: &[ResolvedPackage],
    options: &ReleaseOptions,
    prepared: &Prepared,
    progress: &dyn Progress,
) -> anyhow::Result<ReleaseReport> {
    let published = publish::publish(
        repo,
        commit,
        &PublishOptions {
            sign_key: prepared.sign_key.clone(),
            static_deltas,
            delta_from_empty: options.delta_from_empty,
        },
    )
    .with_context(|| format!("publishing {commit}"))?;
    for delta in &published.deltas {
        progress.message(&format!(
            "static delta {} -> {}: {} bytes in {:.1} s",
            delta.from.as_deref().unwrap_or("(nothing)"),
            delta.to,
            delta.bytes,
            delta.seconds
        ));
    }
    let lock_path = options
        .write_lockfile
        .clone()
        .unwrap_or_else(|| lockfile::default_path(repo_path, reference));
    Lockfile::from_resolved(reference, packages).write(&lock_path)?;
    progress.message(&format!("wrote lockfile {}", lock_path.display()));
    Ok(ReleaseReport {
        signed: published.commit_signed,
        deltas: published.deltas,
        lockfile: Some(lock_path),
        seconds: published.seconds,
    })
}
