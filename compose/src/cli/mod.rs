//! `keel-compose`'s command line: one module per verb, each with its clap arguments and a `run`
//! function that calls the library. `main.rs` installs the Ctrl-C handler, which cancels the
//! token it hands with `std::env::args_os()` to [`run_with`], and prints the error chain.

use std::ffi::OsString;

use clap::{Parser, Subcommand};
use keel_common::cancel::Cancel;

pub mod image;
pub mod keygen;
pub mod progress;
pub mod sign;
pub mod tree;
pub mod verify;

/// Compose immutable Debian hosts as ostree commits.
///
/// keel-compose reads a TOML treefile (packages, repositories, files, units, initramfs), resolves
/// and installs the packages into a scratch tree, turns the tree into ostree's layout and commits
/// it to an ostree repository that hosts can pull and upgrade from.
#[derive(Debug, Parser)]
#[command(name = "keel-compose", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs of `keel-compose`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compose a treefile into a new commit on its ref.
    Tree(tree::TreeArgs),
    /// Generate an ed25519 key pair for signing commits and summaries.
    Keygen(keygen::KeygenArgs),
    /// Sign an existing commit and re-sign the summary.
    Sign(sign::SignArgs),
    /// Verify a ref's commit and the summary against trusted keys.
    Verify(verify::VerifyArgs),
    /// Build a bootable disk image (raw or qcow2) from a commit.
    Image(image::ImageArgs),
}

/// Parses `args` (the program name first) and runs the chosen verb, never cancelled.
pub fn run_from_iter<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_with(args, &Cancel::new())
}

/// [`run_from_iter`], stopping the long verbs when `cancel` is cancelled.
pub fn run_with<I, T>(args: I, cancel: &Cancel) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Tree(args) => tree::run(args, cancel),
        Command::Keygen(args) => keygen::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Image(args) => image::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
