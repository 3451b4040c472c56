//! The package cache: unit tests of its pure parts and tree checks.

use super::*;

const LINKS: &[&str] = &["bin", "sbin", "lib", "lib64"];

#[test]
fn only_non_awaiting_activations_are_harmless() {
    assert!(only_activates(
        "# dh_makeshlibs\nactivate-noawait ldconfig\n\n"
    ));
    assert!(!only_activates("activate ldconfig\n"));
    assert!(!only_activates("interest-noawait /usr/share/man\n"));
    assert!(!only_activates("activate-noawait a b\n"));
}

#[test]
fn tar_names_become_dpkg_paths() {
    assert_eq!(dpkg_path("./"), "/.");
    assert_eq!(dpkg_path("./usr/"), "/usr");
    assert_eq!(dpkg_path("./usr/bin/x"), "/usr/bin/x");
}

#[test]
fn merged_usr_aliases_are_folded() {
    assert_eq!(canonical("/bin/sh", LINKS), "usr/bin/sh");
    assert_eq!(canonical("/lib", LINKS), "usr/lib");
    assert_eq!(canonical("/usr/bin/sh", LINKS), "usr/bin/sh");
    assert_eq!(canonical("/binary/x", LINKS), "binary/x");
    assert_eq!(canonical("/.", LINKS), "");
}

#[test]
fn status_gets_an_unpacked_entry_after_the_package_line() {
    let control = "Package: a\nVersion: 1\nDescription: x\n more\n";
    assert_eq!(
        status_stanza(control),
        "Package: a\nStatus: install ok unpacked\nVersion: 1\nDescription: x\n more\n"
    );
}

#[test]
fn multi_arch_same_packages_get_qualified_info_names() {
    assert_eq!(
        info_name("Package: l\nMulti-Arch: same\nArchitecture: amd64\n", "l"),
        "l:amd64"
    );
    assert_eq!(info_name("Package: l\nArchitecture: amd64\n", "l"), "l");
}

#[test]
fn appending_keeps_one_blank_line_between_stanzas() {
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status");
    std::fs::write(&status, "Package: a\nStatus: install ok installed\n\n").unwrap();
    let tree = TreeDir::open(dir.path()).unwrap();
    append_status(&tree, Path::new("status"), "Package: b\nVersion: 1\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(&status).unwrap(),
        "Package: a\nStatus: install ok installed\n\nPackage: b\nStatus: install ok unpacked\nVersion: 1\n"
    );
}

#[test]
fn diverted_triggered_or_existing_paths_are_not_placed() {
    let root = tempfile::tempdir().unwrap();
    let tree = TreeDir::open(root.path()).unwrap();
    std::fs::create_dir_all(root.path().join("usr/share/doc")).unwrap();
    std::fs::write(root.path().join("usr/share/taken"), "").unwrap();
    let members = |paths: &[(&str, bool)]| -> Vec<Member> {
        paths
            .iter()
            .map(|(p, d)| Member {
                path: p.to_string(),
                dir: *d,
            })
            .collect()
    };
    let ok = members(&[
        ("/.", true),
        ("/usr", true),
        ("/usr/share/doc", true),
        ("/usr/share/new", false),
    ]);
    assert!(placeable(&tree, &ok, LINKS, "", ""));
    let taken = members(&[("/usr/share/taken", false)]);
    assert!(!placeable(&tree, &taken, LINKS, "", ""));
    let diverted = members(&[("/bin/x", false)]);
    assert!(!placeable(
        &tree,
        &diverted,
        LINKS,
        "/usr/bin/x\n/usr/bin/x.real\npkg\n",
        ""
    ));
    std::os::unix::fs::symlink("/run", root.path().join("var-run")).unwrap();
    let through_link = members(&[("/var-run", true), ("/var-run/x", false)]);
    assert!(!placeable(&tree, &through_link, LINKS, "", ""));
    let man = members(&[("/usr/share/man/man1/x.1.gz", false)]);
    assert!(!placeable(
        &tree,
        &man,
        LINKS,
        "",
        "/usr/share/man man-db/noawait\n"
    ));
    assert!(placeable(
        &tree,
        &man,
        LINKS,
        "",
        "/usr/share/mandrake other\n"
    ));
}
