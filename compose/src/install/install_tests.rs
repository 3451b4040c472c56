//! Install: unit tests of its pure parts and tree checks.

use super::dpkg::parse_status_abbrev;
use super::*;

#[test]
fn status_abbrev_lines_parse_into_a_map() {
    let map = parse_status_abbrev("a\tii \nlibb:amd64\tiU \nbroken line\n");
    assert_eq!(map.get("a"), Some(&"ii "));
    assert_eq!(map.get("libb"), Some(&"iU "));
    assert_eq!(map.len(), 2);
}

#[test]
fn debs_in_one_directory_share_one_bind() {
    let debs = [
        PathBuf::from("/c/a.deb"),
        PathBuf::from("/c/b.deb"),
        PathBuf::from("/d/c.deb"),
    ];
    let (_, inside) = bind_debs(&Sandbox::new(Path::new("/t")), &debs);
    assert_eq!(
        inside,
        vec![
            "/run/keel-debs/0/a.deb",
            "/run/keel-debs/0/b.deb",
            "/run/keel-debs/1/c.deb"
        ]
    );
}

#[test]
fn merged_usr_links_follow_the_architecture() {
    assert!(usr_links("amd64").contains(&"lib64"));
    assert!(!usr_links("arm64").contains(&"lib64"));
    assert!(usr_links("arm64").contains(&"bin"));
}
