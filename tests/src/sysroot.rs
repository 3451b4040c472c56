//! Directory sysroots and minimal deployable trees, made with the `ostree` CLI so the code under
//! test (which uses libostree through the `ostree` crate) is checked against an independent
//! writer.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use keel_tests::sysroot::{TestSysroot, TreeBuilder};
//! let sysroot = TestSysroot::new("keel")?;
//! let v1 = TreeBuilder::new("1").file("usr/etc/motd", "hello\n").commit(&sysroot.repo_path(), "keel/stable")?;
//! sysroot.deploy_cli("keel/stable", &["root=/dev/vda"])?;
//! # let _ = v1; Ok(()) }
//! ```

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh ostree sysroot (`ostree admin init-fs --modern` + `os-init`) in a temporary
/// directory. Dropping it clears the immutable attribute libostree sets on deployment
/// directories, then removes everything.
pub struct TestSysroot {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    osname: String,
}

impl TestSysroot {
    pub fn new(osname: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("keel-sysroot-").tempdir()?;
        let path = dir.path().join("sysroot");
        std::fs::create_dir(&path)?;
        run(Command::new("ostree")
            .args(["admin", "init-fs", "--modern"])
            .arg(&path))?;
        run(Command::new("ostree")
            .args(["admin", "os-init"])
            .arg(format!("--sysroot={}", path.display()))
            .arg(osname))?;
        Ok(Self {
            dir: Some(dir),
            root: path,
            osname: osname.into(),
        })
    }

    /// The sysroot directory (holds `boot/` and `ostree/`).
    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn osname(&self) -> &str {
        &self.osname
    }

    /// The sysroot's bare repository, `ostree/repo`.
    pub fn repo_path(&self) -> PathBuf {
        self.path().join("ostree/repo")
    }

    /// Deploys `refspec` with `ostree admin deploy` (the independent way, for a first deployment).
    pub fn deploy_cli(&self, refspec: &str, kargs: &[&str]) -> Result<()> {
        let mut cmd = Command::new("ostree");
        cmd.args(["admin", "deploy"])
            .arg(format!("--sysroot={}", self.path().display()))
            .arg(format!("--os={}", self.osname));
        for karg in kargs {
            cmd.arg(format!("--karg={karg}"));
        }
        run(cmd.arg(refspec)).map(drop)
    }

    /// `ostree admin status` output, for assertions and failure messages.
    pub fn status_cli(&self) -> Result<String> {
        run(Command::new("ostree")
            .args(["admin", "status"])
            .arg(format!("--sysroot={}", self.path().display())))
    }

    /// Checkout directories of the deployments in boot order, as `ostree/deploy/OS/deploy/CSUM.N`.
    pub fn deployment_dirs(&self) -> Result<Vec<PathBuf>> {
        let status = self.status_cli()?;
        let prefix = format!("{} ", self.osname);
        Ok(status
            .lines()
            .map(|l| l.trim_start_matches(['*', ' ']))
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|l| l.split_whitespace().next().unwrap_or_default())
            .map(|d| {
                self.path()
                    .join("ostree/deploy")
                    .join(&self.osname)
                    .join("deploy")
                    .join(d)
            })
            .collect())
    }

    /// The `options` line of each boot loader entry, in the loader's order (default first).
    pub fn boot_entry_options(&self) -> Result<Vec<String>> {
        let entries = self.path().join("boot/loader/entries");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&entries)
            .with_context(|| format!("reading {}", entries.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        // libostree 2022.7 names entries ostree-N-OS.conf, N counting up from the oldest.
        let number = |f: &PathBuf| -> u64 {
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            name.strip_prefix("ostree-")
                .and_then(|r| r.split('-').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_default()
        };
        files.sort_by_key(|f| std::cmp::Reverse(number(f)));
        files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f)?;
                Ok(text
                    .lines()
                    .find_map(|l| l.strip_prefix("options "))
                    .unwrap_or_default()
                    .to_string())
            })
            .collect()
    }
}

impl Drop for TestSysroot {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            // Deployment roots are immutable (chattr +i); removal fails without this.
            let _ = Command::new("chattr")
                .arg("-R")
                .arg("-i")
                .arg(dir.path())
                .output();
            let _ = dir.close();
        }
    }
}

/// A minimal deployable tree: a kernel and initramfs under `usr/lib/modules/KVER/`, `usr/etc`
/// with os-release, passwd and group, plus the files the test adds. Committed with the
/// `ostree` CLI with Keel's metadata.
#[derive(Clone, Debug)]
pub struct TreeBuilder {
    version: String,
    kernel_version: String,
    timestamp: Option<i64>,
    packages: Vec<(String, String)>,
    files: Vec<(String, Entry)>,
    removed: Vec<String>,
    metadata: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
enum Entry {
    File { content: Vec<u8>, mode: u32 },
    Dir,
    Symlink(String),
}

impl TreeBuilder {
    /// A tree whose commit will carry `version`.
    pub fn new(version: &str) -> Self {
        Self {
            version: version.into(),
            kernel_version: "6.1.0-keel".into(),
            timestamp: None,
            packages: vec![("base-files".into(), "12.4".into())],
            files: Vec::new(),
            removed: Vec::new(),
            metadata: Vec::new(),
        }
    }

    /// The commit's timestamp in seconds since the epoch (default: now).
    pub fn timestamp(mut self, secs: i64) -> Self {
        self.timestamp = Some(secs);
        self
    }

    /// Adds or replaces a package in `keel.packages`.
    pub fn package(mut self, name: &str, version: &str) -> Self {
        self.packages.retain(|(n, _)| n != name);
        self.packages.push((name.into(), version.into()));
        self
    }

    /// Adds a regular file (mode 0644). `path` is relative to the tree root, e.g. `usr/etc/x`.
    pub fn file(self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.file_mode(path, content, 0o644)
    }

    pub fn file_mode(mut self, path: &str, content: impl Into<Vec<u8>>, mode: u32) -> Self {
        let content = content.into();
        self.files.push((
            path.trim_start_matches('/').into(),
            Entry::File { content, mode },
        ));
        self
    }

    pub fn dir(mut self, path: &str) -> Self {
        self.files
            .push((path.trim_start_matches('/').into(), Entry::Dir));
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.files.push((
            path.trim_start_matches('/').into(),
            Entry::Symlink(target.into()),
        ));
        self
    }

    /// Removes a path of the default tree (e.g. `usr/etc/group`).
    pub fn remove(mut self, path: &str) -> Self {
        self.removed.push(path.trim_start_matches('/').into());
        self
    }

    /// Extra commit metadata in GVariant text format, e.g. `("keel.input-hash", "'abc'")`.
    pub fn metadata(mut self, key: &str, gvariant_text: &str) -> Self {
        self.metadata.push((key.into(), gvariant_text.into()));
        self
    }

    /// Writes the tree into `dir` (which must exist and be empty).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let modules = dir.join("usr/lib/modules").join(&self.kernel_version);
        std::fs::create_dir_all(&modules)?;
        std::fs::write(
            modules.join("vmlinuz"),
            format!("kernel {}\n", self.kernel_version),
        )?;
        std::fs::write(
            modules.join("initramfs.img"),
            format!("initramfs {}\n", self.version),
        )?;
        let etc = dir.join("usr/etc");
        std::fs::create_dir_all(&etc)?;
        std::fs::write(
            etc.join("os-release"),
            format!("ID=keel\nNAME=Keel\nVERSION_ID={}\n", self.version),
        )?;
        std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
        std::fs::write(etc.join("group"), "root:x:0:\n")?;
        for sub in ["usr/bin", "usr/lib/keel", "var", "etc"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        // `ostree admin deploy` wants /etc only under /usr/etc.
        std::fs::remove_dir(dir.join("etc"))?;
        for path in &self.removed {
            let p = dir.join(path);
            if p.is_dir() {
                std::fs::remove_dir_all(&p)?;
            } else {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
        for (path, entry) in &self.files {
            let p = dir.join(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            match entry {
                Entry::File { content, mode } => {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::write(&p, content)?;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
                }
                Entry::Dir => std::fs::create_dir_all(&p)?,
                Entry::Symlink(target) => std::os::unix::fs::symlink(target, &p)?,
            }
        }
        Ok(())
    }

    /// Commits the tree to `branch` in `repo` with metadata `version`, `keel.packages`,
    /// `ostree.linux` and the ref binding (ostree's default), and returns the checksum.
    pub fn commit(&self, repo: &Path, branch: &str) -> Result<String> {
        let staging = tempfile::tempdir()?;
        let tree = staging.path().join("tree");
        std::fs::create_dir(&tree)?;
        self.write(&tree)?;
        let mut packages = self.packages.clone();
        packages.sort();
        let packages = packages
            .iter()
            .map(|(n, v)| format!("({}, {})", quote(n), quote(v)))
            .collect::<Vec<_>>()
            .join(", ");
        let timestamp = self.timestamp.unwrap_or_else(now);
        let mut cmd = Command::new("ostree");
        cmd.arg("commit")
            .arg(format!("--repo={}", repo.display()))
            .arg(format!("--branch={branch}"))
            .arg(format!("--tree=dir={}", tree.display()))
            .arg(format!("--subject=version {}", self.version))
            .arg(format!("--timestamp=@{timestamp}"))
            .arg(format!("--add-metadata-string=version={}", self.version))
            .arg(format!(
                "--add-metadata-string=ostree.linux={}",
                self.kernel_version
            ))
            .arg(format!("--add-metadata=keel.packages=@a(ss) [{packages}]"));
        for (key, value) in &self.metadata {
            cmd.arg(format!("--add-metadata={key}={value}"));
        }
        let out = run(&mut cmd)?;
        let checksum = out.trim().to_string();
        if checksum.len() != 64 {
            bail!("ostree commit printed {out:?}, expected a checksum");
        }
        Ok(checksum)
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Runs a command, returns its stdout, and puts its stderr into the error.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_commits_and_deploys_with_the_ostree_cli() {
        let sysroot = TestSysroot::new("keel").unwrap();
        let csum = TreeBuilder::new("1")
            .timestamp(1_700_000_000)
            .package("bash", "5.2")
            .file("usr/etc/motd", "hi\n")
            .commit(&sysroot.repo_path(), "keel/stable")
            .unwrap();
        let show = run(Command::new("ostree")
            .arg(format!("--repo={}", sysroot.repo_path().display()))
            .args(["show", "--print-metadata-key=keel.packages", &csum]))
        .unwrap();
        assert!(show.contains("('bash', '5.2')"), "{show}");
        sysroot
            .deploy_cli("keel/stable", &["root=/dev/vda"])
            .unwrap();
        let dirs = sysroot.deployment_dirs().unwrap();
        assert_eq!(dirs.len(), 1);
        assert!(dirs[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&csum));
        assert_eq!(
            std::fs::read_to_string(dirs[0].join("etc/motd")).unwrap(),
            "hi\n"
        );
        assert_eq!(sysroot.boot_entry_options().unwrap().len(), 1);
        assert!(sysroot.boot_entry_options().unwrap()[0].contains("root=/dev/vda"));
    }
}
