//! `keeld`: Keel's daemon. Serves [`keel_agent::service`] on the system bus (or `--address`)
//! and runs the automatic update agent.

use anyhow::{Context, Result};
use clap::Parser;
use keel_agent::service::{Daemon, Service, BUS_NAME, OBJECT_PATH};
use std::path::PathBuf;
use std::time::Duration;

/// Keel's daemon: the host's status and updates over D-Bus, and automatic updates.
#[derive(Debug, Parser)]
#[command(name = "keeld", version)]
struct Args {
    /// A directory sysroot to serve instead of the booted host.
    #[arg(long)]
    sysroot: Option<PathBuf>,
    /// The bus to connect to (a D-Bus address); the system bus by default.
    #[arg(long)]
    address: Option<String>,
    /// How often the automatic agent looks at its state, in seconds.
    #[arg(long, default_value_t = 300)]
    tick_seconds: u64,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("keeld: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let daemon = Daemon::new(args.sysroot.clone()).context("opening the host")?;
    let builder = match &args.address {
        Some(address) => zbus::blocking::connection::Builder::address(address.as_str())?,
        None => zbus::blocking::connection::Builder::system()?,
    };
    let connection = builder
        .name(BUS_NAME)?
        .serve_at(OBJECT_PATH, Service(daemon.clone()))?
        .build()
        .with_context(|| {
            format!(
                "connecting to {} as {BUS_NAME}",
                args.address.as_deref().unwrap_or("the system bus")
            )
        })?;
    daemon.attach(connection.clone());
    eprintln!("keeld: serving {BUS_NAME} at {OBJECT_PATH}");
    daemon.run_agent(Duration::from_secs(args.tick_seconds.max(1)));
    Ok(())
}
