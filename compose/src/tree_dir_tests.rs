//! [`TreeDir`] on temp dirs with planted links that point out of the tree.

use super::*;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

/// A tree beside an "outside" directory that a planted link points to.
struct Planted {
    _dir: tempfile::TempDir,
    tree: PathBuf,
    outside: PathBuf,
}

fn planted() -> Planted {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(tree.join("usr/share")).unwrap();
    std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "host").unwrap();
    // Absolute and relative escapes, and a merged-/usr link that must keep working.
    symlink(&outside, tree.join("usr/share/abs")).unwrap();
    symlink("../../../outside", tree.join("usr/share/rel")).unwrap();
    symlink(outside.join("secret"), tree.join("usr/share/file-link")).unwrap();
    symlink("usr/bin", tree.join("bin")).unwrap();
    Planted {
        _dir: dir,
        tree,
        outside,
    }
}

fn outside_names(p: &Planted) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&p.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn writes_through_planted_links_stay_in_the_tree() {
    let p = planted();
    let t = TreeDir::open(&p.tree).unwrap();
    // The absolute link resolves to the tree's own /outside...: that does not exist.
    assert!(t.write(Path::new("usr/share/abs/x"), b"x", 0o644).is_err());
    // The relative one stops at the tree's top, which has no `outside` either.
    assert!(t.write(Path::new("usr/share/rel/x"), b"x", 0o644).is_err());
    // A link that leads nowhere inside the tree is not a directory to create in.
    assert!(t
        .create_dir_all(Path::new("usr/share/abs/deeper"), 0o755)
        .is_err());
    // Once the link's target exists inside the tree (as `/outside` would in a chroot), the
    // write lands there.
    let inside = p.outside.strip_prefix("/").unwrap();
    t.create_dir_all(inside, 0o755).unwrap();
    t.write(Path::new("usr/share/abs/x"), b"x", 0o644).unwrap();
    assert!(p.tree.join(inside).join("x").is_file());
    assert_eq!(outside_names(&p), vec!["secret"]);
}

#[test]
fn a_write_replaces_a_planted_file_link_instead_of_following_it() {
    let p = planted();
    let t = TreeDir::open(&p.tree).unwrap();
    t.write(Path::new("usr/share/file-link"), b"mine", 0o644)
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(p.outside.join("secret")).unwrap(),
        "host"
    );
    let link = p.tree.join("usr/share/file-link");
    assert!(link.symlink_metadata().unwrap().is_file());
    assert_eq!(std::fs::read_to_string(link).unwrap(), "mine");
}

#[test]
fn directory_links_inside_the_tree_are_followed() {
    let p = planted();
    let t = TreeDir::open(&p.tree).unwrap();
    t.write(Path::new("bin/sh"), b"#!", 0o755).unwrap();
    assert!(p.tree.join("usr/bin/sh").is_file());
    assert!(!t.make_dir(Path::new("bin"), 0o755).unwrap(), "kept");
    assert!(p.tree.join("bin").symlink_metadata().unwrap().is_symlink());
    // A directory entry over a link that leads out of the tree replaces the link.
    assert!(t.make_dir(Path::new("usr/share/abs"), 0o755).unwrap());
    assert!(p
        .tree
        .join("usr/share/abs")
        .symlink_metadata()
        .unwrap()
        .is_dir());
}

#[test]
fn reads_resolve_inside_the_tree() {
    let p = planted();
    let t = TreeDir::open(&p.tree).unwrap();
    assert!(t.read(Path::new("usr/share/file-link")).is_err());
    assert!(t.read(Path::new("usr/share/rel/secret")).is_err());
    assert!(t.read(Path::new("../outside/secret")).is_err());
    assert_eq!(
        t.kind(Path::new("usr/share/abs")).unwrap(),
        Some(Kind::Symlink)
    );
    assert_eq!(t.kind(Path::new("usr/share/abs/secret")).unwrap(), None);
    assert_eq!(t.kind(Path::new("bin")).unwrap(), Some(Kind::Symlink));
    assert_eq!(t.kind(Path::new("usr/bin")).unwrap(), Some(Kind::Dir));
}

#[test]
fn hard_links_reach_only_entries_of_the_tree() {
    let p = planted();
    let t = TreeDir::open(&p.tree).unwrap();
    assert!(t
        .hard_link(Path::new("usr/stolen"), Path::new("usr/share/rel/secret"))
        .is_err());
    // A link to the planted symlink links the symlink, not the host file.
    t.hard_link(Path::new("usr/l"), Path::new("usr/share/file-link"))
        .unwrap();
    assert!(p
        .tree
        .join("usr/l")
        .symlink_metadata()
        .unwrap()
        .is_symlink());
    assert_eq!(
        std::fs::metadata(p.outside.join("secret")).unwrap().nlink(),
        1
    );
}

#[test]
fn metadata_is_set_without_following_the_entry_and_keeps_setuid() {
    let p = planted();
    let t = TreeDir::open(&p.tree).unwrap();
    let meta = Meta {
        uid: 0,
        gid: 0,
        mode: 0o4755,
        mtime: 1_000_000,
    };
    t.write(Path::new("usr/bin/su"), b"", 0o600).unwrap();
    t.set_meta(Path::new("usr/bin/su"), meta).unwrap();
    let st = std::fs::metadata(p.tree.join("usr/bin/su")).unwrap();
    assert_eq!(st.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(st.mtime(), 1_000_000);
    let before = std::fs::metadata(p.outside.join("secret")).unwrap();
    t.set_meta(Path::new("usr/share/file-link"), meta).unwrap();
    let after = std::fs::metadata(p.outside.join("secret")).unwrap();
    assert_eq!(before.permissions().mode(), after.permissions().mode());
    assert_eq!(before.mtime(), after.mtime());
}

#[test]
fn replacing_writes_rename_over_the_old_file() {
    let p = planted();
    let t = TreeDir::open(&p.tree).unwrap();
    t.write_replace(Path::new("usr/share/file-link"), b"new", 0o644)
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(p.outside.join("secret")).unwrap(),
        "host"
    );
    assert_eq!(t.read(Path::new("usr/share/file-link")).unwrap(), b"new");
    t.remove_file(Path::new("usr/share/file-link")).unwrap();
    t.remove_file(Path::new("usr/share/file-link")).unwrap();
    assert_eq!(t.kind(Path::new("usr/share/file-link")).unwrap(), None);
}

#[test]
fn parent_components_are_refused() {
    assert!(relative(Path::new("a/../b")).is_err());
    assert_eq!(relative(Path::new("/./a/b")).unwrap(), PathBuf::from("a/b"));
}
