//! `keel kargs`: show or change the kernel arguments, through a new deployment.

use super::progress::Bar;
use anyhow::Result;
use keel_common::cancel::Cancel;
use keel_host::kargs::{self, Edits};

/// Show the kernel arguments, or change them in a new deployment of the same commit.
///
/// Without options, prints the arguments of the deployment that boots next. With options, a
/// new deployment of the same commit and origin gets the edited arguments (staged on a booted
/// host; the current deployment stays as the rollback). Edits apply in order: --delete, then
/// --replace, then --append.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Add KEY=VALUE (or KEY), even when KEY is already present.
    #[arg(long, value_name = "KEY[=VALUE]")]
    pub append: Vec<String>,
    /// Remove every KEY (any value), or exactly KEY=VALUE.
    #[arg(long, value_name = "KEY[=VALUE]")]
    pub delete: Vec<String>,
    /// Set KEY's value: KEY=VALUE replaces every KEY=..., KEY=OLD=NEW only the KEY=OLD one.
    #[arg(long, value_name = "KEY=VALUE")]
    pub replace: Vec<String>,
    /// Print the arguments as a JSON array.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, global: &super::Global, cancel: &Cancel) -> Result<()> {
    let host = global.host()?;
    let edits = Edits {
        delete: args.delete,
        replace: args.replace,
        append: args.append,
    };
    let kargs = if edits.is_empty() {
        kargs::current(&host)?
    } else {
        let bar = Bar::new(args.json);
        let new = kargs::change(&host, &edits, cancel, &bar)?;
        bar.finish();
        let how = if host.is_booted() {
            "staged; they apply at the next boot"
        } else {
            "deployed"
        };
        eprintln!("New deployment with these kernel arguments {how}:");
        new
    };
    if args.json {
        println!("{}", serde_json::to_string(&kargs)?);
    } else {
        println!("{}", kargs.join(" "));
    }
    Ok(())
}
