//! `keel upgrade`: fetch, verify and deploy the newest commit of the followed ref.

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ostree::gio::{self, prelude::*};

use keel_host::pull::PullProgress;
use keel_host::upgrade::{self, human_bytes, Mode, Request};

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

pub fn run(args: Args, global: &super::Global) -> Result<()> {
    execute(
        Request::upgrade(args.mode()),
        args.reboot,
        args.json,
        global,
    )
}

/// Runs the upgrade/rebase pipeline for the CLI: progress bar, Ctrl-C, output, reboot.
pub(crate) fn execute(
    request: Request,
    reboot: bool,
    json: bool,
    global: &super::Global,
) -> Result<()> {
    let host = global.host()?;
    if reboot && !host.is_booted() {
        bail!(
            "--reboot needs a booted host; with --sysroot the new deployment is written directly"
        );
    }
    let cancellable = gio::Cancellable::new();
    {
        let cancellable = cancellable.clone();
        // A second handler cannot be installed in the same process (tests call `run` twice);
        // then Ctrl-C just ends the process, which a pull also survives.
        let _ = ctrlc::set_handler(move || cancellable.cancel());
    }
    let bar = progress_bar(json);
    let on_progress: Box<dyn Fn(&PullProgress)> = {
        let bar = bar.clone();
        Box::new(move |p: &PullProgress| render_progress(&bar, p))
    };
    let result = upgrade::run(&host, &request, on_progress, &cancellable);
    bar.finish_and_clear();
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

fn progress_bar(json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar
}

fn render_progress(bar: &ProgressBar, p: &PullProgress) {
    let delta = if p.delta_parts_total > 0 {
        format!(
            ", delta parts {}/{}",
            p.delta_parts_fetched, p.delta_parts_total
        )
    } else {
        String::new()
    };
    bar.set_message(format!(
        "Receiving: {} at {}/s, objects {}/{}{delta}",
        human_bytes(p.bytes_transferred),
        human_bytes(p.rate),
        p.objects_fetched,
        p.objects_requested
    ));
    bar.tick();
}
