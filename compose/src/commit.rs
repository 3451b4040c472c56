//! Writing a composed tree into an ostree repository as one commit on a ref, through libostree.
//!
//! The tree is written inside a repository transaction: objects land in the repository's
//! staging directory and are renamed in when the transaction commits; the ref moves as part of
//! that same commit, after every object is in place. Any error (or a cancellation) aborts the
//! transaction, which leaves the repository's refs and commits as they were.

use std::io;
use std::path::{Path, PathBuf};

use keel_common::meta;
use ostree::gio;
use ostree::glib;
use ostree::glib::prelude::*;
use ostree::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("{path} exists but is not an ostree repository: {source}; point --repo at a repository or at a path that does not exist yet")]
    OpenRepo {
        path: PathBuf,
        #[source]
        source: glib::Error,
    },
    #[error("creating the archive repository {path}: {source}")]
    CreateRepo {
        path: PathBuf,
        #[source]
        source: glib::Error,
    },
    #[error("writing the tree {tree} to {reference} in {repo}: {source}")]
    Write {
        tree: PathBuf,
        reference: String,
        repo: PathBuf,
        #[source]
        source: glib::Error,
    },
    #[error("reading {path} from the previous commit of {reference}: {source}")]
    ReadPrevious {
        reference: String,
        path: String,
        #[source]
        source: glib::Error,
    },
    #[error("measuring {path}: {source}")]
    Measure {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Everything Keel records about a commit, under the keys of [`keel_common::meta`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitMetadata {
    pub version: String,
    /// The ref the commit is written to; also its only `ostree.ref-binding`.
    pub reference: String,
    pub input_hash: String,
    /// (name, version), sorted by name.
    pub packages: Vec<(String, String)>,
    /// The merged treefile as TOML.
    pub treefile: String,
    pub treefile_hash: String,
    pub composer_version: String,
    pub kernel_version: String,
}

impl CommitMetadata {
    /// The commit's `a{sv}` metadata.
    pub fn to_variant(&self) -> glib::Variant {
        let dict = glib::VariantDict::new(None);
        dict.insert_value(meta::VERSION, &self.version.to_variant());
        dict.insert_value(
            meta::REF_BINDING,
            &vec![self.reference.clone()].to_variant(),
        );
        dict.insert_value(meta::INPUT_HASH, &self.input_hash.to_variant());
        let mut packages = self.packages.clone();
        packages.sort();
        dict.insert_value(meta::PACKAGES, &packages.to_variant());
        dict.insert_value(meta::TREEFILE, &self.treefile.to_variant());
        dict.insert_value(meta::TREEFILE_HASH, &self.treefile_hash.to_variant());
        dict.insert_value(meta::COMPOSER_VERSION, &self.composer_version.to_variant());
        dict.insert_value(meta::KERNEL_VERSION, &self.kernel_version.to_variant());
        dict.end()
    }
}

/// zlib level for the objects of repositories keel-compose creates. Compressing every file is
/// most of a commit's CPU time: level 1 took a third of the CPU of libostree's default (6);
/// the host tree's commit took 17 s (level 6: 165-508 s, measured under heavier load on the
/// same shared 2-core machine), for 9% more repository bytes (328 MB instead of 300 MB). Static deltas compress on their own. An
/// existing repository keeps its setting (`ostree config set archive.zlib-level N`).
pub const ARCHIVE_ZLIB_LEVEL: i32 = 1;

/// Opens the repository at `path`, creating it in archive mode (the mode hosts pull from over
/// HTTP) when nothing is there yet.
pub fn open_or_create(path: &Path) -> Result<ostree::Repo, CommitError> {
    let repo = ostree::Repo::new_for_path(path);
    if path.join("config").exists() {
        repo.open(gio::Cancellable::NONE)
            .map_err(|source| CommitError::OpenRepo {
                path: path.to_owned(),
                source,
            })?;
    } else {
        let create_err = |source| CommitError::CreateRepo {
            path: path.to_owned(),
            source,
        };
        repo.create(ostree::RepoMode::Archive, gio::Cancellable::NONE)
            .map_err(create_err)?;
        let config = repo.copy_config();
        config.set_integer("archive", "zlib-level", ARCHIVE_ZLIB_LEVEL);
        repo.write_config(&config).map_err(create_err)?;
        repo.reload_config(gio::Cancellable::NONE)
            .map_err(create_err)?;
    }
    Ok(repo)
}

/// Opens an existing repository; `Ok(None)` when `path` holds none yet.
pub fn open_existing(path: &Path) -> Result<Option<ostree::Repo>, CommitError> {
    if !path.join("config").exists() {
        return Ok(None);
    }
    let repo = ostree::Repo::new_for_path(path);
    repo.open(gio::Cancellable::NONE)
        .map_err(|source| CommitError::OpenRepo {
            path: path.to_owned(),
            source,
        })?;
    Ok(Some(repo))
}

/// A tree whose files are, where unchanged, hardlinks into the bare repository `source` (a
/// checked-out base layer), with the checkout's (device, inode) -> checksum map. Files that
/// were changed must have been replaced (new inodes), never written in place.
pub struct LinkedTree<'a> {
    pub source: &'a ostree::Repo,
    pub devino: &'a ostree::RepoDevInoCache,
}

/// Writes `tree` as a new commit on `metadata.reference` (its parent is the ref's current
/// commit, if any) and moves the ref to it. Returns the new commit's checksum.
///
/// With `linked`, the tree is first written into `linked.source`, where every hardlinked file
/// is already an object and is taken from the map without being read; then the objects the new
/// commit reaches and `repo` lacks are imported into `repo`, in `repo`'s transaction. The commit
/// object is copied byte for byte, so the checksum is the same in both repositories; in
/// `linked.source` it has no ref and goes with the cache's next prune.
pub fn commit_tree(
    repo: &ostree::Repo,
    tree: &Path,
    metadata: &CommitMetadata,
    linked: Option<&LinkedTree>,
    cancellable: &gio::Cancellable,
) -> Result<String, CommitError> {
    let write_err = |source| CommitError::Write {
        tree: tree.to_owned(),
        reference: metadata.reference.clone(),
        repo: repo_path(repo),
        source,
    };
    let parent = repo
        .resolve_rev(&metadata.reference, true)
        .map_err(write_err)?;
    let staged = match linked {
        Some(linked) => Some(
            write_linked(linked, tree, metadata, parent.as_deref(), cancellable)
                .map_err(write_err)?,
        ),
        None => None,
    };
    repo.prepare_transaction(Some(cancellable))
        .map_err(write_err)?;
    let written = match (&staged, linked) {
        (Some(checksum), Some(linked)) => {
            import_reachable(linked.source, repo, checksum, cancellable).map(|()| checksum.clone())
        }
        _ => write_in_transaction(repo, tree, metadata, parent.as_deref(), cancellable),
    };
    match written {
        Ok(checksum) => {
            repo.transaction_set_ref(None, &metadata.reference, Some(&checksum));
            match repo.commit_transaction(Some(cancellable)) {
                Ok(_) => Ok(checksum),
                Err(source) => {
                    let _ = repo.abort_transaction(gio::Cancellable::NONE);
                    Err(write_err(source))
                }
            }
        }
        Err(source) => {
            // Abort with a fresh cancellable: the abort must run even after a Ctrl-C.
            let _ = repo.abort_transaction(gio::Cancellable::NONE);
            Err(write_err(source))
        }
    }
}

/// Writes the commit for `tree` into `linked.source` (no ref), in a transaction of its own.
fn write_linked(
    linked: &LinkedTree,
    tree: &Path,
    metadata: &CommitMetadata,
    parent: Option<&str>,
    cancellable: &gio::Cancellable,
) -> Result<String, glib::Error> {
    let source = linked.source;
    source.prepare_transaction(Some(cancellable))?;
    let written = (|| {
        let dir = std::fs::File::open(tree)
            .map_err(|e| glib::Error::new(gio::IOErrorEnum::Failed, &e.to_string()))?;
        let modifier = ostree::RepoCommitModifier::new(
            ostree::RepoCommitModifierFlags::DEVINO_CANONICAL,
            None,
        );
        modifier.set_devino_cache(linked.devino);
        let mtree = ostree::MutableTree::new();
        source.write_dfd_to_mtree(
            std::os::fd::AsRawFd::as_raw_fd(&dir),
            ".",
            &mtree,
            Some(&modifier),
            Some(cancellable),
        )?;
        let checksum = write_commit_of(source, &mtree, metadata, parent, cancellable)?;
        source.commit_transaction(Some(cancellable))?;
        Ok(checksum)
    })();
    if written.is_err() {
        let _ = source.abort_transaction(gio::Cancellable::NONE);
    }
    written
}

/// Copies every object `commit` reaches that `to` lacks from `from` into `to` (inside `to`'s
/// open transaction).
fn import_reachable(
    from: &ostree::Repo,
    to: &ostree::Repo,
    commit: &str,
    cancellable: &gio::Cancellable,
) -> Result<(), glib::Error> {
    let reachable = from.traverse_commit(commit, 0, Some(cancellable))?;
    for object in reachable {
        let (kind, checksum) = (object.object_type(), object.checksum());
        if !to.has_object(kind, checksum, Some(cancellable))? {
            to.import_object_from_with_trust(from, kind, checksum, true, Some(cancellable))?;
        }
    }
    Ok(())
}

fn write_in_transaction(
    repo: &ostree::Repo,
    tree: &Path,
    metadata: &CommitMetadata,
    parent: Option<&str>,
    cancellable: &gio::Cancellable,
) -> Result<String, glib::Error> {
    let mtree = ostree::MutableTree::new();
    repo.write_directory_to_mtree(&gio::File::for_path(tree), &mtree, None, Some(cancellable))?;
    write_commit_of(repo, &mtree, metadata, parent, cancellable)
}

/// Writes `mtree` and a commit of it with `metadata` (in an open transaction).
fn write_commit_of(
    repo: &ostree::Repo,
    mtree: &ostree::MutableTree,
    metadata: &CommitMetadata,
    parent: Option<&str>,
    cancellable: &gio::Cancellable,
) -> Result<String, glib::Error> {
    let root = repo.write_mtree(mtree, Some(cancellable))?;
    let root = root.downcast::<ostree::RepoFile>().map_err(|_| {
        glib::Error::new(gio::IOErrorEnum::Failed, "write_mtree returned no RepoFile")
    })?;
    let subject = format!("{} {}", metadata.reference, metadata.version);
    let checksum = repo.write_commit(
        parent,
        Some(&subject),
        None,
        Some(&metadata.to_variant()),
        &root,
        Some(cancellable),
    )?;
    Ok(checksum.to_string())
}

/// Reads a text file from the commit `reference` points at; `Ok(None)` when the ref does not
/// exist yet or the commit has no such file.
pub fn read_previous_file(
    repo: &ostree::Repo,
    reference: &str,
    path: &str,
) -> Result<Option<String>, CommitError> {
    let err = |source| CommitError::ReadPrevious {
        reference: reference.to_owned(),
        path: path.to_owned(),
        source,
    };
    let Some(rev) = repo.resolve_rev(reference, true).map_err(err)? else {
        return Ok(None);
    };
    let (root, _) = repo
        .read_commit(&rev, gio::Cancellable::NONE)
        .map_err(err)?;
    let file = root.resolve_relative_path(path);
    if !file.query_exists(gio::Cancellable::NONE) {
        return Ok(None);
    }
    // Through the content object: g_file_load_contents() and g_file_read() expect a
    // GFileInputStream, which an ostree repository file does not return.
    let file = file.downcast::<ostree::RepoFile>().map_err(|_| {
        err(glib::Error::new(
            gio::IOErrorEnum::Failed,
            "not a repository file",
        ))
    })?;
    file.ensure_resolved().map_err(err)?;
    let (stream, _, _) = repo
        .load_file(&file.checksum(), gio::Cancellable::NONE)
        .map_err(err)?;
    let mut bytes = Vec::new();
    if let Some(stream) = stream {
        std::io::Read::read_to_end(&mut stream.into_read(), &mut bytes)
            .map_err(|e| err(glib::Error::new(gio::IOErrorEnum::Failed, &e.to_string())))?;
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Bytes used by the repository's objects (to report what a compose added).
pub fn objects_bytes(repo_path: &Path) -> Result<u64, CommitError> {
    dir_bytes(&repo_path.join("objects"))
}

fn dir_bytes(path: &Path) -> Result<u64, CommitError> {
    let err = |source| CommitError::Measure {
        path: path.to_owned(),
        source,
    };
    let listing = match std::fs::read_dir(path) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(err(e)),
    };
    let mut total = 0;
    for entry in listing {
        let entry = entry.map_err(err)?;
        let ft = entry.file_type().map_err(err)?;
        if ft.is_dir() {
            total += dir_bytes(&entry.path())?;
        } else if ft.is_file() {
            total += entry.metadata().map_err(err)?.len();
        }
    }
    Ok(total)
}

fn repo_path(repo: &ostree::Repo) -> PathBuf {
    repo.path()
        .path()
        .unwrap_or_else(|| PathBuf::from("(repository)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::process::Command;

    fn metadata(version: &str) -> CommitMetadata {
        CommitMetadata {
            version: version.into(),
            reference: "keel/test/x86_64/host".into(),
            input_hash: "ab".repeat(32),
            packages: vec![
                ("zlib1g".into(), "1:1.2.13".into()),
                ("base-files".into(), "12.4".into()),
            ],
            treefile: "ref = \"keel/test/x86_64/host\"\n".into(),
            treefile_hash: "cd".repeat(32),
            composer_version: "0.1.0".into(),
            kernel_version: "6.1.0-99-amd64".into(),
        }
    }

    fn commit(repo: &ostree::Repo, tree: &Path, version: &str) -> String {
        commit_tree(
            repo,
            tree,
            &metadata(version),
            None,
            &gio::Cancellable::new(),
        )
        .unwrap()
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("usr/etc")).unwrap();
        fs::write(
            t.path().join("usr/etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n",
        )
        .unwrap();
        t
    }

    fn ostree(repo: &Path, args: &[&str]) -> String {
        let out = Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn commit_creates_archive_repo_moves_ref_and_records_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let repo_dir = tmp.path().join("repo");
        let repo = open_or_create(&repo_dir).unwrap();
        let config = fs::read_to_string(repo_dir.join("config")).unwrap();
        assert!(config.contains("mode=archive"), "{config}");
        assert!(config.contains("zlib-level=1"), "{config}");

        let t = tree();
        let c1 = commit(&repo, t.path(), "1.0");
        assert_eq!(
            ostree(&repo_dir, &["rev-parse", "keel/test/x86_64/host"]).trim(),
            c1
        );
        let show = ostree(
            &repo_dir,
            &["show", "--print-metadata-key=keel.packages", &c1],
        );
        assert!(
            show.contains("('base-files', '12.4'), ('zlib1g', '1:1.2.13')"),
            "{show}"
        );
        let binding = ostree(
            &repo_dir,
            &["show", "--print-metadata-key=ostree.ref-binding", &c1],
        );
        assert!(binding.contains("['keel/test/x86_64/host']"), "{binding}");
        for key in [
            meta::VERSION,
            meta::INPUT_HASH,
            meta::TREEFILE,
            meta::TREEFILE_HASH,
            meta::COMPOSER_VERSION,
            meta::KERNEL_VERSION,
        ] {
            ostree(
                &repo_dir,
                &["show", &format!("--print-metadata-key={key}"), &c1],
            );
        }

        fs::write(
            t.path().join("usr/etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nu:x:5:5::/:/bin/sh\n",
        )
        .unwrap();
        let c2 = commit(&repo, t.path(), "1.1");
        let parent = ostree(&repo_dir, &["rev-parse", &format!("{c2}^")]);
        assert_eq!(parent.trim(), c1, "second commit's parent is the first");
        let passwd = read_previous_file(&repo, "keel/test/x86_64/host", "usr/etc/passwd").unwrap();
        assert!(passwd.unwrap().contains("u:x:5:5"));
        assert_eq!(
            read_previous_file(&repo, "keel/test/x86_64/host", "usr/etc/group").unwrap(),
            None
        );
        assert_eq!(
            read_previous_file(&repo, "keel/other", "usr/etc/passwd").unwrap(),
            None
        );
        ostree(&repo_dir, &["fsck"]);
        assert!(objects_bytes(&repo_dir).unwrap() > 0);
    }

    #[test]
    fn cancelled_commit_leaves_refs_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let repo_dir = tmp.path().join("repo");
        let repo = open_or_create(&repo_dir).unwrap();
        let t = tree();
        let c1 = commit(&repo, t.path(), "1.0");
        fs::write(t.path().join("usr/etc/new"), "x").unwrap();
        let cancelled = gio::Cancellable::new();
        cancelled.cancel();
        let err = commit_tree(&repo, t.path(), &metadata("1.1"), None, &cancelled).unwrap_err();
        assert!(err.to_string().contains("keel/test/x86_64/host"), "{err}");
        assert_eq!(
            ostree(&repo_dir, &["rev-parse", "keel/test/x86_64/host"]).trim(),
            c1
        );
        // The repository is usable afterwards: a new transaction can start.
        let c2 = commit(&repo, t.path(), "1.1");
        assert_ne!(c1, c2);
    }

    #[test]
    fn a_directory_that_is_not_a_repo_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("config"), "not a repo config").unwrap();
        let err = open_or_create(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("is not an ostree repository"), "{err}");
    }
}
