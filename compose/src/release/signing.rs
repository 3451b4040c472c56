//! ed25519 signatures on a repo's commits and summary, in ostree's format (see
//! [`keel_common::sign`]): a commit's signatures live in its detached metadata under
//! `ostree.sign.ed25519` (`aay`) over the commit object's serialized bytes; `summary.sig` holds
//! the same `a{sv}` over the raw bytes of `summary`, written in GVariant normal form.

use super::{ostree_err, RepoError};
use keel_common::keys::{PublicKey, SecretKey};
use keel_common::sign::{self, SignError};
use ostree::glib;
use std::path::{Path, PathBuf};

const SUMMARY: &str = "summary";
const SUMMARY_SIG: &str = "summary.sig";

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("repo {repo}: no summary; run a compose (or `ostree summary -u`) first")]
    NoSummary { repo: PathBuf },
    #[error("commit {commit}: {source}")]
    Commit { commit: String, source: SignError },
    #[error("summary of {repo}: {source}")]
    Summary { repo: PathBuf, source: SignError },
}

/// The commit object's serialized bytes: what ostree's ed25519 signatures cover.
pub fn commit_bytes(repo: &ostree::Repo, checksum: &str) -> Result<glib::Bytes, SigningError> {
    let commit = repo
        .load_variant(ostree::ObjectType::Commit, checksum)
        .map_err(ostree_err(repo, format!("loading commit {checksum}")))?;
    Ok(commit.data_as_bytes())
}

/// Commit `checksum`'s signed bytes and its detached metadata, as stored.
fn signed_payload(
    repo: &ostree::Repo,
    checksum: &str,
) -> Result<(glib::Bytes, Option<glib::Variant>), SigningError> {
    let data = commit_bytes(repo, checksum)?;
    let detached = repo
        .read_commit_detached_metadata(checksum, ostree::gio::Cancellable::NONE)
        .map_err(ostree_err(
            repo,
            format!("reading detached metadata of {checksum}"),
        ))?;
    Ok((data, detached))
}

fn commit_error(checksum: &str) -> impl FnOnce(SignError) -> SigningError + '_ {
    move |source| SigningError::Commit {
        commit: checksum.to_string(),
        source,
    }
}

/// Adds `key`'s signature to commit `checksum`'s detached metadata (other entries are kept).
pub fn sign_commit(
    repo: &ostree::Repo,
    checksum: &str,
    key: &SecretKey,
) -> Result<(), SigningError> {
    let (data, detached) = signed_payload(repo, checksum)?;
    let signed = sign::add_signature(detached.as_ref(), &sign::sign(key, &data))
        .map_err(commit_error(checksum))?;
    repo.write_commit_detached_metadata(checksum, Some(&signed), ostree::gio::Cancellable::NONE)
        .map_err(ostree_err(
            repo,
            format!("writing detached metadata of {checksum}"),
        ))?;
    Ok(())
}

/// Checks commit `checksum` for a valid signature by a trusted, unrevoked key; returns the key.
pub fn verify_commit(
    repo: &ostree::Repo,
    checksum: &str,
    trusted: &[PublicKey],
    revoked: &[PublicKey],
) -> Result<PublicKey, SigningError> {
    let (data, detached) = signed_payload(repo, checksum)?;
    sign::verify(&data, detached.as_ref(), trusted, revoked).map_err(commit_error(checksum))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, SigningError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RepoError::Io {
            path: path.to_path_buf(),
            source,
        }
        .into()),
    }
}

/// Parses `summary.sig` bytes as ostree does: an `a{sv}` in (possibly non-normal) serialized
/// form. The variant takes ownership of the bytes (it points into them).
pub fn parse_summary_sig(bytes: Vec<u8>) -> glib::Variant {
    glib::Variant::from_bytes_with_type(&glib::Bytes::from_owned(bytes), glib::VariantTy::VARDICT)
}

/// Signs the repo's current `summary` with `key` and writes `summary.sig`. Signatures already
/// in `summary.sig` are kept only while they are over the same summary bytes — pass
/// `fresh = true` right after regenerating the summary to drop the old ones.
pub fn sign_summary(repo_dir: &Path, key: &SecretKey, fresh: bool) -> Result<(), SigningError> {
    let summary =
        read_optional(&repo_dir.join(SUMMARY))?.ok_or_else(|| SigningError::NoSummary {
            repo: repo_dir.to_path_buf(),
        })?;
    let sig_path = repo_dir.join(SUMMARY_SIG);
    let existing = if fresh {
        None
    } else {
        read_optional(&sig_path)?.map(parse_summary_sig)
    };
    let signed =
        sign::add_signature(existing.as_ref(), &sign::sign(key, &summary)).map_err(|source| {
            SigningError::Summary {
                repo: repo_dir.to_path_buf(),
                source,
            }
        })?;
    let bytes = signed.normal_form().data_as_bytes();
    let io = |source| RepoError::Io {
        path: sig_path.clone(),
        source,
    };
    let mut tmp = tempfile::NamedTempFile::new_in(repo_dir).map_err(io)?;
    std::io::Write::write_all(&mut tmp, &bytes).map_err(io)?;
    // Served as it is: a temp file is 0600, which a web server of another user cannot read.
    let servable = std::os::unix::fs::PermissionsExt::from_mode(super::servable::FILE_MODE);
    tmp.as_file().set_permissions(servable).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(&sig_path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Checks `summary.sig` against `summary`; returns the trusted key that signed it.
pub fn verify_summary(
    repo_dir: &Path,
    trusted: &[PublicKey],
    revoked: &[PublicKey],
) -> Result<PublicKey, SigningError> {
    let summary =
        read_optional(&repo_dir.join(SUMMARY))?.ok_or_else(|| SigningError::NoSummary {
            repo: repo_dir.to_path_buf(),
        })?;
    let sig = read_optional(&repo_dir.join(SUMMARY_SIG))?.map(parse_summary_sig);
    sign::verify(&summary, sig.as_ref(), trusted, revoked).map_err(|source| SigningError::Summary {
        repo: repo_dir.to_path_buf(),
        source,
    })
}

/// Reads a public key file (trusted or revoked list), naming it in the error.
pub fn read_public_keys(path: &Path) -> anyhow::Result<Vec<PublicKey>> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    PublicKey::parse_file(&text).with_context(|| format!("key file {}", path.display()))
}

/// Reads a secret key file, naming it in the error.
pub fn read_secret_key(path: &Path) -> anyhow::Result<SecretKey> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading secret key {}", path.display()))?;
    SecretKey::parse_file(&text).with_context(|| format!("secret key {}", path.display()))
}
