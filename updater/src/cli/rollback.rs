//! `keel rollback`: boot the previous deployment next.

use anyhow::Result;

/// Make the previous deployment the default one, so it boots next.
///
/// When the booted deployment is the default, the one after it (the rollback) moves to the
/// front; when another deployment is pending (written but not booted yet), the booted one
/// moves back to the front, cancelling it. The deployments stay; only their order changes
/// (libostree rewrites the boot entries atomically). On a directory sysroot the first two
/// swap. Refused while a deployment is staged.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Reboot right after (booted hosts only).
    #[arg(long)]
    pub reboot: bool,
}

pub fn run(args: Args, global: &super::Global) -> Result<()> {
    let host = global.host()?;
    let now_default = keel_host::rollback::rollback(&host)?;
    println!("{now_default} is now the default deployment");
    if args.reboot {
        keel_host::host::reboot(&host, "the rollback")?;
    }
    Ok(())
}
