//! `keel deploy VERSION|CHECKSUM`: deploy a commit already in the local repo, e.g. to go back
//! to an older version on purpose.

use super::progress::Bar;
use anyhow::Result;
use keel_common::cancel::Cancel;

/// Deploy a commit of the followed ref that is already in the local repo.
///
/// TARGET is a version (the commit's `version` metadata, searched in the followed ref's
/// history and the existing deployments) or a checksum prefix. The new deployment keeps
/// following the ref (its origin holds the commit with `override-commit`), so the next
/// `keel upgrade` moves on from it. A commit older than the booted (or default) one is refused
/// unless --allow-downgrade is given. Staged on a booted host, written directly on a sysroot.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A version (e.g. 20261122.0) or a checksum prefix (at least 4 hex digits).
    #[arg(value_name = "VERSION|CHECKSUM")]
    pub target: String,
    /// Allow deploying a commit older than the running one.
    #[arg(long)]
    pub allow_downgrade: bool,
}

pub fn run(args: Args, global: &super::Global, cancel: &Cancel) -> Result<()> {
    let host = global.host()?;
    let bar = Bar::new(false);
    let info = keel_host::deploy::deploy(&host, &args.target, args.allow_downgrade, cancel, &bar)?;
    bar.finish();
    let how = if host.is_booted() {
        "staged; it boots next"
    } else {
        "deployed"
    };
    println!(
        "{} ({}) {how}",
        info.version.as_deref().unwrap_or("(no version)"),
        info.checksum
    );
    Ok(())
}
