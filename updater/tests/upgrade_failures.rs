//! `keel upgrade` when things go wrong mid-way: a remote that 404s or is down, a dropped
//! connection, a full disk, a transfer cancelled half-way. Each leaves deployments and refs as
//! they were, and the next run finishes the job.

mod common;
use common::*;

/// Every `*.part` file under `dir`: downloads that were not finished.
fn part_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                _ if path.extension().is_some_and(|e| e == "part") => found.push(path),
                _ => {}
            }
        }
    }
    found
}

fn biggest_file(dir: &Path) -> PathBuf {
    let mut best = (0, PathBuf::new());
    for sub in std::fs::read_dir(dir).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let len = f.metadata().unwrap().len();
            if len > best.0 && f.path().extension().is_some_and(|e| e == "filez") {
                best = (len, f.path());
            }
        }
    }
    best.1
}

#[test]
fn remote_404_server_down_and_cancelled_pull_change_nothing() {
    let w = World::new(1024);
    let v2 = w.publish(tree("2", 1024), REF);

    w.server.inject("/summary", Fault::Status(404));
    w.assert_rejected(&v2, "HTTP 404");
    w.server.clear_faults();
    w.server.inject(".commit", Fault::Status(404));
    w.assert_rejected(&v2, "HTTP 404");
    w.server.clear_faults();

    // Rebase onto a ref the remote does not publish.
    let before = w.state();
    let err = w
        .upgrade(&Request::rebase(
            &"keel/nowhere".parse().unwrap(),
            Mode::Deploy,
        ))
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("lists no ref keel/nowhere"),
        "{err:#}"
    );
    assert_eq!(w.state(), before);

    // Cancelled (Ctrl-C) before the content arrives.
    let cancellable = Cancel::new();
    cancellable.cancel();
    let err = upgrade::run(
        &w.host(),
        &Request::upgrade(Mode::Deploy),
        &cancellable,
        &Discard,
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("run the command again to resume"),
        "{err:#}"
    );
    assert_eq!(w.state(), before);

    // Server down: the remote points at a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let repo = format!("--repo={}", w.sysroot.repo_path().display());
    ostree(&["remote", "delete", &repo, "keel"]);
    ostree(&[
        "remote",
        "add",
        "--no-gpg-verify",
        &repo,
        "keel",
        &format!("http://127.0.0.1:{port}"),
    ]);
    w.assert_rejected(&v2, "cannot reach the remote");
}

#[test]
fn a_dropped_connection_is_resumed_by_the_next_run() {
    const BIG: usize = 1 << 20;
    let w = World::new(1024);
    let v2 = w.publish(tree("2", BIG), REF);
    // No delta: objects one by one; the connection drops on the big object.
    let object = biggest_file(&w.server_repo.join("objects"));
    let name = object.file_name().unwrap().to_string_lossy().into_owned();
    w.server.inject(&name, Fault::Truncate(1000));
    w.assert_rejected("", "nothing was deployed");
    w.server.clear_faults();
    w.server.reset_counters();
    let report = w.upgrade(&Request::upgrade(Mode::Deploy)).unwrap();
    assert!(report.deployed);
    assert_eq!(w.state().0[0].0, v2);
    let refetched: Vec<String> = w
        .server
        .requests()
        .into_iter()
        .filter(|r| r.contains("/objects/"))
        .collect();
    assert!(
        refetched.iter().any(|r| r.ends_with(&name)),
        "{refetched:?}"
    );
    // The dropped object, and at most one other that was in flight when the drop failed
    // the pull; everything that had arrived is kept.
    let content = refetched.iter().filter(|r| r.ends_with(".filez")).count();
    assert!(
        content <= 2,
        "objects fetched before the drop were fetched again: {refetched:?}"
    );
}

/// The client sysroot copied onto a small tmpfs and bind-mounted over its own path; unmounted
/// on drop (even on panic), before the `TestSysroot` beneath it is removed.
struct SmallDisk {
    backing: tempfile::TempDir,
    target: PathBuf,
}

impl SmallDisk {
    fn over(target: &Path) -> SmallDisk {
        let backing = tempfile::Builder::new()
            .prefix("keel-tmpfs-")
            .tempdir()
            .unwrap();
        let dir = backing.path().display().to_string();
        run(Command::new("mount").args(["-t", "tmpfs", "-o", "size=64m", "tmpfs", &dir])).unwrap();
        let disk = SmallDisk {
            backing,
            target: target.to_path_buf(),
        };
        run(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", target.display()))
            .arg(&dir))
        .unwrap();
        run(Command::new("mount").arg("--bind").arg(&dir).arg(target)).unwrap();
        disk
    }

    fn used(&self) -> u64 {
        let out = run(Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(self.backing.path()))
        .unwrap();
        out.lines().nth(1).unwrap().trim().parse().unwrap()
    }

    fn resize(&self, bytes: u64) {
        let kib = bytes.div_ceil(4096) * 4;
        run(Command::new("mount")
            .args(["-o", &format!("remount,size={kib}k")])
            .arg(self.backing.path()))
        .unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.target).status();
        // Deployment directories are immutable; tmpfs drops them anyway, but a failed
        // unmount must not leave undeletable files for the tempdir's cleanup.
        let _ = Command::new("chattr")
            .args(["-R", "-f", "-i"])
            .arg(self.backing.path())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.backing.path())
            .status();
    }
}

#[test]
fn disk_full_during_pull_leaves_the_host_as_it_was() {
    const NEW: usize = 6 << 20;
    let w = World::new(1024);
    let v2 = w.publish(
        tree("2", 1024).file("usr/share/keel-test/new", noise(NEW, 7)),
        REF,
    );
    w.static_delta(&w.v1, &v2);
    let disk = SmallDisk::over(w.sysroot.path());
    disk.resize(disk.used() + (2 << 20));

    let before = w.state();
    let mut request = Request::upgrade(Mode::Deploy);
    request.network_retries = 0;
    let full = |what: &str| {
        let err = format!("{:#}", w.upgrade(&request).unwrap_err());
        assert!(err.contains("not enough free space in"), "{what}: {err}");
        assert!(err.contains("keel cleanup"), "{what}: {err}");
        assert!(err.contains("nothing was deployed"), "{what}: {err}");
        assert_eq!(w.state(), before, "{what}: deployments or refs changed");
        assert!(!w.client_has_commit(&v2), "{what}");
        let parts = part_files(w.sysroot.path());
        assert!(parts.is_empty(), "{what}: left behind {parts:?}");
    };

    // libostree checks the delta's size against the free space first ...
    full("with a delta");
    // ... and without one, its object writes run into ENOSPC.
    std::fs::remove_dir_all(w.server_repo.join("deltas")).unwrap();
    w.refresh_summary();
    full("object by object");
    // ... and with that reserve switched off, the kernel's ENOSPC.
    ostree(&[
        "config",
        &format!("--repo={}", w.sysroot.repo_path().display()),
        "set",
        "core.min-free-space-percent",
        "0",
    ]);
    full("ENOSPC");

    disk.resize(64 << 20);
    let report = w.upgrade(&request).unwrap();
    assert!(report.deployed);
    let (deployments, refs) = w.state();
    assert_eq!(deployments[0].0, v2);
    assert!(refs.contains(&format!("keel:{REF} {v2}")), "{refs}");
    drop(disk);
}

#[test]
fn interrupted_transfer_mid_pull_changes_nothing_and_resumes() {
    const FILES: usize = 32;
    const EACH: usize = 256 * 1024;
    let w = World::new(1024);
    let mut v2 = tree("2", 1024);
    for i in 0..FILES {
        v2 = v2.file(
            &format!("usr/share/keel-test/new{i}"),
            noise(EACH, 1000 + 2 * i as u64),
        );
    }
    let v2 = w.publish(v2, REF);
    // Distinct even seeds: `noise` sets the low bit, so seeds n and n + 1 would collide.
    let total = EACH * FILES;

    // Ctrl-C from another thread once half the objects have left the server (it counts a
    // response when it queues it, so the client has taken in less).
    let before = w.state();
    let cancellable = Cancel::new();
    let done = std::sync::atomic::AtomicBool::new(false);
    let err = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if w.server.bytes_sent() > total as u64 / 2 {
                    cancellable.cancel();
                    return;
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        });
        let result = upgrade::run(
            &w.host(),
            &Request::upgrade(Mode::Deploy),
            &cancellable,
            &Discard,
        );
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        format!("{:#}", result.unwrap_err())
    });
    assert!(err.contains("run the command again to resume"), "{err}");
    let interrupted = w.server.bytes_sent();
    assert!(
        interrupted < total as u64,
        "cancelled after {interrupted} bytes of a {total}-byte change"
    );
    assert_eq!(
        w.state(),
        before,
        "an interrupted pull changed deployments or refs"
    );
    assert!(!w.client_has_commit(&v2));

    w.server.reset_counters();
    let report = w.upgrade(&Request::upgrade(Mode::Deploy)).unwrap();
    assert!(report.deployed);
    let resumed = w.server.bytes_sent();
    assert!(
        resumed + 4 * (EACH as u64) < total as u64,
        "the second run sent {resumed} bytes of {total}; the first had sent {interrupted}"
    );
    let (deployments, refs) = w.state();
    assert_eq!(deployments[0], (v2.clone(), Some(format!("keel:{REF}"))));
    assert_eq!(deployments[1].0, w.v1);
    assert!(refs.contains(&format!("keel:{REF} {v2}")), "{refs}");
}
