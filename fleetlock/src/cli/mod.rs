//! Argument parsing; one module per verb.

mod release;
mod serve;
mod status;

use clap::{Parser, Subcommand};
use keel_fleetlock::etcd::EtcdStore;
use keel_fleetlock::lock::Locker;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "keel-fleetlock",
    version,
    about = "A FleetLock reboot coordinator with its state in etcd"
)]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Serve the FleetLock protocol (POST /v1/pre-reboot, /v1/steady-state).
    Serve(serve::Args),
    /// Show each group's holders, as etcd holds them.
    Status(status::Args),
    /// Free a holder's slot (a node that will never report steady state).
    Release(release::Args),
}

/// etcd client URLs, comma-separated.
#[derive(clap::Args)]
struct EtcdArgs {
    /// etcd client URLs, comma-separated (http://127.0.0.1:2379,http://...)
    #[arg(
        long,
        value_name = "URL[,URL...]",
        value_delimiter = ',',
        required = true
    )]
    etcd: Vec<String>,
}

impl EtcdArgs {
    fn locker(&self) -> anyhow::Result<Locker<EtcdStore>> {
        Ok(Locker::new(EtcdStore::new(self.etcd.clone())?))
    }
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.verb {
        Verb::Serve(args) => serve::run(args),
        Verb::Status(args) => status::run(args),
        Verb::Release(args) => release::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("keel-fleetlock: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn now() -> u64 {
    (keel_fleetlock::service::system_clock())()
}
