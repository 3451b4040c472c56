use super::*;
use crate::format::debian::DATABASE;
use cap_std::ambient_authority;
use std::fs;
use std::os::unix::fs::symlink;

const KVER: &str = "6.1.0-99-amd64";

/// A small tree shaped like an installed Debian root.
fn debian_like_tree() -> (tempfile::TempDir, Dir) {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    for d in [
        "boot",
        "etc/containers",
        "home",
        "root",
        "opt",
        "srv",
        "mnt",
        "media",
        "tmp",
        "run/lock",
        "dev",
        "proc",
        "sys",
        "usr/local/bin",
        "usr/lib/tmpfiles.d",
        "var/lib/dpkg/info",
        "var/lib/dpkg/triggers",
        "var/log/journal",
        "var/cache/apt",
        "var/spool/odd dir",
    ] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    fs::create_dir_all(r.join("usr/lib/modules").join(KVER)).unwrap();
    fs::write(r.join(format!("boot/vmlinuz-{KVER}")), "kernel").unwrap();
    fs::write(r.join(format!("boot/config-{KVER}")), "config").unwrap();
    fs::write(
        r.join("usr/lib/modules").join(KVER).join("initramfs.img"),
        "initramfs",
    )
    .unwrap();
    symlink(format!("boot/vmlinuz-{KVER}"), r.join("vmlinuz")).unwrap();
    fs::write(r.join("etc/machine-id"), "0123456789abcdef\n").unwrap();
    fs::write(r.join("etc/hostname"), "debian\n").unwrap();
    fs::write(r.join("root/.bashrc"), "# bashrc\n").unwrap();
    fs::write(r.join("var/lib/dpkg/status"), "Package: base-files\n").unwrap();
    fs::write(r.join("var/lib/dpkg/status-old"), "old\n").unwrap();
    fs::write(r.join("var/lib/dpkg/lock"), "").unwrap();
    fs::write(r.join("var/log/dpkg.log"), "log\n").unwrap();
    fs::set_permissions(
        r.join("var/log/journal"),
        fs::Permissions::from_mode(0o2755),
    )
    .unwrap();
    symlink("/run", r.join("var/run")).unwrap();
    // systemd declares /var/log itself; ours must not repeat it.
    fs::write(
        r.join("usr/lib/tmpfiles.d/var.conf"),
        "# systemd\nd /var/log 0755 - - -\nd /var/cache 0755 - - -\n",
    )
    .unwrap();
    fs::write(r.join("tmp/leftover"), "x").unwrap();
    let dir = Dir::open_ambient_dir(r, ambient_authority()).unwrap();
    (tmp, dir)
}

#[test]
fn debian_root_becomes_ostree_layout() {
    let (tmp, dir) = debian_like_tree();
    let result = ostreeify(&dir, &DATABASE).unwrap();
    let r = tmp.path();
    assert_eq!(result.kernel_version, KVER);

    let moddir = r.join("usr/lib/modules").join(KVER);
    assert_eq!(
        fs::read_to_string(moddir.join("vmlinuz")).unwrap(),
        "kernel"
    );
    assert!(moddir.join("initramfs.img").is_file());
    assert_eq!(
        fs::read_dir(r.join("boot")).unwrap().count(),
        0,
        "/boot emptied"
    );
    assert!(
        r.join("vmlinuz").symlink_metadata().is_err(),
        "top-level link removed"
    );

    assert!(r.join("etc").symlink_metadata().is_err(), "/etc moved away");
    assert_eq!(
        fs::read_to_string(r.join("usr/etc/hostname")).unwrap(),
        "debian\n"
    );
    assert_eq!(
        fs::read_to_string(r.join("usr/etc/machine-id")).unwrap(),
        ""
    );
    let storage = fs::read_to_string(r.join("usr/etc/containers/storage.conf")).unwrap();
    assert!(storage.contains("driver = \"overlay\""));
    assert!(storage.contains("runroot = \"/run/containers/storage\""));

    assert!(r.join(DATABASE.image).join("status").is_file());
    assert!(r.join(DATABASE.image).join("info").is_dir());
    assert!(!r.join(DATABASE.image).join("status-old").exists());
    assert!(!r.join(DATABASE.image).join("lock").exists());

    for (link, target) in [
        ("home", "var/home"),
        ("root", "var/roothome"),
        ("opt", "var/opt"),
        ("srv", "var/srv"),
        ("mnt", "var/mnt"),
        ("media", "run/media"),
        ("usr/local", "../var/usrlocal"),
        ("ostree", "sysroot/ostree"),
    ] {
        assert_eq!(
            fs::read_link(r.join(link)).unwrap(),
            Path::new(target),
            "{link}"
        );
    }
    assert!(r.join("sysroot").is_dir());

    assert_eq!(
        fs::read_dir(r.join("var")).unwrap().count(),
        0,
        "/var emptied"
    );
    assert_eq!(
        fs::read_dir(r.join("tmp")).unwrap().count(),
        0,
        "/tmp emptied"
    );
    assert_eq!(
        result.dropped_var_files,
        vec![
            "var/log/dpkg.log".to_string(),
            "var/roothome/.bashrc".to_string()
        ]
    );

    let conf = fs::read_to_string(r.join(VAR_TMPFILES)).unwrap();
    let lines: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), result.tmpfiles_lines);
    for expected in [
        "L /var/lib/dpkg - - - - ../../usr/lib/sysimage/dpkg",
        "d /var/roothome 0755 0 0 -",
        "d /var/usrlocal/bin 0755 0 0 -",
        "d /var/log/journal 2755 0 0 -",
        "d /var/spool/odd\\x20dir 0755 0 0 -",
        "d /var/lib/containers 0700 0 0 -",
        "L /var/run - - - - /run",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in\n{conf}");
    }
    assert!(
        !lines.iter().any(|l| l.starts_with("d /var/log ")),
        "repeats a path systemd declares:\n{conf}"
    );
    // Parents come before children, so tmpfiles creates them in order.
    let pos = |p: &str| lines.iter().position(|l| l.contains(p)).unwrap();
    assert!(pos("/var/usrlocal ") < pos("/var/usrlocal/bin "));
    assert!(result.tree_bytes > 0);
}

#[test]
fn tree_without_kernel_is_refused() {
    let (tmp, dir) = debian_like_tree();
    fs::remove_file(tmp.path().join(format!("boot/vmlinuz-{KVER}"))).unwrap();
    assert!(matches!(
        ostreeify(&dir, &DATABASE),
        Err(OstreeifyError::NoKernel)
    ));
}

#[test]
fn two_kernels_are_refused_naming_both() {
    let (tmp, dir) = debian_like_tree();
    fs::create_dir_all(tmp.path().join("usr/lib/modules/6.1.0-98-amd64")).unwrap();
    fs::write(tmp.path().join("boot/vmlinuz-6.1.0-98-amd64"), "k").unwrap();
    let err = ostreeify(&dir, &DATABASE).unwrap_err().to_string();
    assert!(err.contains("6.1.0-98-amd64, 6.1.0-99-amd64"), "{err}");
}

#[test]
fn missing_initramfs_is_refused() {
    let (tmp, dir) = debian_like_tree();
    fs::remove_file(
        tmp.path()
            .join("usr/lib/modules")
            .join(KVER)
            .join("initramfs.img"),
    )
    .unwrap();
    let err = ostreeify(&dir, &DATABASE).unwrap_err().to_string();
    assert!(err.contains("initramfs.img"), "{err}");
}

#[test]
fn fifo_in_tree_is_refused_naming_it() {
    let (tmp, dir) = debian_like_tree();
    let status = std::process::Command::new("mkfifo")
        .arg(tmp.path().join("usr/lib/a-fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    let err = ostreeify(&dir, &DATABASE).unwrap_err().to_string();
    assert!(err.contains("/usr/lib/a-fifo is a FIFO"), "{err}");
}

#[test]
fn tmpfiles_escaping_round_trips() {
    for (raw, escaped) in [
        ("/var/lib/plain", "/var/lib/plain"),
        ("/var/a b", "/var/a\\x20b"),
        ("/var/back\\slash", "/var/back\\\\slash"),
        ("/var/tab\there", "/var/tab\\x09here"),
    ] {
        assert_eq!(escape_tmpfiles(raw), escaped);
        let line = format!("d {escaped} 0755 0 0 -");
        assert_eq!(
            tmpfiles_paths(&line).collect::<Vec<_>>(),
            vec![raw.to_string()]
        );
    }
}

#[test]
fn tmpfiles_paths_skip_comments_and_blanks() {
    let text = "# comment\n\nd /var/a 0755 - - -\n  L+ /var/b - - - - /x\n";
    assert_eq!(
        tmpfiles_paths(text).collect::<Vec<_>>(),
        vec!["/var/a".to_string(), "/var/b".to_string()]
    );
}
