//! A fetched `.deb` must be the package its verified index entry describes: the control
//! data inside it (`Package`, `Version`, `Architecture`) is read with `dpkg-deb --field`,
//! checked against Debian's syntax ([`super::names`]) and compared with the index entry
//! the resolver chose. The sha256 already ties the file to the index; this catches an index
//! that lists one package's file under another's name (a mistake or a hostile repository),
//! before dpkg installs it under a name nobody asked for. What was read is kept per sha256
//! ([`record_path`]).

use super::{control, names};
use crate::package::{PackageSource, ResolvedPackage};
use keel_io::command::{CommandError, CommandExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fetched `.deb` that is not what its index entry says; names the package as the index
/// gave it.
#[derive(Debug, thiserror::Error)]
#[error("package {package} {version} from repository {repo}: {problem}")]
pub struct DebControlError {
    pub package: String,
    pub version: String,
    pub repo: String,
    pub problem: Box<Problem>,
}

#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error(
        "its .deb ({source_of}) says {field}: {in_deb}, but the repository's index says \
         {field}: {in_index}; the repository is inconsistent or tampered with, refusing the \
         package (ask its maintainer to fix the index, or remove the repository)"
    )]
    Mismatch {
        source_of: String,
        field: &'static str,
        in_index: String,
        in_deb: String,
    },
    #[error(
        "its .deb ({source_of}) has {field} {value:?}, which is malformed: {reason}; refusing \
         the package"
    )]
    BadField {
        source_of: String,
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "reading the control data of {} failed: {source}; the file is not a valid .deb",
        .deb.display()
    )]
    Read { deb: PathBuf, source: CommandError },
}

fn error(package: &ResolvedPackage, problem: Problem) -> DebControlError {
    DebControlError {
        package: package.name.clone(),
        version: package.version.clone(),
        repo: package.repo.clone(),
        problem: Box::new(problem),
    }
}

const FIELDS: [names::Field; 3] = [
    names::Field::Package,
    names::Field::Version,
    names::Field::Architecture,
];

/// Where the control fields read from the `.deb` with this sha256 are kept, so a warm
/// compose does not run `dpkg-deb` again for every package (~10 ms of CPU each): a file's
/// control data cannot change while its sha256 does not, and the cache is private (0700).
/// Layout: `DEBS/<sha256>.control` beside the `.deb` (see [`crate::fetch`]), the
/// `dpkg-deb --field` output.
pub fn record_path(debs_dir: &Path, sha256: &str) -> PathBuf {
    debs_dir.join(format!("{sha256}.control"))
}

/// Checks every `debs[i]` against `packages[i]`, a few at a time; `debs_dir` keeps what was
/// read (see [`record_path`]).
pub fn check_fetched(
    packages: &[ResolvedPackage],
    debs: &[PathBuf],
    debs_dir: &Path,
) -> Result<(), DebControlError> {
    let jobs = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    let chunk = packages.len().div_ceil(jobs).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = packages
            .chunks(chunk)
            .zip(debs.chunks(chunk))
            .map(|(packages, debs)| {
                scope.spawn(move || {
                    packages
                        .iter()
                        .zip(debs)
                        .try_for_each(|(package, deb)| check(package, deb, debs_dir))
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

/// Checks one `.deb` (at `deb`, with the sha256 `package` names) against the index entry
/// `package`.
pub fn check(
    package: &ResolvedPackage,
    deb: &Path,
    debs_dir: &Path,
) -> Result<(), DebControlError> {
    let source_of = match &package.source {
        PackageSource::Url(url) => url.clone(),
        PackageSource::Path(path) => path.display().to_string(),
    };
    let record = record_path(debs_dir, &package.sha256);
    if let Ok(text) = std::fs::read_to_string(&record) {
        return compare(package, &text, &source_of);
    }
    let output = Command::new("dpkg-deb")
        .arg("--field")
        .arg(deb)
        .args(FIELDS.map(names::Field::as_str))
        .run()
        .map_err(|source| {
            error(
                package,
                Problem::Read {
                    deb: deb.to_path_buf(),
                    source,
                },
            )
        })?;
    let text = String::from_utf8_lossy(&output);
    compare(package, &text, &source_of)?;
    // Only a match is kept; a record that cannot be written costs the next compose a rerun.
    let _ = super::index::store(&record, text.as_bytes());
    Ok(())
}

/// Compares `dpkg-deb --field` output `text` with the index entry `package`.
fn compare(package: &ResolvedPackage, text: &str, source_of: &str) -> Result<(), DebControlError> {
    let paragraph = control::parse(text)
        .ok()
        .and_then(|p| p.into_iter().next())
        .unwrap_or_default();
    for field in FIELDS {
        let value = paragraph.get(field.as_str()).unwrap_or_default();
        if let Err(reason) = field.check(value) {
            return Err(error(
                package,
                Problem::BadField {
                    source_of: source_of.to_string(),
                    field: field.as_str(),
                    value: value.to_string(),
                    reason,
                },
            ));
        }
        let in_index = match field {
            names::Field::Package => &package.name,
            names::Field::Version => &package.version,
            names::Field::Architecture => &package.arch,
        };
        if value != in_index {
            return Err(error(
                package,
                Problem::Mismatch {
                    source_of: source_of.to_string(),
                    field: field.as_str(),
                    in_index: in_index.clone(),
                    in_deb: value.to_string(),
                },
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, version: &str, arch: &str) -> ResolvedPackage {
        ResolvedPackage {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            sha256: "00".repeat(32),
            size: 1,
            source: PackageSource::Url("http://127.0.0.1/pool/a.deb".into()),
            repo: "extra".into(),
            essential: false,
            priority: "optional".into(),
            pre_depends: Vec::new(),
            depends: Vec::new(),
        }
    }

    #[test]
    fn control_data_must_match_the_index_and_the_syntax() {
        let index = package("hello", "1:1.0-1", "amd64");
        let control =
            |p: &str, v: &str, a: &str| format!("Package: {p}\nVersion: {v}\nArchitecture: {a}\n");
        let cases = [
            (control("hello", "1:1.0-1", "amd64"), None),
            (
                control("evil", "1:1.0-1", "amd64"),
                Some("says Package: evil, but the repository's index says Package: hello"),
            ),
            (
                control("hello", "2.0", "amd64"),
                Some("says Version: 2.0, but the repository's index says Version: 1:1.0-1"),
            ),
            (
                control("hello", "1:1.0-1", "all"),
                Some("Architecture: all"),
            ),
            (
                control("../../x", "1:1.0-1", "amd64"),
                Some("has Package \"../../x\", which is malformed"),
            ),
            (
                "Package: hello\n".to_string(),
                Some("has Version \"\", which is malformed"),
            ),
        ];
        for (text, want) in cases {
            let got = compare(&index, &text, "http://127.0.0.1/pool/a.deb");
            match want {
                None => assert!(got.is_ok(), "{text}: {got:?}"),
                Some(want) => {
                    let e = got.unwrap_err().to_string();
                    assert!(e.contains(want), "{text}: {e}");
                    assert!(
                        e.starts_with("package hello 1:1.0-1 from repository extra"),
                        "{e}"
                    );
                }
            }
        }
    }
}
