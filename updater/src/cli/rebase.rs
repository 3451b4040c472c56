//! `keel rebase REF`: switch the host to another ref of the configured remote.

use anyhow::Result;
use keel_common::cancel::Cancel;

use keel_host::upgrade::{Mode, Request};

/// Switch to another ref of the configured remote and follow it from now on.
///
/// Runs the same pipeline as `keel upgrade` (signed summary, commit verified before anything is
/// written, static delta when published), with the ref binding checked against the NEW ref.
/// Once deployed, the deployment's origin and the config's followed ref name the new ref, so
/// later upgrades follow it. A failure leaves deployments, refs and config as they were.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ref to switch to, e.g. `keel/bookworm/x86_64/testing` (no `remote:` prefix).
    #[arg(value_name = "REF")]
    pub reference: keel_common::ostree_ref::OstreeRef,
    /// Only report what would change.
    #[arg(long, conflicts_with = "reboot")]
    pub check: bool,
    /// Reboot into the new deployment once it is staged (booted hosts only).
    #[arg(long)]
    pub reboot: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, global: &super::Global, cancel: &Cancel) -> Result<()> {
    let mode = if args.check {
        Mode::Check
    } else {
        Mode::Deploy
    };
    super::upgrade::execute(
        Request::rebase(&args.reference, mode),
        args.reboot,
        args.json,
        global,
        cancel,
    )
}
