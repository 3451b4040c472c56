//! `keel-fleetlock status`.

use super::{now, EtcdArgs};
use keel_fleetlock::admin::{render, status};
use keel_fleetlock::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    etcd: EtcdArgs,
    /// The server's config: shows its slot counts, expiries and groups nobody holds
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config.as_deref().map(Config::load).transpose()?;
    let locker = args.etcd.locker()?;
    let status = status(&locker, config.as_ref(), now())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(ExitCode::SUCCESS)
}
