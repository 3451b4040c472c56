//! Putting the base layer into the scratch tree: reused from the [`LayerCache`] when its key
//! is stored, otherwise installed into a build directory and stored first. Either way the tree
//! is then a hardlinked checkout of the stored layer, so a cold compose and a warm one hand
//! the same tree to the top layer.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ostree::gio;
use serde::Serialize;

use super::layer_cache::{CheckedOut, LayerCache, LayerCacheError};
use super::PackageCache;
use crate::format::PackageFormat;
use crate::package::ResolvedPackage;
use crate::sandbox::Sandbox;

/// What happened to the base layer, for the compose report.
#[derive(Clone, Debug, Serialize)]
pub struct BaseReport {
    /// The layer's cache key (see `layers::base_key`).
    pub key: String,
    pub packages: usize,
    /// Whether a stored layer was reused (false: it was installed and stored now).
    pub reused: bool,
    /// Installing and storing the layer (0 when reused).
    pub build_seconds: f64,
    /// Checking it out into the tree.
    pub checkout_seconds: f64,
    /// The install's seconds per step (bootstrap, essential, ...; empty when reused), so cold
    /// composes can be compared step by step.
    pub install_phases: Vec<(String, f64)>,
}

/// The base layer checked out into the tree.
pub struct Base {
    pub cache: LayerCache,
    pub checkout: CheckedOut,
    pub report: BaseReport,
}

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("the package cache is disabled; a base layer needs it")]
    NoCache,
    #[error(transparent)]
    Cache(#[from] LayerCacheError),
    #[error("creating {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("installing the base layer: {0:#}")]
    Install(anyhow::Error),
}

/// Checks the base layer `key` (the packages `packages`, with `.deb` files `debs`) out into
/// `tree`, which must not exist. When it is not stored yet, `format` installs it first into
/// `build_sandbox`'s tree (a directory that must not exist yet), with that sandbox's options,
/// and it is stored (consuming that directory).
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    format: &dyn PackageFormat,
    tree: &Path,
    build_sandbox: &Sandbox,
    packages: &[ResolvedPackage],
    debs: &[PathBuf],
    key: &str,
    pkgcache: &PackageCache,
    cancellable: &gio::Cancellable,
) -> Result<Base, BaseError> {
    let repo = pkgcache.repo_path().ok_or(BaseError::NoCache)?;
    let cache = LayerCache::open(repo)?;
    let started = Instant::now();
    let mut install_phases = Vec::new();
    let (commit, reused) = match cache.lookup(key)? {
        Some(commit) => (commit, true),
        None => {
            let build = build_sandbox.root();
            std::fs::create_dir(build).map_err(|source| BaseError::Create {
                path: build.to_path_buf(),
                source,
            })?;
            let installed = format
                .install(build_sandbox, packages, debs, pkgcache)
                .map_err(BaseError::Install)?;
            install_phases = installed.phases;
            (cache.store(key, build, cancellable)?, false)
        }
    };
    let build_seconds = if reused {
        0.0
    } else {
        started.elapsed().as_secs_f64()
    };
    let lap = Instant::now();
    let checkout = cache.checkout(&commit, tree)?;
    let report = BaseReport {
        key: key.to_string(),
        packages: packages.len(),
        reused,
        build_seconds,
        checkout_seconds: lap.elapsed().as_secs_f64(),
        install_phases,
    };
    Ok(Base {
        cache,
        checkout,
        report,
    })
}
