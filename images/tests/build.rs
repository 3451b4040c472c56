//! Builds images from a tiny commit (no VM): the partition table, the filesystems' labels,
//! extlinux and libostree's boot entries on /boot, the deployment's fstab and remote on the
//! root, and that a failure leaves nothing behind. Needs root (loop devices, mount).

use std::path::Path;
use std::process::Command;

use keel_common::cancel::Cancel;
use keel_common::keys::SecretKey;
use keel_common::progress::{Discard, Recorder};
use keel_images::guard::{LoopDevice, Mount};
use keel_images::layout::MIB;
use keel_images::{Format, ImageSpec, RemoteSpec};
use keel_tests::sysroot::TreeBuilder;

const REF: &str = "keel/test/x86_64/host";

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn repo_with_commit(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("repo");
    output(
        Command::new("ostree")
            .arg("init")
            .arg(format!("--repo={}", repo.display()))
            .arg("--mode=archive"),
    );
    TreeBuilder::new("1.0")
        .file("/usr/etc/fstab", "# static file system information\n")
        .commit(&repo, REF)
        .unwrap();
    repo
}

fn spec(repo: &Path, out: &Path, keys: Option<&Path>) -> ImageSpec {
    ImageSpec {
        repo: repo.to_path_buf(),
        reference: REF.parse().unwrap(),
        format: Format::Raw,
        size: 1 << 30,
        boot_size: 128 * MIB,
        output: out.to_path_buf(),
        osname: "keel".into(),
        remote: keys.map(|k| RemoteSpec {
            name: "keel".into(),
            url: "http://10.0.2.2:8080/repo".into(),
            trusted_keys: k.to_path_buf(),
        }),
        kargs: vec!["quiet".into()],
    }
}

fn loops_over(file: &Path) -> usize {
    output(Command::new("losetup").arg("-a"))
        .lines()
        .filter(|l| l.contains(&file.display().to_string()))
        .count()
}

#[test]
fn image_has_bootable_boot_partition_extlinux_and_a_deployment() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let repo = repo_with_commit(dir.path());
    let key = SecretKey::generate().unwrap();
    let keys = dir.path().join("trusted.pub");
    std::fs::write(&keys, format!("{}\n", key.public().to_base64())).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let image = out_dir.join("host.raw");

    let progress = Recorder::default();
    let report =
        keel_images::build(&spec(&repo, &image, Some(&keys)), &Cancel::new(), &progress).unwrap();
    let lines = progress.lines();
    assert_eq!(
        lines.first().map(String::as_str),
        Some("image: deploying keel/test/x86_64/host into a new sysroot"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("image: writing a 1024 MiB disk")),
        "{lines:?}"
    );
    assert_eq!(report.layout.disk_size, 1 << 30);
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 1 << 30);
    let entries: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert_eq!(
        entries.len(),
        1,
        "only the image is left in the output directory"
    );

    let table = output(Command::new("sfdisk").arg("--dump").arg(&image));
    assert!(table.contains("label: dos"), "{table}");
    assert!(
        table.contains("start=        2048, size=      262144, type=83, bootable"),
        "{table}"
    );
    let mbr = std::fs::read(keel_images::build::MBR_BIN).unwrap();
    let head = std::fs::read(&image).unwrap();
    assert_eq!(&head[..440], &mbr[..440], "syslinux's MBR code");

    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    {
        let boot = report.layout.boot;
        let dev = LoopDevice::attach(&image, boot.offset, boot.size, &Discard).unwrap();
        let label = output(
            Command::new("blkid")
                .args(["-p", "-o", "value", "-s", "LABEL"])
                .arg(dev.path()),
        );
        assert_eq!(label.trim(), "keel-boot");
        let m = Mount::new(dev.path(), &mnt, "ext4", &Discard).unwrap();
        assert!(m.path().join("syslinux/ldlinux.sys").is_file());
        let cfg = std::fs::read_to_string(m.path().join("syslinux/syslinux.cfg")).unwrap();
        assert!(cfg.starts_with("SERIAL 0 115200\n"), "{cfg}");
        assert!(cfg.contains("DEFAULT "), "{cfg}");
        assert!(cfg.contains("KERNEL /boot/ostree/keel-"), "{cfg}");
        assert!(
            cfg.contains("APPEND root=LABEL=keel-root rw console=ttyS0,115200 quiet ostree="),
            "{cfg}"
        );
        drop(m);
        drop(dev);
    }
    {
        let root = report.layout.root;
        let dev = LoopDevice::attach(&image, root.offset, root.size, &Discard).unwrap();
        let label = output(
            Command::new("blkid")
                .args(["-p", "-o", "value", "-s", "LABEL"])
                .arg(dev.path()),
        );
        assert_eq!(label.trim(), "keel-root");
        let m = Mount::new(dev.path(), &mnt, "ext4", &Discard).unwrap();
        let deploy = m
            .path()
            .join(format!("ostree/deploy/keel/deploy/{}.0", report.commit));
        let fstab = std::fs::read_to_string(deploy.join("etc/fstab")).unwrap();
        assert!(
            fstab.ends_with("LABEL=keel-boot /boot ext4 defaults 0 2\n"),
            "{fstab}"
        );
        let remote =
            std::fs::read_to_string(deploy.join("etc/keel/config.d/50-remote.toml")).unwrap();
        assert!(
            remote.contains("url = \"http://10.0.2.2:8080/repo\""),
            "{remote}"
        );
        assert!(deploy.join("etc/keel/trusted.ed25519.d/keel.pub").is_file());
        let origin = std::fs::read_to_string(deploy.with_extension("0.origin")).unwrap();
        assert!(origin.contains(&format!("refspec=keel:{REF}")), "{origin}");
        assert!(
            !origin.contains("override-commit"),
            "the first deployment follows the ref: {origin}"
        );
        // What `ostree admin init-fs` and `os-init` made before keel-host provisioned it.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(m.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(mode("root"), 0o700);
        for dir in ["dev", "proc", "sys", "run", "home"] {
            assert_eq!(mode(dir), 0o755, "{dir}");
        }
        assert!(m.path().join("ostree/deploy/keel/var/tmp").is_dir());
        let config = std::fs::read_to_string(m.path().join("ostree/repo/config")).unwrap();
        assert!(config.contains("bootloader=syslinux"), "{config}");
        assert!(m.path().join("boot").is_dir(), "the mount point for /boot");
        assert_eq!(std::fs::read_dir(m.path().join("boot")).unwrap().count(), 0);
        drop(m);
        drop(dev);
    }
    assert_eq!(loops_over(&image), 0);
}

#[test]
fn failed_build_leaves_no_output_and_no_scratch() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let repo = repo_with_commit(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let image = out_dir.join("host.raw");
    let mut bad = spec(&repo, &image, None);
    bad.reference = "keel/no/such/ref".parse().unwrap();
    let err = keel_images::build(&bad, &Cancel::new(), &Discard).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("keel/no/such/ref"), "{text}");
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        0,
        "nothing left behind"
    );

    let mut small = spec(&repo, &image, None);
    small.size = 200 * MIB;
    let err = keel_images::build(&small, &Cancel::new(), &Discard).unwrap_err();
    assert!(format!("{err:#}").contains("too small"), "{err:#}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
}

/// `--format qcow2` goes through `qemu-img convert`: the image is a valid qcow2 of the
/// requested virtual size, and converted back it holds the same bootable partition table as a
/// raw build. This is the test that notices when `qemu-img` went missing from the machine.
#[test]
fn qcow2_image_passes_qemu_img_check_and_holds_the_raw_layout() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let repo = repo_with_commit(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let image = out_dir.join("host.qcow2");
    let mut qcow2 = spec(&repo, &image, None);
    qcow2.format = Format::Qcow2;
    let report = keel_images::build(&qcow2, &Cancel::new(), &Discard).unwrap();
    assert_eq!(report.format, Format::Qcow2);
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);

    output(Command::new("qemu-img").arg("check").arg(&image));
    let info: serde_json::Value = serde_json::from_str(&output(
        Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&image),
    ))
    .unwrap();
    assert_eq!(info["format"], "qcow2", "{info}");
    assert_eq!(info["virtual-size"], 1u64 << 30, "{info}");
    let on_disk = std::fs::metadata(&image).unwrap().len();
    assert!(
        on_disk < 1 << 30,
        "a qcow2 of a mostly empty disk is sparse: {on_disk} bytes"
    );

    let raw = dir.path().join("back.raw");
    output(
        Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(&image)
            .arg(&raw),
    );
    let table = output(Command::new("sfdisk").arg("--dump").arg(&raw));
    assert!(
        table.contains("start=        2048, size=      262144, type=83, bootable"),
        "{table}"
    );
}
