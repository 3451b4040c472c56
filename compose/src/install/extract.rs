//! Host-side reading of `.deb` files with `dpkg-deb`: unpacking the filesystem archive into a
//! directory (for the Essential bootstrap and the package cache) and reading control members.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

/// Extracts the filesystem archive of `deb` into `dest` like mmdebstrap does: owners, modes and
/// times preserved, and existing symlinks to directories (the merged-/usr links `bin -> usr/bin`)
/// followed instead of replaced. Returns the archive's member names (`./`, `./usr/`,
/// `./usr/bin/x`, in archive order), or a description of what failed.
pub fn unpack_data(deb: &Path, dest: &Path) -> Result<Vec<String>, String> {
    let mut dpkg_deb = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run dpkg-deb ({e}); install dpkg through ci/deps"))?;
    let Some(archive) = dpkg_deb.stdout.take() else {
        return Err("dpkg-deb gave no output pipe".into());
    };
    let tar = Command::new("tar")
        .args([
            "--extract",
            "--keep-directory-symlink",
            "--preserve-permissions",
            "--same-owner",
            "--numeric-owner",
            "--warning=no-timestamp",
            "--verbose",
            "--quoting-style=literal",
            "--directory",
        ])
        .arg(dest)
        .stdin(archive)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run tar ({e})"))?;
    let mut dpkg_err = String::new();
    if let Some(mut e) = dpkg_deb.stderr.take() {
        // Best effort: only used to explain a failure.
        let _ = e.read_to_string(&mut dpkg_err);
    }
    let status = dpkg_deb
        .wait()
        .map_err(|e| format!("waiting for dpkg-deb: {e}"))?;
    if !status.success() {
        return Err(format!(
            "dpkg-deb --fsys-tarfile failed: {}",
            dpkg_err.trim()
        ));
    }
    if !tar.status.success() {
        return Err(format!(
            "tar --extract failed: {}",
            String::from_utf8_lossy(&tar.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&tar.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Extracts the control members (control, md5sums, maintainer scripts, ...) into `dest`.
pub fn unpack_control(deb: &Path, dest: &Path) -> Result<(), String> {
    let out = Command::new("dpkg-deb")
        .arg("--control")
        .arg(deb)
        .arg(dest)
        .output()
        .map_err(|e| format!("cannot run dpkg-deb ({e}); install dpkg through ci/deps"))?;
    if !out.status.success() {
        return Err(format!(
            "dpkg-deb --control failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}
