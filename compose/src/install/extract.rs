//! Host-side reading of `.deb` files: the filesystem archive (`dpkg-deb --fsys-tarfile`'s
//! stream) extracted by us through a [`TreeDir`], so no member and no link already in the tree
//! can put a file outside it; and the control members, through `dpkg-deb --control`.
//!
//! How members are written (the rules `tar --keep-directory-symlink --same-owner` follows
//! under mmdebstrap, made safe):
//! - parent directories resolve inside the tree: a symlink to a directory (merged-/usr
//!   `bin -> usr/bin`, or a package's `usr/share/x -> /tmp`) leads where it would inside a
//!   chroot of the tree, never to the host;
//! - the member itself is never followed: a file or link replaces whatever non-directory entry
//!   is there; a directory member over a symlink to a directory keeps the link;
//! - owners, modes (setuid included) and modification times are kept;
//! - a hard link must name an entry already in the tree (resolved inside it);
//! - a leading `/` or `./` is dropped; a name with a `..` component is refused, as are device
//!   nodes and FIFOs (an ostree commit cannot hold them: such a package could never become
//!   part of a tree, so it is refused here with its name rather than deep in a commit).

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use crate::tree_dir::{Kind, Meta, TreeDir};

/// One member of a filesystem archive, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// `./`, `./usr/`, `./usr/bin/x` (directories end in `/`), after normalising.
    pub name: String,
    pub dir: bool,
}

/// Extracts the filesystem archive of `deb` into the tree `dest` (see the module
/// documentation). Returns its members in archive order, or what failed, phrased to follow
/// "package X (version V from repo R)".
pub fn unpack_data(deb: &Path, dest: &Path) -> Result<Vec<Member>, String> {
    let tree = TreeDir::open(dest).map_err(|e| {
        format!(
            "cannot be extracted: opening the tree {}: {e}",
            dest.display()
        )
    })?;
    let mut dpkg_deb = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot be read: running dpkg-deb ({e}); install dpkg through ci/deps")
        })?;
    let Some(archive) = dpkg_deb.stdout.take() else {
        return Err("cannot be read: dpkg-deb gave no output pipe".into());
    };
    // Reading stops at the first refused member; dropping the pipe then ends dpkg-deb.
    let extracted = extract_stream(archive, &tree);
    let mut dpkg_err = String::new();
    if let Some(mut e) = dpkg_deb.stderr.take() {
        // Best effort: only used to explain a failure.
        let _ = e.read_to_string(&mut dpkg_err);
    }
    let status = dpkg_deb
        .wait()
        .map_err(|e| format!("cannot be read: waiting for dpkg-deb: {e}"))?;
    let members = extracted?;
    if !status.success() {
        return Err(format!(
            "is not a valid .deb: dpkg-deb --fsys-tarfile failed: {}",
            dpkg_err.trim()
        ));
    }
    Ok(members)
}

/// Extracts a tar stream into `tree` (see the module documentation).
pub fn extract_stream(stream: impl Read, tree: &TreeDir) -> Result<Vec<Member>, String> {
    let mut archive = tar::Archive::new(stream);
    let entries = archive
        .entries()
        .map_err(|e| format!("has an unreadable filesystem archive: {e}"))?;
    let mut members = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("has an unreadable filesystem archive: {e}"))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let rel = member_path(&raw).ok_or_else(|| {
            format!(
                "has a member named {shown} that leaves the package's tree (`..`); refusing the \
                 package: ask its maintainer for a correct build"
            )
        })?;
        let header = entry.header();
        let meta = Meta {
            uid: header.uid().map_err(|e| bad_header(&shown, e))? as u32,
            gid: header.gid().map_err(|e| bad_header(&shown, e))? as u32,
            mode: header.mode().map_err(|e| bad_header(&shown, e))?,
            mtime: header.mtime().map_err(|e| bad_header(&shown, e))? as i64,
        };
        let io = |what: &str| {
            let what = what.to_string();
            let shown = shown.clone();
            move |e: std::io::Error| format!("cannot be extracted: {what} {shown}: {e}")
        };
        let kind = header.entry_type();
        let dir = kind.is_dir();
        let through_link = |e: std::io::Error| -> String {
            let parent = rel.parent().unwrap_or(Path::new(""));
            match tree.kind(parent) {
                Ok(Some(Kind::Symlink)) if e.kind() == std::io::ErrorKind::NotFound => format!(
                    "writes {shown} through the symlink {}, which leads nowhere inside the \
                     tree (links are followed as if the tree were /, never onto the build \
                     host); refusing the package: ask its maintainer for a correct build",
                    dpkg_name(parent)
                ),
                _ => format!("cannot be extracted: creating {shown}: {e}"),
            }
        };
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Missing parents are made as tar makes them; existing ones (or links to
            // directories) are kept.
            if tree
                .kind(parent)
                .map_err(io("reading the parent of"))?
                .is_none()
            {
                tree.create_dir_all(parent, 0o755)
                    .map_err(io("creating the parent of"))?;
            }
        }
        match kind {
            tar::EntryType::Directory => {
                let kept_link = if rel.as_os_str().is_empty() {
                    false
                } else {
                    tree.make_dir(&rel, meta.mode & 0o7777)
                        .map_err(io("creating the directory"))?;
                    tree.kind(&rel).map_err(io("reading"))? == Some(Kind::Symlink)
                };
                if !kept_link {
                    tree.set_meta(&rel, meta)
                        .map_err(io("setting the owner and mode of"))?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut file = tree.create_file(&rel, 0o600).map_err(through_link)?;
                std::io::copy(&mut entry, &mut file).map_err(io("writing"))?;
                drop(file);
                tree.set_meta(&rel, meta)
                    .map_err(io("setting the owner and mode of"))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| format!("has a symlink {shown} without a target"))?;
                let target = PathBuf::from(OsStr::from_bytes(&target));
                tree.symlink(&rel, &target)
                    .map_err(io("creating the symlink"))?;
                tree.set_meta(&rel, meta)
                    .map_err(io("setting the owner of"))?;
            }
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let target_shown = String::from_utf8_lossy(&target).into_owned();
                let target = member_path(&target).ok_or_else(|| {
                    format!(
                        "has a hard link {shown} to {target_shown}, which leaves the package's \
                         tree (`..`); refusing the package: ask its maintainer for a correct build"
                    )
                })?;
                tree.hard_link(&rel, &target).map_err(|e| {
                    format!(
                        "has a hard link {shown} to {target_shown}, which is not an entry of the \
                         tree ({e}); a hard link may only name a file the package ships before it"
                    )
                })?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(format!(
                    "ships a device node {}; a Keel tree cannot hold device nodes (an ostree \
                     commit has none; /dev is populated at boot): drop the package or ask its \
                     maintainer to create the node at boot (udev rule or systemd-tmpfiles)",
                    dpkg_name(&rel)
                ));
            }
            tar::EntryType::Fifo => {
                return Err(format!(
                    "ships a FIFO {}; a Keel tree cannot hold FIFOs (an ostree commit has none): \
                     drop the package or create the FIFO at boot (systemd-tmpfiles)",
                    dpkg_name(&rel)
                ));
            }
            other => {
                return Err(format!(
                    "has a member {shown} of a kind dpkg does not unpack ({other:?}); refusing the \
                     package"
                ));
            }
        }
        members.push(Member {
            name: listed_name(&rel, dir),
            dir,
        });
    }
    Ok(members)
}

fn bad_header(name: &str, e: std::io::Error) -> String {
    format!("has a damaged archive header at {name}: {e}")
}

/// A member name as a path relative to the tree (`""` for the top); `None` when a `..`
/// component would leave it. A leading `/` or `./` is dropped, as tar and dpkg do.
fn member_path(raw: &[u8]) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in Path::new(OsStr::from_bytes(raw)).components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The name as `tar --verbose` lists it: `./`, `./usr/`, `./usr/bin/x`.
fn listed_name(rel: &Path, dir: bool) -> String {
    let rel = rel.to_string_lossy();
    match (rel.is_empty(), dir) {
        (true, _) => "./".to_string(),
        (false, true) => format!("./{rel}/"),
        (false, false) => format!("./{rel}"),
    }
}

/// The name as dpkg shows it to users: `/dev/foo`.
fn dpkg_name(rel: &Path) -> String {
    format!("/{}", rel.display())
}

/// Extracts the control members (control, md5sums, maintainer scripts, ...) into `dest`.
pub fn unpack_control(deb: &Path, dest: &Path) -> Result<(), String> {
    let out = Command::new("dpkg-deb")
        .arg("--control")
        .arg(deb)
        .arg(dest)
        .output()
        .map_err(|e| {
            format!("cannot be read: running dpkg-deb ({e}); install dpkg through ci/deps")
        })?;
    if !out.status.success() {
        return Err(format!(
            "is not a valid .deb: dpkg-deb --control failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
