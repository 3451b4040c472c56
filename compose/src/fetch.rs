//! Downloading the resolved `.deb` files into a cache keyed by their sha256.
//!
//! Layout: `<hex>.deb` in the cache directory's `CacheDir::debs` (`CACHEDIR/debs/sha256/`). A file is written to a temporary file in that
//! directory, hashed while it streams, synced, and renamed into place only when its sha256 is
//! the one the verified repository index promised; a mismatch leaves nothing behind. A file
//! already in the cache is hashed again before use, so a corrupted cache entry is detected,
//! removed and fetched again. Local `.deb` files ([`PackageSource::Path`]) enter the cache the
//! same way. Downloads run `jobs` at a time on plain threads, reporting bytes and packages to
//! the progress sink; a cancelled token stops them between packages and between reads.

use crate::package::{PackageSource, ResolvedPackage};
use keel_common::cancel::Cancel;
use keel_common::progress::Progress;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Temporary files older than this in the cache were left by a compose that was killed.
const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Attempts per URL when the transport fails (connection refused, reset, timeout, 5xx).
const ATTEMPTS: u32 = 3;

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
    #[error("package {package}: downloading {url} failed: {reason}; check the repository URL and the network, then retry")]
    Download {
        package: String,
        url: String,
        reason: String,
    },
    #[error("package {package}: its sha256 {sha256:?} is not 64 lowercase hex digits; the resolved package list is broken")]
    BadChecksum { package: String, sha256: String },
    #[error("package {package}: {action} {}: {source}", path.display())]
    Io {
        package: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fetching packages was cancelled")]
    Cancelled,
}

/// The cache path of a `.deb` with this sha256 in `cachedir` (`CacheDir::debs`).
pub fn cache_path(cachedir: &Path, sha256: &str) -> PathBuf {
    cachedir.join(format!("{sha256}.deb"))
}

/// Makes every package's `.deb` present and verified in `cachedir` (`CacheDir::debs`), `jobs`
/// downloads at a time, and returns their cache paths in the order of `packages`.
pub fn fetch(
    packages: &[ResolvedPackage],
    cachedir: &Path,
    jobs: usize,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> Result<Vec<PathBuf>, FetchError> {
    for p in packages {
        if !is_sha256_hex(&p.sha256) {
            return Err(FetchError::BadChecksum {
                package: p.name.clone(),
                sha256: p.sha256.clone(),
            });
        }
    }
    let dir = cachedir.to_path_buf();
    if let Err(source) = std::fs::create_dir_all(&dir) {
        return Err(FetchError::Io {
            package: packages.first().map(|p| p.name.clone()).unwrap_or_default(),
            action: "creating the cache directory",
            path: dir,
            source,
        });
    }
    remove_stale_temps(&dir, STALE_AFTER);
    let progress = Tally::new(packages, progress, cancel);
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(60))
        .build();
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
                let result = match cancel.check() {
                    Ok(()) => fetch_one(&agent, &packages[i], cachedir, &progress),
                    Err(_) => Err(FetchError::Cancelled),
                };
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
        Some(_) if cancel.is_cancelled() => Err(FetchError::Cancelled),
        Some(e) => Err(e),
        None => Ok(paths),
    }
}

/// Removes temporary download files (`.tmp*`) older than `age` from `dir`: best effort, as a
/// leftover only costs disk space. Younger ones may belong to a compose running right now.
fn remove_stale_temps(dir: &Path, age: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_temp = entry.file_name().to_string_lossy().starts_with(".tmp");
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age);
        if is_temp && old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Bytes and packages done so far, reported to the progress sink as they grow.
struct Tally<'a> {
    sink: &'a dyn Progress,
    cancel: &'a Cancel,
    bytes: AtomicU64,
    total_bytes: u64,
    packages: AtomicU64,
    total_packages: u64,
}

impl<'a> Tally<'a> {
    fn new(packages: &[ResolvedPackage], sink: &'a dyn Progress, cancel: &'a Cancel) -> Self {
        Self {
            sink,
            cancel,
            bytes: AtomicU64::new(0),
            total_bytes: packages.iter().map(|p| p.size).sum(),
            packages: AtomicU64::new(0),
            total_packages: packages.len() as u64,
        }
    }

    fn add_bytes(&self, n: u64) {
        let done = self.bytes.fetch_add(n, Ordering::SeqCst) + n;
        self.sink.bytes(done, Some(self.total_bytes));
    }

    /// Forgets the bytes of a failed attempt, so the total stays honest.
    fn forget_bytes(&self, n: u64) {
        let done = self.bytes.fetch_sub(n, Ordering::SeqCst).saturating_sub(n);
        self.sink.bytes(done, Some(self.total_bytes));
    }

    fn package_done(&self) {
        let done = self.packages.fetch_add(1, Ordering::SeqCst) + 1;
        self.sink.items(done, Some(self.total_packages));
    }
}

fn fetch_one(
    agent: &ureq::Agent,
    package: &ResolvedPackage,
    cachedir: &Path,
    progress: &Tally,
) -> Result<PathBuf, FetchError> {
    let dest = cache_path(cachedir, &package.sha256);
    let io = |action, path: &Path| {
        let package = package.name.clone();
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
            progress.add_bytes(package.size);
            progress.package_done();
            return Ok(dest);
        }
        progress.sink.warning(&format!(
            "cached {} has sha256 {actual}, expected {}; fetching {} again",
            dest.display(),
            package.sha256,
            package.name
        ));
        std::fs::remove_file(&dest).map_err(io("removing the corrupt cached", &dest))?;
    }
    let dir = dest.parent().unwrap_or(cachedir);
    let (temp, actual, url) = match &package.source {
        PackageSource::Path(path) => {
            let file = std::fs::File::open(path).map_err(io("opening", path))?;
            let temp =
                tempfile::NamedTempFile::new_in(dir).map_err(io("creating a file in", dir))?;
            let (temp, actual) = copy_hashing(file, temp, progress, &mut 0)
                .map_err(io("copying into the cache", path))?;
            (temp, actual, path.display().to_string())
        }
        PackageSource::Url(url) => {
            let mut attempt = 1;
            loop {
                match download(agent, package, url, dir, progress) {
                    Ok((temp, actual)) => break (temp, actual, url.clone()),
                    Err(Retry::Later(reason)) if attempt < ATTEMPTS => {
                        progress
                            .sink
                            .warning(&format!("{url}: {reason}; retrying ({attempt}/{ATTEMPTS})"));
                        std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
                        attempt += 1;
                    }
                    Err(Retry::Later(reason)) | Err(Retry::Never(reason)) => {
                        return Err(FetchError::Download {
                            package: package.name.clone(),
                            url: url.clone(),
                            reason,
                        })
                    }
                    Err(Retry::Io(e)) => return Err(e),
                }
            }
        }
    };
    if actual != package.sha256 {
        // Dropping `temp` deletes the partial file.
        return Err(FetchError::Checksum {
            package: package.name.clone(),
            url,
            expected: package.sha256.clone(),
            actual,
        });
    }
    temp.as_file()
        .sync_all()
        .map_err(io("syncing", temp.path()))?;
    temp.persist(&dest)
        .map_err(|e| e.error)
        .map_err(io("renaming into", &dest))?;
    progress.package_done();
    Ok(dest)
}

enum Retry {
    Later(String),
    Never(String),
    Io(FetchError),
}

fn download(
    agent: &ureq::Agent,
    package: &ResolvedPackage,
    url: &str,
    dir: &Path,
    progress: &Tally,
) -> Result<(tempfile::NamedTempFile, String), Retry> {
    let response = match agent.get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(code, _)) if code >= 500 => {
            return Err(Retry::Later(format!("HTTP status {code}")))
        }
        Err(ureq::Error::Status(code, _)) => {
            return Err(Retry::Never(format!("HTTP status {code}")))
        }
        Err(ureq::Error::Transport(t)) => return Err(Retry::Later(t.to_string())),
    };
    let temp = tempfile::NamedTempFile::new_in(dir).map_err(|source| {
        Retry::Io(FetchError::Io {
            package: package.name.clone(),
            action: "creating a file in",
            path: dir.to_path_buf(),
            source,
        })
    })?;
    let mut copied = 0;
    match copy_hashing(response.into_reader(), temp, progress, &mut copied) {
        Ok(done) => Ok(done),
        Err(e) => {
            progress.forget_bytes(copied);
            if progress.cancel.is_cancelled() {
                return Err(Retry::Io(FetchError::Cancelled));
            }
            Err(Retry::Later(format!("reading the body: {e}")))
        }
    }
}

/// Copies `reader` into `temp`, hashing and counting (into `copied` and `progress`) on the
/// way; stops with an error when the fetch is cancelled.
fn copy_hashing(
    mut reader: impl Read,
    mut temp: tempfile::NamedTempFile,
    progress: &Tally,
    copied: &mut u64,
) -> std::io::Result<(tempfile::NamedTempFile, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if progress.cancel.is_cancelled() {
            return Err(std::io::Error::other("cancelled"));
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        temp.write_all(&buf[..n])?;
        *copied += n as u64;
        progress.add_bytes(n as u64);
    }
    Ok((temp, hex::encode(hasher.finalize())))
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

#[cfg(test)]
mod tests {
    use super::*;

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
            cache_path(Path::new("/c/debs"), "ff"),
            PathBuf::from("/c/debs/ff.deb")
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
    fn only_old_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join(".tmpOLD");
        let young = dir.path().join(".tmpNEW");
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
        remove_stale_temps(dir.path(), STALE_AFTER);
        assert!(!old.exists());
        assert!(young.exists() && kept.exists());
    }

    fn local_package(dir: &Path, name: &str, content: &[u8]) -> ResolvedPackage {
        let path = dir.join(format!("{name}.deb"));
        std::fs::write(&path, content).unwrap();
        ResolvedPackage {
            name: name.into(),
            version: "1".into(),
            arch: "amd64".into(),
            sha256: hash_reader(content).unwrap(),
            size: content.len() as u64,
            source: PackageSource::Path(path),
            repo: "test".into(),
            essential: false,
            priority: "optional".into(),
            pre_depends: Vec::new(),
            depends: Vec::new(),
        }
    }

    #[test]
    fn progress_counts_bytes_and_packages_up_to_their_totals() {
        use keel_common::progress::{Event, Recorder};
        let dir = tempfile::tempdir().unwrap();
        let packages = [
            local_package(dir.path(), "a", &[1; 3000]),
            local_package(dir.path(), "b", &[2; 5000]),
        ];
        let sink = Recorder::default();
        let cache = dir.path().join("cache");
        fetch(&packages, &cache, 2, &Cancel::new(), &sink).unwrap();
        let events = sink.events();
        assert_eq!(
            events
                .iter()
                .rev()
                .find(|e| matches!(e, Event::Items { .. })),
            Some(&Event::Items {
                done: 2,
                total: Some(2)
            })
        );
        let most_bytes = events
            .iter()
            .filter_map(|e| match e {
                Event::Bytes { done, total } => Some((*done, *total)),
                _ => None,
            })
            .max();
        assert_eq!(most_bytes, Some((8000, Some(8000))));
    }

    #[test]
    fn a_cancelled_fetch_fetches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let packages = [local_package(dir.path(), "a", b"deb")];
        let cancel = Cancel::new();
        cancel.cancel();
        let cache = dir.path().join("cache");
        let err = fetch(
            &packages,
            &cache,
            1,
            &cancel,
            &keel_common::progress::Discard,
        )
        .unwrap_err();
        assert!(matches!(err, FetchError::Cancelled), "{err}");
        assert!(!cache_path(&cache, &packages[0].sha256).exists());
    }
}
