//! The update remote an image's host follows: the same files `keel remote add --sysroot`
//! writes (the agent's config drop-in and trusted keys in the deployment's /etc, the libostree
//! remote in the sysroot's repository).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::cmd;

/// Where the host fetches updates and which keys it trusts.
#[derive(Debug, Clone)]
pub struct RemoteSpec {
    /// The remote's name in the origin (`NAME:REF`) and in the agent's configuration.
    pub name: String,
    pub url: String,
    /// A file of base64 ed25519 public keys, one per line.
    pub trusted_keys: PathBuf,
}

/// The name an image's remote gets unless told otherwise (the agent's default too).
pub const DEFAULT_REMOTE: &str = "keel";

/// The agent's configuration drop-in naming the remote and the ref to follow.
pub fn config_toml(name: &str, url: &str, reference: &str) -> String {
    format!(
        "# Written by keel-compose image.\n[remote]\nname = {}\nurl = {}\nref = {}\n",
        toml_string(name),
        toml_string(url),
        toml_string(reference)
    )
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Checks the key file parses as public keys, then writes the agent's files into the
/// deployment and points the sysroot's libostree remote at `url` (`gpg-verify=false`: Keel's
/// ed25519 check replaces it).
pub fn configure(
    spec: &RemoteSpec,
    reference: &str,
    sysroot_repo: &Path,
    deployment: &Path,
) -> anyhow::Result<()> {
    let keys_text = fs::read_to_string(&spec.trusted_keys)
        .with_context(|| format!("reading trusted keys {}", spec.trusted_keys.display()))?;
    let keys = keel_common::keys::PublicKey::parse_file(&keys_text).with_context(|| {
        format!(
            "{} must hold base64 ed25519 public keys, one per line",
            spec.trusted_keys.display()
        )
    })?;
    if keys.is_empty() {
        anyhow::bail!(
            "{} holds no public key: the host could not verify any update",
            spec.trusted_keys.display()
        );
    }
    let etc = deployment.join("etc/keel");
    let config_dir = etc.join("config.d");
    let keys_dir = etc.join("trusted.ed25519.d");
    for dir in [&config_dir, &keys_dir] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let config = config_dir.join("50-remote.toml");
    fs::write(&config, config_toml(&spec.name, &spec.url, reference))
        .with_context(|| format!("writing {}", config.display()))?;
    let key_file = keys_dir.join(format!("{}.pub", spec.name));
    fs::write(&key_file, &keys_text).with_context(|| format!("writing {}", key_file.display()))?;

    cmd::run(
        Command::new("ostree")
            .arg(format!("--repo={}", sysroot_repo.display()))
            .args(["remote", "add", "--force", "--set=gpg-verify=false"])
            .arg(&spec.name)
            .arg(&spec.url)
            .arg(reference),
    )
    .with_context(|| format!("adding remote {} to {}", spec.name, sysroot_repo.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_remote_url_and_ref() {
        assert_eq!(
            config_toml(
                "keel",
                "http://10.0.2.2:8080/repo",
                "keel/bookworm/x86_64/host"
            ),
            "# Written by keel-compose image.\n[remote]\nname = \"keel\"\n\
             url = \"http://10.0.2.2:8080/repo\"\nref = \"keel/bookworm/x86_64/host\"\n"
        );
    }

    #[test]
    fn config_escapes_quotes() {
        let text = config_toml("k\"x", "u\\v", "r");
        assert!(text.contains("name = \"k\\\"x\""), "{text}");
        assert!(text.contains("url = \"u\\\\v\""), "{text}");
    }
}
