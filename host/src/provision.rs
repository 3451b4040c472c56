//! Provisioning: an empty directory becomes an ostree sysroot, then gets its first deployment
//! through the same [`Host::deploy`] as every later one (an image build calls this; no
//! `ostree admin` subprocess).
//!
//! [`init_sysroot`] does what `ostree admin init-fs DIR` and `ostree admin os-init OS` do in
//! libostree 2022.7: the top-level directories of a root filesystem (`boot dev home proc run
//! sys` 0755, `root` 0700, `tmp` 01777), then `ostree_sysroot_ensure_initialized` (a bare
//! `ostree/repo`, `ostree/deploy`) and `ostree_sysroot_init_osname` (the stateroot's `var`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use keel_common::cancel::Cancel;
use keel_common::ostree_ref::OstreeRef;
use keel_common::progress::Progress;
use ostree::gio::{self, prelude::*};
use ostree::glib;

use crate::host::{cancellable, Host};

/// The top-level directories `ostree admin init-fs` creates, with their modes.
const TOPLEVEL_DIRS: [(&str, u32); 8] = [
    ("boot", 0o755),
    ("dev", 0o755),
    ("home", 0o755),
    ("proc", 0o755),
    ("run", 0o755),
    ("sys", 0o755),
    ("root", 0o700),
    ("tmp", 0o1777),
];

/// What the first deployment came out as.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Provisioned {
    /// The commit checksum the ref pointed to.
    pub commit: String,
    /// The deployment's checkout (`ostree/deploy/OS/deploy/CHECKSUM.0`).
    pub deployment: PathBuf,
}

/// Turns the empty directory `path` into a sysroot with the stateroot `osname`. With
/// `bootloader` (e.g. `syslinux`) the repo's `sysroot.bootloader` names the backend libostree
/// writes boot entries for, instead of guessing from /boot.
pub fn init_sysroot(path: &Path, osname: &str, bootloader: Option<&str>) -> Result<()> {
    for (name, mode) in TOPLEVEL_DIRS {
        let dir = path.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // Set after creating: the umask would otherwise clear bits (tmp's sticky 01777).
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting mode {mode:o} on {}", dir.display()))?;
    }
    let sysroot = ostree::Sysroot::new(Some(&gio::File::for_path(path)));
    sysroot
        .ensure_initialized(gio::Cancellable::NONE)
        .with_context(|| format!("initializing an ostree sysroot in {}", path.display()))?;
    sysroot
        .load(gio::Cancellable::NONE)
        .with_context(|| format!("loading the new sysroot at {}", path.display()))?;
    sysroot
        .init_osname(osname, gio::Cancellable::NONE)
        .with_context(|| format!("creating the stateroot {osname} in {}", path.display()))?;
    if let Some(bootloader) = bootloader {
        let repo = sysroot.repo();
        let config = repo.copy_config();
        config.set_string("sysroot", "bootloader", bootloader);
        repo.write_config(&config)
            .with_context(|| format!("setting sysroot.bootloader={bootloader}"))?;
    }
    Ok(())
}

/// Pulls `reference` from the local repository `source` into `host`'s repo under the ref
/// `remote:reference` (as `ostree pull-local --remote` does), so the deployment's origin
/// follows the ref on that remote. Returns the commit checksum.
pub fn pull_local(
    host: &Host,
    source: &Path,
    reference: &OstreeRef,
    remote: &str,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> Result<String> {
    progress.phase("pull");
    let source = source
        .canonicalize()
        .with_context(|| format!("opening the source repository {}", source.display()))?;
    let options = glib::VariantDict::new(None);
    options.insert_value("refs", &vec![reference.to_string()].to_variant());
    options.insert_value("override-remote-name", &remote.to_variant());
    options.insert_value("gpg-verify", &false.to_variant());
    options.insert_value("gpg-verify-summary", &false.to_variant());
    // As `ostree pull-local` does: without these, libostree reads the signing options of the
    // remote `override-remote-name` names, which does not exist (yet) in this repo.
    options.insert_value("disable-sign-verify", &true.to_variant());
    options.insert_value("disable-sign-verify-summary", &true.to_variant());
    options.insert_value(
        "flags",
        &(ostree::RepoPullFlags::NONE.bits() as i32).to_variant(),
    );
    let url = gio::File::for_path(&source).uri();
    let repo = host.repo();
    repo.pull_with_options(&url, &options.end(), None, Some(&cancellable(cancel)))
        .with_context(|| {
            format!(
                "pulling {reference} from {}: check that the repository has the ref \
                 (ostree refs --repo {})",
                source.display(),
                source.display()
            )
        })?;
    let refspec = reference.on_remote(remote);
    let commit = repo
        .resolve_rev(&refspec, false)
        .with_context(|| format!("resolving {refspec} after the pull"))?
        .with_context(|| format!("{refspec} is missing after the pull"))?;
    Ok(commit.to_string())
}

/// The first deployment of `reference` (already pulled as `remote:reference`), with `kargs`.
pub fn first_deploy(
    host: &Host,
    reference: &OstreeRef,
    remote: &str,
    kargs: &[String],
    cancel: &Cancel,
    progress: &dyn Progress,
) -> Result<Provisioned> {
    let refspec = reference.on_remote(remote);
    let commit = host
        .repo()
        .resolve_rev(&refspec, false)
        .with_context(|| format!("resolving {refspec}"))?
        .with_context(|| format!("{refspec} is not in the sysroot's repo: pull it first"))?
        .to_string();
    let kargs = (!kargs.is_empty()).then_some(kargs);
    host.deploy(&commit, &refspec, kargs, cancel, progress)?;
    let deployment = host
        .deployments()
        .into_iter()
        .next()
        .with_context(|| format!("deploying {refspec} left no deployment"))?;
    Ok(Provisioned {
        commit,
        deployment: host.deployment_path(&deployment),
    })
}
