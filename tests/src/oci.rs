//! A tiny container image archive made without a registry: Debian's `busybox-static` binary
//! as the only layer, packed as a `docker-archive` tarball that `podman load -i` reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// The tag the archive's image gets (`podman run localhost/keel-busybox ...`).
pub const BUSYBOX_TAG: &str = "localhost/keel-busybox:latest";

/// The image configuration: amd64 Linux, one layer with diff id `layer_sha256`, PATH set so
/// `busybox` is found.
pub fn config_json(layer_sha256: &str) -> String {
    serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/busybox", "sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_sha256}")]},
    })
    .to_string()
}

/// `manifest.json` of a docker-archive with one image and one layer.
pub fn manifest_json(config_name: &str, layer_name: &str, tag: &str) -> String {
    serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": [layer_name],
    }])
    .to_string()
}

fn sha256_file(path: &Path) -> Result<String> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&data)))
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Downloads Debian's `busybox-static` package through the machine's apt configuration into
/// `cache_dir` (once) and returns the path of the `.deb`.
pub fn busybox_deb(cache_dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    let find = || -> Result<Option<PathBuf>> {
        for entry in std::fs::read_dir(cache_dir)? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with("busybox-static_") && name.ends_with(".deb") {
                return Ok(Some(path));
            }
        }
        Ok(None)
    };
    if let Some(path) = find()? {
        return Ok(path);
    }
    run(Command::new("apt-get")
        .args(["download", "-q", "busybox-static"])
        .current_dir(cache_dir))
    .context("downloading busybox-static with the machine's apt sources (apt-get update first)")?;
    find()?.context("apt-get download left no busybox-static .deb")
}

/// Writes a docker-archive of an image whose only file is `/bin/busybox` (from `deb`) to
/// `output`, tagged [`BUSYBOX_TAG`].
pub fn busybox_archive(deb: &Path, output: &Path) -> Result<()> {
    let work = tempfile::tempdir()?;
    let unpacked = work.path().join("deb");
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&unpacked))?;
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::create_dir_all(rootfs.join("tmp"))?;
    std::fs::copy(unpacked.join("bin/busybox"), rootfs.join("bin/busybox"))
        .with_context(|| format!("{} has no bin/busybox", deb.display()))?;

    let archive = work.path().join("archive");
    std::fs::create_dir_all(&archive)?;
    let layer_tmp = work.path().join("layer.tar");
    run(Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "--sort=name"])
        .args(["--mtime=@0", "-C"])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer_tmp)
        .arg("."))?;
    let layer_sha = sha256_file(&layer_tmp)?;
    let layer_name = format!("{layer_sha}/layer.tar");
    std::fs::create_dir_all(archive.join(&layer_sha))?;
    std::fs::rename(&layer_tmp, archive.join(&layer_name))?;

    let config = config_json(&layer_sha);
    let config_name = format!("{}.json", hex::encode(Sha256::digest(config.as_bytes())));
    std::fs::write(archive.join(&config_name), &config)?;
    std::fs::write(
        archive.join("manifest.json"),
        manifest_json(&config_name, &layer_name, BUSYBOX_TAG),
    )?;
    run(Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&archive)
        .arg("-cf")
        .arg(output)
        .args(["manifest.json", &config_name, &layer_name]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_layer_diff_id() {
        let config: serde_json::Value = serde_json::from_str(&config_json("ab12")).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], "sha256:ab12");
        assert_eq!(config["os"], "linux");
    }

    #[test]
    fn manifest_lists_config_tag_and_layer() {
        let m: serde_json::Value =
            serde_json::from_str(&manifest_json("c.json", "l/layer.tar", "t:1")).unwrap();
        assert_eq!(m[0]["Config"], "c.json");
        assert_eq!(m[0]["RepoTags"][0], "t:1");
        assert_eq!(m[0]["Layers"][0], "l/layer.tar");
    }

    #[test]
    fn archive_of_a_fake_busybox_holds_manifest_config_and_layer() {
        let dir = tempfile::tempdir().unwrap();
        let deb = crate::deb::Deb::new("busybox-static", "1:1.0-1")
            .file("/bin/busybox", "#!/bin/sh\n")
            .build(dir.path())
            .unwrap();
        let out = dir.path().join("image.tar");
        busybox_archive(&deb, &out).unwrap();
        let listing = Command::new("tar").arg("-tf").arg(&out).output().unwrap();
        let names = String::from_utf8_lossy(&listing.stdout);
        assert!(names.lines().any(|l| l == "manifest.json"), "{names}");
        assert!(names.lines().any(|l| l.ends_with("/layer.tar")), "{names}");
        assert_eq!(names.lines().filter(|l| l.ends_with(".json")).count(), 2);
    }
}
