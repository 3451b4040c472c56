//! `dists/SUITE/InRelease`: an OpenPGP clear-signed Release file. Its signature is checked
//! with `gpgv` against the repository's keyring before anything in it is believed; its
//! `SHA256:` section then vouches for every index file of the suite.

use super::control;
use keel_io::command::CommandExt;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// What a verified Release file says about one index file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub sha256: String,
    pub size: u64,
}

/// The parts of a Release file Keel uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Release {
    pub suite: Option<String>,
    pub codename: Option<String>,
    /// `Valid-Until:` as written (RFC 2822 date), if the repository sets one.
    pub valid_until: Option<String>,
    /// Path relative to `dists/SUITE/` -> hash and size.
    pub files: HashMap<String, FileEntry>,
}

impl Release {
    /// Whether this Release file is for `suite` (by `Suite:` or `Codename:`; a file naming
    /// neither is accepted).
    pub fn is_for(&self, suite: &str) -> bool {
        match (&self.suite, &self.codename) {
            (None, None) => true,
            (s, c) => s.as_deref() == Some(suite) || c.as_deref() == Some(suite),
        }
    }

    /// Whether `Valid-Until` lies before `now` (a replayed or frozen mirror). No
    /// `Valid-Until` means the file does not expire.
    pub fn expired(&self, now: chrono::DateTime<chrono::Utc>) -> Result<bool, String> {
        let Some(text) = &self.valid_until else {
            return Ok(false);
        };
        // RFC 2822 knows "UT" and "GMT"; Debian writes "UTC".
        let normalized = text.trim().replace(" UTC", " +0000");
        let until = chrono::DateTime::parse_from_rfc2822(&normalized)
            .map_err(|e| format!("Valid-Until {text:?}: {e}"))?;
        Ok(until < now)
    }
}

/// Parses the (already verified) text of a Release file.
pub fn parse(text: &str) -> Result<Release, String> {
    let paragraph = control::parse(text)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or("empty Release file")?;
    let sums = paragraph
        .get("SHA256")
        .ok_or("no SHA256 section (Keel does not trust MD5 or SHA1)")?;
    let mut files = HashMap::new();
    for line in sums.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [sha256, size, path] = parts[..] else {
            return Err(format!("SHA256 line {line:?}: expected `HASH SIZE PATH`"));
        };
        let size = size
            .parse()
            .map_err(|_| format!("SHA256 line {line:?}: size is not a number"))?;
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("SHA256 line {line:?}: not a sha256 hash"));
        }
        files.insert(
            path.to_string(),
            FileEntry {
                sha256: sha256.to_ascii_lowercase(),
                size,
            },
        );
    }
    Ok(Release {
        suite: paragraph.get("Suite").map(str::to_string),
        codename: paragraph.get("Codename").map(str::to_string),
        valid_until: paragraph.get("Valid-Until").map(str::to_string),
        files,
    })
}

/// Checks the clear-signed `inrelease` bytes against `keyring` with `gpgv` and returns the
/// signed text only (what lies outside the signature is dropped). `keyring` may be a binary
/// keyring or an ASCII-armored key file.
pub fn verify(inrelease: &[u8], keyring: &Path) -> Result<Vec<u8>, String> {
    let work = tempfile::tempdir().map_err(|e| format!("creating a temp dir: {e}"))?;
    let keyring_bytes = std::fs::read(keyring)
        .map_err(|e| format!("reading keyring {}: {e}", keyring.display()))?;
    let keyring_path = if keyring_bytes.starts_with(b"-----BEGIN") {
        let out = work.path().join("keyring.gpg");
        Command::new("gpg")
            .arg("--homedir")
            .arg(work.path())
            .args(["--batch", "--yes", "--dearmor", "--output"])
            .arg(&out)
            .arg(keyring)
            .run()
            .map_err(|e| format!("dearmoring {}: {e}", keyring.display()))?;
        out
    } else {
        std::path::absolute(keyring).map_err(|e| format!("keyring {}: {e}", keyring.display()))?
    };
    let signed = work.path().join("InRelease");
    std::fs::write(&signed, inrelease).map_err(|e| format!("writing a temp file: {e}"))?;
    let content = work.path().join("Release");
    Command::new("gpgv")
        .arg("--homedir")
        .arg(work.path())
        .arg("--keyring")
        .arg(&keyring_path)
        .arg("--output")
        .arg(&content)
        .arg(&signed)
        .run()
        .map_err(|e| e.to_string())?;
    std::fs::read(&content).map_err(|e| format!("reading gpgv's output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "0f0e8bca7ac11e08e29f4b3f1d9f0d7b9e3b6a3ab1ad5d4b05e4c2b1c8d9e0f1";

    #[test]
    fn parses_sha256_section() {
        let text = format!(
            "Origin: Debian\nSuite: stable\nCodename: bookworm\nMD5Sum:\n abc 1 main/x\nSHA256:\n {H1}  1234 main/binary-amd64/Packages.xz\n {} 5 main/binary-amd64/Packages\n",
            H1.to_uppercase()
        );
        let r = parse(&text).unwrap();
        assert_eq!(r.files.len(), 2);
        assert_eq!(
            r.files["main/binary-amd64/Packages.xz"],
            FileEntry {
                sha256: H1.into(),
                size: 1234
            }
        );
        assert_eq!(
            r.files["main/binary-amd64/Packages"].sha256, H1,
            "lowercased"
        );
        assert!(r.is_for("bookworm") && r.is_for("stable") && !r.is_for("trixie"));
    }

    #[test]
    fn valid_until() {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let r = parse(&format!(
            "Valid-Until: Fri, 27 Nov 2026 00:12:41 UTC\nSHA256:\n {H1} 1 x\n"
        ))
        .unwrap();
        assert!(!r.expired(at("2026-11-26T00:00:00Z")).unwrap());
        assert!(r.expired(at("2026-11-28T00:00:00Z")).unwrap());
        let r = parse(&format!("SHA256:\n {H1} 1 x\n")).unwrap();
        assert!(!r.expired(at("2999-01-01T00:00:00Z")).unwrap());
        let r = Release {
            valid_until: Some("someday".into()),
            ..Default::default()
        };
        assert!(r
            .expired(at("2026-01-01T00:00:00Z"))
            .unwrap_err()
            .contains("someday"));
    }

    #[test]
    fn rejects_bad_sections() {
        assert!(parse("Suite: s\nMD5Sum:\n a 1 b\n")
            .unwrap_err()
            .contains("no SHA256"));
        assert!(parse(&format!("SHA256:\n {H1} x main/P\n"))
            .unwrap_err()
            .contains("size"));
        assert!(parse("SHA256:\n abc 1 main/P\n")
            .unwrap_err()
            .contains("not a sha256"));
        assert!(parse(&format!("SHA256:\n {H1} 1\n"))
            .unwrap_err()
            .contains("HASH SIZE PATH"));
    }
}
