//! Base layers kept as commits in the package cache's bare repository
//! (`CACHEDIR/pkgcache-repo`, ref `keel-layer/<key>`; see [`super::layers`] for the key).
//!
//! A stored layer is checked out with hardlinks: the tree's files *are* the repository's object
//! files, and a [`ostree::RepoDevInoCache`] filled by the checkout lets the final commit skip
//! reading every file it did not replace. Whatever runs on such a tree must replace files,
//! never write into them; the pipeline runs everything that could over an overlay
//! (`crate::overlay`) for that reason.
//!
//! Storing a layer consumes the tree it was built in (libostree moves the files into the
//! repository instead of copying them) and prunes the repository down to the newest
//! [`KEEP_LAYERS`] layers, the per-package cache and nothing else.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

/// Ref prefix of stored base layers.
const REF_PREFIX: &str = "keel-layer/";
/// Base layers kept after storing a new one (by commit time, newest first).
pub const KEEP_LAYERS: usize = 3;
/// Commits without a ref (the trees of earlier composes, staged here on their way to the
/// repository) tolerated before [`LayerCache::tidy`] prunes them with what only they hold.
pub const MAX_UNREFERENCED: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum LayerCacheError {
    #[error("base layer cache {}: {action}: {source}; delete {} if it is damaged (the next compose rebuilds it)", repo.display(), repo.display())]
    Ostree {
        repo: PathBuf,
        action: String,
        #[source]
        source: glib::Error,
    },
    #[error("base layer cache {}: {action}: {source}", repo.display())]
    Io {
        repo: PathBuf,
        action: String,
        #[source]
        source: std::io::Error,
    },
}

/// The base layers of one cache directory.
pub struct LayerCache {
    repo: ostree::Repo,
    path: PathBuf,
}

/// A stored layer checked out into a tree.
pub struct CheckedOut {
    /// The layer's commit in [`LayerCache::repo`].
    pub commit: String,
    /// (device, inode) -> checksum of every hardlinked file of the checkout.
    pub devino: ostree::RepoDevInoCache,
}

impl LayerCache {
    /// Opens the bare repository at `repo` (created by `PackageCache::open`).
    pub fn open(repo: &Path) -> Result<Self, LayerCacheError> {
        let handle = ostree::Repo::new_for_path(repo);
        let cache = LayerCache {
            repo: handle,
            path: repo.to_path_buf(),
        };
        cache
            .repo
            .open(gio::Cancellable::NONE)
            .map_err(cache.ostree_err("opening the repository"))?;
        Ok(cache)
    }

    pub fn repo(&self) -> &ostree::Repo {
        &self.repo
    }

    /// The commit of the layer with this key, if one is stored.
    pub fn lookup(&self, key: &str) -> Result<Option<String>, LayerCacheError> {
        let found = self
            .repo
            .resolve_rev(&format!("{REF_PREFIX}{key}"), true)
            .map_err(self.ostree_err("looking up a base layer"))?;
        Ok(found.map(|c| c.to_string()))
    }

    /// Commits `tree` (consuming it: its files move into the repository) as the layer `key`,
    /// then drops all but the newest [`KEEP_LAYERS`] layers. Entries a commit cannot hold
    /// (sockets, FIFOs, device nodes) are left out. Returns the commit.
    pub fn store(
        &self,
        key: &str,
        tree: &Path,
        cancellable: &gio::Cancellable,
    ) -> Result<String, LayerCacheError> {
        let dir = std::fs::File::open(tree)
            .map_err(self.io_err(&format!("opening the base tree {}", tree.display())))?;
        let filter = |_: &ostree::Repo, _: &str, info: &gio::FileInfo| match info.file_type() {
            gio::FileType::Regular | gio::FileType::SymbolicLink | gio::FileType::Directory => {
                ostree::RepoCommitFilterResult::Allow
            }
            _ => ostree::RepoCommitFilterResult::Skip,
        };
        let modifier = ostree::RepoCommitModifier::new(
            ostree::RepoCommitModifierFlags::CONSUME,
            Some(Box::new(filter)),
        );
        let written = (|| -> Result<String, glib::Error> {
            self.repo.prepare_transaction(Some(cancellable))?;
            let mtree = ostree::MutableTree::new();
            self.repo.write_dfd_to_mtree(
                dir.as_raw_fd(),
                ".",
                &mtree,
                Some(&modifier),
                Some(cancellable),
            )?;
            let root = self.repo.write_mtree(&mtree, Some(cancellable))?;
            let root = root.downcast::<ostree::RepoFile>().map_err(|_| {
                glib::Error::new(gio::IOErrorEnum::Failed, "write_mtree returned no RepoFile")
            })?;
            let subject = format!("keel base layer {key}");
            let commit = self.repo.write_commit(
                None,
                Some(&subject),
                None,
                None,
                &root,
                Some(cancellable),
            )?;
            self.repo
                .transaction_set_ref(None, &format!("{REF_PREFIX}{key}"), Some(&commit));
            self.repo.commit_transaction(Some(cancellable))?;
            Ok(commit.to_string())
        })();
        let commit = match written {
            Ok(commit) => commit,
            Err(source) => {
                let _ = self.repo.abort_transaction(gio::Cancellable::NONE);
                return Err(self.ostree_err("storing a base layer")(source));
            }
        };
        self.prune_layers(cancellable)?;
        Ok(commit)
    }

    /// Checks `commit` out at `dest` (which must not exist) with hardlinks; zero-sized files are
    /// copied, so no inode collects the links of every empty file.
    pub fn checkout(&self, commit: &str, dest: &Path) -> Result<CheckedOut, LayerCacheError> {
        let (parent, name) = match (dest.parent(), dest.file_name()) {
            (Some(parent), Some(name)) => (parent, name),
            _ => {
                return Err(LayerCacheError::Io {
                    repo: self.path.clone(),
                    action: format!("checking out into {}", dest.display()),
                    source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
                })
            }
        };
        let parent_dir = std::fs::File::open(parent)
            .map_err(self.io_err(&format!("opening {}", parent.display())))?;
        let devino = ostree::RepoDevInoCache::new();
        let options = ostree::RepoCheckoutAtOptions {
            mode: ostree::RepoCheckoutMode::None,
            overwrite_mode: ostree::RepoCheckoutOverwriteMode::None,
            enable_fsync: false,
            no_copy_fallback: false,
            force_copy_zerosized: true,
            devino_to_csum_cache: Some(devino.clone()),
            ..Default::default()
        };
        self.repo
            .checkout_at(
                Some(&options),
                parent_dir.as_raw_fd(),
                Path::new(name),
                commit,
                gio::Cancellable::NONE,
            )
            .map_err(self.ostree_err(&format!(
                "checking out base layer {commit} into {}",
                dest.display()
            )))?;
        Ok(CheckedOut {
            commit: commit.to_string(),
            devino,
        })
    }

    /// Prunes what only commits without a ref hold once there are more than
    /// [`MAX_UNREFERENCED`] of them; returns whether it pruned. Counting is two directory
    /// scans; a prune of the cache took 0.3 s (19k objects), so it runs every few composes
    /// rather than after each.
    pub fn tidy(&self, cancellable: &gio::Cancellable) -> Result<bool, LayerCacheError> {
        let commits = self
            .repo
            .list_commit_objects_starting_with(None, Some(cancellable))
            .map_err(self.ostree_err("listing commits"))?;
        let referenced: std::collections::HashSet<String> = self
            .repo
            .list_refs(None, Some(cancellable))
            .map_err(self.ostree_err("listing refs"))?
            .into_values()
            .collect();
        let unreferenced = commits
            .iter()
            .filter(|c| !referenced.contains(c.as_str()))
            .count();
        if unreferenced <= MAX_UNREFERENCED {
            return Ok(false);
        }
        self.repo
            .prune(ostree::RepoPruneFlags::REFS_ONLY, -1, Some(cancellable))
            .map_err(self.ostree_err("pruning unreferenced objects"))?;
        Ok(true)
    }

    /// Keeps the newest [`KEEP_LAYERS`] layers and prunes every object no ref reaches.
    fn prune_layers(&self, cancellable: &gio::Cancellable) -> Result<(), LayerCacheError> {
        let refs = self
            .repo
            .list_refs(Some(REF_PREFIX.trim_end_matches('/')), Some(cancellable))
            .map_err(self.ostree_err("listing base layers"))?;
        let mut layers = Vec::new();
        for (key, commit) in refs {
            let (variant, _) = self
                .repo
                .load_commit(&commit)
                .map_err(self.ostree_err(&format!("reading base layer {key}")))?;
            layers.push((ostree::commit_get_timestamp(&variant), key));
        }
        layers.sort_by(|a, b| b.cmp(a));
        // `list_refs` names them without the prefix it was given.
        for (_, key) in layers.iter().skip(KEEP_LAYERS) {
            let full = format!("{REF_PREFIX}{key}");
            self.repo
                .set_ref_immediate(None, &full, None, Some(cancellable))
                .map_err(self.ostree_err(&format!("dropping the old base layer {full}")))?;
        }
        self.repo
            .prune(ostree::RepoPruneFlags::REFS_ONLY, -1, Some(cancellable))
            .map_err(self.ostree_err("pruning unreferenced objects"))?;
        Ok(())
    }

    fn ostree_err(&self, action: &str) -> impl FnOnce(glib::Error) -> LayerCacheError {
        let (repo, action) = (self.path.clone(), action.to_string());
        move |source| LayerCacheError::Ostree {
            repo,
            action,
            source,
        }
    }

    fn io_err(&self, action: &str) -> impl FnOnce(std::io::Error) -> LayerCacheError {
        let (repo, action) = (self.path.clone(), action.to_string());
        move |source| LayerCacheError::Io {
            repo,
            action,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_with(dir: &Path, content: &str) -> PathBuf {
        let tree = dir.join(format!("tree-{content}"));
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/layer"), content).unwrap();
        tree
    }

    #[test]
    fn storing_keeps_the_newest_layers_and_checkouts_share_the_objects() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let repo = dir.path().join("repo");
        let status = std::process::Command::new("ostree")
            .args(["init", "--mode=bare", &format!("--repo={}", repo.display())])
            .status()
            .unwrap();
        assert!(status.success());
        let cache = LayerCache::open(&repo).unwrap();
        let keys = ["k1", "k2", "k3", "k4"];
        for key in keys {
            assert_eq!(cache.lookup(key).unwrap(), None);
            let tree = tree_with(dir.path(), key);
            let commit = cache.store(key, &tree, &gio::Cancellable::new()).unwrap();
            assert_eq!(cache.lookup(key).unwrap().as_deref(), Some(commit.as_str()));
            assert!(
                !tree.join("etc/layer").exists(),
                "storing consumes the tree"
            );
            // Commit times have a one-second resolution: keep the order unambiguous.
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        assert_eq!(
            cache.lookup("k1").unwrap(),
            None,
            "the oldest layer is dropped"
        );
        for key in &keys[1..] {
            assert!(cache.lookup(key).unwrap().is_some(), "{key} is kept");
        }

        let commit = cache.lookup("k4").unwrap().unwrap();
        let dest = dir.path().join("checkout");
        let checked_out = cache.checkout(&commit, &dest).unwrap();
        assert_eq!(checked_out.commit, commit);
        assert_eq!(
            std::fs::read_to_string(dest.join("etc/layer")).unwrap(),
            "k4"
        );
        use std::os::unix::fs::MetadataExt;
        let nlink = std::fs::metadata(dest.join("etc/layer")).unwrap().nlink();
        assert!(nlink >= 2, "the checkout hardlinks the repository's object");
    }
}
