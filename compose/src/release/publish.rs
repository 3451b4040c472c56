//! Publishing a new commit: its signature, static deltas from the ref's previous commits, and
//! the repo summary (regenerated after the deltas so it lists them) with `summary.sig`.
//!
//! Deltas are generated "major" (the smallest, slowest kind) from each of the new commit's
//! previous `static_deltas` ancestors present in the repo. A delta "from nothing" costs minutes
//! for a full host (DESIGN.md: 231 s, 138 MB) and is made only when asked for.

use super::signing::{self, SigningError};
use super::{ostree_err, RepoError};
use keel_common::keys::SecretKey;
use ostree::glib::{self, prelude::*};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Signing(#[from] SigningError),
}

/// What to publish along with a new commit.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Sign the commit and the summary with this key.
    pub sign_key: Option<SecretKey>,
    /// Deltas from this many previous commits of the ref (the treefile's `static-deltas`).
    pub static_deltas: u32,
    /// Also make a delta from nothing (a full download in one file).
    pub delta_from_empty: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeltaReport {
    /// `None` for a delta from nothing.
    pub from: Option<String>,
    pub to: String,
    /// Bytes of the delta's files (superblock and parts).
    pub bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishReport {
    pub commit_signed: bool,
    pub summary_signed: bool,
    pub deltas: Vec<DeltaReport>,
    pub seconds: f64,
}

/// Signs `commit` (when a key is given), generates its deltas, regenerates and signs the summary.
pub fn publish(
    repo: &ostree::Repo,
    commit: &str,
    opts: &PublishOptions,
) -> Result<PublishReport, PublishError> {
    let start = Instant::now();
    if let Some(key) = &opts.sign_key {
        signing::sign_commit(repo, commit, key)?;
    }
    let mut froms: Vec<Option<String>> = ancestors(repo, commit, opts.static_deltas as usize)?
        .into_iter()
        .map(Some)
        .collect();
    if opts.delta_from_empty {
        froms.push(None);
    }
    let deltas = generate_deltas(&super::repo_dir(repo), &froms, commit)?;
    update_summary(repo, opts.sign_key.as_ref())?;
    super::servable::make_servable(&super::repo_dir(repo))?;
    Ok(PublishReport {
        commit_signed: opts.sign_key.is_some(),
        summary_signed: opts.sign_key.is_some(),
        deltas,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Up to `n` ancestors of `commit` (parent first) that the repo holds.
pub fn ancestors(repo: &ostree::Repo, commit: &str, n: usize) -> Result<Vec<String>, PublishError> {
    let mut out = Vec::new();
    let mut current = commit.to_string();
    while out.len() < n {
        let Some(object) = super::load_commit_if_present(repo, &current)
            .map_err(ostree_err(repo, format!("loading commit {current}")))?
        else {
            break;
        };
        let Some(parent) = ostree::commit_get_parent(&object) else {
            break;
        };
        let parent = parent.to_string();
        let present = super::load_commit_if_present(repo, &parent)
            .map_err(ostree_err(repo, format!("loading commit {parent}")))?;
        if present.is_none() {
            break;
        }
        out.push(parent.clone());
        current = parent;
    }
    Ok(out)
}

/// Generates the deltas `froms[i]` -> `to`, one per core at a time, each thread on its own
/// handle of the repository at `repo_dir` (each delta is written to a directory of its own).
/// Reports come in the order of `froms`.
fn generate_deltas(
    repo_dir: &Path,
    froms: &[Option<String>],
    to: &str,
) -> Result<Vec<DeltaReport>, PublishError> {
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<DeltaReport, PublishError>>>> =
        froms.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(froms.len()) {
            scope.spawn(|| {
                let repo = ostree::Repo::new_for_path(repo_dir);
                let opened = repo.open(ostree::gio::Cancellable::NONE);
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(from) = froms.get(i) else { break };
                    let result = match &opened {
                        Ok(()) => generate_delta(&repo, from.as_deref(), to),
                        Err(e) => {
                            Err(ostree_err(&repo, "opening the repository")(e.clone()).into())
                        }
                    };
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(result);
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner().ok().flatten().unwrap_or_else(|| {
                Err(RepoError::Io {
                    path: repo_dir.to_path_buf(),
                    source: std::io::Error::other("a delta thread stopped early"),
                }
                .into())
            })
        })
        .collect()
}

/// Generates one static delta `from` -> `to` (`from = None`: from nothing) and measures it.
pub fn generate_delta(
    repo: &ostree::Repo,
    from: Option<&str>,
    to: &str,
) -> Result<DeltaReport, PublishError> {
    let start = Instant::now();
    let params = glib::VariantDict::new(None);
    params.insert_value("verbose", &false.to_variant());
    let what = match from {
        Some(f) => format!("generating static delta {f} -> {to}"),
        None => format!("generating static delta from nothing -> {to}"),
    };
    repo.static_delta_generate(
        ostree::StaticDeltaGenerateOpt::Major,
        from,
        to,
        None,
        Some(&params.end()),
        ostree::gio::Cancellable::NONE,
    )
    .map_err(ostree_err(repo, what))?;
    let dir = super::repo_dir(repo).join(delta_relpath(from, to));
    Ok(DeltaReport {
        from: from.map(str::to_string),
        to: to.to_string(),
        bytes: dir_bytes(&dir)?,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Regenerates `summary` (listing refs and deltas) and, with a key, writes a fresh `summary.sig`.
/// Without a key an old `summary.sig` is removed: it would no longer match.
pub fn update_summary(repo: &ostree::Repo, key: Option<&SecretKey>) -> Result<(), PublishError> {
    let dir = super::repo_dir(repo);
    let sig = dir.join("summary.sig");
    match std::fs::remove_file(&sig) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(RepoError::Io { path: sig, source }.into()),
    }
    repo.regenerate_summary(None, ostree::gio::Cancellable::NONE)
        .map_err(ostree_err(repo, "regenerating the summary"))?;
    if let Some(key) = key {
        signing::sign_summary(&dir, key, true)?;
    }
    Ok(())
}

/// ostree's "modified base64" of a hex checksum: standard base64 of the 32 bytes, unpadded,
/// with `/` written as `_`.
fn checksum_b64(hex_checksum: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+_";
    let bytes = hex::decode(hex_checksum).unwrap_or_default();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A delta's directory inside the repo, as libostree names it.
pub fn delta_relpath(from: Option<&str>, to: &str) -> PathBuf {
    let to = checksum_b64(to);
    let name = match from {
        Some(from) => {
            let from = checksum_b64(from);
            format!("{}/{}-{}", &from[..2], &from[2..], to)
        }
        None => format!("{}/{}", &to[..2], &to[2..]),
    };
    Path::new("deltas").join(name)
}

fn dir_bytes(dir: &Path) -> Result<u64, PublishError> {
    let io = |source| RepoError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let meta = entry.map_err(io)?.metadata().map_err(io)?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_base64_matches_ostree() {
        // 32 bytes of 0xff: all ones -> '_' (ostree's substitute for '/'), 43 characters.
        let b64 = checksum_b64(&"ff".repeat(32));
        assert_eq!(b64.len(), 43);
        assert!(b64[..42].chars().all(|c| c == '_'), "{b64}");
        assert_eq!(checksum_b64(&"00".repeat(32)), "A".repeat(43));
        let rel = delta_relpath(Some(&"00".repeat(32)), &"ff".repeat(32));
        assert_eq!(
            rel,
            Path::new("deltas").join(format!("AA/{}-{}", "A".repeat(41), b64))
        );
    }
}
