//! The ostree sysroot inside an image, made with the `ostree` CLI: an empty sysroot, the OS,
//! the commit pulled from the source repository under the remote's name, libostree's syslinux
//! backend switched on, one deployment of the ref.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::bootcfg;
use crate::cmd;

/// What the first deployment came out as.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Deployed {
    /// The commit checksum the ref pointed to.
    pub commit: String,
    /// The deployment's checkout (`ostree/deploy/OS/deploy/CHECKSUM.0`).
    pub deployment: PathBuf,
}

/// Creates an ostree sysroot in the empty directory `sysroot` holding one deployment of
/// `reference` from `source_repo`, with origin `remote:reference` so `keel upgrade` follows the
/// ref on that remote.
pub fn create(
    sysroot: &Path,
    source_repo: &Path,
    reference: &str,
    osname: &str,
    remote: &str,
    kargs: &[String],
) -> anyhow::Result<Deployed> {
    let repo = sysroot.join("ostree/repo");
    cmd::run(
        Command::new("ostree")
            .args(["admin", "init-fs"])
            .arg(sysroot),
    )?;
    cmd::run(
        Command::new("ostree")
            .args(["admin", "os-init", osname])
            .arg(format!("--sysroot={}", sysroot.display())),
    )?;
    cmd::run(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["config", "set", "sysroot.bootloader", "syslinux"]),
    )?;
    cmd::run(
        Command::new("ostree")
            .arg("pull-local")
            .arg(format!("--repo={}", repo.display()))
            .arg(format!("--remote={remote}"))
            .arg(source_repo)
            .arg(reference),
    )
    .with_context(|| {
        format!(
            "pulling {reference} from {}: check that the repository has the ref \
             (ostree refs --repo {})",
            source_repo.display(),
            source_repo.display()
        )
    })?;
    seed_syslinux(&sysroot.join("boot"))?;

    let mut deploy = Command::new("ostree");
    deploy
        .args(["admin", "deploy"])
        .arg(format!("--sysroot={}", sysroot.display()))
        .arg(format!("--os={osname}"));
    for karg in kargs {
        deploy.arg(format!("--karg={karg}"));
    }
    deploy.arg(format!("{remote}:{reference}"));
    cmd::run(&mut deploy).with_context(|| format!("deploying {remote}:{reference}"))?;

    let commit = cmd::run(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["rev-parse"])
            .arg(format!("{remote}:{reference}")),
    )?
    .trim()
    .to_string();
    let deployment = sysroot
        .join("ostree/deploy")
        .join(osname)
        .join("deploy")
        .join(format!("{commit}.0"));
    if !deployment.is_dir() {
        anyhow::bail!(
            "ostree admin deploy reported success but {} is missing",
            deployment.display()
        );
    }
    Ok(Deployed { commit, deployment })
}

/// `boot/syslinux/syslinux.cfg -> ../loader/syslinux.cfg` and a first `loader.0` holding the
/// seed configuration: libostree's syslinux backend detects the link and writes the real
/// configuration into the next loader directory.
fn seed_syslinux(boot: &Path) -> anyhow::Result<()> {
    let loader0 = boot.join("loader.0");
    fs::create_dir_all(&loader0).with_context(|| format!("creating {}", loader0.display()))?;
    fs::write(loader0.join("syslinux.cfg"), bootcfg::syslinux_seed())
        .with_context(|| format!("writing {}/syslinux.cfg", loader0.display()))?;
    symlink("loader.0", &boot.join("loader"))?;
    let dir = boot.join(bootcfg::SYSLINUX_DIR);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    symlink(bootcfg::SYSLINUX_LINK_TARGET, &dir.join("syslinux.cfg"))
}

fn symlink(target: &str, link: &Path) -> anyhow::Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} -> {target}", link.display()))
}

/// Adds the /boot mount to the deployment's `etc/fstab`.
pub fn add_boot_to_fstab(deployment: &Path) -> anyhow::Result<()> {
    let path = deployment.join("etc/fstab");
    let existing = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    fs::write(&path, bootcfg::fstab_with_boot(&existing))
        .with_context(|| format!("writing {}", path.display()))
}

/// Bytes the tree under `dir` occupies (allocated blocks, each hard-linked inode once): what
/// the root filesystem must hold.
pub fn disk_usage(dir: &Path) -> anyhow::Result<u64> {
    let out = cmd::run(Command::new("du").args(["-s", "-B1", "-x"]).arg(dir))?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("reading du's output for {}: {out:?}", dir.display()))
}
