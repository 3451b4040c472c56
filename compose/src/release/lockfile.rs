//! Lockfiles: the exact package set of a compose, so it can be composed again bit for bit.
//!
//! Every compose writes one (JSON, sorted by name). By default it lands next to the repo:
//! `<repo's parent dir>/<ref with '/' as '-'>.lock.json`, e.g. `work/keel-bookworm-x86_64-host.lock.json`
//! for `work/repo` — outside the repo, so it is never served to hosts, and one per ref.
//! `--write-lockfile FILE` puts it elsewhere. `--lockfile FILE` composes exactly the locked set:
//! each locked package must still exist in the repos with the same version, architecture and
//! sha256, or the compose fails naming it; the solver then runs with every package pinned to its
//! locked version (only to order dependencies for install, no choices left) and must return
//! exactly the locked set.

use crate::package::{PackageSource, ResolvedPackage};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The format version written into every lockfile.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Lockfile {
    pub format: u32,
    #[serde(rename = "ref")]
    pub reference: String,
    pub packages: Vec<LockedPackage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub sha256: String,
    /// The treefile's name for the repository it came from.
    pub repo: String,
    /// Where it was fetched from: a URL, or a local path for overlay packages.
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("lockfile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lockfile {path}: not a Keel lockfile: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("lockfile {path}: format {found} is not supported (this Keel writes format {FORMAT})")]
    Format { path: PathBuf, found: u32 },
    #[error("lockfile {path}: package {name} is listed twice")]
    Duplicate { path: PathBuf, name: String },
    #[error(
        "lockfile {path}: locked package {name} {version} ({arch}, sha256 {sha256}) is gone from the repos; \
         recompose without --lockfile to pick a new set"
    )]
    Gone {
        path: PathBuf,
        name: String,
        version: String,
        arch: String,
        sha256: String,
    },
    #[error(
        "lockfile {path}: package {name} {version} has sha256 {found} in the repos but {locked} in the lockfile; \
         the repository changed the file: recompose without --lockfile if you trust it"
    )]
    Checksum {
        path: PathBuf,
        name: String,
        version: String,
        locked: String,
        found: String,
    },
    #[error(
        "lockfile {path}: the locked packages also need {name} {version}, which is not locked; \
         the lockfile was edited or is incomplete: recompose without --lockfile"
    )]
    NotClosed {
        path: PathBuf,
        name: String,
        version: String,
    },
    #[error("writing lockfile {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Lockfile {
    /// The lockfile of a resolved set, sorted by package name.
    pub fn from_resolved(reference: &str, packages: &[ResolvedPackage]) -> Self {
        let mut packages: Vec<LockedPackage> = packages
            .iter()
            .map(|p| LockedPackage {
                name: p.name.clone(),
                version: p.version.clone(),
                arch: p.arch.clone(),
                sha256: p.sha256.clone(),
                repo: p.repo.clone(),
                url: match &p.source {
                    PackageSource::Url(u) => u.clone(),
                    PackageSource::Path(p) => p.display().to_string(),
                },
            })
            .collect();
        packages.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        Self {
            format: FORMAT,
            reference: reference.to_string(),
            packages,
        }
    }

    /// Parses and checks a lockfile's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, LockError> {
        let lock: Self = serde_json::from_str(text).map_err(|source| LockError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        if lock.format != FORMAT {
            return Err(LockError::Format {
                path: path.to_path_buf(),
                found: lock.format,
            });
        }
        let mut seen = std::collections::HashSet::new();
        for p in &lock.packages {
            if !seen.insert((&p.name, &p.arch)) {
                return Err(LockError::Duplicate {
                    path: path.to_path_buf(),
                    name: p.name.clone(),
                });
            }
        }
        Ok(lock)
    }

    pub fn read(path: &Path) -> Result<Self, LockError> {
        let text = std::fs::read_to_string(path).map_err(|source| LockError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn to_json(&self) -> String {
        // Serializing plain strings and numbers cannot fail.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Writes the lockfile atomically (a temp file in the same directory, then rename).
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        let err = |source| LockError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
        std::io::Write::write_all(&mut tmp, self.to_json().as_bytes()).map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        Ok(())
    }

    /// `name=version` for every locked package: the exact request that reproduces the set.
    pub fn pinned_request(&self) -> Vec<String> {
        self.packages
            .iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect()
    }

    /// Checks that every locked package is still in the repos: `lookup(name, version, arch)`
    /// returns the sha256 of each candidate with that name, version and architecture; one must
    /// equal the locked sha256.
    pub fn check_available(
        &self,
        path: &Path,
        lookup: impl Fn(&str, &str, &str) -> Vec<String>,
    ) -> Result<(), LockError> {
        for locked in &self.packages {
            let found = lookup(&locked.name, &locked.version, &locked.arch);
            if found.contains(&locked.sha256) {
                continue;
            }
            return Err(match found.into_iter().next() {
                Some(other) => LockError::Checksum {
                    path: path.to_path_buf(),
                    name: locked.name.clone(),
                    version: locked.version.clone(),
                    locked: locked.sha256.clone(),
                    found: other,
                },
                None => LockError::Gone {
                    path: path.to_path_buf(),
                    name: locked.name.clone(),
                    version: locked.version.clone(),
                    arch: locked.arch.clone(),
                    sha256: locked.sha256.clone(),
                },
            });
        }
        Ok(())
    }

    /// Checks that `resolved` is exactly the locked set (same names, versions, architectures
    /// and sha256): a lockfile that is not closed under dependencies is refused.
    pub fn check_resolved(
        &self,
        path: &Path,
        resolved: &[ResolvedPackage],
    ) -> Result<(), LockError> {
        let got = Self::from_resolved(&self.reference, resolved);
        let key = |p: &LockedPackage| {
            (
                p.name.clone(),
                p.version.clone(),
                p.arch.clone(),
                p.sha256.clone(),
            )
        };
        let want: std::collections::BTreeSet<_> = self.packages.iter().map(key).collect();
        let have: std::collections::BTreeSet<_> = got.packages.iter().map(key).collect();
        if let Some((name, version, ..)) = have.difference(&want).next() {
            return Err(LockError::NotClosed {
                path: path.to_path_buf(),
                name: name.clone(),
                version: version.clone(),
            });
        }
        if let Some((name, version, arch, sha256)) = want.difference(&have).next() {
            return Err(LockError::Gone {
                path: path.to_path_buf(),
                name: name.clone(),
                version: version.clone(),
                arch: arch.clone(),
                sha256: sha256.clone(),
            });
        }
        Ok(())
    }
}

/// Where a compose writes its lockfile unless told otherwise:
/// `<repo's parent>/<ref with '/' replaced by '-'>.lock.json`.
pub fn default_path(repo: &Path, reference: &str) -> PathBuf {
    let repo = std::path::absolute(repo).unwrap_or_else(|_| repo.to_path_buf());
    let parent = repo
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    parent.join(format!("{}.lock.json", reference.replace('/', "-")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, sha: &str) -> ResolvedPackage {
        ResolvedPackage {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            sha256: sha.into(),
            size: 1,
            source: PackageSource::Url(format!("http://127.0.0.1/pool/{name}.deb")),
            repo: "debian".into(),
            essential: false,
            priority: "optional".into(),
            pre_depends: vec![],
            depends: vec![],
        }
    }

    #[test]
    fn round_trips_sorted_with_every_field() {
        let mut local = pkg("zz-local", "1.0", "cc");
        local.source = PackageSource::Path("/srv/overlay/zz.deb".into());
        local.repo = "overlay".into();
        let lock =
            Lockfile::from_resolved("keel/x", &[local, pkg("b", "2", "bb"), pkg("a", "1", "aa")]);
        let text = lock.to_json();
        let names: Vec<_> = lock.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "zz-local"]);
        for key in [
            "\"ref\": \"keel/x\"",
            "\"sha256\": \"aa\"",
            "\"url\": \"/srv/overlay/zz.deb\"",
            "\"repo\": \"overlay\"",
            "\"arch\": \"amd64\"",
        ] {
            assert!(text.contains(key), "{key} missing in {text}");
        }
        assert_eq!(
            Lockfile::parse(&text, Path::new("x.lock.json")).unwrap(),
            lock
        );
    }

    #[test]
    fn parse_errors_name_the_file_and_problem() {
        let p = Path::new("my.lock.json");
        let cases = [
            ("{", "my.lock.json: not a Keel lockfile"),
            (
                r#"{"format": 9, "ref": "r", "packages": []}"#,
                "format 9 is not supported",
            ),
            (
                r#"{"format": 1, "ref": "r", "packages": [], "extra": 1}"#,
                "unknown field `extra`",
            ),
        ];
        for (text, want) in cases {
            let msg = Lockfile::parse(text, p).unwrap_err().to_string();
            assert!(msg.contains(want), "{text}: {msg}");
        }
        let twice = Lockfile::from_resolved("r", &[pkg("a", "1", "aa"), pkg("a", "2", "ab")]);
        let msg = Lockfile::parse(&twice.to_json(), p)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("package a is listed twice"), "{msg}");
    }

    #[test]
    fn locked_packages_must_still_exist_with_their_checksum() {
        let lock = Lockfile::from_resolved("r", &[pkg("a", "1", "aa"), pkg("b", "2", "bb")]);
        let p = Path::new("r.lock.json");
        let lookup = |repos: &[ResolvedPackage], n: &str, v: &str, a: &str| -> Vec<String> {
            repos
                .iter()
                .filter(|p| p.name == n && p.version == v && p.arch == a)
                .map(|p| p.sha256.clone())
                .collect()
        };
        let repos = [
            pkg("a", "1", "aa"),
            pkg("b", "2", "bb"),
            pkg("b", "3", "b3"),
        ];
        lock.check_available(p, |n, v, a| lookup(&repos, n, v, a))
            .unwrap();

        let gone = [pkg("a", "1", "aa"), pkg("b", "3", "b3")];
        let msg = lock
            .check_available(p, |n, v, a| lookup(&gone, n, v, a))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("locked package b 2 (amd64, sha256 bb) is gone"),
            "{msg}"
        );

        let changed = [pkg("a", "1", "a-rebuilt"), pkg("b", "2", "bb")];
        let msg = lock
            .check_available(p, |n, v, a| lookup(&changed, n, v, a))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("package a 1 has sha256 a-rebuilt in the repos but aa"),
            "{msg}"
        );
        assert_eq!(lock.pinned_request(), ["a=1", "b=2"]);
    }

    #[test]
    fn resolution_must_be_exactly_the_locked_set() {
        let lock = Lockfile::from_resolved("r", &[pkg("a", "1", "aa"), pkg("b", "2", "bb")]);
        let p = Path::new("r.lock.json");
        lock.check_resolved(p, &[pkg("b", "2", "bb"), pkg("a", "1", "aa")])
            .unwrap();
        let msg = lock
            .check_resolved(
                p,
                &[
                    pkg("a", "1", "aa"),
                    pkg("b", "2", "bb"),
                    pkg("c", "3", "cc"),
                ],
            )
            .unwrap_err()
            .to_string();
        assert!(msg.contains("also need c 3, which is not locked"), "{msg}");
        let msg = lock
            .check_resolved(p, &[pkg("a", "1", "aa")])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("locked package b 2"), "{msg}");
    }

    #[test]
    fn default_path_sits_next_to_the_repo() {
        assert_eq!(
            default_path(Path::new("/srv/keel/repo"), "keel/bookworm/x86_64/host"),
            PathBuf::from("/srv/keel/keel-bookworm-x86_64-host.lock.json")
        );
    }
}
