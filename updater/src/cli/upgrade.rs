//! `keel upgrade`: fetch, verify and deploy the newest commit of the followed ref.

use anyhow::{bail, Result};
use keel_common::cancel::Cancel;

use super::progress::Bar;
use keel_host::upgrade::{self, Mode, Request};

/// Update to the newest commit of the ref this host follows.
///
/// Reads the remote's signed summary, fetches the new commit object alone and checks it before
/// anything is written: a valid ed25519 signature from a trusted, unrevoked key, a ref binding
/// naming the followed ref, and a timestamp not older than the running commit's. Then pulls its
/// content (through a static delta when the remote publishes one) and deploys it: staged on a
/// booted host (it boots next), written directly on a directory sysroot.
///
/// An interrupted pull (Ctrl-C, network loss) keeps what arrived; the next run resumes. Any
/// failure leaves deployments and refs as they were and exits non-zero.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only report what would change: new version, package changes, download size.
    #[arg(long, conflicts_with_all = ["download_only", "reboot"])]
    pub check: bool,
    /// Pull and verify the update, but do not deploy it.
    #[arg(long, conflicts_with = "reboot")]
    pub download_only: bool,
    /// Reboot into the update once it is staged (booted hosts only).
    #[arg(long)]
    pub reboot: bool,
    /// Print the report as JSON (progress goes nowhere).
    #[arg(long)]
    pub json: bool,
}

impl Args {
    fn mode(&self) -> Mode {
        if self.check {
            Mode::Check
        } else if self.download_only {
            Mode::DownloadOnly
        } else {
            Mode::Deploy
        }
    }
}

pub fn run(args: Args, global: &super::Global, cancel: &Cancel) -> Result<()> {
    execute(
        Request::upgrade(args.mode()),
        args.reboot,
        args.json,
        global,
        cancel,
    )
}

/// Runs the upgrade/rebase pipeline for the CLI: progress bar, output, reboot; `cancel` is
/// the Ctrl-C token `main` installed.
pub(crate) fn execute(
    request: Request,
    reboot: bool,
    json: bool,
    global: &super::Global,
    cancel: &Cancel,
) -> Result<()> {
    let host = global.host()?;
    if reboot && !host.is_booted() {
        bail!(
            "--reboot needs a booted host; with --sysroot the new deployment is written directly"
        );
    }
    let bar = Bar::new(json);
    let result = upgrade::run(&host, &request, cancel, &bar);
    bar.finish();
    let report = result?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    if reboot && report.deployed {
        keel_host::host::reboot(&host, "the staged update")?;
    }
    Ok(())
}
