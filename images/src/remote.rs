//! The update remote an image's host follows, configured by keel-host's remote code (what
//! `keel remote add --sysroot` runs): the config drop-in and trusted keys in the deployment's
//! /etc, the libostree remote in the sysroot's repository.

use std::path::{Path, PathBuf};

use anyhow::Context;
use keel_common::ostree_ref::OstreeRef;
use keel_host::config::RemoteConfig;
use keel_host::host::Host;

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
pub const DEFAULT_REMOTE: &str = keel_host::config::DEFAULT_REMOTE_NAME;

/// Configures `spec` for following `reference` in the sysroot at `sysroot` (its default
/// deployment gets the /etc files).
pub fn configure(spec: &RemoteSpec, reference: &OstreeRef, sysroot: &Path) -> anyhow::Result<()> {
    let host = Host::open(Some(sysroot))?;
    let remote = RemoteConfig {
        name: spec.name.clone(),
        url: spec.url.clone(),
        reference: reference.clone(),
    };
    keel_host::remote::add(&host, &remote, &spec.trusted_keys).with_context(|| {
        format!(
            "configuring remote {} ({}) with keys from {}",
            spec.name,
            spec.url,
            spec.trusted_keys.display()
        )
    })
}
