//! Which ed25519 keys the host trusts: every file in `etc/keel/trusted.ed25519.d/` and
//! `usr/share/keel/trusted.ed25519.d/`, with the revoked lists in `revoked.ed25519.d/` beside
//! each. A key listed as revoked anywhere is never trusted.

use anyhow::{Context, Result};
use keel_common::keys::PublicKey;
use std::path::{Path, PathBuf};

/// Key directories relative to the config root, the admin's first.
pub const KEY_DIRS: [&str; 2] = ["etc/keel", "usr/share/keel"];
pub const TRUSTED_DIR: &str = "trusted.ed25519.d";
pub const REVOKED_DIR: &str = "revoked.ed25519.d";

/// `(trusted, revoked)` keys under `root` (`/` on a booted host). Missing directories are
/// empty; an unreadable or malformed key file is an error naming the file.
pub fn trusted_keys(root: &Path) -> Result<(Vec<PublicKey>, Vec<PublicKey>)> {
    let mut trusted = Vec::new();
    let mut revoked = Vec::new();
    for dir in KEY_DIRS {
        trusted.extend(read_key_dir(&root.join(dir).join(TRUSTED_DIR))?);
        revoked.extend(read_key_dir(&root.join(dir).join(REVOKED_DIR))?);
    }
    dedup(&mut trusted);
    dedup(&mut revoked);
    Ok((trusted, revoked))
}

/// Where `keel remote add` installs the keys of remote `name`.
pub fn remote_key_file(root: &Path, name: &str) -> PathBuf {
    root.join(KEY_DIRS[0])
        .join(TRUSTED_DIR)
        .join(format!("{name}.pub"))
}

fn dedup(keys: &mut Vec<PublicKey>) {
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert(*k));
}

/// Every key in every regular file of `dir` (lexical order; hidden files skipped).
pub fn read_key_dir(dir: &Path) -> Result<Vec<PublicKey>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut keys = Vec::new();
    for file in files {
        keys.extend(read_key_file(&file)?);
    }
    Ok(keys)
}

/// The keys of one public key file.
pub fn read_key_file(file: &Path) -> Result<Vec<PublicKey>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    PublicKey::parse_file(&text).with_context(|| {
        format!(
            "{}: not an ed25519 public key file (one base64 key per line); fix or remove it",
            file.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_common::keys::SecretKey;

    #[test]
    fn keys_come_from_both_dirs_and_revoked_lists() {
        let root = tempfile::tempdir().unwrap();
        let [a, b, c] = [(); 3].map(|_| SecretKey::generate().unwrap().public());
        let write = |p: &str, text: String| {
            let p = root.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("etc/keel/trusted.ed25519.d/mine.pub", format!("{a}\n"));
        write(
            "usr/share/keel/trusted.ed25519.d/vendor.pub",
            format!("# vendor\n{b}\n{a}\n"),
        );
        write("usr/share/keel/revoked.ed25519.d/old.pub", format!("{c}\n"));
        let (trusted, revoked) = trusted_keys(root.path()).unwrap();
        assert_eq!(trusted, vec![a, b]);
        assert_eq!(revoked, vec![c]);

        write("etc/keel/trusted.ed25519.d/broken.pub", "garbage!\n".into());
        let err = format!("{:#}", trusted_keys(root.path()).unwrap_err());
        assert!(
            err.contains("broken.pub") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn no_key_dirs_means_no_keys() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(trusted_keys(root.path()).unwrap(), (vec![], vec![]));
    }
}
