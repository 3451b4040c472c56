//! Overlay protection of a hardlinked tree: real overlayfs mounts (needs root, as compose does).

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use keel_compose::overlay::{
    apply_upper, unmount_below, Applied, Overlay, OverlayDirs, OverlayError,
};
use sha2::{Digest, Sha256};

/// A scratch dir on the disk file system (overlayfs wants upper and work beside the lower).
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("keel-overlay-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// Everything about an entry that a tree comparison cares about (not times, not inodes).
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    /// sha256 of a file, target of a symlink.
    content: String,
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 4096];
    let len = rustix::fs::llistxattr(path, &mut names).unwrap();
    names.truncate(len);
    let mut map = BTreeMap::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8(name.to_vec()).unwrap();
        let mut value = vec![0u8; 4096];
        let len = rustix::fs::lgetxattr(path, name.as_str(), &mut value).unwrap();
        value.truncate(len);
        map.insert(name, value);
    }
    map
}

fn entry(path: &Path) -> Entry {
    let meta = fs::symlink_metadata(path).unwrap();
    let ft = meta.file_type();
    let (kind, content) = if ft.is_dir() {
        ("dir", String::new())
    } else if ft.is_symlink() {
        let target = fs::read_link(path).unwrap();
        ("symlink", target.to_string_lossy().into_owned())
    } else if ft.is_file() {
        ("file", hex::encode(Sha256::digest(fs::read(path).unwrap())))
    } else if ft.is_char_device() {
        ("chardev", format!("{:x}", meta.rdev()))
    } else {
        ("other", String::new())
    };
    Entry {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        content,
        xattrs: xattrs(path),
    }
}

/// Every entry below `root` (and root itself as ""), keyed by relative path.
fn listing(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let e = entry(&path);
        if e.kind == "dir" {
            for child in fs::read_dir(&path).unwrap() {
                stack.push(rel.join(child.unwrap().file_name()));
            }
        }
        out.insert(rel, e);
    }
    out
}

fn mounted(path: &Path) -> bool {
    // mountinfo escapes a space as `\040` (the only special character in these test paths).
    let path = fs::canonicalize(path).unwrap();
    let escaped = path.to_str().unwrap().replace(' ', "\\040");
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(escaped.as_str()))
}

fn write(path: &Path, content: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn link(cache: &Path, name: &str, tree: &Path, rel: &str) {
    let dest = tree.join(rel);
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    fs::hard_link(cache.join(name), dest).unwrap();
}

#[test]
fn changes_through_the_overlay_fold_back_without_touching_the_cache() {
    let base = scratch();
    let cache = base.path().join("cache");
    // `,` and `:` would break an option string that held the paths.
    let tree = base.path().join("a,b:c tree");
    let files = [
        ("shells", "/bin/sh\n", 0o644),
        ("chmodme", "secret\n", 0o644),
        ("keep", "untouched\n", 0o644),
        ("tool", "#!/bin/sh\necho hi\n", 0o755),
        ("xattrfile", "labelled\n", 0o644),
        ("deleteme", "bye\n", 0o644),
        ("gone1", "g1\n", 0o644),
        ("gone2", "g2\n", 0o600),
        ("old", "old dir content\n", 0o644),
        ("becomesdir", "a file for now\n", 0o644),
        ("moveme", "moved\n", 0o644),
    ];
    for (name, content, mode) in files {
        write(&cache.join(name), content, mode);
    }
    rustix::fs::lsetxattr(
        cache.join("xattrfile"),
        "user.keel.test",
        b"v1",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    for (name, rel) in [
        ("shells", "etc/shells"),
        ("chmodme", "etc/chmodme"),
        ("keep", "usr/share/keep"),
        ("tool", "usr/bin/tool"),
        ("xattrfile", "etc/xattrfile"),
        ("deleteme", "etc/deleteme"),
        ("gone1", "var/gone/a"),
        ("gone2", "var/gone/sub/b"),
        ("old", "opt/recreate/old"),
        ("becomesdir", "etc/becomesdir"),
        ("moveme", "usr/share/moveme"),
    ] {
        link(&cache, name, &tree, rel);
    }
    symlink("tool", tree.join("usr/bin/link")).unwrap();
    write(&tree.join("srv/wasdir/x"), "x\n", 0o644);
    fs::set_permissions(&tree, fs::Permissions::from_mode(0o711)).unwrap();
    let no_flags = rustix::fs::XattrFlags::empty();
    rustix::fs::lsetxattr(tree.join("usr"), "user.keel.gone", b"g", no_flags).unwrap();
    let cache_before = listing(&cache);
    let cache_inodes: BTreeMap<_, _> = files
        .iter()
        .map(|(name, _, _)| (*name, fs::metadata(cache.join(name)).unwrap().ino()))
        .collect();

    let dirs = OverlayDirs::beside(&tree);
    let overlay = Overlay::mount(&dirs).unwrap();
    let m = overlay.merged().to_path_buf();
    assert!(mounted(&m));
    OpenOptions::new()
        .append(true)
        .open(m.join("etc/shells"))
        .unwrap()
        .write_all(b"/bin/bash\n")
        .unwrap();
    fs::set_permissions(m.join("etc/chmodme"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(m.join("etc/deleteme")).unwrap();
    fs::remove_dir_all(m.join("var/gone")).unwrap();
    fs::remove_dir_all(m.join("opt/recreate")).unwrap();
    write(&m.join("opt/recreate/new"), "new dir content\n", 0o640);
    write(&m.join("etc/new.conf"), "fresh\n", 0o644);
    write(&m.join("srv/data/deep/file"), "deep\n", 0o600);
    symlink("../usr/share/keep", m.join("etc/newlink")).unwrap();
    fs::remove_file(m.join("etc/becomesdir")).unwrap();
    write(&m.join("etc/becomesdir/inner"), "inner\n", 0o644);
    fs::rename(m.join("usr/share/moveme"), m.join("etc/moved")).unwrap();
    fs::set_permissions(m.join("usr/share"), fs::Permissions::from_mode(0o750)).unwrap();
    rustix::fs::lsetxattr(m.join("etc"), "user.keel.dir", b"d", no_flags).unwrap();
    rustix::fs::lremovexattr(m.join("usr"), "user.keel.gone").unwrap();
    fs::remove_dir_all(m.join("srv/wasdir")).unwrap();
    write(&m.join("srv/wasdir"), "now a file\n", 0o644);
    // redirect_dir=off: renaming a lower dir fails with EXDEV (mv then copies) instead of
    // writing a redirect xattr.
    let err = fs::rename(m.join("usr/bin"), m.join("usr/bin2")).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::XDEV.raw_os_error())
    );
    let expected = listing(&m);
    overlay.unmount().unwrap();
    assert!(!mounted(&dirs.merged));

    let applied = apply_upper(&dirs.upper, &dirs.lower).unwrap();
    println!("applied: {applied:?}");
    let got = listing(&tree);
    for (path, want) in &expected {
        assert_eq!(got.get(path), Some(want), "{}", path.display());
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "{:?}",
        got.keys().collect::<Vec<_>>()
    );
    // Moved in: etc/shells, etc/chmodme, etc/new.conf, etc/newlink, etc/moved, srv/data,
    // srv/wasdir. Whiteouts: etc/deleteme, var/gone, usr/share/moveme. Opaque: opt/recreate
    // and etc/becomesdir (overlayfs makes a dir created over a whiteout opaque). Merged dirs:
    // the root, etc, usr, usr/share, opt, var, srv.
    let want = Applied {
        replaced: 7,
        removed: 3,
        opaque_dirs: 2,
        dirs_updated: 7,
    };
    assert_eq!(applied, want);
    assert_eq!(
        fs::read_dir(&dirs.upper).unwrap().count(),
        0,
        "upper left empty"
    );

    // The point of it all: the cache is byte-, mode- and inode-identical.
    assert_eq!(listing(&cache), cache_before);
    for (name, ino) in &cache_inodes {
        assert_eq!(
            fs::metadata(cache.join(name)).unwrap().ino(),
            *ino,
            "{name}"
        );
    }
    // Untouched files still are the cache's inodes; changed ones are new inodes.
    for (name, rel) in [
        ("keep", "usr/share/keep"),
        ("tool", "usr/bin/tool"),
        ("xattrfile", "etc/xattrfile"),
    ] {
        let ino = fs::metadata(tree.join(rel)).unwrap().ino();
        assert_eq!(
            ino, cache_inodes[name],
            "{rel} is still a hardlink of the cache"
        );
    }
    for (name, rel) in [("shells", "etc/shells"), ("chmodme", "etc/chmodme")] {
        let ino = fs::metadata(tree.join(rel)).unwrap().ino();
        assert_ne!(ino, cache_inodes[name], "{rel} was copied up");
    }
    // No overlay bookkeeping leaks into the tree (the listing read the lower directly).
    for (path, e) in &got {
        assert!(
            e.xattrs.keys().all(|k| !k.starts_with("trusted.overlay.")),
            "{}: {:?}",
            path.display(),
            e.xattrs.keys()
        );
        assert!(
            !(e.kind == "chardev" && e.content == "0"),
            "whiteout {}",
            path.display()
        );
    }
}

#[test]
fn dropping_the_guard_unmounts() {
    let base = scratch();
    let tree = base.path().join("tree");
    write(&tree.join("etc/hostname"), "keel\n", 0o644);
    let dirs = OverlayDirs::beside(&tree);
    let overlay = Overlay::mount(&dirs).unwrap();
    assert!(mounted(&dirs.merged));
    assert_eq!(
        fs::read_to_string(dirs.merged.join("etc/hostname")).unwrap(),
        "keel\n"
    );
    drop(overlay);
    assert!(!mounted(&dirs.merged));
}

#[test]
fn unmount_of_a_busy_overlay_fails_but_detaches_it() {
    let base = scratch();
    let tree = base.path().join("tree");
    write(&tree.join("file"), "x\n", 0o644);
    let dirs = OverlayDirs::beside(&tree);
    let overlay = Overlay::mount(&dirs).unwrap();
    let held = fs::File::open(overlay.merged().join("file")).unwrap();
    let err = overlay.unmount().unwrap_err();
    assert!(matches!(err, OverlayError::Unmount { .. }), "{err}");
    assert!(err.to_string().contains("tree.merged"), "{err}");
    assert!(!mounted(&dirs.merged), "detached lazily");
    drop(held);
}

#[test]
fn unmount_below_cleans_a_forgotten_mount() {
    let base = scratch();
    let scratch_dir = base.path().join("scratch");
    let tree = scratch_dir.join("tree");
    write(&tree.join("file"), "x\n", 0o644);
    let dirs = OverlayDirs::beside(&tree);
    std::mem::forget(Overlay::mount(&dirs).unwrap());
    assert!(mounted(&dirs.merged));
    assert_eq!(unmount_below(&scratch_dir).unwrap(), 1);
    assert!(!mounted(&dirs.merged));
    fs::remove_dir_all(&scratch_dir).unwrap();
    assert_eq!(
        unmount_below(&scratch_dir).unwrap(),
        0,
        "a missing dir has no mounts"
    );
}

#[test]
fn apply_upper_refuses_a_redirect_and_names_it() {
    let base = scratch();
    let upper = base.path().join("upper");
    let lower = base.path().join("lower");
    fs::create_dir_all(upper.join("etc/sub")).unwrap();
    fs::create_dir_all(lower.join("etc/sub")).unwrap();
    write(&lower.join("etc/sub/file"), "kept\n", 0o644);
    rustix::fs::lsetxattr(
        upper.join("etc/sub"),
        "trusted.overlay.redirect",
        b"/elsewhere",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let err = apply_upper(&upper, &lower).unwrap_err();
    match &err {
        OverlayError::Forbidden { path, xattr } => {
            assert_eq!(path, &upper.join("etc/sub"));
            assert_eq!(xattr, "trusted.overlay.redirect");
        }
        other => panic!("wrong error: {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("etc/sub") && text.contains("redirect"),
        "{text}"
    );
    assert_eq!(
        fs::read_to_string(lower.join("etc/sub/file")).unwrap(),
        "kept\n"
    );
}

/// Times the fold of ~2,000 small files: 200 copied up (each copy-up fsyncs, which is what
/// makes this test slow on a busy disk) and 1,800 new ones.
#[test]
fn apply_upper_of_two_thousand_small_files() {
    let base = scratch();
    let cache = base.path().join("cache");
    let tree = base.path().join("tree");
    for i in 0..200 {
        let name = format!("f{i}");
        write(&cache.join(&name), "small\n", 0o644);
        link(&cache, &name, &tree, &format!("d{}/{name}", i % 20));
    }
    let dirs = OverlayDirs::beside(&tree);
    let overlay = Overlay::mount(&dirs).unwrap();
    for i in 0..200 {
        let path = overlay.merged().join(format!("d{}/f{i}", i % 20));
        let mut file = OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(b"more\n").unwrap();
    }
    for i in 200..2000 {
        let path = overlay.merged().join(format!("d{}/f{i}", i % 20));
        fs::write(path, "new\n").unwrap();
    }
    overlay.unmount().unwrap();
    let start = Instant::now();
    let applied = apply_upper(&dirs.upper, &dirs.lower).unwrap();
    let elapsed = start.elapsed();
    println!("apply_upper of 2000 small files: {elapsed:?} ({applied:?})");
    assert_eq!(applied.replaced, 2000);
    assert_eq!(applied.dirs_updated, 21);
    assert_eq!(
        fs::read_to_string(tree.join("d7/f107")).unwrap(),
        "small\nmore\n"
    );
    assert_eq!(fs::read_to_string(tree.join("d7/f1007")).unwrap(), "new\n");
    assert_eq!(fs::read_to_string(cache.join("f107")).unwrap(), "small\n");
}
