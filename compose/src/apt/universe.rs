//! Every package the resolver may choose from: the verified indices of the repositories plus
//! the local `.deb` directories, for one architecture (and `all`).

use super::control::{self, Paragraph};
use super::relation::{self, Group, Relation};
use super::release::FileEntry;
use super::sources::{LocalRepo, RepoSpec};
use super::version::Version;
use super::{cmd, download, index, progress, release, AptError};
use crate::package::PackageSource;
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

/// Turns one paragraph of an index (or `dpkg-deb -f` output) into a [`Package`].
/// `source` is where the `.deb` is; for archive indices pass `None` to use
/// `base_url/Filename`.
pub fn package_from_paragraph(
    p: &Paragraph,
    base_url: &str,
    repo: &str,
    origin: &str,
) -> Result<Package, String> {
    let field = |name: &str| p.get(name).ok_or_else(|| format!("no {name}: field"));
    let name = field("Package")?.to_string();
    let in_pkg = |e: String| format!("package {name}: {e}");
    let version: Version = field("Version")
        .map_err(in_pkg)?
        .parse()
        .map_err(|e: super::version::VersionError| in_pkg(e.to_string()))?;
    let relations = |f: &str| -> Result<Vec<Group>, String> {
        relation::parse_field(p.get(f).unwrap_or_default())
            .map_err(|e| format!("package {name}: {f}: {e}"))
    };
    let mut conflicts: Vec<Relation> = relations("Conflicts")?.into_iter().flatten().collect();
    conflicts.extend(relations("Breaks")?.into_iter().flatten());
    let provides = relations("Provides")?
        .into_iter()
        .flatten()
        .map(|r| (r.name, r.constraint.map(|(_, v)| v)))
        .collect();
    let filename = field("Filename").map_err(in_pkg)?;
    Ok(Package {
        arch: field("Architecture").map_err(in_pkg)?.to_string(),
        sha256: field("SHA256").map_err(in_pkg)?.to_ascii_lowercase(),
        size: field("Size")
            .map_err(in_pkg)?
            .parse()
            .map_err(|_| in_pkg("Size is not a number".into()))?,
        source: PackageSource::Url(format!("{}/{}", base_url.trim_end_matches('/'), filename)),
        repo: repo.to_string(),
        origin: origin.to_string(),
        essential: p
            .get("Essential")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
        priority: p.get("Priority").unwrap_or("optional").to_string(),
        pre_depends: relations("Pre-Depends")?,
        depends: relations("Depends")?,
        recommends: relations("Recommends")?,
        conflicts,
        provides,
        version,
        name,
    })
}

/// Parses a whole `Packages` text; paragraphs that do not parse are skipped and their
/// errors returned beside the packages (Debian's own tools skip them too). A big index is
/// cut at paragraph boundaries and parsed on up to [`MAX_THREADS`] cores; the result is the
/// same as parsing it in one go.
pub fn parse_packages(
    text: &str,
    base_url: &str,
    repo: &str,
    origin: &str,
) -> Result<(Vec<Package>, Vec<String>), control::ControlError> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = cores.min(MAX_THREADS).min(text.len() / MIN_PIECE).max(1);
    parse_packages_in(text, threads, base_url, repo, origin)
}

/// Threads [`parse_packages`] uses at most (bookworm's main index takes ~0.3 s on one).
const MAX_THREADS: usize = 4;

/// Smaller pieces are not worth a thread.
const MIN_PIECE: usize = 1 << 20;

/// [`parse_packages`] with `text` cut into at most `pieces` pieces, parsed concurrently
/// and concatenated in order. A piece that fails to parse as control text makes the whole
/// text be parsed again in one go, so the error's line number counts from its start.
fn parse_packages_in(
    text: &str,
    pieces: usize,
    base_url: &str,
    repo: &str,
    origin: &str,
) -> Result<(Vec<Package>, Vec<String>), control::ControlError> {
    let pieces = control::split_at_paragraphs(text, pieces);
    if pieces.len() == 1 {
        return parse_piece(text, base_url, repo, origin);
    }
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = pieces
            .iter()
            .map(|piece| scope.spawn(move || parse_piece(piece, base_url, repo, origin)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect()
    });
    let mut packages = Vec::new();
    let mut skipped = Vec::new();
    for result in results {
        let Ok((found, errors)) = result else {
            return parse_piece(text, base_url, repo, origin);
        };
        packages.extend(found);
        skipped.extend(errors);
    }
    Ok((packages, skipped))
}

fn parse_piece(
    text: &str,
    base_url: &str,
    repo: &str,
    origin: &str,
) -> Result<(Vec<Package>, Vec<String>), control::ControlError> {
    let mut packages = Vec::new();
    let mut skipped = Vec::new();
    control::for_each(text, |p| {
        match package_from_paragraph(p, base_url, repo, origin) {
            Ok(pkg) => packages.push(pkg),
            Err(e) => skipped.push(e),
        }
    })?;
    Ok((packages, skipped))
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
    let suites = verify_suites(specs, arch, cachedir)?;
    load_verified(&suites, locals, arch, cachedir, progress)
}

/// One suite of a repository whose `InRelease` was just fetched, signature-checked and found
/// current: its `files` are the hashes every index of the suite must match.
#[derive(Clone, Debug)]
pub struct VerifiedSuite {
    pub spec: RepoSpec,
    pub suite: String,
    /// `URL/dists/SUITE`.
    pub dists: String,
    pub release: release::Release,
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
/// against the repository's keyring, suite name, `Valid-Until`). Nothing else is read.
pub fn verify_suites(
    specs: &[RepoSpec],
    arch: &str,
    cachedir: &Path,
) -> Result<Vec<VerifiedSuite>, AptError> {
    let mut suites = Vec::new();
    for spec in specs {
        if !spec.architectures.is_empty() && !spec.architectures.iter().any(|a| a == arch) {
            continue;
        }
        for suite in &spec.suites {
            let dists = format!("{}/dists/{suite}", spec.url.trim_end_matches('/'));
            let release = fetch_release(spec, suite, &dists, cachedir)?;
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
            let (found, _skipped) =
                parse_packages(&text, &spec.url, &spec.name, &origin).map_err(|e| {
                    AptError::Parse {
                        file: format!("{dists}/{component}/binary-{arch}/Packages"),
                        detail: e.to_string(),
                    }
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
) -> Result<release::Release, AptError> {
    let url = format!("{dists}/InRelease");
    let signed = download::get(&url)?;
    let bad_signature = |detail: String| AptError::BadSignature {
        url: spec.url.clone(),
        suite: suite.to_string(),
        keyring: spec.keyring.clone(),
        detail,
    };
    let text = release::verify(&signed, &spec.keyring).map_err(bad_signature)?;
    let text = String::from_utf8(text).map_err(|e| AptError::Parse {
        file: url.clone(),
        detail: e.to_string(),
    })?;
    let parsed = release::parse(&text).map_err(|detail| AptError::Parse {
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
        .expired(chrono::Utc::now())
        .map_err(|detail| AptError::Parse {
            file: url.clone(),
            detail,
        })?;
    if expired {
        return Err(AptError::Expired {
            url,
            valid_until: parsed.valid_until.unwrap_or_default(),
        });
    }
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
        let control = cmd::run(std::process::Command::new("dpkg-deb").arg("-f").arg(&file))
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
            package_from_paragraph(&paragraph, "", &local.name, &origin).map_err(local_err)?;
        package.source = PackageSource::Path(file.clone());
        out.push(package);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "\
Package: a
Version: 1.0
Architecture: amd64
Priority: required
Essential: yes
Pre-Depends: b (>= 2)
Depends: c | d, e:any
Breaks: f (<< 3)
Conflicts: g
Provides: virt (= 1.0), other
Filename: pool/main/a/a_1.0_amd64.deb
Size: 10
SHA256: AB

Package: a
Version: 1.0
Architecture: amd64
Filename: pool/dup.deb
Size: 1
SHA256: cd

Package: i386-only
Version: 1
Architecture: i386
Filename: pool/x.deb
Size: 1
SHA256: ef

Package: broken
Version: not-a-version
Architecture: all
Filename: pool/y.deb
Size: 1
SHA256: 00
";

    #[test]
    fn reads_an_index_into_a_universe() {
        let (packages, skipped) =
            parse_packages(INDEX, "http://m/debian/", "debian", "debian (s main)").unwrap();
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("broken"), "{skipped:?}");
        let u = Universe::new("amd64", packages);
        assert_eq!(u.packages().len(), 1, "duplicate and foreign arch dropped");
        let a = u.package(u.by_name("a")[0]);
        assert_eq!(
            a.source,
            PackageSource::Url("http://m/debian/pool/main/a/a_1.0_amd64.deb".into())
        );
        assert_eq!(a.sha256, "ab");
        assert!(a.essential);
        assert_eq!(a.priority, "required");
        assert_eq!(a.pre_depends.len(), 1);
        assert_eq!(a.depends.len(), 2);
        assert_eq!(a.depends[0].len(), 2);
        assert_eq!(a.conflicts.len(), 2);
        assert_eq!(u.providers("virt"), &[0]);
        assert_eq!(u.providers("other"), &[0]);
        assert_eq!(
            a.provides[0].1.as_ref().map(|v| v.to_string()),
            Some("1.0".into())
        );
        assert_eq!(u.origins(), ["debian (s main)"]);
        assert!(u.by_name("nope").is_empty());
    }

    /// An index whose paragraphs end in every way `control::parse` allows, with packages
    /// that fail to parse among them.
    fn awkward_index(count: usize) -> String {
        let mut text = String::new();
        let ends = [
            "\n\n",
            "\n  \n",
            "\n\t\n\n",
            "\r\n\r\n",
            "\n \n# comment\n\n",
        ];
        for i in 0..count {
            let version = if i % 7 == 3 { "bad version" } else { "1.0" };
            text.push_str(&format!(
                "Package: p{i}\nVersion: {version}\nArchitecture: amd64\n\
                 Depends: p{} (>= 1) | other, libc6\nDescription: p{i}\n long\n .\n text\n\
                 Filename: pool/p{i}.deb\nSize: {i}\nSHA256: {i:064x}",
                i + 1
            ));
            if i + 1 < count {
                text.push_str(ends[i % ends.len()]);
            }
        }
        text
    }

    #[test]
    fn parallel_parse_equals_sequential_parse() {
        let text = awkward_index(60);
        assert!(!text.ends_with('\n'), "the last paragraph has no newline");
        let (packages, skipped) = parse_piece(&text, "http://127.0.0.1/", "r", "o").unwrap();
        assert_eq!(packages.len() + skipped.len(), 60);
        assert_eq!(skipped.len(), 9);
        for pieces in [2, 3, 4, 7, 60, 100] {
            let (got, got_skipped) =
                parse_packages_in(&text, pieces, "http://127.0.0.1/", "r", "o").unwrap();
            assert_eq!(
                format!("{got:?}"),
                format!("{packages:?}"),
                "{pieces} pieces"
            );
            assert_eq!(got_skipped, skipped, "{pieces} pieces");
        }
    }

    #[test]
    fn parallel_parse_reports_control_errors_with_whole_text_line_numbers() {
        let mut text = awkward_index(20);
        text.push_str("\n\n continuation without a field\n");
        let want = parse_piece(&text, "", "r", "o").unwrap_err();
        assert!(
            matches!(want, control::ControlError::OrphanContinuation { line, .. } if line > 100),
            "{want}"
        );
        for pieces in [2, 4, 8] {
            assert_eq!(
                parse_packages_in(&text, pieces, "", "r", "o").unwrap_err(),
                want
            );
        }
    }
}
