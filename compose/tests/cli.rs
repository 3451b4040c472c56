//! `keel-compose tree` with bad inputs, through the real binary: it must fail before writing
//! anything, exit non-zero, name the problem, and leave no scratch tree behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_keel-compose");

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A repository with one commit on `keel/test/host`, a cachedir, and a treefile dir.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture { dir };
        let content = f.path("content");
        std::fs::create_dir_all(content.join("usr/etc")).unwrap();
        std::fs::write(content.join("usr/etc/os-release"), "ID=keel\n").unwrap();
        ostree(&f.repo(), &["init", "--mode=archive"]);
        ostree(
            &f.repo(),
            &[
                "commit",
                "-b",
                "keel/test/host",
                &format!("--tree=dir={}", content.display()),
            ],
        );
        std::fs::create_dir_all(f.path("debs")).unwrap();
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    fn treefile(&self, text: &str) -> PathBuf {
        let path = self.path("host.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn compose(&self, treefile: &Path) -> Output {
        Command::new(BIN)
            .arg("tree")
            .arg(treefile)
            .arg("--repo")
            .arg(self.repo())
            .arg("--cachedir")
            .arg(self.path("cache"))
            .output()
            .unwrap()
    }

    /// Refs and every file's path and size under the repository: equal before and after means
    /// nothing was written.
    fn repo_state(&self) -> String {
        let mut state = ostree(&self.repo(), &["refs"]);
        let mut files = Vec::new();
        list(&self.repo(), &mut files);
        files.sort();
        state.push_str(&files.join("\n"));
        state
    }

    fn assert_no_scratch_trees(&self) {
        let tmp = self.path("cache/tmp");
        if tmp.exists() {
            let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
            assert!(
                left.is_empty(),
                "scratch trees left behind in {}",
                tmp.display()
            );
        }
    }
}

fn list(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            list(&entry.path(), out);
        } else {
            out.push(format!("{} {}", entry.path().display(), meta.len()));
        }
    }
}

fn ostree(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ostree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn valid_treefile(packages: &str) -> String {
    format!(
        "ref = \"keel/test/host\"\npackages = [{packages}]\n\n[[repos]]\nname = \"overlay\"\npath = \"debs\"\n"
    )
}

#[test]
fn missing_treefile_fails_naming_it() {
    let f = Fixture::new();
    let before = f.repo_state();
    let missing = f.path("no-such-treefile.toml");
    let out = f.compose(&missing);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no-such-treefile.toml"), "{err}");
    assert_eq!(f.repo_state(), before);
    f.assert_no_scratch_trees();
}

#[test]
fn unknown_key_fails_naming_key_and_line() {
    let f = Fixture::new();
    let before = f.repo_state();
    let text = valid_treefile("\"hello\"").replace("packages =", "pakages = [\"x\"]\npackages =");
    let out = f.compose(&f.treefile(&text));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("pakages"), "{err}");
    assert!(
        err.contains("host.toml:2"),
        "names the file and line: {err}"
    );
    assert_eq!(f.repo_state(), before);
    f.assert_no_scratch_trees();
}

#[test]
fn missing_package_fails_before_touching_the_repo() {
    let f = Fixture::new();
    let before = f.repo_state();
    let out = f.compose(&f.treefile(&valid_treefile("\"keel-no-such-package\"")));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("keel-no-such-package"), "{err}");
    assert_eq!(f.repo_state(), before, "repository changed");
    f.assert_no_scratch_trees();
}

#[test]
fn unsatisfiable_dependency_from_a_signed_repo_names_the_chain() {
    use keel_tests::aptrepo::AptRepo;
    use keel_tests::deb::Deb;
    use keel_tests::http::FileServer;

    let f = Fixture::new();
    let apt = AptRepo::new("keel").unwrap();
    apt.add(&[Deb::new("keel-app", "1.0").depends("keel-libmissing (>= 2)")])
        .unwrap();
    apt.publish().unwrap();
    let server = FileServer::serve(&apt.root()).unwrap();
    let text = format!(
        "ref = \"keel/test/host\"\npackages = [\"keel-app\"]\n\n[[repos]]\nname = \"loopback\"\nurl = \"{}\"\nsuites = [\"keel\"]\ncomponents = [\"main\"]\nkeyring = \"{}\"\n",
        server.url(),
        apt.keyring().display()
    );
    let before = f.repo_state();
    let out = f.compose(&f.treefile(&text));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("keel-libmissing"), "{err}");
    assert!(err.contains("keel-app"), "names who asked for it: {err}");
    assert_eq!(f.repo_state(), before, "repository changed");
    f.assert_no_scratch_trees();
    assert!(
        server.requests().iter().all(|r| !r.ends_with(".deb")),
        "downloaded packages before resolving: {:?}",
        server.requests()
    );
}

#[test]
fn missing_package_does_not_create_a_repo() {
    let f = Fixture::new();
    let fresh = f.path("fresh-repo");
    let out = Command::new(BIN)
        .arg("tree")
        .arg(f.treefile(&valid_treefile("\"keel-no-such-package\"")))
        .arg("--repo")
        .arg(&fresh)
        .arg("--cachedir")
        .arg(f.path("cache"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !fresh.exists(),
        "a failed compose created {}",
        fresh.display()
    );
}

#[test]
fn help_describes_the_tree_verb() {
    let out = Command::new(BIN).args(["tree", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["--repo", "--cachedir", "--json", "archive"] {
        assert!(text.contains(word), "help lacks {word}:\n{text}");
    }
}
