//! A tree that packages and scripts have written, reached only through a directory handle that
//! cannot leave it.
//!
//! Every path given to a [`TreeDir`] is relative to the tree and resolved with openat2
//! `RESOLVE_IN_ROOT`: symlinks in the tree are followed, but as if the tree were `/` (an absolute
//! link `usr/share/x -> /tmp` leads to the tree's own `tmp`, and `..` stops at the tree's top),
//! exactly as dpkg sees them inside a chroot. The last component of a path that is created,
//! replaced or removed is never followed: a planted link is replaced, not written through.
//! Magic links (`/proc/self/fd/N`) are refused.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

/// Resolution for every lookup in a tree.
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Owner, mode and modification time of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits, setuid/setgid/sticky included.
    pub mode: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
}

/// A handle on a tree's top directory.
#[derive(Debug)]
pub struct TreeDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// What a path in the tree is, without following its last component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

impl TreeDir {
    /// Opens the tree at `path` (a path on the host, chosen by the composer, not by a package).
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(TreeDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The host path the tree was opened at, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The handle itself, for APIs that take a directory fd (libostree's `*_at` calls).
    pub fn fd(&self) -> rustix::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the directory `rel` (symlinks followed inside the tree).
    pub fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        let rel = relative(rel)?;
        if rel.as_os_str().is_empty() {
            return Ok(rustix::io::dup(&self.fd)?);
        }
        Ok(rustix::fs::openat2(
            &self.fd,
            &rel,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )?)
    }

    /// Opens the regular file `rel` for reading (symlinks followed inside the tree). Anything
    /// else (a FIFO a script left, a device) is refused rather than read.
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        let fd = rustix::fs::openat2(
            &self.fd,
            relative(rel)?,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )?;
        if kind_of(rustix::fs::fstat(&fd)?.st_mode) != Kind::File {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", rel.display()),
            ));
        }
        Ok(File::from(fd))
    }

    /// Reads the file `rel` whole.
    pub fn read(&self, rel: &Path) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        io::Read::read_to_end(&mut self.open_file(rel)?, &mut out)?;
        Ok(out)
    }

    /// [`TreeDir::read`], or empty when the file does not exist.
    pub fn read_or_empty(&self, rel: &Path) -> io::Result<Vec<u8>> {
        match self.read(rel) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            other => other,
        }
    }

    /// What `rel` is, its last component not followed; `None` when nothing is there.
    pub fn kind(&self, rel: &Path) -> io::Result<Option<Kind>> {
        let (dir, name) = match self.parent(rel) {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(name) = name else {
            return Ok(Some(Kind::Dir));
        };
        match rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(kind_of(st.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the directory `rel` and its missing parents (existing directory symlinks are
    /// followed inside the tree, like `tar --keep-directory-symlink`). New directories get
    /// `mode`; existing ones are left as they are.
    pub fn create_dir_all(&self, rel: &Path, mode: u32) -> io::Result<()> {
        let rel = relative(rel)?;
        let mut done = PathBuf::new();
        for part in rel.components() {
            let parent = self.open_dir(&done)?;
            done.push(part);
            match rustix::fs::mkdirat(&parent, part.as_os_str(), Mode::from_raw_mode(mode)) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    // A directory, or a link to one: opening it tells which.
                    self.open_dir(&done)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Writes `content` to the file `rel` with `mode`, replacing whatever entry is there (a
    /// symlink is replaced, never written through). The parent must exist.
    pub fn write(&self, rel: &Path, content: &[u8], mode: u32) -> io::Result<()> {
        let mut file = self.create_file(rel, mode)?;
        file.write_all(content)?;
        Ok(())
    }

    /// Creates the file `rel` empty with `mode`, replacing a non-directory entry that is there.
    /// The mode is set after creation, so the umask does not apply.
    pub fn create_file(&self, rel: &Path, mode: u32) -> io::Result<File> {
        let (dir, name) = self.parent_named(rel)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        let fd = loop {
            match rustix::fs::openat(&dir, &name, flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => break fd,
                Err(Errno::EXIST) => remove_non_dir(&dir, &name)?,
                Err(e) => return Err(e.into()),
            }
        };
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        Ok(File::from(fd))
    }

    /// Writes `content` to `rel` through a temporary file renamed over it, so readers never see
    /// half a file. The parent must exist.
    pub fn write_replace(&self, rel: &Path, content: &[u8], mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent_named(rel)?;
        let mut temp = name.clone().into_os_string();
        temp.push(".keel-new");
        let temp = PathBuf::from(temp);
        let tree_temp = rel.with_file_name(&temp);
        self.write(&tree_temp, content, mode)?;
        rustix::fs::renameat(&dir, &temp, &dir, &name)?;
        Ok(())
    }

    /// Creates the symlink `rel -> target`, replacing a non-directory entry that is there.
    pub fn symlink(&self, rel: &Path, target: &Path) -> io::Result<()> {
        let (dir, name) = self.parent_named(rel)?;
        loop {
            match rustix::fs::symlinkat(target, &dir, &name) {
                Ok(()) => return Ok(()),
                Err(Errno::EXIST) => remove_non_dir(&dir, &name)?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Hard-links `rel` to the existing entry `target` (both in the tree; the target's last
    /// component is not followed), replacing a non-directory entry at `rel`.
    pub fn hard_link(&self, rel: &Path, target: &Path) -> io::Result<()> {
        let (from_dir, from_name) = self.parent_named(target)?;
        let (dir, name) = self.parent_named(rel)?;
        loop {
            match rustix::fs::linkat(&from_dir, &from_name, &dir, &name, AtFlags::empty()) {
                Ok(()) => return Ok(()),
                Err(Errno::EXIST) => remove_non_dir(&dir, &name)?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Creates the directory `rel` with `mode`, or keeps the directory (or directory symlink)
    /// that is there; any other entry is replaced. Returns whether a new directory was made.
    pub fn make_dir(&self, rel: &Path, mode: u32) -> io::Result<bool> {
        let (dir, name) = self.parent_named(rel)?;
        loop {
            match rustix::fs::mkdirat(&dir, &name, Mode::from_raw_mode(mode)) {
                Ok(()) => return Ok(true),
                Err(Errno::EXIST) => {
                    match rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) if kind_of(st.st_mode) == Kind::Dir => return Ok(false),
                        Ok(st) if kind_of(st.st_mode) == Kind::Symlink => {
                            // Kept when it leads to a directory inside the tree (`bin -> usr/bin`).
                            if self.open_dir(rel).is_ok() {
                                return Ok(false);
                            }
                            remove_non_dir(&dir, &name)?;
                        }
                        Ok(_) => remove_non_dir(&dir, &name)?,
                        Err(Errno::NOENT) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sets owner, mode and times of `rel` without following its last component (for a
    /// symlink: owner and times only). Owner first: chown clears setuid bits.
    pub fn set_meta(&self, rel: &Path, meta: Meta) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        let name = name.unwrap_or_else(|| PathBuf::from("."));
        let time = Timespec {
            tv_sec: meta.mtime,
            tv_nsec: 0,
        };
        let times = Timestamps {
            last_access: time,
            last_modification: time,
        };
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        match rustix::fs::openat(&dir, &name, flags, Mode::empty()) {
            Ok(fd) => {
                std::os::unix::fs::fchown(&fd, Some(meta.uid), Some(meta.gid))?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode & 0o7777))?;
                rustix::fs::futimens(&fd, &times)?;
            }
            // O_NOFOLLOW on a symlink.
            Err(Errno::LOOP) => {
                // Through the pinned parent: the link itself is not followed.
                let fd = rustix::fd::AsRawFd::as_raw_fd(&dir);
                let link = Path::new("/proc/self/fd").join(fd.to_string()).join(&name);
                std::os::unix::fs::lchown(link, Some(meta.uid), Some(meta.gid))?;
                rustix::fs::utimensat(&dir, &name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Removes the file or symlink `rel`; nothing there is fine.
    pub fn remove_file(&self, rel: &Path) -> io::Result<()> {
        let (dir, name) = match self.parent_named(rel) {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match rustix::fs::unlinkat(&dir, &name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The parent directory of `rel` (opened inside the tree) and its last component, or
    /// `None` for the tree's top.
    fn parent(&self, rel: &Path) -> io::Result<(OwnedFd, Option<PathBuf>)> {
        let rel = relative(rel)?;
        match (rel.parent(), rel.file_name()) {
            (Some(parent), Some(name)) => Ok((self.open_dir(parent)?, Some(PathBuf::from(name)))),
            _ => Ok((self.open_dir(Path::new(""))?, None)),
        }
    }

    fn parent_named(&self, rel: &Path) -> io::Result<(OwnedFd, PathBuf)> {
        match self.parent(rel)? {
            (dir, Some(name)) => Ok((dir, name)),
            (_, None) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the tree's top directory cannot be replaced",
            )),
        }
    }
}

/// `rel` without a leading `/` or `.` components; `..` is refused (callers decide what a
/// package's `..` means before they get here).
pub fn relative(rel: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for part in rel.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} leaves the tree (`..`)", rel.display()),
                ))
            }
        }
    }
    Ok(out)
}

fn kind_of(mode: u32) -> Kind {
    match rustix::fs::FileType::from_raw_mode(mode) {
        rustix::fs::FileType::Directory => Kind::Dir,
        rustix::fs::FileType::RegularFile => Kind::File,
        rustix::fs::FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    }
}

/// Removes `name` in `dir` unless it is a directory (then the caller's create fails as EEXIST).
fn remove_non_dir(dir: &OwnedFd, name: &Path) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is a directory", name.display()),
        )),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[path = "tree_dir_tests.rs"]
mod tests;
