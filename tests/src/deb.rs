//! Tiny `.deb` packages for fast tests: built with `dpkg-deb`, or ([`Deb::build_raw`]) assembled
//! here from a filesystem archive the test writes member by member, for the hostile archives
//! `dpkg-deb --build` refuses to make (`..` and absolute names, links to host files, device
//! nodes).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A package to build: control fields, files and maintainer scripts.
#[derive(Clone, Debug, Default)]
pub struct Deb {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Extra control fields, e.g. `("Depends", "b (>= 1)")`, `("Essential", "yes")`.
    pub fields: Vec<(String, String)>,
    /// Files in the package: path relative to `/`, content.
    pub files: Vec<(String, Vec<u8>)>,
    /// Maintainer scripts and control files: name (`postinst`, `conffiles`, ...), content.
    pub scripts: Vec<(String, String)>,
}

impl Deb {
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            ..Default::default()
        }
    }

    pub fn field(mut self, key: &str, value: &str) -> Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    pub fn depends(self, value: &str) -> Self {
        self.field("Depends", value)
    }

    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files
            .push((path.trim_start_matches('/').into(), content.into()));
        self
    }

    pub fn script(mut self, name: &str, content: &str) -> Self {
        self.scripts.push((name.into(), content.into()));
        self
    }

    /// The file name Debian gives this package: `NAME_VERSION_ARCH.deb`.
    pub fn file_name(&self) -> String {
        let version = self
            .version
            .split_once(':')
            .map_or(&*self.version, |(_, v)| v);
        format!("{}_{}_{}.deb", self.name, version, self.arch)
    }

    /// Builds the package into `out_dir` and returns its path.
    pub fn build(&self, out_dir: &Path) -> Result<PathBuf> {
        let staging = tempfile::tempdir()?;
        let root = staging.path().join("root");
        let debian = root.join("DEBIAN");
        std::fs::create_dir_all(&debian)?;
        let mut control = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Keel tests <tests@keel.invalid>\n\
             Description: Keel test package {}\n",
            self.name, self.version, self.arch, self.name
        );
        for (k, v) in &self.fields {
            control.push_str(&format!("{k}: {v}\n"));
        }
        std::fs::write(debian.join("control"), control)?;
        for (name, content) in &self.scripts {
            let path = debian.join(name);
            std::fs::write(&path, content)?;
            let mode = if name == "conffiles" || name == "triggers" {
                0o644
            } else {
                0o755
            };
            set_mode(&path, mode)?;
        }
        for (path, content) in &self.files {
            let dest = root.join(path);
            std::fs::create_dir_all(dest.parent().context("file at /")?)?;
            std::fs::write(&dest, content)?;
        }
        std::fs::create_dir_all(out_dir)?;
        let out = out_dir.join(self.file_name());
        let status = Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&root)
            .arg(&out)
            .output()
            .context("running dpkg-deb (install dpkg-dev through ci/deps)")?;
        if !status.status.success() {
            bail!(
                "dpkg-deb --build {} failed: {}",
                self.name,
                String::from_utf8_lossy(&status.stderr)
            );
        }
        Ok(out)
    }
}

/// A member of a hand-written filesystem archive; names are written into the archive exactly
/// as given (`./opt/x`, `../x`, `/abs`). Owned by root, mtime 1 600 000 000.
#[derive(Clone, Debug)]
pub enum Member {
    Dir(String),
    File {
        name: String,
        content: Vec<u8>,
        mode: u32,
    },
    Symlink {
        name: String,
        target: String,
    },
    HardLink {
        name: String,
        target: String,
    },
    CharDevice {
        name: String,
        major: u32,
        minor: u32,
    },
}

impl Member {
    pub fn dir(name: &str) -> Self {
        Member::Dir(name.into())
    }
    pub fn file(name: &str, content: impl Into<Vec<u8>>, mode: u32) -> Self {
        Member::File {
            name: name.into(),
            content: content.into(),
            mode,
        }
    }
    pub fn symlink(name: &str, target: &str) -> Self {
        Member::Symlink {
            name: name.into(),
            target: target.into(),
        }
    }
    pub fn hard_link(name: &str, target: &str) -> Self {
        Member::HardLink {
            name: name.into(),
            target: target.into(),
        }
    }
    pub fn char_device(name: &str, major: u32, minor: u32) -> Self {
        Member::CharDevice {
            name: name.into(),
            major,
            minor,
        }
    }
}

impl Deb {
    /// Builds the package into `out_dir` with `data` as its filesystem archive (an uncompressed
    /// `data.tar`, which dpkg accepts) instead of `self.files`; control fields and scripts as
    /// [`Deb::build`] writes them. Returns the `.deb`'s path.
    pub fn build_raw(&self, out_dir: &Path, data: &[Member]) -> Result<PathBuf> {
        let mut control = tar::Builder::new(Vec::new());
        let mut fields = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Keel tests <tests@keel.invalid>\n\
             Description: Keel test package {}\n",
            self.name, self.version, self.arch, self.name
        );
        for (k, v) in &self.fields {
            fields.push_str(&format!("{k}: {v}\n"));
        }
        let mut members = vec![Member::dir("./"), Member::file("./control", fields, 0o644)];
        for (name, content) in &self.scripts {
            let mode = if name == "conffiles" || name == "triggers" {
                0o644
            } else {
                0o755
            };
            members.push(Member::file(&format!("./{name}"), content.as_bytes(), mode));
        }
        for m in &members {
            append(&mut control, m)?;
        }
        let control = gzip(&control.into_inner()?)?;
        let mut tar = tar::Builder::new(Vec::new());
        for m in data {
            append(&mut tar, m)?;
        }
        let data = tar.into_inner()?;
        let mut deb = b"!<arch>\n".to_vec();
        for (name, body) in [
            ("debian-binary", b"2.0\n".as_slice()),
            ("control.tar.gz", &control),
            ("data.tar", &data),
        ] {
            deb.extend_from_slice(
                format!(
                    "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    1_600_000_000,
                    0,
                    0,
                    "100644",
                    body.len()
                )
                .as_bytes(),
            );
            deb.extend_from_slice(body);
            if body.len() % 2 == 1 {
                deb.push(b'\n');
            }
        }
        std::fs::create_dir_all(out_dir)?;
        let out = out_dir.join(self.file_name());
        std::fs::write(&out, deb)?;
        Ok(out)
    }
}

/// Appends `m` to `b` with its name written verbatim (the `tar` crate would refuse `..`).
fn append(b: &mut tar::Builder<Vec<u8>>, m: &Member) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    let (name, data): (&str, &[u8]) = match m {
        Member::Dir(name) => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            (name, b"")
        }
        Member::File {
            name,
            content,
            mode,
        } => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(*mode);
            (name, content)
        }
        Member::Symlink { name, target } | Member::HardLink { name, target } => {
            h.set_entry_type(if matches!(m, Member::Symlink { .. }) {
                tar::EntryType::Symlink
            } else {
                tar::EntryType::Link
            });
            h.set_mode(0o777);
            h.set_link_name_literal(target)?;
            (name, b"")
        }
        Member::CharDevice { name, major, minor } => {
            h.set_entry_type(tar::EntryType::Char);
            h.set_mode(0o600);
            h.set_device_major(*major)?;
            h.set_device_minor(*minor)?;
            (name, b"")
        }
    };
    let slot = &mut h.as_old_mut().name;
    if name.len() > slot.len() {
        bail!("member name {name} is longer than {} bytes", slot.len());
    }
    slot[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data)?;
    Ok(())
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running gzip")?;
    let mut stdin = child.stdin.take().context("gzip stdin")?;
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("gzip writer panicked"))??;
    if !out.status.success() {
        bail!("gzip failed");
    }
    Ok(out.stdout)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_package_dpkg_can_read() {
        let out = tempfile::tempdir().unwrap();
        let deb = Deb::new("hello", "1:1.0-1")
            .depends("libc6 (>= 2.36)")
            .file("/usr/share/hello/greeting", "hi\n")
            .script("postinst", "#!/bin/sh\nexit 0\n")
            .build(out.path())
            .unwrap();
        assert!(deb.ends_with("hello_1.0-1_amd64.deb"));
        let info = Command::new("dpkg-deb")
            .arg("-f")
            .arg(&deb)
            .output()
            .unwrap();
        let text = String::from_utf8(info.stdout).unwrap();
        assert!(text.contains("Version: 1:1.0-1"), "{text}");
        assert!(text.contains("Depends: libc6 (>= 2.36)"), "{text}");
        let list = Command::new("dpkg-deb")
            .arg("-c")
            .arg(&deb)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&list.stdout).contains("./usr/share/hello/greeting"));
    }

    #[test]
    fn raw_packages_carry_the_members_as_written() {
        let out = tempfile::tempdir().unwrap();
        let deb = Deb::new("raw", "1")
            .field("Essential", "yes")
            .build_raw(
                out.path(),
                &[
                    Member::dir("./"),
                    Member::symlink("./opt/x", "/tmp"),
                    Member::file("../escape", "x", 0o644),
                    Member::hard_link("./opt/s", "/etc/shadow"),
                    Member::char_device("./dev/foo", 1, 3),
                ],
            )
            .unwrap();
        let info = Command::new("dpkg-deb")
            .arg("-f")
            .arg(&deb)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&info.stdout).contains("Essential: yes"));
        let list = Command::new("dpkg-deb")
            .arg("-c")
            .arg(&deb)
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(std::fs::read(&deb)
            .unwrap()
            .windows(11)
            .any(|w| w == b"/etc/shadow"));
        for want in [
            "./opt/x -> /tmp",
            "../escape",
            "./opt/s link to",
            "./dev/foo",
        ] {
            assert!(list.contains(want), "{want} not in\n{list}");
        }
    }
}
