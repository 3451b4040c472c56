//! Protecting a hardlinked tree with overlayfs, then folding the changes back into it.
//!
//! A warm compose checks its cached base layer out with hardlinks: every file of the tree is an
//! object inode of a bare ostree repo. Maintainer scripts, postprocess scripts and our own steps
//! then run on an overlayfs whose lower dir is that tree, so nothing can write into a cached
//! inode (the kernel never writes to a lower layer). After unmounting, [`apply_upper`] moves the
//! upper dir's entries into the tree by replacing directory entries (rename, unlink, mkdir),
//! never by opening an existing tree file for writing: untouched files stay hardlinks of the
//! cache, changed files become new inodes.
//!
//! Facts from the kernel's `Documentation/filesystems/overlayfs.rst` this module relies on:
//! - a whiteout in the upper dir is a character device 0/0 and hides the lower entry;
//! - a directory with `trusted.overlay.opaque` = `y` hides the lower directory's whole content;
//!   the value `x` only marks a merged directory holding xattr whiteouts, which are not opaque;
//! - only names are merged: a merged directory's metadata and xattrs are the upper one's;
//! - copy-up copies the whole file with its owner, mode and xattrs (with `metacopy=off`), and may
//!   add bookkeeping xattrs (`trusted.overlay.origin`, `.impure`, `.uuid`, ...) that mean nothing
//!   outside the mount, so they are stripped from everything that ends up in the tree;
//! - `redirect_dir=off` makes renaming a lower directory fail with EXDEV instead of writing
//!   `trusted.overlay.redirect`, and `metacopy=off` never writes `trusted.overlay.metacopy`, so
//!   an upper holding either was not made by [`Overlay::mount`] and is refused.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

mod mountinfo;
pub use mountinfo::unmount_below;

/// Options fixed on every mount: the upper dir then holds only whole copied-up files,
/// whiteouts and opaque directories, which [`apply_upper`] knows how to fold.
const FIXED_OPTIONS: &str = "redirect_dir=off,metacopy=off,index=off,xino=off";

/// The prefix of overlayfs's own xattrs (the mount does not use `userxattr`).
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

/// Overlay xattrs a mount with [`FIXED_OPTIONS`] never writes to its upper dir; folding an
/// upper that carries one would silently produce a wrong tree.
const FORBIDDEN_XATTRS: &[&[u8]] = &[
    b"trusted.overlay.redirect",
    b"trusted.overlay.metacopy",
    b"trusted.overlay.whiteout",
    b"trusted.overlay.whiteouts",
];

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is on another file system than the lower dir {lower}; put the upper, work and lower dirs on one file system (OverlayDirs::beside does)")]
    OtherFileSystem { path: PathBuf, lower: PathBuf },
    #[error("mounting overlayfs at {merged} over {lower} failed: {source}; this needs root, a kernel with overlayfs, an empty work dir and an upper dir made by a previous Overlay::mount (or empty)")]
    Mount {
        merged: PathBuf,
        lower: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unmounting the overlay at {merged} failed: {source}; it was detached lazily and disappears once the process still using it exits; stop that process and do not fold the upper dir before")]
    Unmount {
        merged: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} carries the xattr {xattr}, which an overlay mounted by Overlay::mount never writes; this upper dir cannot be folded faithfully: discard it and redo the step that produced it")]
    Forbidden { path: PathBuf, xattr: String },
    #[error("/proc/self/mountinfo has a malformed line {line:?}; is /proc a real procfs?")]
    MountInfo { line: String },
}

type Result<T, E = OverlayError> = std::result::Result<T, E>;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> OverlayError + 'a {
    move |errno| OverlayError::Io {
        action,
        path: path.to_path_buf(),
        source: errno.into(),
    }
}

fn std_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> OverlayError + 'a {
    move |source| OverlayError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The four directories of an overlay mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayDirs {
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
}

impl OverlayDirs {
    /// lower = `tree`, the three others as its siblings `NAME.upper`, `NAME.work`,
    /// `NAME.merged` (so on the same file system as the tree, as overlayfs wants upper and work).
    pub fn beside(tree: &Path) -> Self {
        let sibling = |suffix: &str| {
            let mut name = tree
                .file_name()
                .unwrap_or(OsStr::new("tree"))
                .to_os_string();
            name.push(suffix);
            tree.with_file_name(name)
        };
        OverlayDirs {
            lower: tree.to_path_buf(),
            upper: sibling(".upper"),
            work: sibling(".work"),
            merged: sibling(".merged"),
        }
    }
}

/// An overlayfs mounted at `merged`; unmounted on drop (lazily if a plain unmount fails: a
/// still-running child must not make us leak a mount).
#[derive(Debug)]
pub struct Overlay {
    dirs: OverlayDirs,
    mounted: bool,
}

impl Overlay {
    /// Mounts overlayfs with lower = `dirs.lower`, upper = `dirs.upper`, work = `dirs.work` at
    /// `dirs.merged`, creating upper/work/merged if missing; upper and work must be on the
    /// lower's file system. An empty upper dir first gets the lower root's owner, mode and
    /// xattrs, since the merged root shows the upper root's metadata.
    pub fn mount(dirs: &OverlayDirs) -> Result<Overlay> {
        let lower_meta = fs::metadata(&dirs.lower).map_err(std_err("read", &dirs.lower))?;
        for dir in [&dirs.upper, &dirs.work, &dirs.merged] {
            fs::create_dir_all(dir).map_err(std_err("create directory", dir))?;
        }
        for dir in [&dirs.upper, &dirs.work] {
            let meta = fs::metadata(dir).map_err(std_err("read", dir))?;
            if meta.dev() != lower_meta.dev() {
                return Err(OverlayError::OtherFileSystem {
                    path: dir.clone(),
                    lower: dirs.lower.clone(),
                });
            }
        }
        let lower = open_dir(&dirs.lower, OFlags::RDONLY)?;
        let upper = open_dir(&dirs.upper, OFlags::RDONLY)?;
        if list_names(upper.as_fd(), &dirs.upper)?.is_empty() {
            copy_dir_meta(lower.as_fd(), &dirs.lower, upper.as_fd(), &dirs.upper)?;
        }
        let work = open_dir(&dirs.work, OFlags::PATH)?;
        // The option string splits on `,` and `:`, which user paths may contain, so the layers
        // are named through `/proc/self/fd/N` of fds opened above: the kernel resolves those
        // magic links at mount time, and the string holds only digits of ours. The mount point
        // is a separate syscall argument and needs no escaping.
        let options = mount_options(lower.as_raw_fd(), upper.as_raw_fd(), work.as_raw_fd());
        rustix::mount::mount(
            "keel-overlay",
            &dirs.merged,
            "overlay",
            MountFlags::empty(),
            options.as_str(),
        )
        .map_err(|errno| OverlayError::Mount {
            merged: dirs.merged.clone(),
            lower: dirs.lower.clone(),
            source: errno.into(),
        })?;
        Ok(Overlay {
            dirs: dirs.clone(),
            mounted: true,
        })
    }

    pub fn merged(&self) -> &Path {
        &self.dirs.merged
    }

    pub fn dirs(&self) -> &OverlayDirs {
        &self.dirs
    }

    /// Unmounts, reporting errors, unlike Drop. If the mount is busy it is still detached
    /// lazily (so it never leaks), and the error says the upper dir is not safe to fold yet.
    pub fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        rustix::mount::unmount(&self.dirs.merged, UnmountFlags::empty()).map_err(|errno| {
            // Best effort: the error below is what the caller must act on.
            let _ = rustix::mount::unmount(&self.dirs.merged, UnmountFlags::DETACH);
            OverlayError::Unmount {
                merged: self.dirs.merged.clone(),
                source: errno.into(),
            }
        })
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if self.mounted && rustix::mount::unmount(&self.dirs.merged, UnmountFlags::empty()).is_err()
        {
            // Nothing to report to in a destructor; a lazy detach cannot be refused for busy.
            let _ = rustix::mount::unmount(&self.dirs.merged, UnmountFlags::DETACH);
        }
    }
}

/// The overlayfs option string for layers opened as fds `lower`, `upper` and `work`.
fn mount_options(lower: i32, upper: i32, work: i32) -> String {
    format!(
        "lowerdir=/proc/self/fd/{lower},upperdir=/proc/self/fd/{upper},workdir=/proc/self/fd/{work},{FIXED_OPTIONS}"
    )
}

/// What [`apply_upper`] did.
#[derive(Debug, Default, Clone, serde::Serialize, PartialEq, Eq)]
pub struct Applied {
    /// Entries moved from upper into lower (a new or changed file, symlink, or a whole new dir).
    pub replaced: usize,
    /// Lower entries removed by a whiteout.
    pub removed: usize,
    /// Lower dirs replaced whole by an opaque upper dir.
    pub opaque_dirs: usize,
    /// Dirs present on both sides whose metadata was copied onto the lower one (the root too).
    pub dirs_updated: usize,
}

/// Folds an unmounted overlay's upper dir into its lower dir, so `lower` afterwards reads
/// exactly as `merged` did, and leaves `upper` empty. Rules:
/// - char device 0:0 = whiteout: remove the lower path (file or whole dir);
/// - dir with xattr `trusted.overlay.opaque` = "y": remove the lower dir, move the upper dir in;
/// - dir that also exists as a dir in lower: copy mode/uid/gid/xattrs onto the lower dir,
///   recurse;
/// - anything else (file, symlink, dir absent from lower, fifo...): replace the lower entry by
///   rename;
/// - every `trusted.overlay.*` xattr is removed from what ends up in lower; whiteouts never end
///   up in lower;
/// - `trusted.overlay.redirect`, `.metacopy`, `.whiteout(s)` found = error.
///
/// Never opens an existing lower file for writing (lower files may be hardlinks into a cache).
/// Not atomic: after an error, `lower` is partly folded; start again from the cache.
pub fn apply_upper(upper: &Path, lower: &Path) -> Result<Applied> {
    let upper_fd = open_dir(upper, OFlags::RDONLY)?;
    let lower_fd = open_dir(lower, OFlags::RDONLY)?;
    check_forbidden(&list_xattrs(XattrOf::Fd(upper_fd.as_fd()), upper)?, upper)?;
    let mut applied = Applied::default();
    copy_dir_meta(upper_fd.as_fd(), upper, lower_fd.as_fd(), lower)?;
    applied.dirs_updated += 1;
    let up = Level {
        fd: upper_fd.as_fd(),
        path: upper,
    };
    let low = Level {
        fd: lower_fd.as_fd(),
        path: lower,
    };
    fold_dir(up, low, &mut applied)?;
    Ok(applied)
}

/// An open directory and its path (for error messages).
#[derive(Clone, Copy)]
struct Level<'a> {
    fd: BorrowedFd<'a>,
    path: &'a Path,
}

/// What an upper entry means for the lower entry of the same name.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Whiteout,
    Opaque,
    Merge,
    Replace,
}

fn classify(upper: &Stat, opaque: bool, lower: Option<&Stat>) -> Action {
    let kind = FileType::from_raw_mode(upper.st_mode);
    let lower_is_dir =
        lower.is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
    match kind {
        FileType::CharacterDevice if upper.st_rdev == 0 => Action::Whiteout,
        FileType::Directory if opaque => Action::Opaque,
        FileType::Directory if lower_is_dir => Action::Merge,
        _ => Action::Replace,
    }
}

fn fold_dir(up: Level<'_>, low: Level<'_>, applied: &mut Applied) -> Result<()> {
    for name in list_names(up.fd, up.path)? {
        let up_path = up.path.join(OsStr::from_bytes(name.to_bytes()));
        let low_path = low.path.join(OsStr::from_bytes(name.to_bytes()));
        let up_stat = stat_at(up.fd, &name, &up_path)?.ok_or_else(|| OverlayError::Io {
            action: "read",
            path: up_path.clone(),
            source: Errno::NOENT.into(),
        })?;
        let xattrs = list_xattrs(XattrOf::At(up.fd, &name), &up_path)?;
        check_forbidden(&xattrs, &up_path)?;
        let opaque = xattrs
            .iter()
            .any(|(k, v)| k.as_bytes() == OPAQUE_XATTR && v == b"y");
        let low_stat = stat_at(low.fd, &name, &low_path)?;
        match classify(&up_stat, opaque, low_stat.as_ref()) {
            Action::Whiteout => {
                if low_stat.is_some() {
                    remove_tree_at(low.fd, &name, &low_path)?;
                    applied.removed += 1;
                }
                unlink_at(up.fd, &name, &up_path, AtFlags::empty())?;
            }
            Action::Opaque => {
                if low_stat.is_some() {
                    remove_tree_at(low.fd, &name, &low_path)?;
                }
                scrub_at(up.fd, &name, &up_path, &up_stat)?;
                rename_at(up.fd, &name, &up_path, low.fd)?;
                applied.opaque_dirs += 1;
            }
            Action::Merge => {
                let up_sub = open_dir_at(up.fd, &name, &up_path)?;
                let low_sub = open_dir_at(low.fd, &name, &low_path)?;
                copy_dir_meta(up_sub.as_fd(), &up_path, low_sub.as_fd(), &low_path)?;
                applied.dirs_updated += 1;
                let up_level = Level {
                    fd: up_sub.as_fd(),
                    path: &up_path,
                };
                let low_level = Level {
                    fd: low_sub.as_fd(),
                    path: &low_path,
                };
                fold_dir(up_level, low_level, applied)?;
                // Everything below was moved or removed; a leftover would mean a bug here.
                unlink_at(up.fd, &name, &up_path, AtFlags::REMOVEDIR)?;
            }
            Action::Replace => {
                let up_is_dir = FileType::from_raw_mode(up_stat.st_mode) == FileType::Directory;
                let low_is_dir = low_stat
                    .as_ref()
                    .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
                // rename(2) replaces a non-dir by a non-dir atomically, but cannot put a dir
                // over a file or a file over a dir.
                if low_stat.is_some() && (up_is_dir || low_is_dir) {
                    remove_tree_at(low.fd, &name, &low_path)?;
                }
                scrub_at(up.fd, &name, &up_path, &up_stat)?;
                rename_at(up.fd, &name, &up_path, low.fd)?;
                applied.replaced += 1;
            }
        }
    }
    Ok(())
}

/// Makes an upper entry fit to enter the tree: strips `trusted.overlay.*` xattrs from it and
/// everything below it, and drops whiteouts below it (nothing lies beneath them any more).
fn scrub_at(dir: BorrowedFd<'_>, name: &CStr, path: &Path, stat: &Stat) -> Result<()> {
    let xattrs = list_xattrs(XattrOf::At(dir, name), path)?;
    check_forbidden(&xattrs, path)?;
    for (key, _) in xattrs.iter().filter(|(k, _)| is_overlay_xattr(k)) {
        remove_xattr(XattrOf::At(dir, name), key, path)?;
    }
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return Ok(());
    }
    let sub = open_dir_at(dir, name, path)?;
    for child in list_names(sub.as_fd(), path)? {
        let child_path = path.join(OsStr::from_bytes(child.to_bytes()));
        let Some(child_stat) = stat_at(sub.as_fd(), &child, &child_path)? else {
            continue;
        };
        if classify(&child_stat, false, None) == Action::Whiteout {
            unlink_at(sub.as_fd(), &child, &child_path, AtFlags::empty())?;
        } else {
            scrub_at(sub.as_fd(), &child, &child_path, &child_stat)?;
        }
    }
    Ok(())
}

/// Removes `name` in `dir`, recursively if it is a directory; unlinks only, never writes.
fn remove_tree_at(dir: BorrowedFd<'_>, name: &CStr, path: &Path) -> Result<()> {
    let Some(stat) = stat_at(dir, name, path)? else {
        return Ok(());
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return unlink_at(dir, name, path, AtFlags::empty());
    }
    let sub = open_dir_at(dir, name, path)?;
    for child in list_names(sub.as_fd(), path)? {
        remove_tree_at(
            sub.as_fd(),
            &child,
            &path.join(OsStr::from_bytes(child.to_bytes())),
        )?;
    }
    unlink_at(dir, name, path, AtFlags::REMOVEDIR)
}

/// Gives directory `to` the owner, mode and xattrs (minus overlay ones) of directory `from`.
fn copy_dir_meta(
    from: BorrowedFd<'_>,
    from_path: &Path,
    to: BorrowedFd<'_>,
    to_path: &Path,
) -> Result<()> {
    let stat = rustix::fs::fstat(from).map_err(io_err("read", from_path))?;
    std::os::unix::fs::fchown(to, Some(stat.st_uid), Some(stat.st_gid))
        .map_err(std_err("change the owner of", to_path))?;
    rustix::fs::fchmod(to, Mode::from_raw_mode(stat.st_mode & 0o7777))
        .map_err(io_err("change the mode of", to_path))?;
    let wanted: Vec<_> = list_xattrs(XattrOf::Fd(from), from_path)?
        .into_iter()
        .filter(|(k, _)| !is_overlay_xattr(k))
        .collect();
    let present = list_xattrs(XattrOf::Fd(to), to_path)?;
    for (key, _) in &present {
        if !wanted.iter().any(|(k, _)| k == key) {
            remove_xattr(XattrOf::Fd(to), key, to_path)?;
        }
    }
    for (key, value) in &wanted {
        if !present.iter().any(|(k, v)| k == key && v == value) {
            rustix::fs::fsetxattr(to, key.as_c_str(), value, rustix::fs::XattrFlags::empty())
                .map_err(io_err("set an xattr on", to_path))?;
        }
    }
    Ok(())
}

fn is_overlay_xattr(key: &CStr) -> bool {
    key.to_bytes().starts_with(OVERLAY_XATTR_PREFIX)
}

fn check_forbidden(xattrs: &[(CString, Vec<u8>)], path: &Path) -> Result<()> {
    match xattrs
        .iter()
        .find(|(k, _)| FORBIDDEN_XATTRS.contains(&k.to_bytes()))
    {
        Some((key, _)) => Err(OverlayError::Forbidden {
            path: path.to_path_buf(),
            xattr: key.to_string_lossy().into_owned(),
        }),
        None => Ok(()),
    }
}

/// Whose xattrs: an open directory, or an entry of one, reached without following a symlink
/// as `/proc/self/fd/N/NAME` (the `l*xattr` calls need a path, and a path through the fd keeps
/// the walk relative to the directories it opened).
#[derive(Clone, Copy)]
enum XattrOf<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a CStr),
}

impl XattrOf<'_> {
    fn proc_path(dir: BorrowedFd<'_>, name: &CStr) -> PathBuf {
        let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        path.extend_from_slice(name.to_bytes());
        PathBuf::from(OsString::from_vec(path))
    }
}

/// Reads every xattr (name, value); `path` only names the entry in errors.
fn list_xattrs(of: XattrOf<'_>, path: &Path) -> Result<Vec<(CString, Vec<u8>)>> {
    let list = |buf: &mut [u8]| match of {
        XattrOf::Fd(fd) => rustix::fs::flistxattr(fd, buf),
        XattrOf::At(dir, name) => rustix::fs::llistxattr(XattrOf::proc_path(dir, name), buf),
    };
    let names = read_sized(list).map_err(io_err("list the xattrs of", path))?;
    let mut xattrs = Vec::new();
    for key in names.split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let key = CString::new(key).map_err(|_| OverlayError::Io {
            action: "list the xattrs of",
            path: path.to_path_buf(),
            source: Errno::INVAL.into(),
        })?;
        let get = |buf: &mut [u8]| match of {
            XattrOf::Fd(fd) => rustix::fs::fgetxattr(fd, key.as_c_str(), buf),
            XattrOf::At(dir, name) => {
                rustix::fs::lgetxattr(XattrOf::proc_path(dir, name), key.as_c_str(), buf)
            }
        };
        match read_sized(get) {
            Ok(value) => xattrs.push((key, value)),
            // Removed between the listing and the read: it no longer exists.
            Err(Errno::NODATA) => {}
            Err(errno) => return Err(io_err("read an xattr of", path)(errno)),
        }
    }
    Ok(xattrs)
}

/// Calls an xattr getter with a growing buffer until the value fits.
fn read_sized(mut call: impl FnMut(&mut [u8]) -> Result<usize, Errno>) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 256];
    loop {
        match call(&mut buf) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Err(Errno::RANGE) if buf.len() < 1 << 20 => {
                let needed = call(&mut []).unwrap_or(0);
                buf.resize(needed.max(buf.len() * 2), 0);
            }
            Err(errno) => return Err(errno),
        }
    }
}

fn remove_xattr(of: XattrOf<'_>, key: &CStr, path: &Path) -> Result<()> {
    match of {
        XattrOf::Fd(fd) => rustix::fs::fremovexattr(fd, key),
        XattrOf::At(dir, name) => rustix::fs::lremovexattr(XattrOf::proc_path(dir, name), key),
    }
    .map_err(io_err("remove an xattr from", path))
}

fn open_dir(path: &Path, access: OFlags) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        access | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("open directory", path))
}

fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr, path: &Path) -> Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("open directory", path))
}

/// The names in a directory (without `.` and `..`), read before the caller changes it.
fn list_names(dir: BorrowedFd<'_>, path: &Path) -> Result<Vec<CString>> {
    let entries = rustix::fs::Dir::read_from(dir).map_err(io_err("read directory", path))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("read directory", path))?;
        let name = entry.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// lstat of `name` in `dir`; `None` if it does not exist.
fn stat_at(dir: BorrowedFd<'_>, name: &CStr, path: &Path) -> Result<Option<Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(stat)),
        Err(Errno::NOENT) => Ok(None),
        Err(errno) => Err(io_err("read", path)(errno)),
    }
}

fn unlink_at(dir: BorrowedFd<'_>, name: &CStr, path: &Path, flags: AtFlags) -> Result<()> {
    rustix::fs::unlinkat(dir, name, flags).map_err(io_err("remove", path))
}

/// Moves `name` from directory `from` to the same name in directory `to`.
fn rename_at(from: BorrowedFd<'_>, name: &CStr, path: &Path, to: BorrowedFd<'_>) -> Result<()> {
    rustix::fs::renameat(from, name, to, name).map_err(io_err("move into the tree", path))
}

#[cfg(test)]
mod tests;
