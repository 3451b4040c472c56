//! The `keel` command line: one module per verb, each with an `Args` struct (clap derive) and
//! `pub fn run(args: Args, global: &Global) -> anyhow::Result<()>` (long verbs also take the
//! [`Cancel`] that Ctrl-C triggers). The verbs parse and render; keel-host does the work.

use clap::{Parser, Subcommand};
use keel_common::cancel::Cancel;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// Keel's host agent: inspect and change the deployments of an image-based (ostree) host.
///
/// Every verb works on the booted host, or on a directory sysroot with `--sysroot DIR` (an
/// image being prepared, or a test). Changes on a booted host are staged and take effect at
/// the next boot; on a directory sysroot they are written directly. A failed command leaves
/// the deployments as they were and says what to do.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every verb takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Operate on the ostree sysroot in DIR instead of the booted system (`/`).
    #[arg(long, global = true, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,
}

impl Global {
    /// Opens the host these options name.
    pub fn host(&self) -> anyhow::Result<keel_host::host::Host> {
        keel_host::host::Host::open(self.sysroot.as_deref())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    // Verbs without a doc comment here take their help from their Args struct.
    Status(status::Args),
    Deploy(deploy::Args),
    Rollback(rollback::Args),
    Cleanup(cleanup::Args),
    Kargs(kargs::Args),
    Pin(pin::Args),
    /// Release a pinned deployment (INDEX or CHECKSUM as for `keel pin`).
    Unpin(pin::Args),
    /// Inspect the /etc merge.
    #[command(subcommand)]
    Etc(etc::Command),
    /// Configure the remote updates come from and the keys that sign them.
    #[command(subcommand)]
    Remote(remote::Command),
    Upgrade(upgrade::Args),
    Rebase(rebase::Args),
}

/// Parses `args` (program name first), runs the verb, prints errors with their causes. Nothing
/// cancels it; `main` uses [`run_with_ctrlc`].
pub fn run_from_iter<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_from_iter_with(args, &Cancel::new())
}

/// [`run_from_iter`] for the process: installs the one Ctrl-C handler, which cancels the
/// running verb (a pull keeps what arrived); a second Ctrl-C ends the process at once.
pub fn run_with_ctrlc<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cancel = Cancel::new();
    let handler = cancel.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        if handler.is_cancelled() {
            std::process::exit(130);
        }
        handler.cancel();
    }) {
        eprintln!("warning: Ctrl-C will end keel without cleaning up: {e}");
    }
    run_from_iter_with(args, &cancel)
}

/// [`run_from_iter`] with the token that stops long verbs (upgrade, rebase, deploy, kargs).
pub fn run_from_iter_with<I, T>(args: I, cancel: &Cancel) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli, cancel) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command line; `cancel` stops a long verb.
pub fn run(cli: Cli, cancel: &Cancel) -> anyhow::Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Status(args) => status::run(args, global),
        Command::Deploy(args) => deploy::run(args, global, cancel),
        Command::Rollback(args) => rollback::run(args, global),
        Command::Cleanup(args) => cleanup::run(args, global),
        Command::Kargs(args) => kargs::run(args, global, cancel),
        Command::Pin(args) => pin::run(args, global),
        Command::Unpin(args) => pin::run_unpin(args, global),
        Command::Etc(cmd) => etc::run(cmd, global),
        Command::Remote(cmd) => remote::run(cmd, global),
        Command::Upgrade(args) => upgrade::run(args, global, cancel),
        Command::Rebase(args) => rebase::run(args, global, cancel),
    }
}

pub mod cleanup;
pub mod deploy;
pub mod etc;
pub mod kargs;
pub mod pin;
pub mod progress;
pub mod rebase;
pub mod remote;
pub mod rollback;
pub mod status;
pub mod upgrade;
