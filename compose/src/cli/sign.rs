//! `keel-compose sign`: sign an existing commit and re-sign the summary.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::release::signing;

/// Sign the commit of REF (a ref or a commit checksum) in REPO with an ed25519 key.
///
/// Adds the signature to the commit's detached metadata under `ostree.sign.ed25519` (existing
/// signatures are kept), then signs the repo's current `summary` into `summary.sig`. Signing
/// does not change the commit or its checksum.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The ostree repository.
    #[arg(long)]
    pub repo: PathBuf,

    /// The secret key file (from `keel-compose keygen`).
    #[arg(long)]
    pub key: PathBuf,

    /// The ref (or commit checksum) to sign.
    pub reference: String,
}

pub fn run(args: SignArgs) -> anyhow::Result<()> {
    let key = signing::read_secret_key(&args.key)?;
    let repo = super::verify::open_repo(&args.repo)?;
    let commit = repo
        .resolve_rev(&args.reference, false)
        .with_context(|| format!("resolving {} in {}", args.reference, args.repo.display()))?
        .with_context(|| format!("no ref {} in {}", args.reference, args.repo.display()))?;
    signing::sign_commit(&repo, &commit, &key)?;
    eprintln!(
        "signed commit {commit} ({}) with key {}",
        args.reference,
        key.public()
    );
    if args.repo.join("summary").exists() {
        signing::sign_summary(&args.repo, &key, false)?;
        eprintln!("signed summary of {}", args.repo.display());
    } else {
        eprintln!(
            "note: {} has no summary to sign; compose or run `ostree summary -u` first",
            args.repo.display()
        );
    }
    Ok(())
}
