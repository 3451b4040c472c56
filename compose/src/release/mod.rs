//! Release engineering for composes: version numbers, the input hash that makes an unchanged
//! compose a no-op, lockfiles, ed25519 signatures on commits and summaries, the summary itself
//! and static deltas. The pipeline calls these after (or, for the no-op check, before) it writes
//! a commit; the `keygen`, `sign` and `verify` verbs call them on an existing repo.

pub mod inputs;
pub mod lockfile;
pub mod publish;
pub mod servable;
pub mod signing;
pub mod steps;
pub mod version;

use ostree::glib;

/// The commit object `checksum`, or `None` when the repo does not hold it (e.g. the parent of
/// a commit pulled without history).
pub fn load_commit_if_present(
    repo: &ostree::Repo,
    checksum: &str,
) -> Result<Option<glib::Variant>, glib::Error> {
    repo.load_variant_if_exists(ostree::ObjectType::Commit, checksum)
}

/// A string entry of a commit object's metadata (`a{sv}`, its first field), if present and
/// of type `s`.
pub fn commit_metadata_string(commit: &glib::Variant, key: &str) -> Option<String> {
    if commit.n_children() == 0 {
        return None;
    }
    let metadata = commit.child_value(0);
    let dict = glib::VariantDict::new(Some(&metadata));
    dict.lookup::<String>(key).ok().flatten()
}

/// The repo's directory on disk.
pub fn repo_dir(repo: &ostree::Repo) -> std::path::PathBuf {
    use ostree::gio::prelude::FileExt;
    repo.path().path().unwrap_or_default()
}

/// A libostree call or a file operation on the repo failed; shared by signing and publishing.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("repo {repo}: {what}: {source}")]
    Ostree {
        repo: std::path::PathBuf,
        what: String,
        source: glib::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Turns a libostree error into a [`RepoError`] naming the repo and what was being done.
pub(crate) fn ostree_err(
    repo: &ostree::Repo,
    what: impl Into<String>,
) -> impl FnOnce(glib::Error) -> RepoError {
    let repo = repo_dir(repo);
    let what = what.into();
    move |source| RepoError::Ostree { repo, what, source }
}
