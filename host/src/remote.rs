//! The remote updates come from and the keys that sign them: add one, show what is configured.

use crate::config::{self, RemoteConfig};
use crate::host::Host;
use crate::trust;
use anyhow::{bail, Context, Result};
use ostree::gio;
use ostree::glib::{self, prelude::*};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Adds the remote: checks the key file first, then writes the libostree remote, the keys and
/// the config drop-in.
pub fn add(host: &Host, remote: &RemoteConfig, key_file: &Path) -> Result<()> {
    if remote.name.is_empty() || remote.name.contains(['/', ':']) || remote.name.starts_with('.') {
        bail!(
            "remote name {:?} must be non-empty, without '/' or ':'",
            remote.name
        );
    }
    if !host.is_booted() && host.deployments().is_empty() {
        bail!(
            "{} has no deployment yet: deploy a first commit, then add the remote (its \
             configuration lives in the deployment's /etc)",
            host.path().display()
        );
    }
    let key_list = trust::read_key_file(key_file)?;
    let root = host.config_root();
    let options = glib::VariantDict::new(None);
    options.insert_value("gpg-verify", &false.to_variant());
    options.insert_value("sign-verify", &false.to_variant());
    host.repo()
        .remote_change(
            None::<&gio::File>,
            ostree::RepoRemoteChange::Replace,
            &remote.name,
            Some(&remote.url),
            Some(&options.end()),
            gio::Cancellable::NONE,
        )
        .with_context(|| format!("adding ostree remote {} ({})", remote.name, remote.url))?;
    let keys_text: String = key_list.iter().map(|k| format!("{k}\n")).collect();
    write_atomic(
        &trust::remote_key_file(&root, &remote.name),
        keys_text.as_bytes(),
    )?;
    write_atomic(
        &root.join(config::REMOTE_DROPIN),
        config::remote_dropin(remote)?.as_bytes(),
    )?;
    Ok(())
}

/// What `keel remote show` prints.
#[derive(Debug, Serialize)]
pub struct RemoteShow {
    pub remote: Option<RemoteConfig>,
    /// The URL libostree has for the remote, when it exists there.
    pub ostree_url: Option<String>,
    pub trusted_keys: Vec<String>,
    pub revoked_keys: Vec<String>,
    pub config_files: Vec<PathBuf>,
}

impl RemoteShow {
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.remote {
            None => out.push_str(
                "No remote configured: run `keel remote add URL --ref REF --trusted-keys FILE`.\n",
            ),
            Some(r) => {
                out.push_str(&format!(
                    "Remote: {}\nURL: {}\nRef: {}\n",
                    r.name, r.url, r.reference
                ));
                match &self.ostree_url {
                    Some(u) if *u == r.url => {}
                    Some(u) => out.push_str(&format!("Warning: libostree's remote URL is {u}\n")),
                    None => out.push_str(
                        "Warning: libostree has no such remote; run `keel remote add` again\n",
                    ),
                }
            }
        }
        out.push_str(&format!("Trusted keys: {}\n", self.trusted_keys.len()));
        for k in &self.trusted_keys {
            out.push_str(&format!("  {k}\n"));
        }
        if !self.revoked_keys.is_empty() {
            out.push_str(&format!("Revoked keys: {}\n", self.revoked_keys.len()));
            for k in &self.revoked_keys {
                out.push_str(&format!("  {k}\n"));
            }
        }
        out
    }
}

pub fn show(host: &Host) -> Result<RemoteShow> {
    let root = host.config_root();
    let config = config::load(&root)?;
    let (trusted, revoked) = trust::trusted_keys(&root)?;
    let ostree_url = config
        .remote
        .as_ref()
        .and_then(|r| host.repo().remote_get_url(&r.name).ok())
        .map(|u| u.to_string());
    Ok(RemoteShow {
        remote: config.remote,
        ostree_url,
        trusted_keys: trusted.iter().map(ToString::to_string).collect(),
        revoked_keys: revoked.iter().map(ToString::to_string).collect(),
        config_files: config.sources,
    })
}

/// Writes `path` through a temporary file and a rename, creating its directory.
fn write_atomic(path: &Path, content: &[u8]) -> Result<()> {
    let dir = path.parent().context("a file path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}
