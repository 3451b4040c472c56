//! Rollback: boot the previous deployment next, by reordering the deployments.

use crate::host::Host;
use anyhow::{bail, Result};

/// Reorders the deployments; returns the checksum that boots next.
pub fn rollback(host: &Host) -> Result<String> {
    if let Some(staged) = host.staged_deployment() {
        bail!(
            "deployment {} is staged; reboot into it first, or discard it with \
             `ostree admin undeploy 0`, then roll back",
            staged.csum()
        );
    }
    let deployments = host.sysroot().deployments();
    let booted = host
        .booted_deployment()
        .and_then(|b| deployments.iter().position(|d| d.equal(&b)));
    let order = rollback_order(deployments.len(), booted)?;
    let reordered: Vec<ostree::Deployment> = order
        .iter()
        .map(|&i| Clone::clone(&deployments[i]))
        .collect();
    host.write_deployments(&reordered)?;
    Ok(reordered[0].csum().to_string())
}

/// The new boot order as indexes into the current one: the booted deployment back to the front
/// when it is not the default, else the second one to the front.
pub fn rollback_order(count: usize, booted: Option<usize>) -> Result<Vec<usize>> {
    let first = match booted {
        Some(b) if b > 0 => b,
        _ if count >= 2 => 1,
        _ => bail!("no previous deployment to roll back to (only {count})"),
    };
    Ok(std::iter::once(first)
        .chain((0..count).filter(|&i| i != first))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_order_cases() {
        assert_eq!(rollback_order(2, None).unwrap(), vec![1, 0]);
        assert_eq!(rollback_order(3, Some(0)).unwrap(), vec![1, 0, 2]);
        assert_eq!(rollback_order(3, Some(1)).unwrap(), vec![1, 0, 2]);
        assert_eq!(rollback_order(4, Some(2)).unwrap(), vec![2, 0, 1, 3]);
        assert!(rollback_order(1, Some(0)).is_err());
        assert!(rollback_order(0, None).is_err());
    }
}
