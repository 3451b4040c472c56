//! Loading whole treefiles from temp dirs: keys, errors with file:line, includes, paths, hash.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

const MINIMAL: &str = r#"
ref = "keel/test/x86_64/host"
packages = ["systemd"]
[[repos]]
name = "debian"
machine-sources = true
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&path, text).unwrap();
    path
}

fn load_text(text: &str) -> (tempfile::TempDir, Result<Treefile, TreefileError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "tree.toml", text);
    let result = load(&path);
    (dir, result)
}

#[test]
fn every_key_parses() {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    write(&root, "keys/archive.gpg", "not really a keyring");
    fs::create_dir_all(root.join("debs")).unwrap();
    write(&root, "files/motd", "hello\n");
    write(
        &root,
        "scripts/clean.sh",
        "#!/bin/sh\nrm -rf /usr/share/doc\n",
    );
    let path = write(
        &root,
        "tree.toml",
        r#"
ref = "keel/bookworm/x86_64/host"
automatic-version-prefix = "<date:%Y%m%d>"
packages = ["systemd", "podman=4.3.1+ds1-8+deb12u1"]
exclude-packages = ["apt"]
recommends = true
units = ["podman.socket"]
default-target = "multi-user.target"
remove-files = ["usr/share/doc"]
static-deltas = 5

[[repos]]
name = "debian"
machine-sources = true

[[repos]]
name = "extra"
url = "http://127.0.0.1:8080/debian/"
suites = ["bookworm"]
components = ["main", "contrib"]
architectures = ["amd64", "all"]
keyring = "keys/archive.gpg"

[[repos]]
name = "mine"
path = "debs"

[[add-files]]
source = "files/motd"
dest = "/etc/motd"
mode = "0644"

[[add-files]]
source = "files/motd"
dest = "/usr/share/keel/motd"

[[postprocess]]
name = "inline"
script = "echo hi"

[[postprocess]]
name = "from-file"
file = "scripts/clean.sh"

[initramfs]
modules = ["base", "ostree"]
drivers = ["virtio_blk"]
compress = "zstd"

[passwd]
check = false
"#,
    );
    let treefile = load(&path).unwrap();
    assert_eq!(treefile.path, path);
    assert_eq!(treefile.reference, "keel/bookworm/x86_64/host");
    assert_eq!(
        treefile.automatic_version_prefix.as_deref(),
        Some("<date:%Y%m%d>")
    );
    assert_eq!(treefile.packages, ["systemd", "podman=4.3.1+ds1-8+deb12u1"]);
    assert_eq!(treefile.exclude_packages, ["apt"]);
    assert!(treefile.recommends);
    assert_eq!(treefile.units, ["podman.socket"]);
    assert_eq!(
        treefile.default_target.as_deref(),
        Some("multi-user.target")
    );
    assert_eq!(treefile.remove_files, ["usr/share/doc"]);
    assert_eq!(treefile.static_deltas, 5);
    assert_eq!(
        treefile.repos,
        [
            Repo::Machine {
                name: "debian".into()
            },
            Repo::Apt(AptRepo {
                name: "extra".into(),
                url: "http://127.0.0.1:8080/debian".into(),
                suites: vec!["bookworm".into()],
                components: vec!["main".into(), "contrib".into()],
                architectures: vec!["amd64".into(), "all".into()],
                keyring: root.join("keys/archive.gpg"),
            }),
            Repo::Local {
                name: "mine".into(),
                path: root.join("debs"),
            },
        ]
    );
    assert_eq!(
        treefile.add_files,
        [
            AddFile {
                source: root.join("files/motd"),
                dest: "/etc/motd".into(),
                mode: Some(0o644),
            },
            AddFile {
                source: root.join("files/motd"),
                dest: "/usr/share/keel/motd".into(),
                mode: None,
            },
        ]
    );
    assert_eq!(
        treefile.postprocess,
        [
            Postprocess {
                name: "inline".into(),
                script: "echo hi".into()
            },
            Postprocess {
                name: "from-file".into(),
                script: "#!/bin/sh\nrm -rf /usr/share/doc\n".into()
            },
        ]
    );
    assert_eq!(
        treefile.initramfs,
        Initramfs {
            modules: vec!["base".into(), "ostree".into()],
            drivers: vec!["virtio_blk".into()],
            compress: "zstd".into(),
        }
    );
    assert!(!treefile.passwd.check);
    assert_eq!(treefile.hash.len(), 64);
    // The canonical text is itself a treefile: loading it gives the same result.
    let again = load(&write(&root, "canonical.toml", &treefile.canonical)).unwrap();
    assert_eq!(again.canonical, treefile.canonical);
    assert_eq!(again.hash, treefile.hash);
}

#[test]
fn defaults_apply_when_keys_are_absent() {
    let (_dir, result) = load_text(MINIMAL);
    let treefile = result.unwrap();
    assert!(!treefile.recommends);
    assert!(treefile.passwd.check);
    assert_eq!(treefile.static_deltas, 2);
    assert_eq!(treefile.initramfs.compress, "cat");
    assert_eq!(treefile.initramfs.modules, DEFAULT_INITRAMFS_MODULES);
    assert_eq!(treefile.initramfs.drivers, DEFAULT_INITRAMFS_DRIVERS);
    assert_eq!(treefile.automatic_version_prefix, None);
    assert!(treefile.units.is_empty() && treefile.add_files.is_empty());
}

#[test]
fn unknown_keys_report_file_line_and_suggestion() {
    let cases = [
        (
            "ref = \"a\"\npakages = [\"x\"]\n",
            2,
            None,
            "pakages",
            Some("packages"),
        ),
        (
            "ref = \"a\"\n[initramfs]\nmodles = []\n",
            3,
            Some("initramfs"),
            "modles",
            Some("modules"),
        ),
        (
            "ref = \"a\"\n[[repos]]\nname = \"d\"\nurll = \"http://x\"\n",
            4,
            Some("repos"),
            "urll",
            Some("url"),
        ),
        ("kernel-args = []\n", 1, None, "kernel-args", None),
    ];
    for (text, line, table, key, suggestion) in cases {
        let (_dir, result) = load_text(text);
        let err = result.unwrap_err();
        match &err {
            TreefileError::UnknownKey {
                at,
                table: got_table,
                key: got_key,
                suggestion: got_suggestion,
            } => {
                assert_eq!(at.line, Some(line), "{text}");
                assert!(at.file.ends_with("tree.toml"));
                assert_eq!(got_table.as_deref(), table, "{text}");
                assert_eq!(got_key, key, "{text}");
                assert_eq!(got_suggestion.as_deref(), suggestion, "{text}");
            }
            other => panic!("{text}: expected UnknownKey, got {other:?}"),
        }
        let shown = err.to_string();
        assert!(
            shown.contains(&format!("tree.toml:{line}: unknown key `{key}`")),
            "{shown}"
        );
    }
    let (_dir, result) = load_text("ref = \"a\"\npakages = [\"x\"]\n");
    let shown = result.unwrap_err().to_string();
    assert!(
        shown.ends_with("tree.toml:2: unknown key `pakages` (did you mean `packages`?)"),
        "{shown}"
    );
}

#[test]
fn wrong_types_report_file_line_and_key() {
    let cases = [
        ("ref = \"a\"\nrecommends = \"yes\"\n", 2, "recommends"),
        ("ref = \"a\"\npackages = \"podman\"\n", 2, "packages"),
        ("static-deltas = -1\n", 1, "static-deltas"),
        ("ref = 7\n", 1, "ref"),
        (
            "ref = \"a\"\n[initramfs]\ncompress = 3\n",
            3,
            "initramfs.compress",
        ),
        ("packages = [\n  \"a\",\n  \"b\",\n  5,\n]\n", 4, "packages"),
        (
            "[[repos]]\nname = \"d\"\nsuites = \"bookworm\"\n",
            3,
            "repos.suites",
        ),
    ];
    for (text, line, key) in cases {
        let (_dir, result) = load_text(text);
        match result.unwrap_err() {
            TreefileError::WrongType {
                at, key: got_key, ..
            } => {
                assert_eq!((at.line, got_key.as_str()), (Some(line), key), "{text}");
            }
            other => panic!("{text}: expected WrongType, got {other:?}"),
        }
    }
}

#[test]
fn invalid_values_report_file_line_and_key() {
    let cases = [
        ("ref = \"/bad ref\"\n", 1, "ref"),
        ("ref = \"a\"\npackages = [\"ok\", \"Bad\"]\n", 2, "packages"),
        ("ref = \"a\"\npackages = [\"ok\", \"ok=1\"]\n", 2, "packages"),
        ("units = [\"podman\"]\n", 1, "units"),
        ("default-target = \"sshd.service\"\n", 1, "default-target"),
        ("remove-files = [\"/usr/share/doc\"]\n", 1, "remove-files"),
        ("\n[[add-files]]\nsource = \"x\"\ndest = \"/var/lib/x\"\n", 4, "add-files.dest"),
        ("\n[[add-files]]\nsource = \"missing\"\ndest = \"/etc/x\"\n", 3, "add-files.source"),
        ("[[postprocess]]\nname = \"p\"\n", 2, "postprocess"),
        ("[[repos]]\nname = \"d\"\n", 1, "repos"),
        ("[[repos]]\nname = \"d\"\nmachine-sources = true\nurl = \"http://x\"\n", 1, "repos"),
        ("[[repos]]\nname = \"d\"\nmachine-sources = true\nsuites = [\"a\"]\n", 1, "repos"),
        ("[[repos]]\nname = \"d\"\nurl = \"http://x\"\nsuites = [\"a\"]\n", 1, "repos"),
        ("[[repos]]\nname = \"d\"\nurl = \"ftp://x\"\n", 3, "repos.url"),
        ("[initramfs]\nmodules = [\"base\",\n  \"ostree shutdown\"]\n", 3, "initramfs.modules"),
        ("[[repos]]\nname = \"d\"\npath = \"nowhere\"\n", 3, "repos.path"),
        ("[[repos]]\nname = \"d\"\nmachine-sources = true\nlayer = \"upper\"\n", 4, "repos.layer"),
        ("[[repos]]\nname = \"d\"\nmachine-sources = true\n[[repos]]\nname = \"d\"\nmachine-sources = true\n", 4, "repos"),
    ];
    for (text, line, key) in cases {
        let (_dir, result) = load_text(text);
        match result.unwrap_err() {
            TreefileError::Invalid {
                at,
                key: got_key,
                reason,
            } => {
                let got = (at.line, got_key.as_str());
                assert_eq!(got, (Some(line), key), "{text}: {reason}");
            }
            other => panic!("{text}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn missing_required_keys_are_named() {
    let cases = [
        (
            MINIMAL.replace("ref = \"keel/test/x86_64/host\"", ""),
            "ref",
        ),
        (
            MINIMAL.replace("packages = [\"systemd\"]", "packages = []"),
            "packages",
        ),
        (
            MINIMAL.replace("[[repos]]\nname = \"debian\"\nmachine-sources = true\n", ""),
            "repos",
        ),
        (MINIMAL.replace("name = \"debian\"\n", ""), "repos.name"),
    ];
    for (text, key) in cases {
        let (_dir, result) = load_text(&text);
        match result.unwrap_err() {
            TreefileError::Missing { key: got, .. } => assert_eq!(got, key, "{text}"),
            other => panic!("{text}: expected Missing, got {other:?}"),
        }
    }
    let (_dir, result) = load_text(&format!("exclude-packages = [\"systemd\"]\n{MINIMAL}"));
    assert!(matches!(result, Err(TreefileError::Invalid { key, .. }) if key == "exclude-packages"));
}

#[test]
fn includes_merge_in_order_with_the_including_file_on_top() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "base.toml",
        r#"
ref = "keel/base"
packages = ["systemd", "podman=1.0", "less"]
exclude-packages = ["apt"]
units = ["a.service"]
static-deltas = 1
[[repos]]
name = "debian"
machine-sources = true
[initramfs]
modules = ["base"]
compress = "gzip"
"#,
    );
    write(
        dir.path(),
        "extra.toml",
        "packages = [\"vim-tiny\", \"less\"]\nexclude-packages = [\"man-db\"]\nunits = [\"b.service\"]\n[initramfs]\nmodules = [\"ostree\", \"base\"]\n",
    );
    let top = write(
        dir.path(),
        "top.toml",
        "include = [\"base.toml\", \"extra.toml\"]\nref = \"keel/top\"\npackages = [\"curl\", \"podman=2.0\"]\nexclude-packages = [\"apt\"]\n",
    );
    let treefile = load(&top).unwrap();
    assert_eq!(treefile.reference, "keel/top");
    assert_eq!(
        treefile.packages,
        ["systemd", "podman=2.0", "less", "vim-tiny", "curl"]
    );
    assert_eq!(treefile.exclude_packages, ["apt", "man-db"]);
    assert_eq!(treefile.units, ["a.service", "b.service"]);
    assert_eq!(treefile.static_deltas, 1);
    assert_eq!(treefile.initramfs.modules, ["base", "ostree"]);
    assert_eq!(treefile.initramfs.compress, "gzip");
    assert_eq!(treefile.initramfs.drivers, DEFAULT_INITRAMFS_DRIVERS);
    assert!(!treefile.canonical.contains("include"));
}

#[test]
fn include_cycle_names_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.toml", "include = [\"b.toml\"]\n");
    write(dir.path(), "b.toml", "include = [\"c.toml\"]\n");
    write(dir.path(), "c.toml", "include = [\"a.toml\"]\n");
    let err = load(&a).unwrap_err();
    let names = |chain: &[PathBuf]| -> Vec<String> {
        chain
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    match &err {
        TreefileError::IncludeCycle { chain } => {
            assert_eq!(names(chain), ["a.toml", "b.toml", "c.toml", "a.toml"])
        }
        other => panic!("expected IncludeCycle, got {other:?}"),
    }
    assert!(err.to_string().contains("a.toml -> "), "{err}");

    let self_include = write(dir.path(), "self.toml", "include = [\"self.toml\"]\n");
    match load(&self_include).unwrap_err() {
        TreefileError::IncludeCycle { chain } => {
            assert_eq!(names(&chain), ["self.toml", "self.toml"])
        }
        other => panic!("expected IncludeCycle, got {other:?}"),
    }
}

#[test]
fn errors_in_included_files_name_that_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "common/base.toml",
        "ref = \"a\"\n\nrecommend = true\n",
    );
    let top = write(
        dir.path(),
        "top/tree.toml",
        "include = [\"../common/base.toml\"]\n",
    );
    let err = load(&top).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("common/base.toml:3: unknown key `recommend` (did you mean `recommends`?)"),
        "{shown}"
    );
    let missing = write(
        dir.path(),
        "top/missing.toml",
        "include = [\"nope.toml\"]\n",
    );
    assert!(
        matches!(load(&missing), Err(TreefileError::Read { path, .. }) if path.ends_with("nope.toml"))
    );
}

#[test]
fn relative_paths_resolve_against_the_declaring_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    write(&root, "common/files/a.conf", "a");
    write(&root, "common/post.sh", "echo common");
    fs::create_dir_all(root.join("common/debs")).unwrap();
    write(
        &root,
        "common/base.toml",
        "[[add-files]]\nsource = \"files/a.conf\"\ndest = \"/etc/a.conf\"\n\
         [[postprocess]]\nname = \"c\"\nfile = \"post.sh\"\n\
         [[repos]]\nname = \"local\"\npath = \"debs\"\n",
    );
    write(&root, "hosts/files/b.conf", "b");
    let top = write(
        &root,
        "hosts/host.toml",
        &format!("include = [\"../common/base.toml\"]\n{MINIMAL}\n[[add-files]]\nsource = \"files/b.conf\"\ndest = \"/etc/b.conf\"\n"),
    );
    let treefile = load(&top).unwrap();
    let sources: Vec<&Path> = treefile
        .add_files
        .iter()
        .map(|a| a.source.as_path())
        .collect();
    assert_eq!(
        sources,
        [
            root.join("common/files/a.conf"),
            root.join("hosts/files/b.conf")
        ]
    );
    assert_eq!(treefile.postprocess[0].script, "echo common");
    assert_eq!(
        treefile.repos[0],
        Repo::Local {
            name: "local".into(),
            path: root.join("common/debs")
        }
    );
    // Inside the top-level file's directory paths are shown relative, elsewhere absolute.
    assert!(
        treefile.canonical.contains("source = \"files/b.conf\""),
        "{}",
        treefile.canonical
    );
    let absolute = format!(
        "source = \"{}\"",
        root.join("common/files/a.conf").display()
    );
    assert!(
        treefile.canonical.contains(&absolute),
        "{}",
        treefile.canonical
    );
}

#[test]
fn hash_follows_add_files_content_not_checkout_location() {
    let text = format!("{MINIMAL}\n[[add-files]]\nsource = \"files/motd\"\ndest = \"/etc/motd\"\n");
    let first = tempfile::tempdir().unwrap();
    write(first.path(), "files/motd", "v1\n");
    let top = write(first.path(), "tree.toml", &text);
    let v1 = load(&top).unwrap();
    assert_eq!(
        load(&top).unwrap().hash,
        v1.hash,
        "loading twice gives the same hash"
    );

    write(first.path(), "files/motd", "v2\n");
    let v2 = load(&top).unwrap();
    assert_ne!(v2.hash, v1.hash);
    assert_eq!(v2.canonical, v1.canonical);

    // Without `mode`, the source's mode is what the tree gets, so it counts too.
    let motd = first.path().join("files/motd");
    let mut permissions = fs::metadata(&motd).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o600);
    fs::set_permissions(&motd, permissions).unwrap();
    let v2_private = load(&top).unwrap();
    assert_ne!(v2_private.hash, v2.hash);
    write(first.path(), "files/motd", "v1\n");
    let mut permissions = fs::metadata(&motd).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o644);
    fs::set_permissions(&motd, permissions).unwrap();

    let second = tempfile::tempdir().unwrap();
    write(second.path(), "files/motd", "v1\n");
    let moved = load(&write(second.path(), "tree.toml", &text)).unwrap();
    assert_eq!(
        moved.hash, v1.hash,
        "the same inputs elsewhere hash the same"
    );

    let edited = load(&write(
        second.path(),
        "tree.toml",
        &text.replace("systemd", "udev"),
    ))
    .unwrap();
    assert_ne!(edited.hash, moved.hash);
}

#[test]
fn shipped_debian_host_treefile_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../treefiles/debian-host.toml");
    let treefile = load(&path).unwrap();
    assert_eq!(treefile.reference, "keel/bookworm/x86_64/host");
    assert_eq!(
        treefile.automatic_version_prefix.as_deref(),
        Some("<date:%Y%m%d>")
    );
    assert!(matches!(&treefile.repos[..], [Repo::Machine { .. }]));
    for wanted in [
        "linux-image-amd64",
        "systemd",
        "dracut",
        "ostree-boot",
        "podman",
    ] {
        assert!(
            treefile.packages.iter().any(|p| package_name(p) == wanted),
            "{wanted} missing"
        );
    }
    assert_eq!(
        treefile.default_target.as_deref(),
        Some("multi-user.target")
    );
    assert_eq!(treefile.initramfs.compress, "cat");
}

#[test]
fn a_treefile_elsewhere_can_include_the_shipped_one() {
    // What the VM test does: the shipped host plus a local overlay repo and package.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../treefiles/debian-host.toml");
    let shipped = fs::canonicalize(shipped).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    fs::create_dir_all(root.join("overlay")).unwrap();
    let top = write(
        &root,
        "overlay.toml",
        &format!(
            "include = [{:?}]\npackages = [\"keel-test-overlay\"]\n\
             [[repos]]\nname = \"overlay\"\npath = \"overlay\"\n",
            shipped.display().to_string()
        ),
    );
    let base = load(&shipped).unwrap();
    let treefile = load(&top).unwrap();
    assert_eq!(treefile.reference, base.reference);
    assert_eq!(
        treefile.packages.last().map(String::as_str),
        Some("keel-test-overlay")
    );
    assert_eq!(treefile.packages.len(), base.packages.len() + 1);
    assert_eq!(
        treefile.repos.iter().map(Repo::name).collect::<Vec<_>>(),
        ["debian", "overlay"]
    );
    assert_eq!(treefile.add_files, base.add_files);
    assert_ne!(treefile.hash, base.hash);
}

#[test]
fn repo_layers_default_by_shape_and_the_layer_key_moves_a_repo() {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    fs::create_dir_all(root.join("debs")).unwrap();
    write(&root, "keys/mine.gpg", "not really a keyring");
    let base_text = r#"
ref = "keel/test/x86_64/host"
packages = ["systemd"]
[[repos]]
name = "debian"
machine-sources = true
[[repos]]
name = "local"
path = "debs"
[[repos]]
name = "published"
url = "http://127.0.0.1:8080/mine"
suites = ["stable"]
keyring = "keys/mine.gpg"
"#;
    let plain = load(&write(&root, "plain.toml", base_text)).unwrap();
    let names = |set: &std::collections::BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>();
    assert_eq!(names(&plain.top_layer_repos), ["local"]);
    assert!(!plain.canonical.contains("layer"), "{}", plain.canonical);

    let moved_text = base_text
        .replace("path = \"debs\"\n", "path = \"debs\"\nlayer = \"base\"\n")
        .replace(
            "suites = [\"stable\"]\n",
            "suites = [\"stable\"]\nlayer = \"top\"\n",
        );
    let moved = load(&write(&root, "moved.toml", &moved_text)).unwrap();
    assert_eq!(names(&moved.top_layer_repos), ["published"]);
    assert!(
        moved.canonical.contains("layer = \"top\""),
        "{}",
        moved.canonical
    );
    assert!(
        moved.canonical.contains("layer = \"base\""),
        "{}",
        moved.canonical
    );
    assert_ne!(
        moved.hash, plain.hash,
        "the split changes the tree, so the hash"
    );

    // Saying the default changes nothing, not even the hash.
    let said = base_text.replace(
        "machine-sources = true\n",
        "machine-sources = true\nlayer = \"base\"\n",
    );
    let said = load(&write(&root, "said.toml", &said)).unwrap();
    assert_eq!(said.hash, plain.hash);

    // A repo redefined by an including file is replaced whole, its layer key too.
    write(
        &root,
        "inc/moved.toml",
        &moved_text
            .replace("\"debs\"", "\"../debs\"")
            .replace("\"keys/", "\"../keys/"),
    );
    let over = write(
        &root,
        "over.toml",
        "include = [\"inc/moved.toml\"]\n[[repos]]\nname = \"published\"\nurl = \"http://127.0.0.1:8080/mine\"\nsuites = [\"stable\"]\nkeyring = \"keys/mine.gpg\"\n",
    );
    let over = load(&over).unwrap();
    assert!(
        over.top_layer_repos.is_empty(),
        "{:?}",
        over.top_layer_repos
    );
}
