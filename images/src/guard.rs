//! Loop devices and mounts that undo themselves: dropped on success, on error and on panic,
//! so a failed image build leaves nothing attached or mounted.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{self, CmdError};

/// A loop device over a byte range of a file; detached on drop.
#[derive(Debug)]
pub struct LoopDevice {
    device: PathBuf,
}

impl LoopDevice {
    /// Attaches `size` bytes of `file` starting at `offset` (`losetup --offset --sizelimit`;
    /// partition scanning makes no nodes on these machines, so each partition gets its own).
    pub fn attach(file: &Path, offset: u64, size: u64) -> Result<LoopDevice, CmdError> {
        let out = cmd::run(
            Command::new("losetup")
                .args(["--find", "--show", "--offset"])
                .arg(offset.to_string())
                .arg("--sizelimit")
                .arg(size.to_string())
                .arg(file),
        )?;
        Ok(LoopDevice {
            device: PathBuf::from(out.trim()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.device
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Err(e) = cmd::run(Command::new("losetup").arg("-d").arg(&self.device)) {
            eprintln!("warning: detaching {}: {e}", self.device.display());
        }
    }
}

/// A mounted filesystem; unmounted on drop (before the loop device under it is detached, when
/// declared after it).
#[derive(Debug)]
pub struct Mount {
    target: PathBuf,
}

impl Mount {
    pub fn new(source: &Path, target: &Path, fstype: &str) -> Result<Mount, CmdError> {
        cmd::run(
            Command::new("mount")
                .args(["-t", fstype])
                .arg(source)
                .arg(target),
        )?;
        Ok(Mount {
            target: target.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = cmd::run(Command::new("umount").arg(&self.target)) {
            eprintln!("warning: unmounting {}: {e}", self.target.display());
        }
    }
}
