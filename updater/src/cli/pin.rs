//! `keel pin` / `keel unpin`: keep a deployment through upgrades and `keel cleanup`.

use anyhow::Result;
use keel_host::host::Host;

/// Pin a deployment so upgrades and `keel cleanup` keep it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The deployment: its index in `keel status`, or a checksum prefix.
    #[arg(value_name = "INDEX|CHECKSUM")]
    pub target: String,
}

pub fn run(args: Args, global: &super::Global) -> Result<()> {
    set(&global.host()?, &args.target, true)
}

pub fn run_unpin(args: Args, global: &super::Global) -> Result<()> {
    set(&global.host()?, &args.target, false)
}

fn set(host: &Host, target: &str, pinned: bool) -> Result<()> {
    let d = keel_host::pin::pin(host, target, pinned)?;
    let verb = if pinned { "Pinned" } else { "Unpinned" };
    println!("{verb} {}.{}", d.csum(), d.deployserial());
    Ok(())
}
