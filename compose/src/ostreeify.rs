//! Turns an installed Debian root into the layout ostree deploys (the same layout Fedora CoreOS
//! uses):
//!
//! - the kernel and initramfs live in `/usr/lib/modules/$kver/{vmlinuz,initramfs.img}`; `/boot`
//!   is empty (ostree fills the real `/boot` at deploy time);
//! - `/etc` becomes `/usr/etc`, the defaults ostree three-way merges into each deployment's `/etc`;
//!   `/etc/machine-id` is empty so every host gets its own at first boot;
//! - `/var` is empty: every directory (and symlink) the packages put there becomes a line in
//!   `/usr/lib/tmpfiles.d/keel-var.conf`, so systemd-tmpfiles recreates it on first boot; files
//!   left there by package scripts (logs, caches) are dropped and listed in the result;
//! - the package database moves under `/usr` (the format's `format::PackageDatabase`; dpkg's
//!   from `/var/lib/dpkg` to `/usr/lib/sysimage/dpkg`, like rpm-ostree's `/usr/lib/sysimage/rpm`),
//!   so it is versioned with the commit it describes; a symlink `/var/lib/dpkg ->
//!   ../../usr/lib/sysimage/dpkg` lets `dpkg -l` and `dpkg-query` on the host find it
//!   (read-only, as `/usr` is);
//! - `/home`, `/root`, `/opt`, `/srv`, `/mnt` and `/usr/local` are symlinks into `/var`
//!   (`var/home`, `var/roothome`, `var/opt`, `var/srv`, `var/mnt`, `var/usrlocal`), `/media` into
//!   `/run/media`; `/sysroot` exists and `/ostree` points into it; their directories are
//!   recreated empty by tmpfiles (root's skeleton dotfiles are dropped with the rest);
//! - podman's storage works on first boot: `/usr/etc/containers/storage.conf` selects the overlay
//!   driver with its run root on `/run` and its graph root on `/var/lib/containers`.
//!
//! Everything works on a directory handle, so tests run it on temp dirs.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, FileTypeExt, MetadataExt};

use crate::format::PackageDatabase;

/// The tmpfiles.d file that recreates `/var` on first boot.
pub const VAR_TMPFILES: &str = "usr/lib/tmpfiles.d/keel-var.conf";

/// Top-level directories that hold mutable state and so become symlinks into `/var` (or `/run`).
/// (path in the tree, where its content goes, the symlink's target)
const STATE_DIRS: &[(&str, &str, &str)] = &[
    ("home", "var/home", "var/home"),
    ("root", "var/roothome", "var/roothome"),
    ("opt", "var/opt", "var/opt"),
    ("srv", "var/srv", "var/srv"),
    ("mnt", "var/mnt", "var/mnt"),
    ("usr/local", "var/usrlocal", "../var/usrlocal"),
];

/// API file systems and scratch directories whose content never belongs in a commit.
const EMPTIED_DIRS: &[&str] = &["dev", "proc", "sys", "run", "tmp", "boot"];

const STORAGE_CONF: &str = "\
# Written by keel-compose: container storage on a Keel host.
[storage]
driver = \"overlay\"
runroot = \"/run/containers/storage\"
graphroot = \"/var/lib/containers/storage\"
";

#[derive(Debug, thiserror::Error)]
pub enum OstreeifyError {
    #[error("no kernel in the tree: expected exactly one /usr/lib/modules/VERSION with /boot/vmlinuz-VERSION or /usr/lib/modules/VERSION/vmlinuz; add a kernel package (e.g. linux-image-amd64) to the treefile")]
    NoKernel,
    #[error("more than one kernel in the tree ({0}); install exactly one kernel package")]
    SeveralKernels(String),
    #[error("the tree has no {0}; the initramfs phase must run before ostree-ify")]
    NoInitramfs(String),
    #[error("the tree already has /usr/etc; it must come only from /etc")]
    UsrEtcExists,
    #[error("/{0} is a {1}, which an ostree commit cannot hold; remove it with remove-files or a postprocess script")]
    UnsupportedFile(String, &'static str),
    #[error("{action} /{path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(
    action: &'static str,
    path: impl AsRef<Path>,
) -> impl FnOnce(io::Error) -> OstreeifyError {
    let path = path.as_ref().display().to_string();
    move |source| OstreeifyError::Io {
        action,
        path,
        source,
    }
}

/// The kernel found in a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// e.g. `6.1.0-35-amd64`
    pub version: String,
    /// Where the kernel image is now, relative to the root.
    pub image: PathBuf,
}

impl Kernel {
    /// `usr/lib/modules/$kver`, relative to the root.
    pub fn modules_dir(&self) -> PathBuf {
        Path::new("usr/lib/modules").join(&self.version)
    }
}

/// What [`ostreeify`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ostreeified {
    pub kernel_version: String,
    /// Lines written to `keel-var.conf`.
    pub tmpfiles_lines: usize,
    /// Files under `/var` that were dropped (paths relative to the root).
    pub dropped_var_files: Vec<String>,
    /// Bytes of regular files in the final tree.
    pub tree_bytes: u64,
}

/// Finds the one kernel in the tree: a `usr/lib/modules/VERSION` directory with its image at
/// `boot/vmlinuz-VERSION` (Debian's place) or already at `usr/lib/modules/VERSION/vmlinuz`.
pub fn find_kernel(root: &Dir) -> Result<Kernel, OstreeifyError> {
    let modules = match root.read_dir("usr/lib/modules") {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(OstreeifyError::NoKernel),
        Err(e) => return Err(io_err("reading", "usr/lib/modules")(e)),
    };
    let mut found = Vec::new();
    for entry in modules {
        let entry = entry.map_err(io_err("reading", "usr/lib/modules"))?;
        let Some(version) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let in_modules = Path::new("usr/lib/modules").join(&version).join("vmlinuz");
        let in_boot = PathBuf::from(format!("boot/vmlinuz-{version}"));
        if root.is_file(&in_modules) {
            found.push(Kernel {
                version,
                image: in_modules,
            });
        } else if root.is_file(&in_boot) {
            found.push(Kernel {
                version,
                image: in_boot,
            });
        }
    }
    match found.len() {
        0 => Err(OstreeifyError::NoKernel),
        1 => Ok(found.remove(0)),
        _ => {
            let mut names: Vec<_> = found.into_iter().map(|k| k.version).collect();
            names.sort();
            Err(OstreeifyError::SeveralKernels(names.join(", ")))
        }
    }
}

/// Converts the installed root in `root` to ostree's layout (see the module documentation).
/// The initramfs must already be at `usr/lib/modules/$kver/initramfs.img`.
pub fn ostreeify(root: &Dir, database: &PackageDatabase) -> Result<Ostreeified, OstreeifyError> {
    let kernel = place_kernel(root)?;
    move_state_dirs(root)?;
    move_package_database(root, database)?;
    prepare_etc(root)?;
    let (tmpfiles, dropped_var_files) = empty_var(root)?;
    for dir in EMPTIED_DIRS {
        empty_dir(root, dir)?;
    }
    remove_toplevel_kernel_links(root)?;
    ensure_symlink(root, "media", "run/media")?;
    root.create_dir_all("sysroot")
        .map_err(io_err("creating", "sysroot"))?;
    ensure_symlink(root, "ostree", "sysroot/ostree")?;
    let tmpfiles_lines = tmpfiles.len();
    let mut text = String::from(
        "# Written by keel-compose: what the packages put under /var, recreated at boot.\n",
    );
    for line in &tmpfiles {
        text.push_str(line);
        text.push('\n');
    }
    root.create_dir_all("usr/lib/tmpfiles.d")
        .map_err(io_err("creating", "usr/lib/tmpfiles.d"))?;
    // Replaced, not rewritten: files of a checked-out base layer are hardlinks into the cache.
    if root.symlink_metadata(VAR_TMPFILES).is_ok() {
        root.remove_file(VAR_TMPFILES)
            .map_err(io_err("removing", VAR_TMPFILES))?;
    }
    root.write(VAR_TMPFILES, text)
        .map_err(io_err("writing", VAR_TMPFILES))?;
    let tree_bytes = check_and_measure(root, Path::new(""))?;
    Ok(Ostreeified {
        kernel_version: kernel.version,
        tmpfiles_lines,
        dropped_var_files,
        tree_bytes,
    })
}

fn place_kernel(root: &Dir) -> Result<Kernel, OstreeifyError> {
    let kernel = find_kernel(root)?;
    let target = kernel.modules_dir().join("vmlinuz");
    if kernel.image != target {
        root.rename(&kernel.image, root, &target)
            .map_err(io_err("moving the kernel image", &kernel.image))?;
    }
    let initramfs = kernel.modules_dir().join("initramfs.img");
    if !root.is_file(&initramfs) {
        return Err(OstreeifyError::NoInitramfs(initramfs.display().to_string()));
    }
    Ok(Kernel {
        image: target,
        ..kernel
    })
}

fn move_state_dirs(root: &Dir) -> Result<(), OstreeifyError> {
    root.create_dir_all("var")
        .map_err(io_err("creating", "var"))?;
    for (path, var_path, target) in STATE_DIRS {
        let is_real_dir = root
            .symlink_metadata(path)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if is_real_dir {
            if root.exists(var_path) {
                root.remove_dir_all(path)
                    .map_err(io_err("removing", path))?;
            } else {
                root.rename(path, root, var_path)
                    .map_err(io_err("moving into /var", path))?;
            }
        }
        ensure_symlink(root, path, target)?;
    }
    Ok(())
}

fn move_package_database(root: &Dir, database: &PackageDatabase) -> Result<(), OstreeifyError> {
    let PackageDatabase {
        live,
        image,
        transient,
    } = *database;
    if !root.is_dir(live) {
        return Ok(());
    }
    if let Some(parent) = Path::new(image).parent() {
        root.create_dir_all(parent)
            .map_err(io_err("creating", parent))?;
    }
    root.rename(live, root, image)
        .map_err(io_err("moving", live))?;
    // Backups and locks belong to a writable database, not to a commit.
    for name in transient {
        let path = Path::new(image).join(name);
        if root.symlink_metadata(&path).is_ok() {
            root.remove_file(&path).map_err(io_err("removing", &path))?;
        }
    }
    root.symlink_contents(database.link_target(), live)
        .map_err(io_err("linking", live))
}

fn prepare_etc(root: &Dir) -> Result<(), OstreeifyError> {
    if root.symlink_metadata("usr/etc").is_ok() {
        return Err(OstreeifyError::UsrEtcExists);
    }
    root.create_dir_all("etc")
        .map_err(io_err("creating", "etc"))?;
    if root.symlink_metadata("etc/machine-id").is_ok() {
        root.remove_file("etc/machine-id")
            .map_err(io_err("removing", "etc/machine-id"))?;
    }
    root.write("etc/machine-id", "")
        .map_err(io_err("writing", "etc/machine-id"))?;
    root.set_permissions(
        "etc/machine-id",
        cap_std::fs::Permissions::from_std(std::fs::Permissions::from_mode(0o444)),
    )
    .map_err(io_err("setting the mode of", "etc/machine-id"))?;
    if root.is_dir("etc/containers") && !root.exists("etc/containers/storage.conf") {
        root.write("etc/containers/storage.conf", STORAGE_CONF)
            .map_err(io_err("writing", "etc/containers/storage.conf"))?;
    }
    root.rename("etc", root, "usr/etc")
        .map_err(io_err("moving to /usr/etc", "etc"))
}

/// Records every directory and symlink under `/var` as a tmpfiles.d line (skipping paths that
/// the tree's own tmpfiles.d files already declare), then empties `/var`.
fn empty_var(root: &Dir) -> Result<(Vec<String>, Vec<String>), OstreeifyError> {
    let declared = declared_tmpfiles_paths(root)?;
    let mut entries = Vec::new();
    let mut dropped = Vec::new();
    collect_var(root, Path::new("var"), &mut entries, &mut dropped)?;
    if !declared.contains("/var/lib/containers") {
        entries.push(VarEntry::Dir {
            path: "/var/lib/containers".into(),
            mode: 0o700,
            uid: 0,
            gid: 0,
        });
    }
    entries.sort_by(|a, b| a.path().cmp(b.path()));
    entries.dedup_by(|a, b| a.path() == b.path());
    let lines = entries
        .iter()
        .filter(|e| !declared.contains(e.path()))
        .map(VarEntry::tmpfiles_line)
        .collect();
    empty_dir(root, "var")?;
    Ok((lines, dropped))
}

fn collect_var(
    root: &Dir,
    dir: &Path,
    entries: &mut Vec<VarEntry>,
    dropped: &mut Vec<String>,
) -> Result<(), OstreeifyError> {
    let listing = root.read_dir(dir).map_err(io_err("reading", dir))?;
    let mut names: Vec<_> = listing
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err("reading", dir))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let meta = root
            .symlink_metadata(&path)
            .map_err(io_err("inspecting", &path))?;
        let abs = format!("/{}", path.display());
        if meta.is_symlink() {
            let target = root
                .read_link_contents(&path)
                .map_err(io_err("reading the link", &path))?;
            entries.push(VarEntry::Symlink {
                path: abs,
                target: target.display().to_string(),
            });
        } else if meta.is_dir() {
            entries.push(VarEntry::Dir {
                path: abs,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            });
            collect_var(root, &path, entries, dropped)?;
        } else {
            dropped.push(path.display().to_string());
        }
    }
    Ok(())
}

fn declared_tmpfiles_paths(root: &Dir) -> Result<BTreeSet<String>, OstreeifyError> {
    let mut declared = BTreeSet::new();
    let dir = "usr/lib/tmpfiles.d";
    let listing = match root.read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(declared),
        Err(e) => return Err(io_err("reading", dir)(e)),
    };
    for entry in listing {
        let entry = entry.map_err(io_err("reading", dir))?;
        let path = Path::new(dir).join(entry.file_name());
        if !path.to_string_lossy().ends_with(".conf") {
            continue;
        }
        // A dangling or odd entry is not ours to judge; only readable files count.
        if let Ok(text) = root.read_to_string(&path) {
            declared.extend(tmpfiles_paths(&text));
        }
    }
    Ok(declared)
}

/// The paths named by the lines of a tmpfiles.d file (second column), unescaped only for the
/// simple cases Keel itself writes.
pub fn tmpfiles_paths(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(unescape_tmpfiles)
}

/// One directory or symlink found under `/var`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarEntry {
    Dir {
        path: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl VarEntry {
    pub fn path(&self) -> &str {
        match self {
            VarEntry::Dir { path, .. } | VarEntry::Symlink { path, .. } => path,
        }
    }

    /// The tmpfiles.d line that recreates the entry (numeric owners, so no user database is
    /// needed at that point of boot).
    pub fn tmpfiles_line(&self) -> String {
        match self {
            VarEntry::Dir {
                path,
                mode,
                uid,
                gid,
            } => format!("d {} {mode:04o} {uid} {gid} -", escape_tmpfiles(path)),
            VarEntry::Symlink { path, target } => {
                format!(
                    "L {} - - - - {}",
                    escape_tmpfiles(path),
                    escape_tmpfiles(target)
                )
            }
        }
    }
}

/// tmpfiles.d fields are whitespace separated; C-style escapes keep odd names intact.
pub fn escape_tmpfiles(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_whitespace() || c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn unescape_tmpfiles(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'x' && i + 3 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
            out.push(bytes[i + 1]);
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn empty_dir(root: &Dir, dir: &str) -> Result<(), OstreeifyError> {
    let listing = match root.read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return root.create_dir_all(dir).map_err(io_err("creating", dir));
        }
        Err(e) => return Err(io_err("reading", dir)(e)),
    };
    for entry in listing {
        let entry = entry.map_err(io_err("reading", dir))?;
        let path = Path::new(dir).join(entry.file_name());
        let is_dir = entry
            .file_type()
            .map_err(io_err("inspecting", &path))?
            .is_dir();
        if is_dir {
            root.remove_dir_all(&path)
                .map_err(io_err("removing", &path))?;
        } else {
            root.remove_file(&path).map_err(io_err("removing", &path))?;
        }
    }
    Ok(())
}

/// Debian's kernel postinst may leave `/vmlinuz`, `/initrd.img` (and `.old`) links at the top.
fn remove_toplevel_kernel_links(root: &Dir) -> Result<(), OstreeifyError> {
    for name in ["vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"] {
        if root
            .symlink_metadata(name)
            .map(|m| m.is_symlink())
            .unwrap_or(false)
        {
            root.remove_file(name).map_err(io_err("removing", name))?;
        }
    }
    Ok(())
}

fn ensure_symlink(root: &Dir, link: &str, target: &str) -> Result<(), OstreeifyError> {
    match root.symlink_metadata(link) {
        Ok(meta) if meta.is_symlink() => {
            let current = root
                .read_link_contents(link)
                .map_err(io_err("reading the link", link))?;
            if current == Path::new(target) {
                return Ok(());
            }
            root.remove_file(link).map_err(io_err("removing", link))?;
        }
        Ok(meta) if meta.is_dir() => {
            root.remove_dir_all(link)
                .map_err(io_err("removing", link))?;
        }
        Ok(_) => root.remove_file(link).map_err(io_err("removing", link))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("inspecting", link)(e)),
    }
    root.symlink_contents(target, link)
        .map_err(io_err("linking", link))
}

/// Walks the final tree: sums regular file bytes and refuses what ostree cannot commit.
fn check_and_measure(root: &Dir, dir: &Path) -> Result<u64, OstreeifyError> {
    let listing = if dir.as_os_str().is_empty() {
        root.entries()
    } else {
        root.read_dir(dir)
    }
    .map_err(io_err("reading", dir))?;
    let mut bytes = 0;
    for entry in listing {
        let entry = entry.map_err(io_err("reading", dir))?;
        let path = dir.join(entry.file_name());
        let ft = entry.file_type().map_err(io_err("inspecting", &path))?;
        let what = if ft.is_dir() {
            bytes += check_and_measure(root, &path)?;
            continue;
        } else if ft.is_file() {
            bytes += entry.metadata().map_err(io_err("inspecting", &path))?.len();
            continue;
        } else if ft.is_symlink() {
            continue;
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_fifo() {
            "FIFO"
        } else {
            "device node"
        };
        return Err(OstreeifyError::UnsupportedFile(
            path.display().to_string(),
            what,
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
#[path = "ostreeify_tests.rs"]
mod tests;
