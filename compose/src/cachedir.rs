//! The compose cache directory (`--cachedir`): its layout, its lock and its scratch trees.
//!
//! ```text
//! CACHEDIR/
//!   .keel-compose.lock   the flock held while a compose runs (this module)
//!   apt/                 verified InRelease and Packages files (`apt::index`), and under
//!                        `apt/dates/` the newest Date seen per suite (`apt::seen_dates`)
//!   debs/sha256/         .deb files by sha256 (`fetch`, which prunes its stale temp files),
//!                        each with the control fields read from it (`apt::deb_control`)
//!   resolve-cache/       earlier resolutions (`resolve_cache`, which prunes to the newest)
//!   pkgcache-repo/       bare ostree repo: unpacked packages and base layers
//!                        (`install::pkgcache`, `install::layer_cache`, which prunes layers)
//!   tmp/compose-XXXX/    scratch trees, one per running compose (`scratch`, through
//!                        [`CacheDir::scratch`], which removes those of killed composes)
//! ```
//!
//! The cache directory itself is private (mode 0700, an existing one is tightened): the
//! package cache's trees carry setuid binaries and files only root may read, and another user
//! who could walk into it could run or read them.
//!
//! [`CacheDir::open`] creates the layout and takes the lock; only this module joins these
//! names, the modules named above are handed their directory. One compose at a time per cache
//! directory: composes sharing it share the package cache, whose base layers are stored and
//! pruned, and whose staged trees are pruned, while a compose runs. A second compose waits for
//! the first, saying so through the progress sink.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use keel_common::progress::Progress;
use rustix::fs::{flock, FlockOperation};

use crate::install::{PackageCache, PackageCacheError};
use crate::scratch;

/// The mode of the cache directory.
pub const MODE: u32 = 0o700;
/// The lock file inside the cache directory.
pub const LOCK_FILE: &str = ".keel-compose.lock";
const INDICES: &str = "apt";
const DEBS: &str = "debs/sha256";
const RESOLUTIONS: &str = "resolve-cache";
const PACKAGE_REPO: &str = "pkgcache-repo";
const SCRATCH: &str = "tmp";

#[derive(Debug, thiserror::Error)]
pub enum CacheDirError {
    #[error("creating the cache directory {}: {source}; check --cachedir and its permissions", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("locking the cache directory through {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An open, locked cache directory. The lock goes with the file when this is dropped (or
/// when the process dies).
#[derive(Debug)]
pub struct CacheDir {
    root: PathBuf,
    _lock: File,
}

impl CacheDir {
    /// Creates the layout under `root` (and `root` itself) and takes the lock, waiting (after
    /// saying so to `progress`) while another compose holds it.
    pub fn open(root: &Path, progress: &dyn Progress) -> Result<CacheDir, CacheDirError> {
        create_private(root).map_err(|source| CacheDirError::Create {
            path: root.to_path_buf(),
            source,
        })?;
        for dir in [
            Path::new(INDICES),
            Path::new(DEBS),
            Path::new(RESOLUTIONS),
            Path::new(PACKAGE_REPO),
            Path::new(SCRATCH),
        ] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(|source| CacheDirError::Create {
                path: path.clone(),
                source,
            })?;
        }
        let path = root.join(LOCK_FILE);
        let err = |source: std::io::Error| CacheDirError::Lock {
            path: path.clone(),
            source,
        };
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err)?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            progress.message(&format!(
                "waiting for another compose using the cache directory {}",
                root.display()
            ));
            flock(&file, FlockOperation::LockExclusive).map_err(|e| err(e.into()))?;
        }
        Ok(CacheDir {
            root: root.to_path_buf(),
            _lock: file,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Verified repository index files (see `apt::index`).
    pub fn indices(&self) -> PathBuf {
        self.root.join(INDICES)
    }

    /// Fetched `.deb` files, named by their sha256 (see `fetch`).
    pub fn debs(&self) -> PathBuf {
        self.root.join(DEBS)
    }

    /// Stored resolutions (see `resolve_cache`).
    pub fn resolutions(&self) -> PathBuf {
        self.root.join(RESOLUTIONS)
    }

    /// The package cache's bare ostree repository (see `install::pkgcache`).
    pub fn package_repo(&self) -> PathBuf {
        self.root.join(PACKAGE_REPO)
    }

    /// Opens (creating if needed) the package cache in [`CacheDir::package_repo`].
    pub fn package_cache(&self) -> Result<PackageCache, PackageCacheError> {
        PackageCache::open(&self.package_repo())
    }

    /// A fresh scratch directory for one compose, removed when dropped; scratch trees of
    /// composes that were killed are removed first (see `scratch`).
    pub fn scratch(&self, progress: &dyn Progress) -> anyhow::Result<tempfile::TempDir> {
        scratch::create(&self.root.join(SCRATCH), progress)
    }
}

/// Creates `path` (and missing parents) with mode [`MODE`], or gives an existing one that
/// mode if it has another.
fn create_private(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(MODE)
        .create(path)?;
    let meta = std::fs::metadata(path)?;
    if meta.permissions().mode() & 0o7777 != MODE {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(MODE))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_cache_dir_is_private_and_a_loose_one_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("a/cache");
        CacheDir::open(&fresh, &Discard).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        let loose = dir.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(loose.join("kept"), "x").unwrap();
        CacheDir::open(&loose, &Discard).unwrap();
        assert_eq!(mode(&loose), 0o700);
        assert!(loose.join("kept").exists(), "the content stays");
    }
    use keel_common::progress::{Discard, Recorder};
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn open_creates_the_layout_and_hands_out_distinct_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("new/cache");
        let cache = CacheDir::open(&root, &Discard).unwrap();
        let dirs = [
            cache.indices(),
            cache.debs(),
            cache.resolutions(),
            cache.package_repo(),
        ];
        for sub in &dirs {
            assert!(sub.is_dir(), "{} was not created", sub.display());
            assert!(sub.starts_with(&root), "{}", sub.display());
        }
        let unique: std::collections::BTreeSet<_> = dirs.iter().collect();
        assert_eq!(unique.len(), dirs.len());
        assert!(root.join(LOCK_FILE).is_file());
        let scratch = cache.scratch(&Discard).unwrap();
        assert!(scratch.path().starts_with(root.join(SCRATCH)));
        let path = scratch.path().to_path_buf();
        drop(scratch);
        assert!(
            !path.exists(),
            "a scratch directory is removed when dropped"
        );
    }

    #[test]
    fn the_package_cache_lives_in_its_own_repository() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheDir::open(dir.path(), &Discard).unwrap();
        let packages = cache.package_cache().unwrap();
        assert_eq!(packages.repo_path(), Some(cache.package_repo().as_path()));
        assert!(cache.package_repo().join("config").is_file());
    }

    #[test]
    fn a_second_compose_waits_until_the_first_lets_go_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let first = CacheDir::open(dir.path(), &Discard).unwrap();
        let (tx, rx) = mpsc::channel();
        let path = dir.path().to_path_buf();
        let sink = std::sync::Arc::new(Recorder::default());
        let waiter_sink = sink.clone();
        let waiter = std::thread::spawn(move || {
            let second = CacheDir::open(&path, waiter_sink.as_ref()).unwrap();
            tx.send(()).unwrap();
            drop(second);
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "the second lock was taken while the first was held"
        );
        drop(first);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the second compose got the lock once the first let go");
        waiter.join().unwrap();
        let lines = sink.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("waiting for another compose"),
            "{lines:?}"
        );
    }

    #[test]
    fn an_uncreatable_cache_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let err = CacheDir::open(&file.join("cache"), &Discard).unwrap_err();
        assert!(err.to_string().contains("a-file/cache"), "{err}");
    }
}
