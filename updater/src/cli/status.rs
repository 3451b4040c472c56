//! `keel status`: the deployments, what they run, and what is pending.

use anyhow::Result;
use keel_host::status;

/// Show the deployments, what they run and what is pending.
///
/// Lists the deployments in boot order (booted, staged, default, rollback and pinned ones marked),
/// each with its version, commit, timestamp, origin, signature state (checked against the trusted
/// keys), kernel arguments and package changes from the booted (or default) deployment; then any
/// /etc conflicts the pending deployment has.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (schema in docs/status-json.md, stable).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, global: &super::Global) -> Result<()> {
    let status = status::collect(&global.host()?)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status::render(&status));
    }
    Ok(())
}
