//! Extracting hostile tar streams into a tree beside a host directory they aim at.

use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    Char(&'a str),
}

fn stream(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        let (name, data): (&str, &[u8]) = match e {
            E::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (n, b"")
            }
            E::File(n, d, m) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*m);
                (n, d)
            }
            E::Symlink(n, t) | E::HardLink(n, t) => {
                h.set_entry_type(if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                h.set_link_name_literal(t).unwrap();
                (n, b"")
            }
            E::Char(n) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o600);
                (n, b"")
            }
        };
        // Names as hostile archives carry them, `..` and leading `/` included.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn tree() -> (tempfile::TempDir, TreeDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tree/tmp")).unwrap();
    std::fs::create_dir_all(dir.path().join("tree/usr/bin")).unwrap();
    std::os::unix::fs::symlink("usr/bin", dir.path().join("tree/bin")).unwrap();
    let t = TreeDir::open(&dir.path().join("tree")).unwrap();
    (dir, t)
}

#[test]
fn a_link_then_a_write_through_it_lands_inside_the_tree() {
    let (dir, t) = tree();
    let host = dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    let target = host.display().to_string();
    let data = stream(&[
        E::Dir("./usr/share/"),
        E::Symlink("./usr/share/x", &target),
        E::Symlink("./usr/share/t", "/tmp"),
        E::Dir("./usr/share/t/"),
        E::File("./usr/share/t/somefile", b"x", 0o644),
        E::File("./usr/share/x/elsewhere", b"x", 0o644),
    ]);
    let got = extract_stream(&data[..], &t);
    // `x` leads to the tree's own copy of the host path, which does not exist: refused.
    assert!(got.is_err(), "{got:?}");
    assert!(dir.path().join("tree/tmp/somefile").is_file());
    assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0);
}

#[test]
fn parent_components_and_device_nodes_are_refused_absolute_names_kept_inside() {
    let (dir, t) = tree();
    let err = extract_stream(&stream(&[E::File("../escape", b"x", 0o644)])[..], &t).unwrap_err();
    assert!(err.contains("leaves the package's tree"), "{err}");
    assert!(!dir.path().join("escape").exists());
    let members = extract_stream(&stream(&[E::File("/abs", b"x", 0o644)])[..], &t).unwrap();
    assert_eq!(members[0].name, "./abs");
    assert!(dir.path().join("tree/abs").is_file());
    let err = extract_stream(&stream(&[E::Char("./dev/foo")])[..], &t).unwrap_err();
    assert!(err.starts_with("ships a device node /dev/foo;"), "{err}");
}

#[test]
fn hard_links_reach_only_the_tree_and_setuid_and_merged_usr_survive() {
    let (dir, t) = tree();
    let err =
        extract_stream(&stream(&[E::HardLink("./shadow", "/etc/shadow")])[..], &t).unwrap_err();
    assert!(err.contains("not an entry of the tree"), "{err}");
    let err = extract_stream(
        &stream(&[E::HardLink("./s", "../../../etc/shadow")])[..],
        &t,
    )
    .unwrap_err();
    assert!(err.contains("leaves the package's tree"), "{err}");
    let members = extract_stream(
        &stream(&[
            E::Dir("./bin/"),
            E::File("./bin/su", b"su", 0o4755),
            E::HardLink("./bin/su2", "./bin/su"),
        ])[..],
        &t,
    )
    .unwrap();
    assert_eq!(members.len(), 3);
    assert!(members[0].dir);
    let su = dir.path().join("tree/usr/bin/su");
    let meta = std::fs::metadata(&su).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(meta.mtime(), 1_600_000_000);
    assert_eq!(meta.nlink(), 2);
    assert!(dir
        .path()
        .join("tree/bin")
        .symlink_metadata()
        .unwrap()
        .is_symlink());
}
