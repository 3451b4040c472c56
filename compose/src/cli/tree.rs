//! `keel-compose tree`: compose a treefile into a commit.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use keel_common::cancel::Cancel;

use crate::pipeline;

/// Compose TREEFILE into a new commit on its ref in the ostree repository REPO.
///
/// Phases: load the treefile, resolve packages, fetch them, install them into a scratch tree,
/// apply add-files/remove-files/units/postprocess, build the initramfs, convert the tree to
/// ostree's layout, check users and groups against the previous commit, commit. A bad treefile
/// or an unresolvable package fails before anything is written. The repository is created
/// (archive mode) when it does not exist. Each phase prints a line to stderr; `--json` prints
/// one summary object to stdout.
#[derive(Debug, Args)]
pub struct TreeArgs {
    /// The treefile to compose (TOML, see docs/treefile.md).
    pub treefile: PathBuf,

    /// The ostree repository to commit into; created in archive mode if absent.
    #[arg(long)]
    pub repo: PathBuf,

    /// Where downloaded indices and packages are cached between composes.
    #[arg(long, default_value = "/var/cache/keel-compose")]
    pub cachedir: PathBuf,

    /// Accept a repository's InRelease whose Date is older than the last one this cache saw
    /// (after moving to an older snapshot on purpose); without it, that is refused as a
    /// possible replay.
    #[arg(long)]
    pub allow_older_metadata: bool,

    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub release: crate::release::steps::ReleaseOptions,
}

pub fn run(args: TreeArgs, cancel: &Cancel) -> anyhow::Result<()> {
    let options = pipeline::Options {
        treefile: args.treefile,
        repo: args.repo,
        cachedir: args.cachedir,
        allow_older_metadata: args.allow_older_metadata,
    };
    let progress = super::progress::Terminal::new(args.json);
    let report = pipeline::compose_with(&options, &args.release, cancel, &progress)?;
    drop(progress);
    if args.json {
        let text = serde_json::to_string_pretty(&report).context("serializing the report")?;
        println!("{text}");
    } else {
        eprintln!("{}", report.render());
    }
    Ok(())
}
