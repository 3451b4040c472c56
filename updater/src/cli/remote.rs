//! `keel remote add|show`: where updates come from and which keys sign them.

use anyhow::Result;
use keel_host::config::{self, RemoteConfig};
use keel_host::remote;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Follow REF on the repository at URL, trusting the ed25519 keys in FILE.
    ///
    /// Writes etc/keel/config.d/50-remote.toml, installs the keys as
    /// etc/keel/trusted.ed25519.d/NAME.pub and adds (or replaces) the libostree remote NAME with
    /// gpg-verify=false and sign-verify=false: keel checks the ed25519 signatures itself.
    Add(AddArgs),
    /// Show the configured remote, its libostree URL and the trusted keys.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The repository's URL (http, https or file).
    pub url: String,
    /// The ref to follow, e.g. keel/bookworm/x86_64/stable.
    #[arg(long = "ref", value_name = "REF")]
    pub reference: keel_common::ostree_ref::OstreeRef,
    /// A file of base64 ed25519 public keys (one per line) that sign the commits.
    #[arg(long, value_name = "FILE")]
    pub trusted_keys: PathBuf,
    /// The remote's name.
    #[arg(long, default_value = config::DEFAULT_REMOTE_NAME)]
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: Command, global: &super::Global) -> Result<()> {
    let host = global.host()?;
    match cmd {
        Command::Add(args) => {
            let remote = RemoteConfig {
                name: args.name,
                url: args.url,
                reference: args.reference,
            };
            remote::add(&host, &remote, &args.trusted_keys)?;
            println!("Following {} at {}", remote.refspec(), remote.url);
            Ok(())
        }
        Command::Show(args) => {
            let shown = remote::show(&host)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                print!("{}", shown.render());
            }
            Ok(())
        }
    }
}
