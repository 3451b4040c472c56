//! The input hash: sha256 over everything that decides a compose's result — the treefile's hash
//! (which covers its add-files and postprocess files), the resolved package set with each
//! `.deb`'s sha256, and Keel's own version. It is stored in every commit's metadata under
//! [`keel_common::meta::INPUT_HASH`]; when the ref's current commit carries the same hash, a
//! new compose would produce the same tree, so it writes nothing (unless `--force`).

use crate::package::ResolvedPackage;
use sha2::{Digest, Sha256};

/// The version of Keel that composes, part of every input hash so a new composer recomposes.
pub const COMPOSER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The input hash as lowercase hex. The package order does not matter.
pub fn input_hash(
    treefile_hash: &str,
    packages: &[ResolvedPackage],
    composer_version: &str,
) -> String {
    let mut lines: Vec<String> = packages
        .iter()
        .map(|p| {
            format!(
                "package\t{}\t{}\t{}\t{}\n",
                p.name, p.version, p.arch, p.sha256
            )
        })
        .collect();
    lines.sort();
    let mut h = Sha256::new();
    h.update(b"keel-input-hash v1\n");
    h.update(format!("treefile\t{treefile_hash}\n"));
    h.update(format!("composer\t{composer_version}\n"));
    for line in &lines {
        h.update(line.as_bytes());
    }
    hex::encode(h.finalize())
}

/// What the no-op check found on the ref.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum NoOp {
    /// The ref's commit has this input hash: nothing to do.
    Unchanged { commit: String },
    /// The ref does not exist, or its commit has another (or no) input hash.
    Changed,
}

/// Compares `hash` with the input hash stored on `reference`'s current commit.
pub fn check(
    repo: &ostree::Repo,
    reference: &str,
    hash: &str,
) -> Result<NoOp, ostree::glib::Error> {
    let Some(commit) = repo.resolve_rev(reference, true)? else {
        return Ok(NoOp::Changed);
    };
    let Some(object) = super::load_commit_if_present(repo, &commit)? else {
        return Ok(NoOp::Changed);
    };
    match super::commit_metadata_string(&object, keel_common::meta::INPUT_HASH) {
        Some(stored) if stored == hash => Ok(NoOp::Unchanged {
            commit: commit.to_string(),
        }),
        _ => Ok(NoOp::Changed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::PackageSource;

    fn pkg(name: &str, version: &str, sha: &str) -> ResolvedPackage {
        ResolvedPackage {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            sha256: sha.into(),
            size: 1,
            source: PackageSource::Url(format!("http://127.0.0.1/{name}.deb")),
            repo: "debian".into(),
            essential: false,
            priority: "optional".into(),
            pre_depends: vec![],
            depends: vec![],
        }
    }

    #[test]
    fn hash_depends_on_every_input_but_not_on_order() {
        let set = vec![pkg("a", "1", "aa"), pkg("b", "2", "bb")];
        let base = input_hash("t", &set, "0.1.0");
        assert_eq!(base.len(), 64);
        let reversed: Vec<_> = set.iter().rev().cloned().collect();
        assert_eq!(
            input_hash("t", &reversed, "0.1.0"),
            base,
            "order must not matter"
        );

        let changed = [
            input_hash("t2", &set, "0.1.0"),
            input_hash("t", &set, "0.1.1"),
            input_hash("t", &[pkg("a", "1", "aa"), pkg("b", "3", "bb")], "0.1.0"),
            input_hash("t", &[pkg("a", "1", "aa"), pkg("b", "2", "cc")], "0.1.0"),
            input_hash("t", &[pkg("a", "1", "aa")], "0.1.0"),
        ];
        for (i, h) in changed.iter().enumerate() {
            assert_ne!(h, &base, "change {i} must change the hash");
        }
    }

    #[test]
    fn the_source_url_does_not_matter() {
        let mut moved = pkg("a", "1", "aa");
        moved.source = PackageSource::Url("http://127.0.0.2/mirror/a.deb".into());
        assert_eq!(
            input_hash("t", &[moved], "0"),
            input_hash("t", &[pkg("a", "1", "aa")], "0")
        );
    }
}
