//! Deploy a commit already in the local repo by version or checksum, e.g. to go back to an
//! older version on purpose.

use crate::host::Host;
use crate::trust;
use crate::verify::{format_time, parse_commit, verify_commit, CommitInfo, Policy};
use anyhow::{bail, Context, Result};
use keel_common::cancel::Cancel;
use keel_common::progress::Progress;
use ostree::gio;

/// Finds `target` and deploys it over the followed ref; returns the commit deployed.
pub fn deploy(
    host: &Host,
    target: &str,
    allow_downgrade: bool,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> Result<CommitInfo> {
    let reference = host
        .reference_deployment()
        .context("no deployment yet: deploy a first commit with `keel upgrade` or an image")?;
    let refspec = Host::origin_refspec(&reference).with_context(|| {
        format!(
            "deployment {} has no origin refspec to follow",
            reference.csum()
        )
    })?;
    let candidates = candidates(host, &refspec)?;
    let found = select(&candidates, target).with_context(|| {
        format!("looking for {target:?} in the history of {refspec} and the deployments")
    })?;
    let current = read_commit(host, &reference.csum())?;
    if found.timestamp < current.timestamp && !allow_downgrade {
        bail!(
            "{target} ({}, {}) is older than the running commit ({}, {}); nothing was changed. \
             Pass --allow-downgrade to go back on purpose",
            found.checksum,
            format_time(found.timestamp),
            current.checksum,
            format_time(current.timestamp)
        );
    }
    check_signature(host, &found, &refspec)?;
    host.deploy(&found.checksum, &refspec, None, cancel, progress)?;
    Ok(found)
}

/// Checks again, on the copy in the local repo, what `keel upgrade` checked when the commit
/// arrived: a valid signature from a key trusted (and not revoked) now, and a ref binding
/// naming the followed ref. A key revoked since, or a commit that reached the repo another
/// way, is refused here.
fn check_signature(host: &Host, commit: &CommitInfo, refspec: &str) -> Result<()> {
    let checksum = &commit.checksum;
    let repo = host.repo();
    let bytes = repo
        .load_variant(ostree::ObjectType::Commit, checksum)
        .with_context(|| format!("loading commit {checksum}"))?
        .data_as_bytes();
    let detached = repo
        .read_commit_detached_metadata(checksum, gio::Cancellable::NONE)
        .with_context(|| format!("reading the detached metadata of commit {checksum}"))?;
    let (trusted, revoked) = trust::trusted_keys(&host.config_root())?;
    let followed = refspec.split_once(':').map_or(refspec, |(_, r)| r);
    let policy = Policy {
        trusted: &trusted,
        revoked: &revoked,
        followed_ref: followed,
        not_older_than: None,
        allow_downgrade: true,
    };
    verify_commit(checksum, &bytes, detached.as_ref(), &policy)
        .with_context(|| format!("not deploying {checksum}; nothing was changed"))?;
    Ok(())
}

/// Commits reachable from the followed ref (through parents present locally), then those of
/// the existing deployments, newest first and without duplicates.
fn candidates(host: &Host, refspec: &str) -> Result<Vec<CommitInfo>> {
    let repo = host.repo();
    let mut out: Vec<CommitInfo> = Vec::new();
    let mut next = repo
        .resolve_rev(refspec, true)
        .with_context(|| format!("resolving {refspec}"))?
        .map(|c| c.to_string());
    while let Some(checksum) = next.take() {
        if out.iter().any(|c| c.checksum == checksum) {
            break;
        }
        let Some(variant) = repo
            .load_variant_if_exists(ostree::ObjectType::Commit, &checksum)
            .with_context(|| format!("loading commit {checksum}"))?
        else {
            break;
        };
        next = ostree::commit_get_parent(&variant).map(|p| p.to_string());
        out.push(parse_commit(&checksum, &variant.data_as_bytes())?);
    }
    for d in host.deployments() {
        let checksum = d.csum().to_string();
        if !out.iter().any(|c| c.checksum == checksum) {
            out.push(read_commit(host, &checksum)?);
        }
    }
    Ok(out)
}

fn read_commit(host: &Host, checksum: &str) -> Result<CommitInfo> {
    let variant = host
        .repo()
        .load_variant(ostree::ObjectType::Commit, checksum)
        .with_context(|| format!("loading commit {checksum}"))?;
    Ok(parse_commit(checksum, &variant.data_as_bytes())?)
}

/// Picks the commit whose version equals `target`, else the one checksum `target` prefixes.
pub fn select(candidates: &[CommitInfo], target: &str) -> Result<CommitInfo> {
    if let Some(c) = candidates
        .iter()
        .find(|c| c.version.as_deref() == Some(target))
    {
        return Ok(c.clone());
    }
    let is_hex = target.len() >= 4 && target.chars().all(|c| c.is_ascii_hexdigit());
    let matches: Vec<&CommitInfo> = if is_hex {
        let prefix = target.to_ascii_lowercase();
        candidates
            .iter()
            .filter(|c| c.checksum.starts_with(&prefix))
            .collect()
    } else {
        Vec::new()
    };
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            let known: Vec<&str> = candidates
                .iter()
                .filter_map(|c| c.version.as_deref())
                .collect();
            bail!(
                "no local commit has version or checksum prefix {target:?} (versions here: {}); \
                 `keel upgrade` fetches newer ones",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )
        }
        many => bail!(
            "checksum prefix {target:?} matches {} commits; give more digits",
            many.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(checksum: &str, version: &str) -> CommitInfo {
        CommitInfo {
            checksum: checksum.into(),
            timestamp: 0,
            version: Some(version.into()),
            subject: String::new(),
            ref_binding: vec![],
            packages: vec![],
        }
    }

    #[test]
    fn select_by_version_then_unique_prefix() {
        let list = [
            commit("abcd1111", "2"),
            commit("abcd2222", "1"),
            commit("ffff0000", "abcd"),
        ];
        assert_eq!(select(&list, "1").unwrap().checksum, "abcd2222");
        assert_eq!(
            select(&list, "abcd").unwrap().checksum,
            "ffff0000",
            "version wins"
        );
        assert_eq!(select(&list, "ABCD1").unwrap().checksum, "abcd1111");
        assert_eq!(select(&list, "abcd2").unwrap().checksum, "abcd2222");
        let ambiguous = select(&[commit("abcd1", "x"), commit("abcd2", "y")], "abcd").unwrap_err();
        assert!(
            ambiguous.to_string().contains("matches 2 commits"),
            "{ambiguous}"
        );
        let none = select(&list, "3").unwrap_err().to_string();
        assert!(none.contains("versions here: 2, 1, abcd"), "{none}");
        assert!(select(&list, "abc").is_err(), "prefixes need 4 digits");
    }
}
