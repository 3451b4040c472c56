//! `keel status`: one typed [`HostStatus`], collected from the sysroot at the edge and rendered
//! for people by a pure function; `--json` serializes the same struct (schema in
//! docs/status-json.md, kept stable).

use crate::config::{self, RemoteConfig};
use crate::etc_plan::Conflict;
use crate::host::Host;
use crate::trust;
use crate::verify::{format_time, parse_commit};
use anyhow::{Context, Result};
use keel_common::keys::PublicKey;
use keel_common::packages::PackageDiff;
use keel_common::sign::{self, SignError};
use ostree::gio;
use serde::Serialize;
use std::fmt::Write;

/// Version of the JSON layout; bumped only on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostStatus {
    pub schema_version: u32,
    pub osname: String,
    /// The sysroot directory (`/` on the booted host).
    pub sysroot: String,
    /// True when this sysroot is the running system's.
    pub booted: bool,
    pub remote: Option<RemoteConfig>,
    /// In boot order: a staged deployment first, then the default one.
    pub deployments: Vec<DeploymentStatus>,
    /// The /etc merge of the pending deployment, when one is pending.
    pub pending_etc: Option<PendingEtc>,
    /// Problems that did not stop the status from being read (a broken config drop-in or key
    /// file), each saying what to fix.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeploymentStatus {
    /// Position in boot order, as `keel pin INDEX` takes it.
    pub index: usize,
    pub booted: bool,
    pub staged: bool,
    /// The deployment that boots next.
    pub default: bool,
    /// The one `keel rollback` would switch to.
    pub rollback: bool,
    pub pinned: bool,
    pub checksum: String,
    pub serial: i32,
    pub version: Option<String>,
    /// The commit's timestamp, seconds since the epoch.
    pub timestamp: u64,
    /// The origin's refspec (`remote:ref`) the deployment follows.
    pub origin: Option<String>,
    /// Set when the deployment is held on one commit of its ref (`keel deploy`).
    pub override_commit: Option<String>,
    pub kargs: Vec<String>,
    pub signature: SignatureState,
    /// Package changes from the reference deployment (booted, else default) to this one;
    /// `None` for the reference itself.
    pub packages: Option<PackageDiff>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum SignatureState {
    Signed { key: String },
    Unsigned,
    Invalid { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingEtc {
    pub checksum: String,
    /// False while staged (the merge runs at shutdown), true once written.
    pub applied: bool,
    pub conflicts: Vec<Conflict>,
}

/// Reads everything `keel status` shows.
pub fn collect(host: &Host) -> Result<HostStatus> {
    let root = host.config_root();
    let mut warnings = Vec::new();
    let remote = config::load(&root).map(|c| c.remote).unwrap_or_else(|e| {
        warnings.push(format!("{e:#}"));
        None
    });
    let (trusted, revoked) = trust::trusted_keys(&root).unwrap_or_else(|e| {
        warnings.push(format!("{e:#}; signatures cannot be checked"));
        (Vec::new(), Vec::new())
    });
    let deployments = host.deployments();
    let booted = host.booted_deployment();
    let reference = host.reference_deployment();
    let reference_index = reference
        .as_ref()
        .and_then(|r| deployments.iter().position(|d| d.equal(r)));
    let default_index = deployments.iter().position(|d| !d.is_staged());
    let reference_packages = match &reference {
        Some(r) => commit_info(host, &r.csum())?.packages,
        None => Vec::new(),
    };
    let mut out = Vec::with_capacity(deployments.len());
    for (index, d) in deployments.iter().enumerate() {
        let checksum = d.csum().to_string();
        let info = commit_info(host, &checksum)?;
        let is_reference = Some(index) == reference_index;
        out.push(DeploymentStatus {
            index,
            booted: booted.as_ref().is_some_and(|b| b.equal(d)),
            staged: d.is_staged(),
            default: Some(index) == default_index,
            rollback: reference_index.is_some_and(|r| index == r + 1),
            pinned: d.is_pinned(),
            serial: d.deployserial(),
            version: info.version.clone(),
            timestamp: info.timestamp,
            origin: Host::origin_refspec(d),
            override_commit: Host::origin_override(d),
            kargs: Host::kargs(d),
            signature: signature_state(host, &checksum, &trusted, &revoked),
            packages: (!is_reference)
                .then(|| PackageDiff::between(&reference_packages, &info.packages)),
            checksum,
        });
    }
    // Reading /etc needs root on a real host; without it the rest of the status still shows.
    let pending_etc = match host.pending_etc_plan() {
        Ok(pending) => pending.map(|(d, plan, applied)| PendingEtc {
            checksum: d.csum().to_string(),
            applied,
            conflicts: plan.conflicts,
        }),
        Err(e) => {
            warnings.push(format!("/etc merge not checked: {e:#} (run as root)"));
            None
        }
    };
    Ok(HostStatus {
        schema_version: SCHEMA_VERSION,
        osname: host.osname().to_string(),
        sysroot: host.path().display().to_string(),
        booted: host.is_booted(),
        remote,
        deployments: out,
        pending_etc,
        warnings,
    })
}

fn commit_info(host: &Host, checksum: &str) -> Result<crate::verify::CommitInfo> {
    let bytes = commit_bytes(host, checksum)?;
    parse_commit(checksum, &bytes).with_context(|| format!("reading commit {checksum}"))
}

fn commit_bytes(host: &Host, checksum: &str) -> Result<Vec<u8>> {
    let variant = host
        .repo()
        .load_variant(ostree::ObjectType::Commit, checksum)
        .with_context(|| format!("loading commit {checksum} from the sysroot's repo"))?;
    Ok(variant.data_as_bytes().to_vec())
}

/// Checks the commit's ed25519 signatures against the trusted keys.
pub fn signature_state(
    host: &Host,
    checksum: &str,
    trusted: &[PublicKey],
    revoked: &[PublicKey],
) -> SignatureState {
    let detached = match host
        .repo()
        .read_commit_detached_metadata(checksum, gio::Cancellable::NONE)
    {
        Ok(d) => d,
        Err(e) => {
            return SignatureState::Invalid {
                reason: format!("reading detached metadata: {e}"),
            }
        }
    };
    let bytes = match commit_bytes(host, checksum) {
        Ok(b) => b,
        Err(e) => {
            return SignatureState::Invalid {
                reason: format!("{e:#}"),
            }
        }
    };
    match sign::verify(&bytes, detached.as_ref(), trusted, revoked) {
        Ok(key) => SignatureState::Signed {
            key: key.to_base64(),
        },
        Err(SignError::Unsigned) => SignatureState::Unsigned,
        Err(e) => SignatureState::Invalid {
            reason: e.to_string(),
        },
    }
}

/// The text `keel status` prints.
pub fn render(status: &HostStatus) -> String {
    let mut out = String::new();
    let state = if status.booted {
        "booted"
    } else {
        "not booted"
    };
    let _ = writeln!(out, "OS: {} in {} ({state})", status.osname, status.sysroot);
    match &status.remote {
        Some(r) => {
            let _ = writeln!(out, "Remote: {} at {}", r.refspec(), r.url);
        }
        None => out.push_str("Remote: none (keel remote add URL --ref REF --trusted-keys FILE)\n"),
    }
    if status.deployments.is_empty() {
        out.push_str("\nNo deployments.\n");
    }
    for d in &status.deployments {
        out.push('\n');
        render_deployment(&mut out, d);
    }
    if let Some(p) = &status.pending_etc {
        if !p.conflicts.is_empty() {
            let short = &p.checksum[..p.checksum.len().min(12)];
            let _ = writeln!(out, "\n/etc conflicts for {short} (see `keel etc plan`):");
            for c in &p.conflicts {
                let _ = writeln!(out, "  /etc/{}: {}", c.path, c.reason);
            }
        }
    }
    for w in &status.warnings {
        let _ = writeln!(out, "\nWarning: {w}");
    }
    out
}

fn render_deployment(out: &mut String, d: &DeploymentStatus) {
    let mut roles = Vec::new();
    for (on, name) in [
        (d.booted, "booted"),
        (d.staged, "staged"),
        (d.default, "default"),
        (d.rollback, "rollback"),
        (d.pinned, "pinned"),
    ] {
        if on {
            roles.push(name);
        }
    }
    let marker = if d.booted { '●' } else { ' ' };
    let version = d.version.as_deref().unwrap_or("(no version)");
    let roles = if roles.is_empty() {
        String::new()
    } else {
        format!(" ({})", roles.join(", "))
    };
    let _ = writeln!(out, "{marker} {}: {version}{roles}", d.index);
    let _ = writeln!(out, "    Commit: {}.{}", d.checksum, d.serial);
    let _ = writeln!(out, "    Timestamp: {}", format_time(d.timestamp));
    let origin = d.origin.as_deref().unwrap_or("(none)");
    match &d.override_commit {
        Some(c) => {
            let _ = writeln!(
                out,
                "    Origin: {origin} (held at {})",
                &c[..c.len().min(12)]
            );
        }
        None => {
            let _ = writeln!(out, "    Origin: {origin}");
        }
    }
    let signature = match &d.signature {
        SignatureState::Signed { key } => format!("signed by {key}"),
        SignatureState::Unsigned => "unsigned".into(),
        SignatureState::Invalid { reason } => format!("invalid: {reason}"),
    };
    let _ = writeln!(out, "    Signature: {signature}");
    let _ = writeln!(out, "    Kernel args: {}", d.kargs.join(" "));
    if let Some(p) = &d.packages {
        if p.added.is_empty() && p.removed.is_empty() && p.changed.is_empty() {
            out.push_str("    Packages: same as the reference\n");
        } else {
            let _ = writeln!(
                out,
                "    Packages: {} added, {} removed, {} changed",
                p.added.len(),
                p.removed.len(),
                p.changed.len()
            );
            for (n, v) in &p.added {
                let _ = writeln!(out, "      + {n} {v}");
            }
            for (n, v) in &p.removed {
                let _ = writeln!(out, "      - {n} {v}");
            }
            for (n, old, new) in &p.changed {
                let _ = writeln!(out, "      ~ {n} {old} -> {new}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(index: usize, version: &str) -> DeploymentStatus {
        DeploymentStatus {
            index,
            booted: false,
            staged: false,
            default: false,
            rollback: false,
            pinned: false,
            checksum: format!("{index}").repeat(64),
            serial: 0,
            version: Some(version.into()),
            timestamp: 1_790_000_000,
            origin: Some("keel:keel/stable".into()),
            override_commit: None,
            kargs: vec!["root=/dev/vda".into(), "quiet".into()],
            signature: SignatureState::Unsigned,
            packages: None,
        }
    }

    #[test]
    fn renders_roles_signatures_packages_and_conflicts() {
        let mut d0 = deployment(0, "2");
        d0.default = true;
        d0.signature = SignatureState::Signed { key: "KEY=".into() };
        d0.override_commit = Some("a".repeat(64));
        d0.packages = Some(PackageDiff {
            added: vec![("jq".into(), "1.6".into())],
            removed: vec![],
            changed: vec![("bash".into(), "5.1".into(), "5.2".into())],
        });
        let mut d1 = deployment(1, "1");
        d1.booted = true;
        d1.pinned = true;
        d1.signature = SignatureState::Invalid {
            reason: "signed only by revoked key K".into(),
        };
        let status = HostStatus {
            schema_version: SCHEMA_VERSION,
            osname: "keel".into(),
            sysroot: "/".into(),
            booted: true,
            remote: Some(RemoteConfig {
                name: "keel".into(),
                url: "http://127.0.0.1:1/repo".into(),
                reference: "keel/stable".parse().unwrap(),
            }),
            deployments: vec![d0, d1],
            pending_etc: Some(PendingEtc {
                checksum: "0".repeat(64),
                applied: true,
                conflicts: vec![Conflict {
                    path: "foo.d".into(),
                    reason: "modified locally, and the new version makes it a directory".into(),
                }],
            }),
            warnings: vec!["etc/keel/trusted.ed25519.d/x.pub: bad".into()],
        };
        let want = "\
OS: keel in / (booted)
Remote: keel:keel/stable at http://127.0.0.1:1/repo

  0: 2 (default)
    Commit: 0000000000000000000000000000000000000000000000000000000000000000.0
    Timestamp: 2026-09-21 14:13:20 UTC
    Origin: keel:keel/stable (held at aaaaaaaaaaaa)
    Signature: signed by KEY=
    Kernel args: root=/dev/vda quiet
    Packages: 1 added, 0 removed, 1 changed
      + jq 1.6
      ~ bash 5.1 -> 5.2

● 1: 1 (booted, pinned)
    Commit: 1111111111111111111111111111111111111111111111111111111111111111.0
    Timestamp: 2026-09-21 14:13:20 UTC
    Origin: keel:keel/stable
    Signature: invalid: signed only by revoked key K
    Kernel args: root=/dev/vda quiet

/etc conflicts for 000000000000 (see `keel etc plan`):
  /etc/foo.d: modified locally, and the new version makes it a directory

Warning: etc/keel/trusted.ed25519.d/x.pub: bad
";
        assert_eq!(render(&status), want);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["deployments"][0]["signature"]["state"], "signed");
        assert_eq!(json["deployments"][1]["signature"]["state"], "invalid");
        assert_eq!(json["deployments"][0]["packages"]["changed"][0][2], "5.2");
        assert_eq!(json["remote"]["ref"], "keel/stable");
    }

    #[test]
    fn renders_an_empty_sysroot() {
        let status = HostStatus {
            schema_version: SCHEMA_VERSION,
            osname: "keel".into(),
            sysroot: "/tmp/s".into(),
            booted: false,
            remote: None,
            deployments: vec![],
            pending_etc: None,
            warnings: vec![],
        };
        assert_eq!(
            render(&status),
            "OS: keel in /tmp/s (not booted)\n\
             Remote: none (keel remote add URL --ref REF --trusted-keys FILE)\n\nNo deployments.\n"
        );
    }
}
