//! `keel cleanup`: drop extra deployments and the repo objects only they used.

use anyhow::Result;

/// Remove deployments that are not needed, then prune unused boot files and repo objects.
///
/// Kept: the default deployment, the booted one, a staged one and every pinned one
/// (`keel pin`). Everything else of this OS goes, including the rollback deployment.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, global: &super::Global) -> Result<()> {
    let host = global.host()?;
    let (removed, freed) = keel_host::cleanup::cleanup(&host)?;
    println!(
        "Removed {} deployment(s); freed {} of unused objects",
        removed.len(),
        keel_host::upgrade::human_bytes(freed)
    );
    for c in removed {
        println!("  {c}");
    }
    Ok(())
}
