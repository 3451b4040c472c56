//! Every package the resolver may choose from: the verified indices of the repositories plus
//! the local `.deb` directories, for one architecture (and `all`).

use super::control;
pub use super::index_text::{package_from_paragraph, parse_packages, IndexError, ParagraphError};
use super::inrelease::FileEntry;
use super::relation::{Group, Relation};
use super::sources::{LocalRepo, RepoSpec};
use super::version::Version;
use super::{download, index, inrelease, progress, AptError};
use crate::package::PackageSource;
use keel_io::command::CommandExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One binary package as an index describes it, with its relations parsed.
#[derive(Clone, Debug)]
pub struct Package {
    pub name: String,
    pub version: Version,
    pub arch: String,
    pub sha256: String,
    pub size: u64,
    pub source: PackageSource,
    /// The repository's short name (`RepoSpec::name` / `LocalRepo::name`).
    pub repo: String,
    /// Where exactly it came from, for messages: `debian (bookworm main)`.
    pub origin: String,
    pub essential: bool,
    pub priority: String,
    pub pre_depends: Vec<Group>,
    pub depends: Vec<Group>,
    pub recommends: Vec<Group>,
    /// Conflicts and Breaks, flattened (alternatives are not allowed there).
    pub conflicts: Vec<Relation>,
    /// Provided names with the provided version, if any (`Provides: foo (= 1.0)`).
    pub provides: Vec<(String, Option<Version>)>,
}

/// The packages of all repositories, indexed by name and by provided name.
#[derive(Debug, Default)]
pub struct Universe {
    arch: String,
    packages: Vec<Package>,
    by_name: HashMap<String, Vec<usize>>,
    providers: HashMap<String, Vec<usize>>,
    origins: Vec<String>,
}

impl Universe {
    /// Builds the indexes. Of several packages with the same name, version and architecture
    /// the first one listed is kept (repositories in the order given, local ones last).
    pub fn new(arch: &str, packages: Vec<Package>) -> Self {
        let mut universe = Universe {
            arch: arch.to_string(),
            packages: Vec::with_capacity(packages.len()),
            by_name: HashMap::with_capacity(packages.len()),
            ..Default::default()
        };
        for mut package in packages {
            if package.arch != arch && package.arch != "all" {
                continue;
            }
            // `[arch]` lists: an alternative for other architectures does not exist here,
            // and a group left with none is no dependency at all.
            for groups in [
                &mut package.pre_depends,
                &mut package.depends,
                &mut package.recommends,
            ] {
                for group in groups.iter_mut() {
                    group.retain(|r| r.applies_to(arch));
                }
                groups.retain(|g| !g.is_empty());
            }
            package.conflicts.retain(|r| r.applies_to(arch));
            let same = universe.by_name.get(&package.name).is_some_and(|ids| {
                ids.iter()
                    .any(|&i| universe.packages[i].version == package.version)
            });
            if same {
                continue;
            }
            if !universe.origins.contains(&package.origin) {
                universe.origins.push(package.origin.clone());
            }
            let id = universe.packages.len();
            universe
                .by_name
                .entry(package.name.clone())
                .or_default()
                .push(id);
            for (provided, _) in &package.provides {
                universe
                    .providers
                    .entry(provided.clone())
                    .or_default()
                    .push(id);
            }
            universe.packages.push(package);
        }
        universe
    }

    pub fn arch(&self) -> &str {
        &self.arch
    }

    pub fn packages(&self) -> &[Package] {
        &self.packages
    }

    pub fn package(&self, id: usize) -> &Package {
        &self.packages[id]
    }

    /// Ids of the real packages called `name`, in index order.
    pub fn by_name(&self, name: &str) -> &[usize] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// Ids of the packages that provide `name`.
    pub fn providers(&self, name: &str) -> &[usize] {
        self.providers.get(name).map_or(&[], Vec::as_slice)
    }

    /// The places packages came from, e.g. `debian (bookworm main)`, for messages.
    pub fn origins(&self) -> &[String] {
        &self.origins
    }
}

/// Loads the verified indices of `specs` for `arch` (and `all`) and the `.deb` files of
/// `locals`. Index files are cached in `cachedir` (`CacheDir::indices`); `InRelease` is always fetched
/// anew, so a changed repository is always noticed.
pub fn load(
    specs: &[RepoSpec],
    locals: &[LocalRepo],
    arch: &str,
    cachedir: &Path,
    progress: &dyn keel_common::progress::Progress,
) -> Result<Universe, AptError> {
    let suites = verify_suites(specs, arch, cachedir, &Freshness::default())?;
    load_verified(&suites, locals, arch, cachedir, progress)
}

/// How old a verified `InRelease` may be: it must not have expired (`Valid-Until`) at
/// `now`, and its `Date` must not be older than the last one the cache saw for the suite
/// unless `allow_older` (`keel-compose tree --allow-older-metadata`).
#[derive(Clone, Copy, Debug)]
pub struct Freshness {
    pub now: chrono::DateTime<chrono::Utc>,
    pub allow_older: bool,
}

impl Default for Freshness {
    /// Now, and no going back.
    fn default() -> Self {
        Self {
            now: chrono::Utc::now(),
            allow_older: false,
        }
    }
}

/// One suite of a repository whose `InRelease` was just fetched, signature-checked and found
/// current: its `files` are the hashes every index of the suite must match.
#[derive(Clone, Debug)]
pub struct VerifiedSuite {
    pub spec: RepoSpec,
    pub suite: String,
    /// `URL/dists/SUITE`.
    pub dists: String,
    pub release: inrelease::Release,
}

impl VerifiedSuite {
    /// The verified entries of `COMPONENT/binary-ARCH/Packages` in every compression the
    /// suite lists, sorted by name: whatever [`load_verified`] reads for this component is
    /// one of them.
    pub fn packages_entries(&self, component: &str, arch: &str) -> Vec<(&str, &FileEntry)> {
        let base = format!("{component}/binary-{arch}/Packages");
        let mut entries: Vec<(&str, &FileEntry)> = self
            .release
            .files
            .iter()
            .filter(|(name, _)| {
                name.strip_prefix(&base).is_some_and(|rest| {
                    rest.is_empty() || (rest.starts_with('.') && !rest.contains('/'))
                })
            })
            .map(|(name, entry)| (name.as_str(), entry))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries
    }
}

/// Fetches and checks the `InRelease` of every suite of `specs` that serves `arch` (signature
/// against the repository's keyring, suite name, `Valid-Until`, a `Date` not older than the
/// last one seen, see [`Freshness`]). Nothing else is read.
pub fn verify_suites(
    specs: &[RepoSpec],
    arch: &str,
    cachedir: &Path,
    freshness: &Freshness,
) -> Result<Vec<VerifiedSuite>, AptError> {
    let mut suites = Vec::new();
    for spec in specs {
        if !spec.architectures.is_empty() && !spec.architectures.iter().any(|a| a == arch) {
            continue;
        }
        for suite in &spec.suites {
            let dists = format!("{}/dists/{suite}", spec.url.trim_end_matches('/'));
            let release = fetch_release(spec, suite, &dists, cachedir, freshness)?;
            suites.push(VerifiedSuite {
                spec: spec.clone(),
                suite: suite.clone(),
                dists,
                release,
            });
        }
    }
    Ok(suites)
}

/// Reads the `Packages` index of every component of the verified `suites` (from the cache
/// when a file with the listed hash is there, else downloaded and checked), parses them and
/// adds the `.deb` files of `locals`.
pub fn load_verified(
    suites: &[VerifiedSuite],
    locals: &[LocalRepo],
    arch: &str,
    cachedir: &Path,
    progress: &dyn keel_common::progress::Progress,
) -> Result<Universe, AptError> {
    let mut packages = Vec::new();
    let steps = progress::Steps::new(progress, suites.len() as u64);
    for verified in suites {
        let spec = &verified.spec;
        let suite = &verified.suite;
        let dists = &verified.dists;
        for component in &spec.components {
            let origin = format!("{} ({suite} {component})", spec.name);
            let text = index::packages_text(dists, &verified.release, component, arch, cachedir)?
                .ok_or_else(|| AptError::NoIndex {
                url: spec.url.clone(),
                suite: suite.clone(),
                file: format!("{component}/binary-{arch}/Packages"),
            })?;
            let file = format!("{dists}/{component}/binary-{arch}/Packages");
            let (found, _skipped) =
                parse_packages(&text, &spec.url, &spec.name, &origin).map_err(|e| match e {
                    IndexError::BadName {
                        field,
                        value,
                        reason,
                    } => AptError::BadName {
                        repo: spec.name.clone(),
                        index: file.clone(),
                        field: field.as_str(),
                        value,
                        reason,
                    },
                    IndexError::Control(e) => AptError::Parse {
                        file: file.clone(),
                        detail: e.to_string(),
                    },
                })?;
            packages.extend(found);
        }
        steps.step();
    }
    for local in locals {
        packages.extend(local_packages(local)?);
    }
    Ok(Universe::new(arch, packages))
}

/// `InRelease` of one suite, signature-checked, kept in the cache (keyed by URL and hash, as
/// a record of what a compose used) and parsed.
fn fetch_release(
    spec: &RepoSpec,
    suite: &str,
    dists: &str,
    cachedir: &Path,
    freshness: &Freshness,
) -> Result<inrelease::Release, AptError> {
    let url = format!("{dists}/InRelease");
    let signed = download::get(&url)?;
    let bad_signature = |detail: String| AptError::BadSignature {
        url: spec.url.clone(),
        suite: suite.to_string(),
        keyring: spec.keyring.clone(),
        detail,
    };
    let text = inrelease::verify(&signed, &spec.keyring).map_err(bad_signature)?;
    let text = String::from_utf8(text).map_err(|e| AptError::Parse {
        file: url.clone(),
        detail: e.to_string(),
    })?;
    let parsed = inrelease::parse(&text).map_err(|detail| AptError::Parse {
        file: url.clone(),
        detail,
    })?;
    if !parsed.is_for(suite) {
        return Err(AptError::WrongSuite {
            url,
            suite: suite.to_string(),
            found: parsed.codename.or(parsed.suite).unwrap_or_default(),
        });
    }
    let expired = parsed
        .expired(freshness.now)
        .map_err(|detail| AptError::Parse {
            file: url.clone(),
            detail,
        })?;
    if expired {
        return Err(AptError::Expired {
            url: spec.url.clone(),
            suite: suite.to_string(),
            valid_until: parsed.valid_until.unwrap_or_default(),
        });
    }
    super::seen_dates::check_and_record(
        cachedir,
        &spec.url,
        suite,
        parsed.date.as_deref(),
        freshness.allow_older,
    )?;
    index::store(
        &index::cache_path(cachedir, &url, &index::sha256_hex(&signed)),
        &signed,
    )?;
    Ok(parsed)
}

/// The paths of the `.deb` files directly in a local repository directory, sorted: the
/// files [`local_packages`] reads.
pub fn local_deb_files(local: &LocalRepo) -> Result<Vec<PathBuf>, AptError> {
    let io = |source| AptError::Io {
        path: local.path.clone(),
        source,
    };
    let mut files: Vec<_> = std::fs::read_dir(&local.path)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    files.sort();
    Ok(files)
}

/// The `.deb` files directly in a local repository directory, read with `dpkg-deb -f`.
pub fn local_packages(local: &LocalRepo) -> Result<Vec<Package>, AptError> {
    let mut out = Vec::new();
    for file in local_deb_files(local)? {
        let local_err = |detail: String| AptError::Local {
            path: file.clone(),
            detail,
        };
        let control = std::process::Command::new("dpkg-deb")
            .arg("-f")
            .arg(&file)
            .run()
            .map_err(|e| local_err(e.to_string()))?;
        let bytes = std::fs::read(&file).map_err(|source| AptError::Io {
            path: file.clone(),
            source,
        })?;
        let mut text = String::from_utf8_lossy(&control).into_owned();
        text.push_str(&format!(
            "Filename: {}\nSHA256: {}\nSize: {}\n",
            file.display(),
            index::sha256_hex(&bytes),
            bytes.len()
        ));
        let paragraph = control::parse(&text)
            .map_err(|e| local_err(e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| local_err("empty control file".into()))?;
        let origin = format!("{} (local {})", local.name, local.path.display());
        let mut package =
            package_from_paragraph(&paragraph, "", &local.name, &origin).map_err(|e| match e {
                ParagraphError::BadName {
                    field,
                    value,
                    reason,
                } => local_err(format!(
                    "its {}: {value:?} is malformed: {reason}",
                    field.as_str()
                )),
                ParagraphError::Skipped(e) => local_err(e),
            })?;
        package.source = PackageSource::Path(file.clone());
        out.push(package);
    }
    Ok(out)
}
