//! Downloading the resolved `.deb` files into a cache keyed by their sha256.
//!
//! Layout: `DEBS/<hex>.deb`, where DEBS is the cache directory's `debs/sha256/`
//! ([`crate::cachedir::CacheDir::debs`]), with `<hex>.control` beside it (what
//! [`crate::apt::deb_control`] read from it). Every file comes through keel-io's HTTP client
//! (a local `.deb`, [`PackageSource::Path`], as a `file://` URL): written to `<hex>.deb.part`,
//! hashed while it streams, capped at the size the index lists, synced, and renamed into
//! place only when its sha256 is the one the verified repository index promised; a mismatch
//! or any other failure leaves nothing behind. A file already in the cache is hashed again
//! before use, so a corrupted cache entry is detected, removed and fetched again. Downloads
//! run `jobs` at a time on plain threads and report bytes and packages to the caller's
//! progress sink; the caller's cancellation token stops them between reads.
//!
//! Every error names the package (name, version, repository) and says what to do.

use crate::package::{PackageSource, ResolvedPackage};
use keel_common::cancel::Cancel;
use keel_common::progress::{Event, Progress};
use keel_io::http::{self, Client, Download, HttpError, Limits};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Part files older than this in the cache were left by a compose that was killed.
const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The cap for a package whose index lists no size.
const MAX_UNSIZED: u64 = 4 << 30;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "package {package}: {url} has sha256 {actual}, but the repository index promises \
         {expected}; the mirror is corrupt or was tampered with: retry later or use another mirror"
    )]
    Checksum {
        package: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("package {package}: {source}; {hint}")]
    Download {
        package: String,
        #[source]
        source: HttpError,
        hint: &'static str,
    },
    #[error("package {package}: its sha256 {sha256:?} is not 64 lowercase hex digits; the resolved package list is broken")]
    BadChecksum { package: String, sha256: String },
    #[error(transparent)]
    Control(#[from] crate::apt::deb_control::DebControlError),
    #[error("package {package}: {action} {}: {source}; check that the cache directory is writable and has space, or remove that file", path.display())]
    Io {
        package: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fetching packages was cancelled (at package {package}); the packages fetched so far stay in the cache")]
    Cancelled { package: String },
}

/// `name version (repo R)`: how errors name a package.
fn describe(package: &ResolvedPackage) -> String {
    format!(
        "{} {} (repository {})",
        package.name, package.version, package.repo
    )
}

/// What to do about a failed download, by kind.
fn hint(error: &HttpError) -> &'static str {
    match error {
        HttpError::NotFound { .. } => {
            "the repository no longer has this file: its index in the cache is older than the \
             mirror, so compose again to refresh it, or pin a version the mirror still has"
        }
        HttpError::TooLarge { .. } => {
            "the mirror serves a bigger file than its index lists: the mirror is inconsistent \
             or tampered with, retry later or use another mirror"
        }
        HttpError::Io { .. } => {
            "check that the cache directory is writable and has space, and for a local package \
             that its file is readable"
        }
        HttpError::BadUrl { .. } => "check the repository's URL in the treefile or apt sources",
        _ => "check the repository URL, the network and any proxy (http_proxy, https_proxy), then retry",
    }
}

/// The cache path of a `.deb` with this sha256.
pub fn cache_path(debs: &Path, sha256: &str) -> PathBuf {
    debs.join(format!("{sha256}.deb"))
}

/// Makes every package's `.deb` present and verified in `cachedir`, `jobs` downloads at a time,
/// and returns their cache paths in the order of `packages`. Reports [`Event::Bytes`] (all
/// packages together) and [`Event::Items`] (packages done) to `progress`.
pub fn fetch(
    client: &Client,
    packages: &[ResolvedPackage],
    cachedir: &Path,
    jobs: usize,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<Vec<PathBuf>, FetchError> {
    for p in packages {
        if !is_sha256_hex(&p.sha256) {
            return Err(FetchError::BadChecksum {
                package: describe(p),
                sha256: p.sha256.clone(),
            });
        }
    }
    let dir = cachedir.to_path_buf();
    if let Err(source) = std::fs::create_dir_all(&dir) {
        return Err(FetchError::Io {
            package: packages.first().map(describe).unwrap_or_default(),
            action: "creating the cache directory",
            path: dir,
            source,
        });
    }
    remove_stale_parts(&dir, STALE_AFTER);
    let tally = Tally {
        outer: progress,
        bytes: AtomicU64::new(0),
        total_bytes: packages.iter().map(|p| p.size).sum(),
        done: AtomicU64::new(0),
        total: packages.len() as u64,
    };
    tally.report_items();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<PathBuf, FetchError>>>> =
        Mutex::new((0..packages.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, packages.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= packages.len() || failed.load(Ordering::SeqCst) {
                    break;
                }
                let result = fetch_one(client, &packages[i], cachedir, &tally, cancel);
                if result.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(result);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut paths = Vec::with_capacity(packages.len());
    let mut first_error = None;
    for result in results.into_iter().flatten() {
        match result {
            Ok(path) => paths.push(path),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(
            crate::apt::deb_control::check_fetched(packages, &paths, cachedir).map(|()| paths)?,
        ),
    }
}

/// Removes part files (`*.part`) older than `age` from `dir`: best effort, as a leftover only
/// costs disk space. Younger ones may belong to a compose running right now.
fn remove_stale_parts(dir: &Path, age: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_part = entry.file_name().to_string_lossy().ends_with(".part");
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age);
        if is_part && old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The progress of all downloads together, fed by each download's own byte counts.
struct Tally<'a> {
    outer: &'a dyn Progress,
    bytes: AtomicU64,
    total_bytes: u64,
    done: AtomicU64,
    total: u64,
}

impl Tally<'_> {
    fn add_bytes(&self, delta: i64) {
        let now = if delta >= 0 {
            self.bytes.fetch_add(delta as u64, Ordering::SeqCst) + delta as u64
        } else {
            let back = delta.unsigned_abs();
            self.bytes
                .fetch_sub(back, Ordering::SeqCst)
                .saturating_sub(back)
        };
        self.outer.bytes(now, Some(self.total_bytes));
    }

    fn package_done(&self) {
        self.done.fetch_add(1, Ordering::SeqCst);
        self.report_items();
    }

    fn report_items(&self) {
        self.outer
            .items(self.done.load(Ordering::SeqCst), Some(self.total));
    }
}

/// One download's view of the [`Tally`]: turns "this file has N bytes so far" into additions
/// to the total, and takes them back when a retry starts the file over.
struct OneFile<'a, 'b> {
    tally: &'a Tally<'b>,
    counted: AtomicU64,
}

impl Progress for OneFile<'_, '_> {
    fn report(&self, event: Event) {
        match event {
            Event::Bytes { done, .. } => {
                let before = self.counted.swap(done, Ordering::SeqCst);
                self.tally.add_bytes(done as i64 - before as i64);
            }
            other => self.tally.outer.report(other),
        }
    }
}

impl OneFile<'_, '_> {
    /// Takes back what a failed download had counted.
    fn forget(&self) {
        let counted = self.counted.swap(0, Ordering::SeqCst);
        self.tally.add_bytes(-(counted as i64));
    }
}

fn fetch_one(
    client: &Client,
    package: &ResolvedPackage,
    cachedir: &Path,
    tally: &Tally,
    cancel: &Cancel,
) -> Result<PathBuf, FetchError> {
    let dest = cache_path(cachedir, &package.sha256);
    let io = |action, path: &Path| {
        let package = describe(package);
        let path = path.to_path_buf();
        move |source| FetchError::Io {
            package,
            action,
            path,
            source,
        }
    };
    if dest.exists() {
        let file = std::fs::File::open(&dest).map_err(io("opening the cached", &dest))?;
        let actual = hash_reader(file).map_err(io("reading the cached", &dest))?;
        if actual == package.sha256 {
            tally.add_bytes(package.size as i64);
            tally.package_done();
            return Ok(dest);
        }
        tally.outer.warning(&format!(
            "package {}: the cached {} has sha256 {actual}, expected {}; fetching it again",
            describe(package),
            dest.display(),
            package.sha256,
        ));
        std::fs::remove_file(&dest).map_err(io("removing the corrupt cached", &dest))?;
    }
    let url = match &package.source {
        PackageSource::Url(url) => url.clone(),
        PackageSource::Path(path) => {
            let path = std::path::absolute(path).map_err(io("finding", path))?;
            format!("file://{}", path.display())
        }
    };
    let cap = if package.size > 0 {
        package.size
    } else {
        MAX_UNSIZED
    };
    let how = Download::new(Limits::max_bytes(cap)).sha256(&package.sha256);
    let progress = OneFile {
        tally,
        counted: AtomicU64::new(0),
    };
    match client.download(&url, &dest, &how, &progress, cancel) {
        Ok(_) => {
            tally.package_done();
            Ok(dest)
        }
        Err(e) => {
            progress.forget();
            Err(download_error(package, e))
        }
    }
}

fn download_error(package: &ResolvedPackage, error: HttpError) -> FetchError {
    match error {
        HttpError::Checksum {
            url,
            expected,
            actual,
        } => FetchError::Checksum {
            package: describe(package),
            url,
            expected,
            actual,
        },
        HttpError::Cancelled { .. } => FetchError::Cancelled {
            package: describe(package),
        },
        source => FetchError::Download {
            package: describe(package),
            hint: hint(&source),
            source,
        },
    }
}

/// The lowercase hex sha256 of everything `reader` yields.
pub fn hash_reader(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut reader, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where a package's download is written until it is complete and verified.
pub fn part_path(cachedir: &Path, sha256: &str) -> PathBuf {
    http::part_path(&cache_path(cachedir, sha256))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_common::progress::Recorder;
    use keel_tests::http::FileServer;

    /// Serves `count` small files as packages of repository `test`.
    fn served(count: usize) -> (tempfile::TempDir, FileServer, Vec<ResolvedPackage>) {
        let dir = tempfile::tempdir().unwrap();
        let server = FileServer::serve(dir.path()).unwrap();
        let packages = (0..count)
            .map(|i| {
                // Real packages: fetch checks each .deb's control data against its entry.
                let deb = keel_tests::deb::Deb::new(&format!("p{i}"), &format!("1.{i}"))
                    .file("usr/share/p/data", vec![i as u8; 10_000 + i]);
                let built = deb.build(dir.path()).unwrap();
                std::fs::rename(&built, dir.path().join(format!("p{i}.deb"))).unwrap();
                let bytes = std::fs::read(dir.path().join(format!("p{i}.deb"))).unwrap();
                ResolvedPackage {
                    name: format!("p{i}"),
                    version: format!("1.{i}"),
                    arch: "amd64".into(),
                    sha256: hex::encode(Sha256::digest(&bytes)),
                    size: bytes.len() as u64,
                    source: PackageSource::Url(format!("{}/p{i}.deb", server.url())),
                    repo: "test".into(),
                    essential: false,
                    priority: "optional".into(),
                    pre_depends: vec![],
                    depends: vec![],
                }
            })
            .collect();
        (dir, server, packages)
    }

    #[test]
    fn progress_counts_every_byte_and_package_once() {
        let (_dir, _server, packages) = served(3);
        let cache = tempfile::tempdir().unwrap();
        let client = Client::from_env().unwrap();
        let sink = Recorder::default();
        fetch(&client, &packages, cache.path(), 2, &sink, &Cancel::new()).unwrap();
        let total: u64 = packages.iter().map(|p| p.size).sum();
        let events = sink.events();
        let last_bytes = events.iter().rev().find_map(|e| match e {
            Event::Bytes { done, total } => Some((*done, *total)),
            _ => None,
        });
        assert_eq!(last_bytes, Some((total, Some(total))));
        assert_eq!(
            events.last(),
            Some(&Event::Items {
                done: 3,
                total: Some(3)
            })
        );
    }

    #[test]
    fn a_cancelled_fetch_names_a_package_and_leaves_no_part_files() {
        let (_dir, _server, packages) = served(2);
        let cache = tempfile::tempdir().unwrap();
        let cancel = Cancel::new();
        cancel.cancel();
        let err = fetch(
            &Client::from_env().unwrap(),
            &packages,
            cache.path(),
            1,
            &Recorder::default(),
            &cancel,
        )
        .unwrap_err();
        assert!(matches!(err, FetchError::Cancelled { .. }), "{err}");
        assert!(
            err.to_string().contains("p0 1.0 (repository test)"),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_file_missing_on_the_server_names_the_package_and_what_to_do() {
        let (dir, _server, packages) = served(1);
        std::fs::remove_file(dir.path().join("p0.deb")).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let err = fetch(
            &Client::from_env().unwrap(),
            &packages,
            cache.path(),
            1,
            &Recorder::default(),
            &Cancel::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("package p0 1.0 (repository test): http://127.0.0.1:")
                && err.contains("/p0.deb: not found (HTTP 404); ")
                && err.contains("compose again to refresh it"),
            "{err}"
        );
    }

    #[test]
    fn checksums_must_be_lowercase_hex_of_the_right_length() {
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex("abc"));
        assert!(!is_sha256_hex(&"zz".repeat(32)));
    }

    #[test]
    fn cache_paths_are_keyed_by_checksum() {
        assert_eq!(
            cache_path(Path::new("/c"), "ff"),
            PathBuf::from("/c/ff.deb")
        );
        assert_eq!(
            part_path(Path::new("/c"), "ff"),
            PathBuf::from("/c/ff.deb.part")
        );
    }

    #[test]
    fn hashes_like_sha256sum() {
        assert_eq!(
            hash_reader(&b"abc"[..]).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn only_old_part_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("aa.deb.part");
        let young = dir.path().join("bb.deb.part");
        let kept = dir.path().join("aa.deb");
        for path in [&old, &young, &kept] {
            std::fs::write(path, "x").unwrap();
        }
        let past = std::time::SystemTime::now() - Duration::from_secs(48 * 3600);
        for path in [&old, &kept] {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(past)
                .unwrap();
        }
        remove_stale_parts(dir.path(), STALE_AFTER);
        assert!(!old.exists());
        assert!(young.exists() && kept.exists());
    }

    #[test]
    fn the_tally_adds_up_files_and_takes_back_a_failed_attempt() {
        let sink = Recorder::default();
        let tally = Tally {
            outer: &sink,
            bytes: AtomicU64::new(0),
            total_bytes: 300,
            done: AtomicU64::new(0),
            total: 2,
        };
        let a = OneFile {
            tally: &tally,
            counted: AtomicU64::new(0),
        };
        let b = OneFile {
            tally: &tally,
            counted: AtomicU64::new(0),
        };
        a.bytes(100, Some(100));
        b.bytes(50, Some(200));
        // b's first attempt broke off and its retry starts over.
        b.bytes(0, Some(200));
        b.bytes(200, Some(200));
        tally.package_done();
        assert_eq!(
            sink.events().iter().rev().nth(1),
            Some(&Event::Bytes {
                done: 300,
                total: Some(300)
            })
        );
        b.forget();
        assert_eq!(tally.bytes.load(Ordering::SeqCst), 100);
        assert_eq!(
            sink.events().iter().rev().nth(1),
            Some(&Event::Items {
                done: 1,
                total: Some(2)
            })
        );
    }

    #[test]
    fn errors_name_the_package_its_version_and_repository() {
        let package = ResolvedPackage {
            name: "hello".into(),
            version: "2.10-3".into(),
            arch: "amd64".into(),
            sha256: "ab".repeat(32),
            size: 1,
            source: PackageSource::Url("http://127.0.0.1:9/hello.deb".into()),
            repo: "debian".into(),
            essential: false,
            priority: "optional".into(),
            pre_depends: vec![],
            depends: vec![],
        };
        let e = download_error(
            &package,
            HttpError::NotFound {
                url: "http://127.0.0.1:9/hello.deb".into(),
                status: Some(404),
            },
        );
        let text = e.to_string();
        assert!(
            text.starts_with("package hello 2.10-3 (repository debian): http://127.0.0.1:9/hello.deb: not found (HTTP 404); "),
            "{text}"
        );
        assert!(text.contains("compose again"), "{text}");
    }
}
