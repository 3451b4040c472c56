//! Which configuration drop-ins apply: the files named `*.toml` in each `config.d` directory,
//! merged by file name across the directories, as systemd and Zincati do. A file in a later
//! directory shadows a same-named file in an earlier one; a file that is a symlink to
//! `/dev/null` masks the name (no file of that name applies). The files that apply are read
//! in the order of their names, whatever directory they came from.
//!
//! [`resolve`] is the pure rule; [`scan`] lists the directories and calls it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One `*.toml` entry found in a `config.d` directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The file's name, the key shadowing works on.
    pub name: String,
    pub path: PathBuf,
    /// A symlink to `/dev/null`: the name is masked.
    pub masked: bool,
}

/// The files that apply, in merge order, from the entries of each directory given lowest
/// priority first.
pub fn resolve(dirs: Vec<Vec<Entry>>) -> Vec<PathBuf> {
    let mut by_name: BTreeMap<String, Entry> = BTreeMap::new();
    for entries in dirs {
        for entry in entries {
            by_name.insert(entry.name.clone(), entry);
        }
    }
    by_name
        .into_values()
        .filter(|e| !e.masked)
        .map(|e| e.path)
        .collect()
}

/// The `*.toml` entries of `dir` (none when it does not exist).
pub fn entries(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in listing {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".toml") {
            continue;
        }
        let masked = std::fs::read_link(&path).is_ok_and(|t| t == Path::new("/dev/null"));
        if !masked && !path.is_file() {
            continue;
        }
        found.push(Entry {
            name: name.to_string(),
            path,
            masked,
        });
    }
    Ok(found)
}

/// The drop-ins that apply under `dirs` (lowest priority first).
pub fn scan(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, ScanError> {
    let mut listed = Vec::with_capacity(dirs.len());
    for dir in dirs {
        listed.push(entries(dir).map_err(|source| ScanError {
            dir: dir.clone(),
            source,
        })?);
    }
    Ok(resolve(listed))
}

#[derive(Debug, thiserror::Error)]
#[error("listing {}: {source}", .dir.display())]
pub struct ScanError {
    pub dir: PathBuf,
    #[source]
    pub source: std::io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: &str, name: &str, masked: bool) -> Entry {
        Entry {
            name: name.into(),
            path: PathBuf::from(dir).join(name),
            masked,
        }
    }

    #[test]
    fn later_directories_shadow_and_dev_null_masks() {
        let cases: Vec<(Vec<Vec<Entry>>, Vec<&str>)> = vec![
            (vec![], vec![]),
            (
                vec![vec![entry("lib", "10-a.toml", false)], vec![]],
                vec!["lib/10-a.toml"],
            ),
            (
                vec![
                    vec![
                        entry("lib", "10-a.toml", false),
                        entry("lib", "30-c.toml", false),
                    ],
                    vec![
                        entry("etc", "20-b.toml", false),
                        entry("etc", "10-a.toml", false),
                    ],
                ],
                vec!["etc/10-a.toml", "etc/20-b.toml", "lib/30-c.toml"],
            ),
            (
                vec![
                    vec![entry("lib", "10-a.toml", false)],
                    vec![entry("run", "10-a.toml", true)],
                ],
                vec![],
            ),
            (
                vec![
                    vec![entry("lib", "10-a.toml", false)],
                    vec![entry("run", "10-a.toml", true)],
                    vec![entry("etc", "10-a.toml", false)],
                ],
                vec!["etc/10-a.toml"],
            ),
        ];
        for (dirs, want) in cases {
            let got = resolve(dirs.clone());
            let want: Vec<PathBuf> = want.into_iter().map(PathBuf::from).collect();
            assert_eq!(got, want, "{dirs:?}");
        }
    }

    #[test]
    fn scan_reads_real_directories_and_symlinks_to_dev_null() {
        let root = tempfile::tempdir().unwrap();
        let lib = root.path().join("lib");
        let etc = root.path().join("etc");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(lib.join("10-a.toml"), "").unwrap();
        std::fs::write(lib.join("20-b.toml"), "").unwrap();
        std::fs::write(lib.join("README"), "").unwrap();
        std::os::unix::fs::symlink("/dev/null", etc.join("20-b.toml")).unwrap();
        let got = scan(&[lib.clone(), root.path().join("missing"), etc]).unwrap();
        assert_eq!(got, vec![lib.join("10-a.toml")]);
    }
}
