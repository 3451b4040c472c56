//! Loop devices and mounts that undo themselves: dropped on success, on error and on panic,
//! so a failed image build leaves nothing attached or mounted.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_common::progress::Progress;

use keel_io::command::{CommandError, CommandExt};

/// A loop device over a byte range of a file; detached on drop (a failure to detach is a
/// warning through the sink).
pub struct LoopDevice<'a> {
    device: PathBuf,
    progress: &'a dyn Progress,
}

impl<'a> LoopDevice<'a> {
    /// Attaches `size` bytes of `file` starting at `offset` (`losetup --offset --sizelimit`;
    /// partition scanning makes no nodes on these machines, so each partition gets its own).
    pub fn attach(
        file: &Path,
        offset: u64,
        size: u64,
        progress: &'a dyn Progress,
    ) -> Result<LoopDevice<'a>, CommandError> {
        let out = Command::new("losetup")
            .args(["--find", "--show", "--offset"])
            .arg(offset.to_string())
            .arg("--sizelimit")
            .arg(size.to_string())
            .arg(file)
            .run_text()?;
        Ok(LoopDevice {
            device: PathBuf::from(out.trim()),
            progress,
        })
    }

    pub fn path(&self) -> &Path {
        &self.device
    }
}

impl Drop for LoopDevice<'_> {
    fn drop(&mut self) {
        if let Err(e) = Command::new("losetup").arg("-d").arg(&self.device).run() {
            self.progress
                .warning(&format!("detaching {}: {e}", self.device.display()));
        }
    }
}

/// A mounted filesystem; unmounted on drop (before the loop device under it is detached, when
/// declared after it); a failure to unmount is a warning through the sink.
pub struct Mount<'a> {
    target: PathBuf,
    progress: &'a dyn Progress,
}

impl<'a> Mount<'a> {
    pub fn new(
        source: &Path,
        target: &Path,
        fstype: &str,
        progress: &'a dyn Progress,
    ) -> Result<Mount<'a>, CommandError> {
        Command::new("mount")
            .args(["-t", fstype])
            .arg(source)
            .arg(target)
            .run()?;
        Ok(Mount {
            target: target.to_path_buf(),
            progress,
        })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        if let Err(e) = Command::new("umount").arg(&self.target).run() {
            self.progress
                .warning(&format!("unmounting {}: {e}", self.target.display()));
        }
    }
}
