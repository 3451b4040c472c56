//! The text an image's boot path reads: kernel arguments, the /boot line in the deployment's
//! fstab, the syslinux configuration libostree's syslinux backend extends. Pure.

/// Filesystem label of the /boot partition (extlinux, kernels, libostree's boot entries).
pub const BOOT_LABEL: &str = "keel-boot";
/// Filesystem label of the root partition (the ostree sysroot).
pub const ROOT_LABEL: &str = "keel-root";
/// The repo's `sysroot.bootloader`: libostree writes syslinux entries, which extlinux reads.
pub const BOOTLOADER: &str = "syslinux";
/// Where extlinux lives on the /boot filesystem; libostree's syslinux backend is active when
/// `boot/syslinux/syslinux.cfg` exists in the sysroot.
pub const SYSLINUX_DIR: &str = "syslinux";
/// `syslinux/syslinux.cfg` points into the current loader directory, which libostree swaps
/// atomically on every deployment change.
pub const SYSLINUX_LINK_TARGET: &str = "../loader/syslinux.cfg";

/// Kernel arguments of the first deployment: the root filesystem by label (the ostree dracut
/// module mounts it and enters the deployment named by the `ostree=` argument libostree adds),
/// read-write, the console on the first serial port, then the caller's extra arguments.
pub fn kernel_args(extra: &[String]) -> Vec<String> {
    let mut args = vec![
        format!("root=LABEL={ROOT_LABEL}"),
        "rw".to_string(),
        "console=ttyS0,115200".to_string(),
    ];
    args.extend(extra.iter().cloned());
    args
}

/// The fstab line that mounts the /boot partition, so libostree on the host writes new boot
/// entries where extlinux reads them.
pub fn boot_fstab_line() -> String {
    format!("LABEL={BOOT_LABEL} /boot ext4 defaults 0 2")
}

/// `existing` fstab text with the /boot line appended, unless something already mounts /boot.
pub fn fstab_with_boot(existing: &str) -> String {
    let mounts_boot = existing.lines().any(|line| {
        let line = line.trim();
        !line.starts_with('#') && line.split_whitespace().nth(1) == Some("/boot")
    });
    if mounts_boot {
        return existing.to_string();
    }
    let mut text = existing.to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&boot_fstab_line());
    text.push('\n');
    text
}

/// The syslinux configuration the image starts with. libostree keeps these global lines and
/// appends one `LABEL` per deployment plus `DEFAULT`: the menu goes to the serial port too
/// (VMs and headless machines) and boots the default entry at once.
pub fn syslinux_seed() -> &'static str {
    "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 1\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_args_put_root_first_and_extras_last() {
        let args = kernel_args(&["quiet".into(), "systemd.log_level=debug".into()]);
        assert_eq!(
            args,
            [
                "root=LABEL=keel-root",
                "rw",
                "console=ttyS0,115200",
                "quiet",
                "systemd.log_level=debug"
            ]
        );
    }

    #[test]
    fn fstab_gains_a_boot_line() {
        let table = [
            ("", "LABEL=keel-boot /boot ext4 defaults 0 2\n"),
            (
                "# UNCONFIGURED FSTAB\n",
                "# UNCONFIGURED FSTAB\nLABEL=keel-boot /boot ext4 defaults 0 2\n",
            ),
            (
                "proc /proc proc defaults 0 0",
                "proc /proc proc defaults 0 0\nLABEL=keel-boot /boot ext4 defaults 0 2\n",
            ),
            (
                "#UUID=x /boot ext4 defaults 0 2\n",
                "#UUID=x /boot ext4 defaults 0 2\nLABEL=keel-boot /boot ext4 defaults 0 2\n",
            ),
        ];
        for (before, after) in table {
            assert_eq!(fstab_with_boot(before), after, "{before:?}");
        }
    }

    #[test]
    fn fstab_that_mounts_boot_is_kept() {
        let text = "UUID=1234 /boot ext4 defaults 0 2\n";
        assert_eq!(fstab_with_boot(text), text);
    }

    #[test]
    fn syslinux_seed_talks_on_the_serial_port() {
        assert!(syslinux_seed().starts_with("SERIAL 0 115200\n"));
        assert!(!syslinux_seed().contains("LABEL"));
    }
}
