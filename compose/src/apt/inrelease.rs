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
    /// `Date:` as written (RFC 2822 date): when the repository wrote this Release file.
    pub date: Option<String>,
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
        let until = parse_date(text).map_err(|e| format!("Valid-Until {text:?}: {e}"))?;
        Ok(until < now)
    }

    /// `Date:` as a time, if the file has one.
    pub fn date(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, String> {
        self.date
            .as_deref()
            .map(|text| parse_date(text).map_err(|e| format!("Date {text:?}: {e}")))
            .transpose()
    }
}

/// A Release file's date (`Sat, 10 Jun 2023 08:53:33 UTC`): RFC 2822, which knows "UT" and
/// "GMT" but not the "UTC" Debian writes.
pub fn parse_date(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let normalized = text.trim().replace(" UTC", " +0000");
    chrono::DateTime::parse_from_rfc2822(&normalized)
        .map(|date| date.with_timezone(&chrono::Utc))
        .map_err(|e| e.to_string())
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
        date: paragraph.get("Date").map(str::to_string),
        valid_until: paragraph.get("Valid-Until").map(str::to_string),
        files,
    })
}

/// Checks the clear-signed `inrelease` bytes against `keyring` with `gpgv` and returns the
/// signed text only (what lies outside the signature is dropped). `keyring` may be a binary
/// keyring or an ASCII-armored key file.
///
/// gpgv's exit status alone is not enough: it exits 0 for a signature by an expired or a
/// revoked key, and for a SHA-1 signature. Its status lines are read as apt reads them (see
/// [`judge_status`]).
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
    let listing = Command::new("gpg")
        .arg("--homedir")
        .arg(work.path())
        .args(["--batch", "--with-colons", "--show-keys"])
        .arg(&keyring_path)
        .run()
        .map_err(|e| format!("listing the keys of {}: {e}", keyring.display()))?;
    let fingerprints = keyring_fingerprints(&String::from_utf8_lossy(&listing));
    let signed = work.path().join("InRelease");
    std::fs::write(&signed, inrelease).map_err(|e| format!("writing a temp file: {e}"))?;
    let content = work.path().join("Release");
    let ran = Command::new("gpgv")
        .arg("--homedir")
        .arg(work.path())
        .args(["--status-fd", "1"])
        .arg("--keyring")
        .arg(&keyring_path)
        .arg("--output")
        .arg(&content)
        .arg(&signed)
        .run_finished()
        .map_err(|e| e.to_string())?;
    // The status lines explain a failure better than gpgv's exit status; without a
    // verdict from them the command's own error is shown.
    judge_status(&String::from_utf8_lossy(&ran.stdout), &fingerprints)?;
    ran.into_result().map_err(|e| e.to_string())?;
    std::fs::read(&content).map_err(|e| format!("reading gpgv's output: {e}"))
}

/// The fingerprints (primary keys and subkeys) in `gpg --with-colons --show-keys` output.
fn keyring_fingerprints(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|line| line.starts_with("fpr:"))
        .filter_map(|line| line.split(':').nth(9))
        .filter(|fpr| !fpr.is_empty())
        .map(str::to_ascii_uppercase)
        .collect()
}

/// OpenPGP hash algorithms (RFC 4880 9.4, RFC 9580) a signature may use: SHA-256, SHA-384,
/// SHA-512, SHA-224, SHA3-256, SHA3-512. MD5 (1), SHA-1 (2) and RIPEMD-160 (3) are refused,
/// as apt refuses them.
const STRONG_HASHES: [u32; 6] = [8, 9, 10, 11, 12, 14];

/// Decides from gpgv's `--status-fd` lines whether `InRelease` carries at least one good
/// signature: `GOODSIG` and `VALIDSIG` in the same signature (lines after one `NEWSIG`),
/// with a strong hash and a fingerprint in `keyring` (the primary key's or the signing
/// subkey's). A `BADSIG` anywhere refuses the file. Signatures that are not good (expired or
/// revoked key, expired signature, unknown key, weak hash) are only reasons: they refuse
/// the file when no good signature is there, as apt does.
pub fn judge_status(status: &str, keyring: &[String]) -> Result<(), String> {
    let mut reasons: Vec<String> = Vec::new();
    let mut good = false;
    for block in status.split("[GNUPG:] NEWSIG").skip(1) {
        let mut goodsig = false;
        let mut validsig: Option<Vec<&str>> = None;
        let mut problem: Option<String> = None;
        for line in block.lines() {
            let Some(rest) = line.strip_prefix("[GNUPG:] ") else {
                continue;
            };
            let words: Vec<&str> = rest.split_whitespace().collect();
            let key = words.get(1).copied().unwrap_or("?");
            let text = match words.first().copied() {
                Some("GOODSIG") => {
                    goodsig = true;
                    None
                }
                Some("VALIDSIG") => {
                    validsig = Some(words.clone());
                    None
                }
                Some("BADSIG") => {
                    return Err(format!(
                        "BADSIG: the signature by key {key} does not match the content (the \
                         file was altered or corrupted); refusing it"
                    ))
                }
                Some("EXPKEYSIG") => Some(format!(
                    "EXPKEYSIG: signed by key {key}, which has expired; the repository must \
                     sign with a current key (or update the keyring if the key was extended)"
                )),
                Some("REVKEYSIG") => Some(format!(
                    "REVKEYSIG: signed by key {key}, which its owner revoked; do not use this \
                     repository until it is signed by a key you trust"
                )),
                Some("EXPSIG") => Some(format!(
                    "EXPSIG: the signature by key {key} has expired; the repository must sign \
                     its InRelease again"
                )),
                Some("NO_PUBKEY") => Some(format!(
                    "NO_PUBKEY: signed by key {key}, which is not in the keyring; get the \
                     repository's key into the keyring if you trust it"
                )),
                Some("ERRSIG") => Some(format!(
                    "ERRSIG: the signature by key {key} could not be checked (public-key \
                     algorithm {}, hash algorithm {})",
                    words.get(2).unwrap_or(&"?"),
                    words.get(3).unwrap_or(&"?")
                )),
                _ => None,
            };
            // ERRSIG comes before the line saying why (NO_PUBKEY); that line explains more.
            let errsig = words.first() == Some(&"ERRSIG");
            match (text, &problem) {
                (Some(text), None) => problem = Some(text),
                (Some(text), Some(old)) if !errsig && old.starts_with("ERRSIG") => {
                    problem = Some(text)
                }
                _ => {}
            }
        }
        if let Some(problem) = problem {
            reasons.push(problem);
            continue;
        }
        let Some(valid) = validsig.filter(|_| goodsig) else {
            reasons.push("a signature without GOODSIG and VALIDSIG".into());
            continue;
        };
        let hash = valid.get(8).and_then(|h| h.parse::<u32>().ok());
        if !hash.is_some_and(|h| STRONG_HASHES.contains(&h)) {
            reasons.push(format!(
                "the signature by key {} uses {} (OpenPGP hash algorithm {}), which is too \
                 weak; the repository must sign with SHA-256 or stronger",
                valid.get(1).unwrap_or(&"?"),
                hash_name(hash),
                valid.get(8).unwrap_or(&"?")
            ));
            continue;
        }
        let in_keyring = [valid.get(1), valid.get(10)]
            .into_iter()
            .flatten()
            .any(|fpr| keyring.iter().any(|k| k.eq_ignore_ascii_case(fpr)));
        if !in_keyring {
            reasons.push(format!(
                "VALIDSIG from key {}, which is not in the keyring",
                valid.get(1).unwrap_or(&"?")
            ));
            continue;
        }
        good = true;
    }
    if good {
        return Ok(());
    }
    if reasons.is_empty() {
        return Err("no OpenPGP signature found (is it a clear-signed InRelease?)".into());
    }
    Err(reasons.join("; "))
}

fn hash_name(algo: Option<u32>) -> &'static str {
    match algo {
        Some(1) => "MD5",
        Some(2) => "SHA-1",
        Some(3) => "RIPEMD-160",
        _ => "an unknown digest",
    }
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

    const FPR: &str = "2F5C57A84E2E49C230D8948BAA0ABE827B2FB2EE";

    /// One signature's status lines as gpgv 2.2 prints them, with `kind` for the verdict
    /// line and `hash` in VALIDSIG.
    fn signature(kind: &str, hash: u32) -> String {
        format!(
            "[GNUPG:] NEWSIG\n[GNUPG:] KEY_CONSIDERED {FPR} 0\n\
             [GNUPG:] {kind} AA0ABE827B2FB2EE keel <k@keel.invalid>\n\
             [GNUPG:] VALIDSIG {FPR} 2026-12-02 1796191100 0 4 0 22 {hash} 01 {FPR}\n"
        )
    }

    #[test]
    fn gpgv_status_is_judged_like_apt() {
        let keyring = vec![FPR.to_string()];
        let missing = "[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG AA0ABE827B2FB2EE 22 8 01 1796191100 9 \
                       2F5C\n[GNUPG:] NO_PUBKEY AA0ABE827B2FB2EE\n";
        let cases: Vec<(String, Option<&str>)> = vec![
            (signature("GOODSIG", 8), None),
            (signature("GOODSIG", 10), None),
            (
                signature("EXPKEYSIG", 8),
                Some("EXPKEYSIG: signed by key AA0ABE827B2FB2EE, which has expired"),
            ),
            (
                signature("REVKEYSIG", 8),
                Some("REVKEYSIG: signed by key AA0ABE827B2FB2EE, which its owner revoked"),
            ),
            (signature("EXPSIG", 8), Some("EXPSIG")),
            (
                signature("GOODSIG", 2),
                Some("uses SHA-1 (OpenPGP hash algorithm 2), which is too weak"),
            ),
            (signature("GOODSIG", 1), Some("MD5")),
            (signature("BADSIG", 8), Some("BADSIG")),
            (
                missing.to_string(),
                Some("NO_PUBKEY: signed by key AA0ABE827B2FB2EE, which is not in the keyring"),
            ),
            (String::new(), Some("no OpenPGP signature")),
            (
                "[GNUPG:] NEWSIG\n[GNUPG:] VALIDSIG x\n".into(),
                Some("without GOODSIG"),
            ),
            // One good signature among others that are not is enough, as for apt...
            (format!("{missing}{}", signature("GOODSIG", 8)), None),
            // ...but a bad one anywhere is not.
            (
                format!("{}{}", signature("GOODSIG", 8), signature("BADSIG", 8)),
                Some("BADSIG"),
            ),
        ];
        for (status, want) in cases {
            let got = judge_status(&status, &keyring);
            match want {
                None => assert_eq!(got, Ok(()), "{status}"),
                Some(text) => {
                    let e = got.expect_err(&status);
                    assert!(e.contains(text), "{status}\n=> {e}");
                }
            }
        }
        let e = judge_status(&signature("GOODSIG", 8), &["0123".into()]).unwrap_err();
        assert!(e.contains("not in the keyring"), "{e}");
    }

    #[test]
    fn keyring_listing_gives_every_fingerprint() {
        let listing = "pub:u:255:22:AA0A:1796191100:::u:::scSC:::::ed25519:::0:\n\
                       fpr:::::::::2F5C57A84E2E49C230D8948BAA0ABE827B2FB2EE:\n\
                       sub:u:255:22:BB0B:1796191100::::::s:\nfpr:::::::::aabb:\n";
        assert_eq!(
            keyring_fingerprints(listing),
            ["2F5C57A84E2E49C230D8948BAA0ABE827B2FB2EE", "AABB"]
        );
    }

    #[test]
    fn dates_parse_debians_utc() {
        let r = parse(&format!(
            "Date: Sat, 10 Jun 2023 08:53:33 UTC\nSHA256:\n {H1} 1 x\n"
        ))
        .unwrap();
        let date = r.date().unwrap().unwrap();
        assert_eq!(date.to_rfc3339(), "2023-06-10T08:53:33+00:00");
        assert_eq!(Release::default().date(), Ok(None));
        let bad = Release {
            date: Some("yesterday".into()),
            ..Default::default()
        };
        assert!(bad.date().unwrap_err().contains("yesterday"));
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
