//! `keel-fleetlock serve`.

use super::EtcdArgs;
use anyhow::Context;
use keel_common::cancel::Cancel;
use keel_common::progress::{Event, Progress};
use keel_fleetlock::config::ConfigSource;
use keel_fleetlock::http::{listen, Role};
use keel_fleetlock::metrics::Metrics;
use keel_fleetlock::service::{system_clock, Service};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// Address to serve the protocol on (port 0: any free port, printed at start)
    #[arg(long, value_name = "ADDR")]
    listen: String,
    #[command(flatten)]
    etcd: EtcdArgs,
    /// TOML file with the groups and their slots (default: group `default`, 1 slot); re-read
    /// when it changes
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to serve Prometheus metrics on, at /metrics
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Path prefix of the base URL hosts are given (`/fleet_lock` for
    /// `base_url = "http://HOST/fleet_lock/"`); default: the root
    #[arg(long, value_name = "PATH", default_value = "")]
    base_path: String,
    /// Threads serving requests
    #[arg(long, default_value_t = 8)]
    threads: usize,
}

/// Lines on stderr, one per event.
struct Stderr;

impl Progress for Stderr {
    fn report(&self, event: Event) {
        match event {
            Event::Message { text } => eprintln!("keel-fleetlock: {text}"),
            Event::Warning { text } => eprintln!("keel-fleetlock: warning: {text}"),
            _ => {}
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = ConfigSource::open(args.config.clone()).context("loading the config")?;
    let locker = args.etcd.locker()?;
    let progress: Arc<dyn Progress> = Arc::new(Stderr);
    let service = Arc::new(Service {
        base_path: base_path(&args.base_path),
        locker,
        config,
        metrics: Metrics::default(),
        progress: progress.clone(),
        clock: system_clock(),
    });
    let cancel = Cancel::new();
    let on_signal = cancel.clone();
    ctrlc::set_handler(move || on_signal.cancel()).context("installing the signal handler")?;

    let protocol = listen(
        &args.listen,
        Role::Protocol,
        service.clone(),
        args.threads,
        &cancel,
    )?;
    progress.message(&format!(
        "serving FleetLock on http://{}{} with etcd {}",
        protocol.addr,
        service.base_path,
        service.locker.store().endpoints().join(",")
    ));
    let metrics = match &args.metrics_listen {
        Some(addr) => {
            let metrics = listen(addr, Role::Metrics, service.clone(), 2, &cancel)?;
            progress.message(&format!(
                "serving metrics on http://{}/metrics",
                metrics.addr
            ));
            Some(metrics)
        }
        None => None,
    };
    protocol.join();
    if let Some(metrics) = metrics {
        metrics.join();
    }
    progress.message("stopped");
    Ok(ExitCode::SUCCESS)
}

/// `fleet_lock/` and `/fleet_lock` both mean `/fleet_lock`; empty or `/` is the root.
fn base_path(given: &str) -> String {
    let trimmed = given.trim_matches('/');
    match trimmed.is_empty() {
        true => String::new(),
        false => format!("/{trimmed}"),
    }
}
