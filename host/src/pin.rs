//! Pin and unpin: keep a deployment through upgrades and cleanup.

use crate::host::Host;
use anyhow::{bail, Result};

/// Sets or clears the pin of the deployment `target` names; returns it.
pub fn pin(host: &Host, target: &str, pinned: bool) -> Result<ostree::Deployment> {
    let deployments = host.deployments();
    let checksums: Vec<String> = deployments.iter().map(|d| d.csum().to_string()).collect();
    let index = select(&checksums, target)?;
    let d = &deployments[index];
    if d.is_staged() {
        bail!("deployment {index} is staged; pin it after it is written (at the next boot)");
    }
    host.set_pinned(d, pinned)?;
    Ok(d.clone())
}

/// The index `target` names: a position in boot order, or a unique checksum prefix.
pub fn select(checksums: &[String], target: &str) -> Result<usize> {
    if let Ok(index) = target.parse::<usize>() {
        if index < checksums.len() {
            return Ok(index);
        }
        if target.len() < 4 {
            bail!(
                "no deployment {index}: there are {} (see `keel status`)",
                checksums.len()
            );
        }
    }
    let matches: Vec<usize> = (0..checksums.len())
        .filter(|&i| checksums[i].starts_with(target))
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no deployment matches {target:?}: give an index or a checksum prefix from `keel status`"),
        _ => {
            let all_same = matches.iter().all(|&i| checksums[i] == checksums[matches[0]]);
            if all_same {
                bail!("{target:?} names several deployments of the same commit; give an index")
            }
            bail!("{target:?} matches {} deployments; give more digits", matches.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_by_index_or_prefix() {
        let c = vec!["abcd01".to_string(), "abcd02".into(), "ffff".into()];
        assert_eq!(select(&c, "1").unwrap(), 1);
        assert_eq!(select(&c, "abcd02").unwrap(), 1);
        assert_eq!(select(&c, "ff").unwrap(), 2);
        assert!(select(&c, "abcd")
            .unwrap_err()
            .to_string()
            .contains("matches 2"));
        assert!(select(&c, "7")
            .unwrap_err()
            .to_string()
            .contains("no deployment 7"));
        assert!(select(&c, "zz").is_err());
        let same = vec!["aaaa".to_string(), "aaaa".into()];
        assert!(select(&same, "aa")
            .unwrap_err()
            .to_string()
            .contains("give an index"));
    }
}
