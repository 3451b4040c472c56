//! What an image's sysroot needs beyond what keel-host's provisioning does: libostree's
//! syslinux backend seeded in /boot before the first deployment, the /boot mount in the
//! deployment's fstab, and the size of the finished tree.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::Context;

use keel_io::command::CommandExt;

use crate::bootcfg;

/// `boot/syslinux/syslinux.cfg -> ../loader/syslinux.cfg` and a first `loader.0` holding the
/// seed configuration: libostree's syslinux backend detects the link and writes the real
/// configuration into the next loader directory.
pub fn seed_syslinux(boot: &Path) -> anyhow::Result<()> {
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
    let out = Command::new("du")
        .args(["-s", "-B1", "-x"])
        .arg(dir)
        .run_text()?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("reading du's output for {}: {out:?}", dir.display()))
}
