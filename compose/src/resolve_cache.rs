//! The resolution cache: `resolve` reuses the package set of an earlier identical resolution
//! instead of parsing the package indices and running the solver again.
//!
//! Soundness comes first. Every suite's `InRelease` is fetched anew and checked (signature,
//! suite, `Valid-Until`, a `Date` not older than the last one seen) before the cache is looked at, so a bad or replayed repository fails
//! exactly as without a cache. The key then covers everything the result depends on:
//!
//! - per suite: the repository's name and URL, the suite, each component in order, and the
//!   sha256 and size the verified `InRelease` lists for that component's `Packages` index in
//!   every compression (the file read is one of them, and must match its hash);
//! - per local repository: its name and path, and the path, size and sha256 of every `.deb`
//!   file in it (their whole content, not their timestamps);
//! - the architecture, the request (packages, exclude, recommends, base-system repos), the
//!   lockfile's content;
//! - Keel's version, this cache's format, and the identity of the running executable (path,
//!   size, modification time), so a rebuilt resolver never reads its predecessor's results.
//!
//! Entries are JSON files `KEY.json` in the cache directory's `CacheDir::resolutions`, written atomically; an entry that
//! cannot be read or parsed, or names another key, is a miss. Only the [`KEEP`] most recently
//! used entries are kept. Errors are those of an uncached resolution, unchanged. A resolution
//! that cannot be stored is reported as a warning to the progress sink.

use crate::apt::depsolve::{self, Request};
use crate::apt::index;
use crate::apt::universe::{self, Freshness, VerifiedSuite};
use crate::apt::{LocalRepo, RepoSpec};
use crate::cachedir::CacheDir;
use crate::package::ResolvedPackage;
use crate::release::inputs::COMPOSER_VERSION;
use crate::release::lockfile::Lockfile;
use anyhow::Context;
use keel_common::progress::Progress;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The format of keys and entries; bump it when either changes meaning.
pub const FORMAT: u32 = 2;

/// How many entries stay in the cache (the most recently used).
pub const KEEP: usize = 20;

pub use crate::format::Resolution;

/// Where packages come from: the repositories (apt specs and local `.deb` directories) and
/// the architecture to resolve for.
#[derive(Clone, Copy, Debug)]
pub struct Sources<'a> {
    pub specs: &'a [RepoSpec],
    pub locals: &'a [LocalRepo],
    pub arch: &'a str,
}

/// Resolves `request` (or the lockfile) against the repositories, reusing the result of an
/// earlier identical resolution stored in `cachedir` when every input is unchanged.
///
/// Errors are those of [`universe::load`] (with the context "loading the repositories'
/// package indices"), [`depsolve::resolve`] (no context: the caller names the treefile) and
/// [`crate::release::steps::resolve_locked`].
pub fn resolve(
    sources: &Sources,
    cachedir: &CacheDir,
    request: &Request,
    locked: Option<&(Lockfile, PathBuf)>,
    freshness: &Freshness,
    progress: &dyn Progress,
) -> anyhow::Result<Resolution> {
    const LOADING: &str = "loading the repositories' package indices";
    let Sources {
        specs,
        locals,
        arch,
    } = *sources;
    let indices = cachedir.indices();
    let suites = universe::verify_suites(specs, arch, &indices, freshness).context(LOADING)?;
    let lockfile = locked.map(|(lock, _)| lock);
    // A local repository that cannot be read gives no key; the uncached path below then
    // reports the problem as it always did.
    let key = key_of(&suites, locals, arch, request, lockfile);
    let dir = cachedir.resolutions();
    if let Some(packages) = key.as_deref().and_then(|key| read_entry(&dir, key)) {
        return Ok(Resolution {
            packages,
            cache_hit: true,
        });
    }
    let universe =
        universe::load_verified(&suites, locals, arch, &indices, progress).context(LOADING)?;
    let packages = match locked {
        Some((lock, path)) => crate::release::steps::resolve_locked(&universe, lock, path)?,
        None => depsolve::resolve(&universe, request)?,
    };
    // Store only if the local `.deb` files did not change while they were being read.
    if let Some(key) = key {
        if key_of(&suites, locals, arch, request, lockfile).as_deref() == Some(key.as_str()) {
            if let Err(e) = write_entry(&dir, &key, &packages) {
                progress.warning(&format!("not caching the resolution: {e:#}"));
            }
        }
    }
    Ok(Resolution {
        packages,
        cache_hit: false,
    })
}

fn key_of(
    suites: &[VerifiedSuite],
    locals: &[LocalRepo],
    arch: &str,
    request: &Request,
    lockfile: Option<&Lockfile>,
) -> Option<String> {
    let composer_build = composer_build()?;
    let locals = locals
        .iter()
        .map(local_key)
        .collect::<std::io::Result<Vec<_>>>()
        .ok()?;
    let inputs = KeyInputs {
        format: FORMAT,
        composer_version: COMPOSER_VERSION.to_string(),
        composer_build,
        arch: arch.to_string(),
        request: RequestKey {
            packages: request.packages.clone(),
            exclude: request.exclude.clone(),
            recommends: request.recommends,
            base_system: request.base_system.clone(),
        },
        lockfile: lockfile.cloned(),
        suites: suites.iter().map(|s| suite_key(s, arch)).collect(),
        locals,
    };
    inputs.key()
}

/// Everything a resolution's result depends on, gathered after the indices were verified.
#[derive(Clone, Debug, Serialize)]
pub struct KeyInputs {
    pub format: u32,
    pub composer_version: String,
    /// The running executable's identity (see [`composer_build`]).
    pub composer_build: String,
    pub arch: String,
    pub request: RequestKey,
    pub lockfile: Option<Lockfile>,
    pub suites: Vec<SuiteKey>,
    pub locals: Vec<LocalKey>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RequestKey {
    pub packages: Vec<String>,
    pub exclude: Vec<String>,
    pub recommends: bool,
    pub base_system: depsolve::BaseSystem,
}

/// One verified suite: what of its `InRelease` the result depends on.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteKey {
    pub repo: String,
    pub url: String,
    pub suite: String,
    pub components: Vec<ComponentKey>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ComponentKey {
    pub component: String,
    /// `(name relative to dists/SUITE, sha256, size)` of each listed `Packages` file.
    pub indices: Vec<(String, String, u64)>,
}

/// One local repository and the content of its `.deb` files.
#[derive(Clone, Debug, Serialize)]
pub struct LocalKey {
    pub name: String,
    /// Raw bytes of the path (paths need not be UTF-8).
    pub path: Vec<u8>,
    /// `(raw path bytes, size, sha256)` of each `.deb`, in the order they are read.
    pub debs: Vec<(Vec<u8>, u64, String)>,
}

impl KeyInputs {
    /// The key: lowercase hex sha256 of the inputs' JSON (field order is fixed by the types).
    /// `None` if they cannot be serialized; then nothing is cached.
    pub fn key(&self) -> Option<String> {
        let json = serde_json::to_vec(self).ok()?;
        Some(index::sha256_hex(&json))
    }
}

/// The key part of one verified suite.
pub fn suite_key(suite: &VerifiedSuite, arch: &str) -> SuiteKey {
    SuiteKey {
        repo: suite.spec.name.clone(),
        url: suite.spec.url.clone(),
        suite: suite.suite.clone(),
        components: suite
            .spec
            .components
            .iter()
            .map(|component| ComponentKey {
                component: component.clone(),
                indices: suite
                    .packages_entries(component, arch)
                    .into_iter()
                    .map(|(name, entry)| (name.to_string(), entry.sha256.clone(), entry.size))
                    .collect(),
            })
            .collect(),
    }
}

/// The key part of one local repository: hashes every `.deb` [`universe::local_packages`]
/// reads.
pub fn local_key(local: &LocalRepo) -> std::io::Result<LocalKey> {
    let files = universe::local_deb_files(local).map_err(std::io::Error::other)?;
    let mut debs = Vec::new();
    for file in files {
        let mut hasher = Sha256::new();
        let mut reader = std::fs::File::open(&file)?;
        let size = std::io::copy(&mut reader, &mut hasher)?;
        debs.push((
            file.as_os_str().as_encoded_bytes().to_vec(),
            size,
            hex::encode(hasher.finalize()),
        ));
    }
    Ok(LocalKey {
        name: local.name.clone(),
        path: local.path.as_os_str().as_encoded_bytes().to_vec(),
        debs,
    })
}

/// The running executable's path, size and modification time: a rebuilt composer (a changed
/// resolver with the same version number) gets new keys. `None` when it cannot be read; then
/// nothing is cached.
pub fn composer_build() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let meta = std::fs::metadata(&exe).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?;
    Some(format!(
        "{}\t{}\t{}",
        exe.display(),
        meta.len(),
        modified.as_nanos()
    ))
}

/// What an entry file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    format: u32,
    key: String,
    packages: Vec<ResolvedPackage>,
}

fn entry_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.json"))
}

/// The packages stored under `key`, if a valid entry is there; marks it as just used.
pub fn read_entry(dir: &Path, key: &str) -> Option<Vec<ResolvedPackage>> {
    let path = entry_path(dir, key);
    let bytes = std::fs::read(&path).ok()?;
    let entry: Entry = serde_json::from_slice(&bytes).ok()?;
    if entry.format != FORMAT || entry.key != key {
        return None;
    }
    // Best effort: the modification time orders entries for pruning.
    if let Ok(file) = std::fs::File::options().write(true).open(&path) {
        let _ = file.set_modified(SystemTime::now());
    }
    Some(entry.packages)
}

/// Stores `packages` under `key` (temp file + rename), then prunes to the [`KEEP`] most
/// recently used entries.
pub fn write_entry(dir: &Path, key: &str, packages: &[ResolvedPackage]) -> anyhow::Result<()> {
    let entry = Entry {
        format: FORMAT,
        key: key.to_string(),
        packages: packages.to_vec(),
    };
    let json = serde_json::to_vec(&entry).context("serializing the resolution")?;
    let path = entry_path(dir, key);
    index::store(&path, &json).with_context(|| format!("writing {}", path.display()))?;
    prune(dir, KEEP).with_context(|| format!("pruning {}", dir.display()))
}

/// Removes all but the `keep` most recently modified entries of `dir`.
fn prune(dir: &Path, keep: usize) -> std::io::Result<()> {
    let mut entries = Vec::new();
    for dirent in std::fs::read_dir(dir)? {
        let dirent = dirent?;
        let path = dirent.path();
        if path.extension().is_some_and(|e| e == "json") {
            let modified = dirent.metadata()?.modified()?;
            entries.push((modified, path));
        }
    }
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    for (_, path) in entries.into_iter().skip(keep) {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apt::inrelease::{FileEntry, Release};
    use crate::package::PackageSource;
    use crate::release::lockfile::LockedPackage;
    use std::time::Duration;

    fn verified(files: &[(&str, &str)]) -> VerifiedSuite {
        VerifiedSuite {
            spec: RepoSpec {
                name: "debian".into(),
                url: "http://127.0.0.1:1/debian".into(),
                suites: vec!["bookworm".into()],
                components: vec!["main".into(), "contrib".into()],
                architectures: vec![],
                keyring: "/k.gpg".into(),
            },
            suite: "bookworm".into(),
            dists: "http://127.0.0.1:1/debian/dists/bookworm".into(),
            release: Release {
                files: files
                    .iter()
                    .map(|(name, sha)| {
                        let entry = FileEntry {
                            sha256: sha.to_string(),
                            size: 7,
                        };
                        (name.to_string(), entry)
                    })
                    .collect(),
                ..Default::default()
            },
        }
    }

    fn lockfile(version: &str) -> Lockfile {
        Lockfile {
            format: 1,
            reference: "keel/test".into(),
            packages: vec![LockedPackage {
                name: "app".into(),
                version: version.into(),
                arch: "amd64".into(),
                sha256: "aa".into(),
                repo: "debian".into(),
                url: "http://127.0.0.1:1/app.deb".into(),
            }],
        }
    }

    fn base() -> KeyInputs {
        let suite = verified(&[("main/binary-amd64/Packages.xz", "11")]);
        KeyInputs {
            format: FORMAT,
            composer_version: "0.1.0".into(),
            composer_build: "/bin/keel-compose\t1\t2".into(),
            arch: "amd64".into(),
            request: RequestKey {
                packages: vec!["systemd".into()],
                exclude: vec![],
                recommends: false,
                base_system: Default::default(),
            },
            lockfile: None,
            suites: vec![suite_key(&suite, "amd64")],
            locals: vec![LocalKey {
                name: "overlay".into(),
                path: b"/srv/debs".to_vec(),
                debs: vec![(b"/srv/debs/a.deb".to_vec(), 3, "aa".into())],
            }],
        }
    }

    #[test]
    fn every_input_changes_the_key() {
        let key = base().key().unwrap();
        assert_eq!(
            Some(key.clone()),
            base().key(),
            "the same inputs give the same key"
        );
        type Change = (&'static str, fn(&mut KeyInputs));
        let changes: Vec<Change> = vec![
            ("format", |k| k.format += 1),
            ("composer version", |k| k.composer_version = "0.2.0".into()),
            ("composer build", |k| k.composer_build.push('3')),
            ("arch", |k| k.arch = "arm64".into()),
            ("packages", |k| k.request.packages.push("podman".into())),
            ("exclude", |k| {
                k.request.exclude.push("systemd-timesyncd".into())
            }),
            ("recommends", |k| k.request.recommends = true),
            ("base-system repos", |k| {
                k.request.base_system = depsolve::BaseSystem::Repos(Default::default())
            }),
            ("a lockfile", |k| k.lockfile = Some(lockfile("1"))),
            ("index hash", |k| {
                k.suites[0].components[0].indices[0].1 = "12".into()
            }),
            ("index size", |k| {
                k.suites[0].components[0].indices[0].2 += 1
            }),
            ("repo url", |k| k.suites[0].url.push('2')),
            ("repo name", |k| k.suites[0].repo = "other".into()),
            ("suite", |k| k.suites[0].suite = "trixie".into()),
            ("component order", |k| k.suites[0].components.reverse()),
            ("another suite", |k| {
                let again = k.suites[0].clone();
                k.suites.push(again)
            }),
            ("local deb content", |k| k.locals[0].debs[0].2 = "ab".into()),
            ("local deb size", |k| k.locals[0].debs[0].1 += 1),
            ("local deb path", |k| k.locals[0].debs[0].0.push(b'x')),
            ("local deb added", |k| {
                k.locals[0]
                    .debs
                    .push((b"/srv/debs/b.deb".to_vec(), 1, "bb".into()))
            }),
            ("local name", |k| k.locals[0].name = "mine".into()),
            ("local path", |k| k.locals[0].path.push(b'2')),
        ];
        for (what, change) in changes {
            let mut inputs = base();
            change(&mut inputs);
            assert_ne!(
                inputs.key(),
                Some(key.clone()),
                "{what} must change the key"
            );
        }
        let mut locked = base();
        locked.lockfile = Some(lockfile("1"));
        let mut relocked = base();
        relocked.lockfile = Some(lockfile("2"));
        assert_ne!(locked.key(), relocked.key(), "the lockfile's content");
    }

    #[test]
    fn suite_key_lists_every_compression_of_the_components_index_only() {
        let suite = verified(&[
            ("main/binary-amd64/Packages", "p"),
            ("main/binary-amd64/Packages.xz", "x"),
            ("main/binary-amd64/Packages.gz", "g"),
            ("main/binary-amd64/Packages.diff/Index", "d"),
            ("main/binary-arm64/Packages.xz", "a"),
            ("main/i18n/Translation-en.xz", "t"),
            ("contrib/binary-amd64/Packages.xz", "c"),
        ]);
        let key = suite_key(&suite, "amd64");
        let names = |i: usize| -> Vec<(String, String)> {
            key.components[i]
                .indices
                .iter()
                .map(|(n, s, _)| (n.clone(), s.clone()))
                .collect()
        };
        assert_eq!(key.components[0].component, "main");
        assert_eq!(
            names(0),
            [
                ("main/binary-amd64/Packages".to_string(), "p".to_string()),
                ("main/binary-amd64/Packages.gz".into(), "g".into()),
                ("main/binary-amd64/Packages.xz".into(), "x".into()),
            ]
        );
        assert_eq!(
            names(1),
            [(
                "contrib/binary-amd64/Packages.xz".to_string(),
                "c".to_string()
            )]
        );
    }

    #[test]
    fn local_key_follows_deb_content_not_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalRepo {
            name: "overlay".into(),
            path: dir.path().to_path_buf(),
        };
        let deb = dir.path().join("a_1_amd64.deb");
        std::fs::write(&deb, b"one").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        let first = local_key(&local).unwrap();
        assert_eq!(first.debs.len(), 1);
        assert_eq!(first.debs[0].2, index::sha256_hex(b"one"));
        std::fs::write(dir.path().join("notes.txt"), b"changed").unwrap();
        let file = std::fs::File::options().write(true).open(&deb).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(local_key(&local).unwrap().debs, first.debs);
        std::fs::write(&deb, b"two").unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH).unwrap();
        assert_ne!(local_key(&local).unwrap().debs, first.debs);
        let gone = LocalRepo {
            name: "gone".into(),
            path: dir.path().join("missing"),
        };
        assert!(local_key(&gone).is_err());
    }

    fn package(name: &str) -> ResolvedPackage {
        ResolvedPackage {
            name: name.into(),
            version: "1".into(),
            arch: "amd64".into(),
            sha256: "aa".into(),
            size: 1,
            source: PackageSource::Url("http://127.0.0.1:1/a.deb".into()),
            repo: "debian".into(),
            essential: false,
            priority: "optional".into(),
            pre_depends: vec![],
            depends: vec![],
        }
    }

    #[test]
    fn entries_round_trip_and_bad_ones_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let packages = vec![package("a"), package("b")];
        assert_eq!(read_entry(dir.path(), "k1"), None, "nothing stored yet");
        write_entry(dir.path(), "k1", &packages).unwrap();
        assert_eq!(read_entry(dir.path(), "k1"), Some(packages.clone()));
        std::fs::write(entry_path(dir.path(), "k2"), b"{\"format\": 1, \"ke").unwrap();
        assert_eq!(read_entry(dir.path(), "k2"), None, "truncated");
        std::fs::copy(entry_path(dir.path(), "k1"), entry_path(dir.path(), "k3")).unwrap();
        assert_eq!(read_entry(dir.path(), "k3"), None, "names another key");
        std::fs::create_dir(entry_path(dir.path(), "k4")).unwrap();
        assert_eq!(read_entry(dir.path(), "k4"), None, "not a file");
    }

    #[test]
    fn pruning_keeps_the_most_recently_used_entries() {
        let dir = tempfile::tempdir().unwrap();
        let start = SystemTime::now() - Duration::from_secs(3600);
        for i in 0..KEEP {
            let key = format!("k{i}");
            write_entry(dir.path(), &key, &[package("a")]).unwrap();
            let file = std::fs::File::options()
                .write(true)
                .open(entry_path(dir.path(), &key))
                .unwrap();
            file.set_modified(start + Duration::from_secs(i as u64))
                .unwrap();
        }
        // Reading the oldest entry makes it the newest; each write beyond KEEP then drops
        // the least recently used one.
        assert!(read_entry(dir.path(), "k0").is_some());
        for i in KEEP..KEEP + 3 {
            write_entry(dir.path(), &format!("k{i}"), &[package("a")]).unwrap();
        }
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, KEEP);
        assert!(entry_path(dir.path(), "k0").exists());
        for gone in ["k1", "k2", "k3"] {
            assert!(!entry_path(dir.path(), gone).exists(), "{gone}");
        }
        assert!(entry_path(dir.path(), "k4").exists());
    }
}
