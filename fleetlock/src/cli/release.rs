//! `keel-fleetlock release`.

use super::EtcdArgs;
use keel_fleetlock::admin::release;
use keel_fleetlock::semaphore::Release;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    etcd: EtcdArgs,
    #[arg(long)]
    group: String,
    /// The holder's id, as `status` shows it
    #[arg(long)]
    id: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let locker = args.etcd.locker()?;
    match release(&locker, &args.group, &args.id)? {
        Release::Released => println!("released {} in group {}", args.id, args.group),
        Release::NotHeld => println!(
            "{} holds no slot in group {}; nothing to release",
            args.id, args.group
        ),
    }
    Ok(ExitCode::SUCCESS)
}
