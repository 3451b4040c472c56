//! The `ostree` command on a repository, for tests that check what landed in one.

use std::path::Path;
use std::process::Command;

/// Runs `ostree --repo=REPO ARGS...` and returns its standard output; panics (naming the
/// arguments and showing stderr) when it fails.
pub fn ostree(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .expect("running ostree");
    assert!(
        out.status.success(),
        "ostree {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
