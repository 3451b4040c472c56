//! A signed apt repository on disk for tests: `pool/main/*.deb`, `dists/SUITE/InRelease` and
//! `dists/SUITE/main/binary-amd64/Packages{,.gz}`, made with apt-ftparchive and a throwaway
//! ed25519 OpenPGP key. Serve its [`AptRepo::root`] with [`crate::http::FileServer`].

use crate::deb::Deb;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A throwaway OpenPGP signing key in its own GNUPGHOME (agent stopped on drop).
pub struct SigningKey {
    home: tempfile::TempDir,
}

impl SigningKey {
    /// Generates an ed25519 signing key with no passphrase.
    pub fn generate(user: &str) -> Result<Self> {
        let home = tempfile::Builder::new().prefix("gpg").tempdir_in("/tmp")?;
        let key = Self { home };
        key.gpg(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            &format!("{user} <{user}@keel.invalid>"),
            "ed25519",
            "sign",
            "never",
        ])?;
        Ok(key)
    }

    fn gpg(&self, args: &[&str]) -> Result<Vec<u8>> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--yes", "--pinentry-mode", "loopback"])
            .args(args)
            .output()
            .context("running gpg")?;
        if !out.status.success() {
            bail!(
                "gpg {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    }

    /// Writes the public key as a binary keyring (`armored == false`) or `.asc` text.
    pub fn export(&self, dest: &Path, armored: bool) -> Result<()> {
        let dest = dest.to_str().context("non-UTF-8 path")?;
        if armored {
            self.gpg(&["--armor", "--output", dest, "--export"])?;
        } else {
            self.gpg(&["--output", dest, "--export"])?;
        }
        Ok(())
    }

    /// Clear-signs `input` into `output`.
    pub fn clearsign(&self, input: &Path, output: &Path) -> Result<()> {
        let (i, o) = (
            input.to_str().context("path")?,
            output.to_str().context("path")?,
        );
        self.gpg(&["--output", o, "--clearsign", i])?;
        Ok(())
    }
}

impl SigningKey {
    /// An ed25519 key made as if at 2020-01-01 that expired a day later: [`SigningKey::clearsign_as`]
    /// with `--faked-system-time 20200101T120000` still signs with it.
    pub fn generate_expired(user: &str) -> Result<Self> {
        let home = tempfile::Builder::new().prefix("gpg").tempdir_in("/tmp")?;
        let key = Self { home };
        key.gpg(&[
            "--faked-system-time",
            "20200101T000000!",
            "--passphrase",
            "",
            "--quick-gen-key",
            &format!("{user} <{user}@keel.invalid>"),
            "ed25519",
            "sign",
            "1d",
        ])?;
        Ok(key)
    }

    /// Clear-signs `input` into `output` with extra gpg arguments (e.g. `--digest-algo SHA1`
    /// or `--faked-system-time ...`).
    pub fn clearsign_as(&self, input: &Path, output: &Path, extra: &[&str]) -> Result<()> {
        let (i, o) = (
            input.to_str().context("path")?,
            output.to_str().context("path")?,
        );
        let mut args = extra.to_vec();
        args.extend(["--output", o, "--clearsign", i]);
        self.gpg(&args)?;
        Ok(())
    }

    /// Revokes the key with the revocation certificate gpg made with it: signatures made
    /// before stay valid cryptographically, but the exported key is marked revoked.
    pub fn revoke(&self) -> Result<()> {
        let dir = self.home.path().join("openpgp-revocs.d");
        let cert = std::fs::read_dir(&dir)?
            .next()
            .context("no revocation certificate")??
            .path();
        // gpg writes it with the armor header line commented out, against accidents.
        let text = std::fs::read_to_string(&cert)?.replace(":-----BEGIN", "-----BEGIN");
        let unlocked = self.home.path().join("revoke.asc");
        std::fs::write(&unlocked, text)?;
        self.gpg(&["--import", unlocked.to_str().context("path")?])?;
        Ok(())
    }
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// A signed single-suite, single-component (`main`) amd64 repository.
pub struct AptRepo {
    dir: tempfile::TempDir,
    suite: String,
    key: SigningKey,
    keyring: PathBuf,
}

impl AptRepo {
    /// An empty repository for `suite`; its public key is at [`AptRepo::keyring`].
    pub fn new(suite: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let key = SigningKey::generate("keel-repo")?;
        let keyring = dir.path().join("keyring.gpg");
        key.export(&keyring, false)?;
        std::fs::create_dir_all(dir.path().join("repo/pool/main"))?;
        Ok(Self {
            dir,
            suite: suite.to_string(),
            key,
            keyring,
        })
    }

    /// The directory to serve (holds `pool/` and `dists/`).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// The binary keyring that verifies this repository.
    pub fn keyring(&self) -> &Path {
        &self.keyring
    }

    pub fn suite(&self) -> &str {
        &self.suite
    }

    /// The key that signs `InRelease` (e.g. to export it armored).
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Builds `debs` into `pool/main`. Call [`AptRepo::publish`] afterwards.
    pub fn add(&self, debs: &[Deb]) -> Result<()> {
        for deb in debs {
            deb.build(&self.root().join("pool/main"))?;
        }
        Ok(())
    }

    /// `dists/SUITE/main/binary-amd64/`, where the Packages files are.
    pub fn index_dir(&self) -> PathBuf {
        self.root()
            .join("dists")
            .join(&self.suite)
            .join("main/binary-amd64")
    }

    /// (Re)writes the indices and `InRelease`, signed with this repository's key.
    pub fn publish(&self) -> Result<()> {
        self.publish_signed_by(&self.key)
    }

    /// Like [`AptRepo::publish`] but signed with `key` (a wrong key, for tests).
    pub fn publish_signed_by(&self, key: &SigningKey) -> Result<()> {
        let root = self.root();
        let index_dir = self.index_dir();
        std::fs::create_dir_all(&index_dir)?;
        let packages = run(Command::new("apt-ftparchive")
            .current_dir(&root)
            .args(["packages", "pool"]))?;
        std::fs::write(index_dir.join("Packages"), &packages)?;
        let gz = index_dir.join("Packages.gz");
        let _ = std::fs::remove_file(&gz);
        run(Command::new("gzip")
            .args(["-9", "-n", "-k"])
            .arg(index_dir.join("Packages")))?;
        let suite_dir = root.join("dists").join(&self.suite);
        for old in ["Release", "InRelease"] {
            let _ = std::fs::remove_file(suite_dir.join(old));
        }
        let release = run(Command::new("apt-ftparchive")
            .current_dir(&suite_dir)
            .arg("-o")
            .arg(format!("APT::FTPArchive::Release::Suite={}", self.suite))
            .arg("-o")
            .arg(format!("APT::FTPArchive::Release::Codename={}", self.suite))
            .args([
                "-o",
                "APT::FTPArchive::Release::Architectures=amd64",
                "-o",
                "APT::FTPArchive::Release::Components=main",
                "release",
                ".",
            ]))?;
        let release_path = suite_dir.join("Release");
        std::fs::write(&release_path, release)?;
        key.clearsign(&release_path, &suite_dir.join("InRelease"))
    }
}

impl AptRepo {
    /// Publishes as [`AptRepo::publish_signed_by`], then rewrites the uncompressed and gzip
    /// `Packages` through `edit_index`, sets (or adds) `release_fields` in `Release` (e.g.
    /// `Valid-Until`, `Date`), and clear-signs it with `key` and the extra gpg arguments
    /// `sign_args`. For repositories that break a rule on purpose.
    pub fn publish_edited(
        &self,
        edit_index: impl FnOnce(&str) -> String,
        release_fields: &[(&str, &str)],
        key: &SigningKey,
        sign_args: &[&str],
    ) -> Result<()> {
        // Signed again below, by `key` with `sign_args`.
        self.publish()?;
        let index_dir = self.index_dir();
        let packages = std::fs::read_to_string(index_dir.join("Packages"))?;
        std::fs::write(index_dir.join("Packages"), edit_index(&packages))?;
        let _ = std::fs::remove_file(index_dir.join("Packages.gz"));
        run(Command::new("gzip")
            .args(["-9", "-n", "-k"])
            .arg(index_dir.join("Packages")))?;
        let suite_dir = self.root().join("dists").join(&self.suite);
        for old in ["Release", "InRelease"] {
            let _ = std::fs::remove_file(suite_dir.join(old));
        }
        let release = run(Command::new("apt-ftparchive")
            .current_dir(&suite_dir)
            .arg("-o")
            .arg(format!("APT::FTPArchive::Release::Suite={}", self.suite))
            .arg("-o")
            .arg(format!("APT::FTPArchive::Release::Codename={}", self.suite))
            .args(["release", "."]))?;
        let mut text = String::from_utf8(release)?;
        for (field, value) in release_fields {
            let prefix = format!("{field}:");
            let line = format!("{field}: {value}");
            let kept: Vec<String> = text
                .lines()
                .filter(|l| !l.starts_with(&prefix))
                .map(str::to_string)
                .collect();
            text = format!("{line}\n{}\n", kept.join("\n"));
        }
        let release_path = suite_dir.join("Release");
        std::fs::write(&release_path, text)?;
        key.clearsign_as(&release_path, &suite_dir.join("InRelease"), sign_args)
    }
}

fn run(command: &mut Command) -> Result<Vec<u8>> {
    let out = command
        .output()
        .with_context(|| format!("running {:?}", command.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            command.get_program(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_a_signed_repository() {
        let repo = AptRepo::new("testing").unwrap();
        repo.add(&[Deb::new("a", "1.0")]).unwrap();
        repo.publish().unwrap();
        let packages = std::fs::read_to_string(repo.index_dir().join("Packages")).unwrap();
        assert!(packages.contains("Package: a\n"), "{packages}");
        assert!(
            packages.contains("Filename: pool/main/a_1.0_amd64.deb"),
            "{packages}"
        );
        let inrelease = repo.root().join("dists/testing/InRelease");
        let text = std::fs::read_to_string(&inrelease).unwrap();
        assert!(text.contains("main/binary-amd64/Packages.gz"), "{text}");
        let status = Command::new("gpgv")
            .arg("--keyring")
            .arg(repo.keyring())
            .arg(&inrelease)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
}
