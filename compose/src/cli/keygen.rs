//! `keel-compose keygen`: make an ed25519 key pair in ostree's text format.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use keel_common::keys::SecretKey;

/// Generate an ed25519 signing key pair for commits and summaries.
///
/// Writes the secret key (base64 of 64 bytes: seed then public key, as ostree's
/// `ostree sign --keys-file` reads it) to SECRET with mode 0600, and the public key (base64 of
/// 32 bytes) to PUBLIC. Hosts trust the public key by listing it in a trusted-keys file. Neither
/// file may exist already: keygen never overwrites a key.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the secret key (created with mode 0600).
    #[arg(long)]
    pub secret: PathBuf,

    /// Where to write the public key.
    #[arg(long)]
    pub public: PathBuf,
}

pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    for path in [&args.secret, &args.public] {
        if path.symlink_metadata().is_ok() {
            anyhow::bail!(
                "{} already exists; keygen never overwrites a key (move it away or choose another path)",
                path.display()
            );
        }
    }
    let key = SecretKey::generate().context("generating a key")?;
    write_new(&args.secret, &key.to_base64(), 0o600)?;
    write_new(&args.public, &key.public().to_base64(), 0o644)?;
    eprintln!(
        "wrote secret key {} and public key {}",
        args.secret.display(),
        args.public.display()
    );
    println!("{}", key.public());
    Ok(())
}

/// Creates `path` (failing if it exists) with `mode` and writes `line` to it.
fn write_new(path: &Path, line: &str, mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{line}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
