//! Cleanup: drop extra deployments and the repo objects only they used.

use crate::host::Host;
use anyhow::Result;

/// Removes what [`keep`] does not keep; returns the removed deployments (`checksum.serial`)
/// and the bytes freed in the repo.
pub fn cleanup(host: &Host) -> Result<(Vec<String>, u64)> {
    let all = host.sysroot().deployments();
    let booted = host.booted_deployment();
    let default = all.iter().position(|d| !d.is_staged());
    let flags: Vec<Flags> = all
        .iter()
        .enumerate()
        .map(|(i, d)| Flags {
            ours: d.osname() == host.osname(),
            default: Some(i) == default,
            booted: booted.as_ref().is_some_and(|b| b.equal(d)),
            staged: d.is_staged(),
            pinned: d.is_pinned(),
        })
        .collect();
    let kept: Vec<ostree::Deployment> = all
        .iter()
        .zip(&flags)
        .filter(|(_, f)| keep(f))
        .map(|(d, _)| Clone::clone(d))
        .collect();
    let removed: Vec<String> = all
        .iter()
        .zip(&flags)
        .filter(|(_, f)| !keep(f))
        .map(|(d, _)| format!("{}.{}", d.csum(), d.deployserial()))
        .collect();
    let mut freed = 0;
    if !removed.is_empty() {
        freed += host.write_deployments(&kept)?;
    }
    freed += host.cleanup()?;
    Ok((removed, freed))
}

/// What decides whether a deployment stays.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flags {
    /// Of the OS this host manages (others are never touched).
    pub ours: bool,
    pub default: bool,
    pub booted: bool,
    pub staged: bool,
    pub pinned: bool,
}

pub fn keep(f: &Flags) -> bool {
    !f.ours || f.default || f.booted || f.staged || f.pinned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_default_booted_staged_pinned_and_other_oses() {
        let ours = Flags {
            ours: true,
            ..Flags::default()
        };
        assert!(!keep(&ours), "a plain rollback deployment goes");
        for f in [
            Flags {
                default: true,
                ..ours
            },
            Flags {
                booted: true,
                ..ours
            },
            Flags {
                staged: true,
                ..ours
            },
            Flags {
                pinned: true,
                ..ours
            },
            Flags::default(),
        ] {
            assert!(keep(&f), "{f:?}");
        }
    }
}
