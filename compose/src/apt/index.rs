//! `COMPONENT/binary-ARCH/Packages{.xz,.gz,}`: downloaded only as listed in a verified
//! Release file, checked against its size and sha256, cached by URL and hash, decompressed.
//! The decompressed text is cached too, under the hash the Release lists for it.

use super::download;
use super::inrelease::{FileEntry, Release};
use super::AptError;
use keel_io::http::HttpError;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Compressions tried, best first.
const COMPRESSIONS: [&str; 3] = [".xz", ".gz", ""];

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Where a verified index file with this URL and hash is cached in `cachedir` (the cache
/// directory's `CacheDir::indices`).
pub fn cache_path(cachedir: &Path, url: &str, sha256: &str) -> PathBuf {
    let key = sha256_hex(url.as_bytes());
    cachedir.join(format!("{}-{}", &key[..16], sha256))
}

/// Returns the text of `COMPONENT/binary-ARCH/Packages` of `dists_url` (`.../dists/SUITE`),
/// from the cache when a file with the hash `release` names is there, else downloaded and
/// checked. A suite that lists no Packages file for this component and architecture gives
/// `Ok(None)`.
///
/// A compressed index is decompressed once: its text is kept in the cache under the hash
/// `release` lists for the uncompressed `Packages` (Debian lists it even when it serves only
/// `.xz`), and read from there while that hash and size still match.
pub fn packages_text(
    dists_url: &str,
    release: &Release,
    component: &str,
    arch: &str,
    cachedir: &Path,
) -> Result<Option<String>, AptError> {
    let base = format!("{component}/binary-{arch}/Packages");
    let plain = release
        .files
        .get(&base)
        .map(|entry| (format!("{dists_url}/{base}"), entry));
    if let Some((url, entry)) = &plain {
        if let Some(text) = cached_text(url, entry, cachedir) {
            return Ok(Some(text));
        }
    }
    for ext in COMPRESSIONS {
        let rel = format!("{base}{ext}");
        let Some(entry) = release.files.get(&rel) else {
            continue;
        };
        let url = format!("{dists_url}/{rel}");
        let bytes = match fetch_verified(&url, entry, cachedir) {
            Err(AptError::Download(HttpError::NotFound { .. })) => continue,
            other => other?,
        };
        let text = decompress(&bytes, ext).map_err(|detail| AptError::Parse {
            file: url.clone(),
            detail,
        })?;
        if let (false, Some((plain_url, plain_entry))) = (ext.is_empty(), &plain) {
            keep_text(plain_url, plain_entry, &text, cachedir)?;
        }
        return Ok(Some(text));
    }
    Ok(None)
}

/// The text of the uncompressed index `url` from the cache, if a file there has exactly the
/// size and sha256 the verified Release lists; anything else (missing, changed, not UTF-8)
/// is `None` and the caller reads the compressed index instead.
fn cached_text(url: &str, entry: &FileEntry, cachedir: &Path) -> Option<String> {
    let path = cache_path(cachedir, url, &entry.sha256);
    // The size first: a stale or truncated file is turned down without hashing 50 MB.
    if std::fs::metadata(&path).ok()?.len() != entry.size {
        return None;
    }
    let bytes = std::fs::read(&path).ok()?;
    check(url, &bytes, entry).ok()?;
    String::from_utf8(bytes).ok()
}

/// Stores `text`, decompressed from a verified index, as the uncompressed index `url` the
/// Release lists as `entry`, and removes the texts of `url` kept for older Release files. A
/// text that does not match `entry` (an inconsistent mirror) is not kept.
fn keep_text(url: &str, entry: &FileEntry, text: &str, cachedir: &Path) -> Result<(), AptError> {
    if check(url, text.as_bytes(), entry).is_err() {
        return Ok(());
    }
    let path = cache_path(cachedir, url, &entry.sha256);
    store(&path, text.as_bytes())?;
    prune_other_versions(&path)
}

/// Removes the cache files of the same URL as `keep` (same key prefix) but another hash.
fn prune_other_versions(keep: &Path) -> Result<(), AptError> {
    let (Some(dir), Some(name)) = (keep.parent(), keep.file_name().and_then(|n| n.to_str())) else {
        return Ok(());
    };
    let Some((key, _)) = name.split_once('-') else {
        return Ok(());
    };
    let prefix = format!("{key}-");
    let io = |path: PathBuf| move |source| AptError::Io { path, source };
    for dirent in std::fs::read_dir(dir).map_err(io(dir.to_path_buf()))? {
        let dirent = dirent.map_err(io(dir.to_path_buf()))?;
        let other = dirent.file_name();
        let Some(other) = other.to_str() else {
            continue;
        };
        // Temp files of `store` start with `.tmp`; only finished cache files are pruned.
        if other != name && other.starts_with(&prefix) {
            match std::fs::remove_file(dirent.path()) {
                // Another compose pruned it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other.map_err(io(dirent.path()))?,
            }
        }
    }
    Ok(())
}

/// The bytes of `url` whose sha256 and size must match `entry`: from the cache if present
/// there (and still matching), else downloaded, checked and then cached.
fn fetch_verified(url: &str, entry: &FileEntry, cachedir: &Path) -> Result<Vec<u8>, AptError> {
    let cached = cache_path(cachedir, url, &entry.sha256);
    if let Ok(bytes) = std::fs::read(&cached) {
        if check(url, &bytes, entry).is_ok() {
            return Ok(bytes);
        }
    }
    let bytes = download::get(url)?;
    check(url, &bytes, entry)?;
    store(&cached, &bytes)?;
    Ok(bytes)
}

/// Compares `bytes` with what the Release file promised.
pub fn check(file: &str, bytes: &[u8], entry: &FileEntry) -> Result<(), AptError> {
    let actual = sha256_hex(bytes);
    if actual != entry.sha256 || bytes.len() as u64 != entry.size {
        return Err(AptError::HashMismatch {
            file: file.to_string(),
            expected: format!("sha256 {} ({} bytes)", entry.sha256, entry.size),
            actual: format!("sha256 {actual} ({} bytes)", bytes.len()),
        });
    }
    Ok(())
}

/// Writes a cache file atomically (temp file + rename) so a crash leaves no half file.
pub fn store(path: &Path, bytes: &[u8]) -> Result<(), AptError> {
    let io = |source| AptError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

fn decompress(bytes: &[u8], ext: &str) -> Result<String, String> {
    let mut text = String::new();
    let result = match ext {
        ".xz" => xz2::read::XzDecoder::new(bytes).read_to_string(&mut text),
        ".gz" => flate2::read::GzDecoder::new(bytes).read_to_string(&mut text),
        _ => {
            let mut plain: &[u8] = bytes;
            plain.read_to_string(&mut text)
        }
    };
    result.map_err(|e| format!("decompressing ({ext:?}): {e}"))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_file_and_both_hashes() {
        let entry = FileEntry {
            sha256: sha256_hex(b"good"),
            size: 4,
        };
        assert!(check("f", b"good", &entry).is_ok());
        let e = check("http://x/main/binary-amd64/Packages.xz", b"evil", &entry).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("http://x/main/binary-amd64/Packages.xz"),
            "{text}"
        );
        assert!(
            text.contains(&entry.sha256) && text.contains(&sha256_hex(b"evil")),
            "{text}"
        );
    }

    #[test]
    fn decompresses_each_format() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"Package: a\n").unwrap();
        assert_eq!(
            decompress(&gz.finish().unwrap(), ".gz").unwrap(),
            "Package: a\n"
        );
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(b"Package: b\n").unwrap();
        assert_eq!(
            decompress(&xz.finish().unwrap(), ".xz").unwrap(),
            "Package: b\n"
        );
        assert_eq!(decompress(b"Package: c\n", "").unwrap(), "Package: c\n");
        assert!(decompress(b"garbage", ".xz").is_err());
    }

    /// A `file://` suite serving only `main/binary-amd64/Packages.xz` of `text`, with a
    /// Release that lists the uncompressed `Packages` too, as Debian's does.
    fn xz_only_suite(text: &str) -> (tempfile::TempDir, String, Release) {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let index_dir = dir.path().join("main/binary-amd64");
        std::fs::create_dir_all(&index_dir).unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(text.as_bytes()).unwrap();
        let xz = xz.finish().unwrap();
        std::fs::write(index_dir.join("Packages.xz"), &xz).unwrap();
        let entry = |bytes: &[u8]| FileEntry {
            sha256: sha256_hex(bytes),
            size: bytes.len() as u64,
        };
        let mut release = Release::default();
        release
            .files
            .insert("main/binary-amd64/Packages".into(), entry(text.as_bytes()));
        release
            .files
            .insert("main/binary-amd64/Packages.xz".into(), entry(&xz));
        let url = format!("file://{}", dir.path().display());
        (dir, url, release)
    }

    fn cache_files(cachedir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(cachedir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn decompressed_text_is_kept_and_read_back_without_the_compressed_file() {
        let text = "Package: a\nVersion: 1\n";
        let (suite, url, release) = xz_only_suite(text);
        let cache = tempfile::tempdir().unwrap();
        let load = || packages_text(&url, &release, "main", "amd64", cache.path());
        assert_eq!(load().unwrap().as_deref(), Some(text));
        let plain = &release.files["main/binary-amd64/Packages"];
        let sidecar = cache_path(
            cache.path(),
            &format!("{url}/main/binary-amd64/Packages"),
            &plain.sha256,
        );
        assert_eq!(std::fs::read_to_string(&sidecar).unwrap(), text);
        assert_eq!(cache_files(cache.path()).len(), 2, "the .xz and its text");
        // With the served index gone, the second load can only have used the kept text.
        drop(suite);
        assert_eq!(load().unwrap().as_deref(), Some(text));
    }

    #[test]
    fn a_kept_text_that_does_not_match_the_release_is_not_used() {
        let text = "Package: a\nVersion: 1\n";
        let (_suite, url, release) = xz_only_suite(text);
        let cache = tempfile::tempdir().unwrap();
        let plain = &release.files["main/binary-amd64/Packages"];
        let sidecar = cache_path(
            cache.path(),
            &format!("{url}/main/binary-amd64/Packages"),
            &plain.sha256,
        );
        // Same size, other content; then a shorter file: both are turned down and rewritten.
        for tampered in ["Package: b\nVersion: 1\n", "Package: b\n"] {
            store(&sidecar, tampered.as_bytes()).unwrap();
            let got = packages_text(&url, &release, "main", "amd64", cache.path()).unwrap();
            assert_eq!(got.as_deref(), Some(text));
            assert_eq!(std::fs::read_to_string(&sidecar).unwrap(), text);
        }
    }

    #[test]
    fn keeping_a_new_text_prunes_older_texts_of_the_same_url_only() {
        let text = "Package: a\nVersion: 2\n";
        let (_suite, url, release) = xz_only_suite(text);
        let cache = tempfile::tempdir().unwrap();
        let plain_url = format!("{url}/main/binary-amd64/Packages");
        let old = cache_path(cache.path(), &plain_url, &sha256_hex(b"old"));
        let other_url = cache_path(
            cache.path(),
            "file:///elsewhere/Packages",
            &sha256_hex(b"x"),
        );
        store(&old, b"old").unwrap();
        store(&other_url, b"x").unwrap();
        packages_text(&url, &release, "main", "amd64", cache.path()).unwrap();
        assert!(!old.exists(), "the text of an older Release is removed");
        assert!(other_url.exists(), "another URL's file stays");
        assert_eq!(cache_files(cache.path()).len(), 3);
    }

    #[test]
    fn a_text_that_differs_from_the_listed_uncompressed_index_is_not_kept() {
        let (_suite, url, mut release) = xz_only_suite("Package: a\n");
        let bogus = FileEntry {
            sha256: sha256_hex(b"something else"),
            size: 11,
        };
        release
            .files
            .insert("main/binary-amd64/Packages".into(), bogus);
        let cache = tempfile::tempdir().unwrap();
        let got = packages_text(&url, &release, "main", "amd64", cache.path()).unwrap();
        assert_eq!(got.as_deref(), Some("Package: a\n"));
        assert_eq!(cache_files(cache.path()).len(), 1, "only the verified .xz");
    }

    #[test]
    fn cache_is_keyed_by_url_and_hash() {
        let d = Path::new("/c");
        assert_ne!(
            cache_path(d, "http://a/P", "h"),
            cache_path(d, "http://b/P", "h")
        );
        assert_ne!(
            cache_path(d, "http://a/P", "h1"),
            cache_path(d, "http://a/P", "h2")
        );
        assert!(cache_path(d, "http://a/P", "h").starts_with("/c"));
    }
}
