//! `keel-compose verify`: check a ref's commit and the summary against trusted keys.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use crate::release::signing;

/// Verify the ed25519 signatures on REF's commit and on the repo's summary.
///
/// Succeeds when each carries a valid signature from a key in the trusted-keys file that is not
/// in the revoked-keys file; otherwise exits non-zero saying why (unsigned, signed only by an
/// unknown or revoked key, malformed signatures, summary changed after signing).
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The ostree repository.
    #[arg(long)]
    pub repo: PathBuf,

    /// File of trusted public keys, one base64 key per line.
    #[arg(long)]
    pub trusted_keys: PathBuf,

    /// File of revoked public keys; a signature by one of them never counts.
    #[arg(long)]
    pub revoked_keys: Option<PathBuf>,

    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,

    /// The ref (or commit checksum) to verify.
    pub reference: String,
}

/// What `verify` found; `--json` prints it.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub reference: String,
    pub commit: String,
    pub commit_key: String,
    pub summary_key: String,
}

pub(crate) fn open_repo(path: &Path) -> anyhow::Result<ostree::Repo> {
    let repo = ostree::Repo::new_for_path(path);
    repo.open(ostree::gio::Cancellable::NONE)
        .with_context(|| format!("opening ostree repo {}", path.display()))?;
    Ok(repo)
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let report = verify(&args)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("serializing the report")?
        );
    } else {
        println!(
            "commit {} ({}): signed by trusted key {}\nsummary: signed by trusted key {}",
            report.commit, report.reference, report.commit_key, report.summary_key
        );
    }
    Ok(())
}

/// Verifies as `keel-compose verify` does and returns what it found.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<VerifyReport> {
    let trusted = signing::read_public_keys(&args.trusted_keys)?;
    let revoked = match &args.revoked_keys {
        Some(path) => signing::read_public_keys(path)?,
        None => Vec::new(),
    };
    let repo = open_repo(&args.repo)?;
    let commit = repo
        .resolve_rev(&args.reference, false)
        .with_context(|| format!("resolving {} in {}", args.reference, args.repo.display()))?
        .with_context(|| format!("no ref {} in {}", args.reference, args.repo.display()))?;
    let commit_key = signing::verify_commit(&repo, &commit, &trusted, &revoked)
        .with_context(|| format!("verifying {}", args.reference))?;
    let summary_key = signing::verify_summary(&args.repo, &trusted, &revoked)?;
    Ok(VerifyReport {
        reference: args.reference.clone(),
        commit: commit.to_string(),
        commit_key: commit_key.to_base64(),
        summary_key: summary_key.to_base64(),
    })
}
