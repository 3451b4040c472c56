//! The `base-system` key of `[[repos]]`: its defaults keep today's treefiles as they were,
//! and saying it moves a repo in or out of the base system.

use std::fs;
use std::path::Path;

use super::*;

fn names(set: &BTreeSet<String>) -> Vec<&str> {
    set.iter().map(String::as_str).collect()
}

fn load_in(root: &Path, name: &str, text: &str) -> Result<Treefile, TreefileError> {
    let path = root.join(name);
    fs::write(&path, text).unwrap();
    load(&path)
}

const HEAD: &str = "ref = \"keel/test/x86_64/host\"\npackages = [\"systemd\"]\n";
const MACHINE: &str = "[[repos]]\nname = \"debian\"\nmachine-sources = true\n";
const LOCAL: &str = "[[repos]]\nname = \"local\"\npath = \"debs\"\n";

fn url_repo(name: &str) -> String {
    format!(
        "[[repos]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:8080/{name}\"\n\
         suites = [\"stable\"]\nkeyring = \"k.gpg\"\n"
    )
}

#[test]
fn defaults_make_the_distribution_the_base_and_added_repos_not() {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    fs::create_dir_all(root.join("debs")).unwrap();
    fs::write(root.join("k.gpg"), "not really a keyring").unwrap();
    let vendor = url_repo("vendor");
    let cases: Vec<(String, Vec<&str>)> = vec![
        (format!("{HEAD}{MACHINE}"), vec!["debian"]),
        (format!("{HEAD}{MACHINE}{vendor}{LOCAL}"), vec!["debian"]),
        (format!("{HEAD}{vendor}{MACHINE}"), vec!["debian"]),
        (
            format!("{HEAD}{}{vendor}{LOCAL}", url_repo("mirror")),
            vec!["mirror"],
        ),
        (format!("{HEAD}{LOCAL}"), vec![]),
        (
            format!(
                "{HEAD}{MACHINE}{}",
                vendor.replace("keyring", "base-system = true\nkeyring")
            ),
            vec!["debian", "vendor"],
        ),
        (
            format!(
                "{HEAD}{}{vendor}",
                MACHINE.replace("true\n", "true\nbase-system = false\n")
            ),
            vec![],
        ),
    ];
    for (text, want) in cases {
        let tf = load_in(&root, "t.toml", &text).unwrap();
        assert_eq!(names(&tf.base_system_repos), want, "{text}");
    }
}

#[test]
fn the_key_shows_in_the_canonical_form_only_when_it_differs_from_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    fs::write(root.join("k.gpg"), "not really a keyring").unwrap();
    let vendor = url_repo("vendor");
    let plain = load_in(&root, "a.toml", &format!("{HEAD}{MACHINE}{vendor}")).unwrap();
    assert!(
        !plain.canonical.contains("base-system"),
        "{}",
        plain.canonical
    );
    let said = MACHINE.replace("true\n", "true\nbase-system = true\n");
    let said = load_in(&root, "b.toml", &format!("{HEAD}{said}{vendor}")).unwrap();
    assert_eq!(said.hash, plain.hash, "saying the default changes nothing");
    let moved = vendor.replace("keyring", "base-system = true\nkeyring");
    let moved = load_in(&root, "c.toml", &format!("{HEAD}{MACHINE}{moved}")).unwrap();
    assert!(
        moved.canonical.contains("base-system = true"),
        "{}",
        moved.canonical
    );
    assert_ne!(moved.hash, plain.hash);
    // The canonical text is itself a treefile with the same base system.
    let again = load_in(&root, "d.toml", &moved.canonical).unwrap();
    assert_eq!(again.base_system_repos, moved.base_system_repos);
}

#[test]
fn a_wrong_type_names_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{HEAD}{}",
        MACHINE.replace("true\n", "true\nbase-system = \"yes\"\n")
    );
    let e = load_in(dir.path(), "t.toml", &text)
        .unwrap_err()
        .to_string();
    assert!(e.contains("t.toml:6") && e.contains("base-system"), "{e}");
}
