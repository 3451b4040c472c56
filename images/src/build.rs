//! Building an image: sysroot in a scratch directory next to the output, filesystems written
//! at their partitions' offsets in a temporary disk file, extlinux installed, then one rename
//! onto the output. Any failure leaves no loop device, mount or partial output behind.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Instant;

use anyhow::Context;
use keel_common::cancel::Cancel;
use keel_common::ostree_ref::OstreeRef;
use keel_common::progress::Progress;
use keel_host::provision;
use keel_host::Host;
use keel_io::command::CommandExt;

use crate::bootcfg;
use crate::guard::{LoopDevice, Mount};
use crate::layout::{self, Layout};
use crate::remote::{self, RemoteSpec};
use crate::sysroot;

/// Where syslinux's MBR boot code comes from (Debian's syslinux-common).
pub const MBR_BIN: &str = "/usr/lib/syslinux/mbr/mbr.bin";

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Raw,
    Qcow2,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Format::Raw),
            "qcow2" => Ok(Format::Qcow2),
            other => Err(format!("unknown image format {other:?}: use raw or qcow2")),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        })
    }
}

/// Everything an image build needs.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The ostree repository holding the commit.
    pub repo: PathBuf,
    pub reference: OstreeRef,
    pub format: Format,
    /// Disk size in bytes.
    pub size: u64,
    pub boot_size: u64,
    pub output: PathBuf,
    /// The stateroot (OS name) of the deployment.
    pub osname: String,
    /// The update remote; without it the origin still names [`remote::DEFAULT_REMOTE`].
    pub remote: Option<RemoteSpec>,
    /// Kernel arguments after Keel's own (root, rw, console).
    pub kargs: Vec<String>,
}

/// What was built, for people and for `--json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageReport {
    pub output: PathBuf,
    pub format: Format,
    pub reference: OstreeRef,
    pub commit: String,
    pub layout: Layout,
    pub kernel_args: Vec<String>,
    pub remote: Option<String>,
    pub tree_bytes: u64,
    pub seconds: f64,
}

impl ImageReport {
    pub fn render(&self) -> String {
        format!(
            "wrote {} ({}, {} MiB): {} at {}\n  /boot {} MiB, root {} MiB, kernel args: {}\n  remote: {}",
            self.output.display(),
            self.format,
            self.layout.disk_size / layout::MIB,
            self.reference,
            self.commit,
            self.layout.boot.size / layout::MIB,
            self.layout.root.size / layout::MIB,
            self.kernel_args.join(" "),
            self.remote.as_deref().unwrap_or("none (the host cannot update itself)"),
        )
    }
}

/// Builds the image described by `spec`. Needs root (loop devices, mount) and the tools
/// `ci/deps` installs. `progress` hears each step; `cancel` stops the pull and the deploy.
pub fn build(
    spec: &ImageSpec,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> anyhow::Result<ImageReport> {
    let started = Instant::now();
    let layout = Layout::plan(spec.size, spec.boot_size)?;
    let out_dir = match spec.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let out_name = spec
        .output
        .file_name()
        .with_context(|| format!("output {} has no file name", spec.output.display()))?
        .to_string_lossy()
        .into_owned();
    let scratch = tempfile::Builder::new()
        .prefix(&format!(".{out_name}."))
        .tempdir_in(&out_dir)
        .with_context(|| format!("creating a scratch directory in {}", out_dir.display()))?;
    let scratch = ScratchDir {
        path: scratch.keep(),
        progress,
    };

    let remote_name = spec
        .remote
        .as_ref()
        .map_or(remote::DEFAULT_REMOTE, |r| r.name.as_str());
    let kargs = bootcfg::kernel_args(&spec.kargs);
    let sysroot_dir = scratch.path.join("sysroot");
    fs::create_dir(&sysroot_dir).with_context(|| format!("creating {}", sysroot_dir.display()))?;
    progress.message(&format!(
        "image: deploying {} into a new sysroot",
        spec.reference
    ));
    provision::init_sysroot(&sysroot_dir, &spec.osname, Some(bootcfg::BOOTLOADER))?;
    let host = Host::open(Some(&sysroot_dir))?;
    provision::pull_local(
        &host,
        &spec.repo,
        &spec.reference,
        remote_name,
        cancel,
        progress,
    )?;
    sysroot::seed_syslinux(&sysroot_dir.join("boot"))?;
    let deployed = provision::first_deploy(
        &host,
        &spec.reference,
        remote_name,
        &kargs,
        cancel,
        progress,
    )?;
    drop(host);
    sysroot::add_boot_to_fstab(&deployed.deployment)?;
    if let Some(remote_spec) = &spec.remote {
        remote::configure(remote_spec, &spec.reference, &sysroot_dir)?;
    }

    // The /boot partition's content leaves the sysroot; its empty directory stays as the
    // mount point.
    let boot_dir = scratch.path.join("boot");
    fs::rename(sysroot_dir.join("boot"), &boot_dir).context("moving boot out of the sysroot")?;
    fs::create_dir(sysroot_dir.join("boot")).context("recreating the sysroot's boot")?;

    let tree_bytes = sysroot::disk_usage(&sysroot_dir)?;
    layout::check_fits(tree_bytes, &layout)?;

    let disk = scratch.path.join("disk.raw");
    progress.message(&format!(
        "image: writing a {} MiB disk ({} MiB of tree)",
        layout.disk_size / layout::MIB,
        tree_bytes / layout::MIB
    ));
    write_disk(&disk, &layout, &boot_dir, &sysroot_dir, progress)?;

    let staged = scratch.path.join("image.out");
    match spec.format {
        Format::Raw => fs::rename(&disk, &staged).context("staging the raw image")?,
        Format::Qcow2 => {
            Command::new("qemu-img")
                .args(["convert", "-f", "raw", "-O", "qcow2"])
                .arg(&disk)
                .arg(&staged)
                .run()?;
        }
    }
    fs::rename(&staged, &spec.output)
        .with_context(|| format!("moving the image to {}", spec.output.display()))?;
    Ok(ImageReport {
        output: spec.output.clone(),
        format: spec.format,
        reference: spec.reference.clone(),
        commit: deployed.commit,
        layout,
        kernel_args: kargs,
        remote: spec
            .remote
            .as_ref()
            .map(|r| format!("{} {}", r.name, r.url)),
        tree_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Partition table, root filesystem made from `root_tree` at its offset, /boot filesystem
/// filled through a mount (syslinux cannot read the sparse files `mkfs.ext4 -d` makes of the
/// initramfs), extlinux in /boot's boot sector, syslinux's MBR code.
fn write_disk(
    disk: &Path,
    layout: &Layout,
    boot_tree: &Path,
    root_tree: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    let file = fs::File::create(disk).with_context(|| format!("creating {}", disk.display()))?;
    file.set_len(layout.disk_size)
        .with_context(|| format!("sizing {}", disk.display()))?;
    drop(file);
    Command::new("sfdisk")
        .arg("--quiet")
        .arg(disk)
        .run_with_input(layout.sfdisk_script().as_bytes())?;
    mkfs(disk, bootcfg::ROOT_LABEL, layout.root, Some(root_tree))?;
    mkfs(disk, bootcfg::BOOT_LABEL, layout.boot, None)?;
    {
        let device = LoopDevice::attach(disk, layout.boot.offset, layout.boot.size, progress)?;
        let mountpoint = disk.with_extension("boot-mnt");
        fs::create_dir(&mountpoint)
            .with_context(|| format!("creating {}", mountpoint.display()))?;
        let mounted = Mount::new(device.path(), &mountpoint, "ext4", progress)?;
        let mut source = boot_tree.as_os_str().to_owned();
        source.push("/.");
        Command::new("cp")
            .args(["-a", "--sparse=never"])
            .arg(source)
            .arg(mounted.path())
            .run()?;
        Command::new("extlinux")
            .arg("--install")
            .arg(mounted.path().join(bootcfg::SYSLINUX_DIR))
            .run()?;
        drop(mounted);
        drop(device);
        fs::remove_dir(&mountpoint).ok();
    }
    let mbr = fs::read(MBR_BIN)
        .with_context(|| format!("reading {MBR_BIN} (install syslinux-common: ci/deps)"))?;
    write_at(disk, 0, &mbr[..mbr.len().min(440)])
}

fn mkfs(
    disk: &Path,
    label: &str,
    extent: layout::Extent,
    tree: Option<&Path>,
) -> anyhow::Result<()> {
    let mut mkfs = Command::new("mkfs.ext4");
    mkfs.args(["-q", "-F", "-L", label, "-E"])
        .arg(format!("offset={}", extent.offset));
    if let Some(tree) = tree {
        mkfs.arg("-d").arg(tree);
    }
    mkfs.arg(disk).arg(format!("{}k", extent.size / 1024));
    mkfs.run()
        .with_context(|| format!("making the {label} filesystem"))?;
    Ok(())
}

fn write_at(path: &Path, offset: u64, data: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all_at(data, offset)
        .with_context(|| format!("writing the MBR boot code into {}", path.display()))
}

/// The scratch directory; removed on drop, after clearing the immutable flag libostree puts on
/// deployment directories. A failure to remove it is a warning through `progress`.
struct ScratchDir<'a> {
    path: PathBuf,
    progress: &'a dyn Progress,
}

impl Drop for ScratchDir<'_> {
    fn drop(&mut self) {
        // Best effort: what it could not clear shows in the removal's error below.
        let _ = Command::new("chattr")
            .args(["-R", "-f", "-i"])
            .arg(&self.path)
            .run();
        if let Err(e) = fs::remove_dir_all(&self.path) {
            self.progress
                .warning(&format!("removing {}: {e}", self.path.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!("raw".parse::<Format>(), Ok(Format::Raw));
        assert_eq!("qcow2".parse::<Format>(), Ok(Format::Qcow2));
        assert!("vmdk"
            .parse::<Format>()
            .unwrap_err()
            .contains("raw or qcow2"));
    }
}
