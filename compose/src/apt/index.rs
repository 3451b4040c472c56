//! `COMPONENT/binary-ARCH/Packages{.xz,.gz,}`: downloaded only as listed in a verified
//! Release file, checked against its size and sha256, cached by URL and hash, decompressed.

use super::download::{self, DownloadError};
use super::release::{FileEntry, Release};
use super::AptError;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Compressions tried, best first.
const COMPRESSIONS: [&str; 3] = [".xz", ".gz", ""];

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Where a verified index file with this URL and hash is cached.
pub fn cache_path(cachedir: &Path, url: &str, sha256: &str) -> PathBuf {
    let key = sha256_hex(url.as_bytes());
    cachedir
        .join("apt")
        .join(format!("{}-{}", &key[..16], sha256))
}

/// Returns the text of `COMPONENT/binary-ARCH/Packages` of `dists_url` (`.../dists/SUITE`),
/// from the cache when a file with the hash `release` names is there, else downloaded and
/// checked. A suite that lists no Packages file for this component and architecture gives
/// `Ok(None)`.
pub fn packages_text(
    dists_url: &str,
    release: &Release,
    component: &str,
    arch: &str,
    cachedir: &Path,
) -> Result<Option<String>, AptError> {
    let base = format!("{component}/binary-{arch}/Packages");
    for ext in COMPRESSIONS {
        let rel = format!("{base}{ext}");
        let Some(entry) = release.files.get(&rel) else {
            continue;
        };
        let url = format!("{dists_url}/{rel}");
        let bytes = match fetch_verified(&url, entry, cachedir) {
            Err(AptError::Download(DownloadError::NotFound { .. })) => continue,
            other => other?,
        };
        let text = decompress(&bytes, ext).map_err(|detail| AptError::Parse {
            file: url.clone(),
            detail,
        })?;
        return Ok(Some(text));
    }
    Ok(None)
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
        assert!(cache_path(d, "http://a/P", "h").starts_with("/c/apt"));
    }
}
