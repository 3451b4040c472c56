//! Tiny `.deb` packages built with `dpkg-deb` for fast tests.

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
}
