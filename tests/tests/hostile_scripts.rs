//! Hostile maintainer scripts, installed through the real install path (dpkg in the sandbox,
//! the host's `/usr` lent read-only as in `install.rs`). Each one tries to reach beyond its
//! tree: host paths, file handles, the network, a daemon left running, a loop that never ends,
//! gigabytes of output. Each case ends in a clear error naming the package, or in an install
//! without the hostile effect; a canary directory on the host is byte-identical afterwards
//! (paths, types, modes, owners, content hashes) and nothing named after the case appears in
//! the host's `/tmp`.
//!
//! Trees, packages and the canary live under the target directory, not `/tmp`: other
//! processes of the machine use `/tmp` meanwhile, so there the check is on the top-level
//! entries named after the case (every host path the scripts aim at in `/tmp` is one).

use keel_compose::install::{install_with, InstallError, PackageCache};
use keel_compose::package::{PackageSource, ResolvedPackage};
use keel_compose::sandbox::Sandbox;
use keel_tests::deb::Deb;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A scratch directory under the target directory.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// A name no other test or process uses.
fn token(case: &str) -> String {
    format!("keel-hostile-{case}-{}", std::process::id())
}

/// Describes `deb` (built into `dir`) as the resolver would; no dependencies.
fn resolved(deb: &Deb, dir: &Path) -> (ResolvedPackage, PathBuf) {
    let path = deb.build(dir).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let package = ResolvedPackage {
        name: deb.name.clone(),
        version: deb.version.clone(),
        arch: deb.arch.clone(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        size: bytes.len() as u64,
        source: PackageSource::Path(path.clone()),
        repo: "hostile".into(),
        essential: false,
        priority: "optional".into(),
        pre_depends: Vec::new(),
        depends: Vec::new(),
    };
    (package, path)
}

/// Installs `deb` into a fresh tree; returns the tree and the result.
fn install(
    deb: &Deb,
    tune: impl Fn(Sandbox) -> Sandbox,
) -> (tempfile::TempDir, Result<(), InstallError>) {
    let debs = scratch();
    let (package, path) = resolved(deb, debs.path());
    let root = scratch();
    let sandbox = tune(Sandbox::new(root.path()).with_host_usr());
    let result = install_with(&sandbox, &[package], &[path], &PackageCache::disabled());
    (root, result.map(|_| ()))
}

/// What the user reads: the error and its causes, as the CLI prints them.
fn message(err: InstallError) -> String {
    format!("{:#}", anyhow::Error::from(err))
}

/// Path, type, mode, owner and content hash (or link target) of everything under a path.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot(BTreeMap<PathBuf, String>);

impl Snapshot {
    /// Everything under `root`, recursively.
    fn of(root: &Path) -> Self {
        Self::walk(root, usize::MAX)
    }

    /// `root` and its direct entries (a shared `/tmp` holds other processes' large trees).
    fn top_of(root: &Path) -> Self {
        Self::walk(root, 1)
    }

    fn walk(root: &Path, depth: usize) -> Self {
        let mut entries = BTreeMap::new();
        let mut todo = vec![(root.to_path_buf(), 0)];
        while let Some((path, level)) = todo.pop() {
            // Other processes add and remove entries of a shared directory meanwhile.
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let kind = meta.file_type();
            let what = if kind.is_symlink() {
                let target = std::fs::read_link(&path).unwrap_or_default();
                format!("-> {}", target.display())
            } else if kind.is_file() {
                std::fs::read(&path)
                    .map(|b| hex::encode(Sha256::digest(b)))
                    .unwrap_or_else(|e| format!("unreadable: {e}"))
            } else {
                String::new()
            };
            let line = format!(
                "{:o} {}:{} {what}",
                meta.permissions().mode(),
                meta.uid(),
                meta.gid()
            );
            entries.insert(path.clone(), line);
            if kind.is_dir() && level < depth {
                if let Ok(dir) = std::fs::read_dir(&path) {
                    todo.extend(dir.flatten().map(|e| (e.path(), level + 1)));
                }
            }
        }
        Snapshot(entries)
    }

    /// Paths added, removed or changed from `self` to `after`.
    fn changes(&self, after: &Snapshot) -> Vec<PathBuf> {
        let mut changed: Vec<PathBuf> = self
            .0
            .iter()
            .filter(|(p, line)| after.0.get(*p) != Some(line))
            .map(|(p, _)| p.clone())
            .collect();
        changed.extend(after.0.keys().filter(|p| !self.0.contains_key(*p)).cloned());
        changed
    }
}

/// A canary directory on the host and the state of the host's `/tmp`; `check` fails when
/// anything under the canary changed, or anything in `/tmp` named after the case did.
struct Watch {
    canary: PathBuf,
    token: String,
    canary_before: Snapshot,
    tmp_before: Snapshot,
}

impl Watch {
    fn new(token: &str) -> Self {
        // Beside the trees, not in /tmp: inside the sandbox its path then leads into the
        // tree, where a script's writes must land, rather than into the sandbox's own /tmp.
        let canary = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{token}-canary"));
        let _ = std::fs::remove_dir_all(&canary);
        std::fs::create_dir_all(canary.join("sub")).unwrap();
        std::fs::write(canary.join("file"), "canary\n").unwrap();
        std::fs::write(canary.join("sub/secret"), "host secret\n").unwrap();
        std::os::unix::fs::symlink("file", canary.join("link")).unwrap();
        Watch {
            canary_before: Snapshot::of(&canary),
            tmp_before: Snapshot::top_of(Path::new("/tmp")),
            canary,
            token: token.to_string(),
        }
    }

    fn check(self) {
        let canary_after = Snapshot::of(&self.canary);
        let tmp_after = Snapshot::top_of(Path::new("/tmp"));
        let _ = std::fs::remove_dir_all(&self.canary);
        assert_eq!(
            self.canary_before.changes(&canary_after),
            Vec::<PathBuf>::new(),
            "the host's canary changed"
        );
        let ours: Vec<PathBuf> = self
            .tmp_before
            .changes(&tmp_after)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(&self.token))
            .collect();
        assert_eq!(ours, Vec::<PathBuf>::new(), "the host's /tmp changed");
    }
}

/// Host processes whose command line contains `needle`.
fn host_processes_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

#[test]
fn writes_to_host_paths_land_in_the_tree_or_fail() {
    let token = token("paths");
    let watch = Watch::new(&token);
    let c = watch.canary.display().to_string();
    // Every way out a shell knows; each attempt logs whether the write went through.
    let script = format!(
        "#!/bin/sh\n\
         log=/var/lib/hostile/log; mkdir -p /var/lib/hostile\n\
         try() {{ if sh -c \"$2\" 2>/dev/null; then echo \"$1 written\"; else echo \"$1 refused\"; fi >> $log; }}\n\
         mkdir -p {c}/sub\n\
         try absolute 'echo pwned > {c}/pwned; echo pwned > {c}/file; rm -f {c}/sub/secret'\n\
         try proc1-root 'echo pwned > /proc/1/root{c}/pwned-proc1'\n\
         try proc-self-root 'echo pwned > /proc/self/root{c}/pwned-self'\n\
         try dotdot 'cd /; echo pwned > ../../../..{c}/pwned-dotdot'\n\
         try symlink 'mkdir -p /opt && ln -s {c} /opt/to-canary && echo pwned > /opt/to-canary/pwned-link'\n\
         try host-tmp 'echo pwned > /tmp/{token}-in-tmp'\n\
         try mountinfo 'p=$(awk '\\''$5 == \"/\" {{print $4}}'\\'' /proc/self/mountinfo); echo pwned > \"$p/../{token}-beside-tree\"'\n\
         try host-usr 'echo pwned > /usr/{token}'\n\
         try proc-sys 'echo pwned > /proc/sys/kernel/domainname'\n\
         exit 0\n"
    );
    let deb = Deb::new("hostile-paths", "1").script("postinst", &script);
    let (root, result) = install(&deb, |s| s);
    result.unwrap();
    let log = std::fs::read_to_string(root.path().join("var/lib/hostile/log")).unwrap();
    eprintln!("{log}");
    // What a shell could write went into the tree (proving the script ran and tried) ...
    let inside = root.path().join(c.trim_start_matches('/'));
    for name in [
        "pwned",
        "pwned-proc1",
        "pwned-self",
        "pwned-dotdot",
        "pwned-link",
    ] {
        assert!(inside.join(name).exists(), "{name} not in the tree:\n{log}");
    }
    // ... and the read-only parts refused it.
    for line in ["host-usr refused", "proc-sys refused"] {
        assert!(log.contains(line), "{line}:\n{log}");
    }
    let beside = root
        .path()
        .parent()
        .unwrap()
        .join(format!("{token}-beside-tree"));
    assert!(!beside.exists(), "a script wrote beside its tree");
    watch.check();
}

/// Builds the probe (`hostile_scripts/probe.c`) with the host's compiler into `dir`.
fn build_probe(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile_scripts/probe.c");
    let out = dir.join("probe");
    let status = std::process::Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&out)
        .arg(&source)
        .env("TMPDIR", dir)
        .status()
        .expect("running gcc (install gcc and libc6-dev through ci/deps)");
    assert!(status.success(), "gcc failed on {}", source.display());
    out
}

#[test]
fn file_handles_keyrings_bpf_namespaces_and_other_abis_are_refused() {
    let token = token("syscalls");
    let watch = Watch::new(&token);
    let build = scratch();
    let probe = build_probe(build.path());
    // A handle of a host file on the file system the tree lives on: open_by_handle_at with it
    // would read the host's file from inside.
    let secret = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{token}-secret"));
    std::fs::write(&secret, "host secret\n").unwrap();
    let handle = std::process::Command::new(&probe)
        .arg("make-handle")
        .arg(&secret)
        .output()
        .unwrap();
    assert!(handle.status.success());
    let handle = String::from_utf8(handle.stdout).unwrap().trim().to_string();
    let name = std::os::unix::net::SocketAddr::from_abstract_name(token.as_bytes()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&name).unwrap();
    listener.set_nonblocking(true).unwrap();

    // dpkg keeps the mode Deb gives files (0644): the script makes the probe executable.
    let script = format!(
        "#!/bin/sh\nchmod 755 /opt/hostile/probe\nmkdir -p /var/lib/hostile\n\
         /opt/hostile/probe {handle} {token} > /var/lib/hostile/probe\n"
    );
    let deb = Deb::new("hostile-syscalls", "1")
        .file("/opt/hostile/probe", std::fs::read(&probe).unwrap())
        .script("postinst", &script);
    let (root, result) = install(&deb, |s| s);
    result.unwrap();
    let report = std::fs::read_to_string(root.path().join("var/lib/hostile/probe")).unwrap();
    eprintln!("{report}");
    let results: BTreeMap<&str, &str> = report.lines().filter_map(|l| l.split_once(' ')).collect();
    for call in [
        "name_to_handle_at",
        "open_by_handle_at",
        "add_key",
        "keyctl",
        "request_key",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "init_module",
        "finit_module",
        "kexec_load",
        "ptrace",
        "mount",
        "unshare_user",
        "unshare_mount",
        "setns",
        "reboot",
        "swapon",
        "mknod_block",
    ] {
        assert_eq!(results.get(call), Some(&"EPERM"), "{call}:\n{report}");
    }
    // SIGSYS: a system call through the x32 or i386 ABI kills the process.
    assert_eq!(results.get("x32_getpid"), Some(&"killed 31"), "{report}");
    assert_eq!(results.get("i386_getpid"), Some(&"killed 31"), "{report}");
    // ECONNREFUSED: abstract socket names are the network namespace's own.
    assert_eq!(
        results.get("abstract_socket"),
        Some(&"errno 111"),
        "{report}"
    );
    assert!(listener.accept().is_err(), "the host's socket was reached");
    let _ = std::fs::remove_file(&secret);
    watch.check();
}

#[test]
fn a_script_cannot_reach_a_server_on_the_hosts_loopback() {
    let token = token("network");
    let watch = Watch::new(&token);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "#!/bin/bash\nmkdir -p /var/lib/hostile\n\
         if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo connected; else echo refused; fi > /var/lib/hostile/net 2>&1\n"
    );
    let deb = Deb::new("hostile-network", "1").script("postinst", &script);
    let (root, result) = install(&deb, |s| s);
    result.unwrap();
    let net = std::fs::read_to_string(root.path().join("var/lib/hostile/net")).unwrap();
    assert!(
        net.contains("refused") && !net.contains("connected"),
        "{net}"
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the host's listener saw a connection: {other:?}"),
    }
    // The host itself reaches it, so the refusal is the sandbox's doing.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    watch.check();
}

#[test]
fn a_daemon_a_postinst_starts_is_gone_when_the_install_returns() {
    let token = token("daemon");
    let watch = Watch::new(&token);
    let (detached, attached) = (
        format!("741.{}", std::process::id()),
        format!("742.{}", std::process::id()),
    );
    let script = format!(
        "#!/bin/sh\n\
         setsid sh -c 'sleep {detached}; echo late > /tmp/{token}-late' </dev/null >/dev/null 2>&1 &\n\
         sleep {attached} &\n\
         exit 0\n"
    );
    let deb = Deb::new("hostile-daemon", "1").script("postinst", &script);
    let started = Instant::now();
    let (_root, result) = install(&deb, |s| s);
    result.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the install waited for the daemon"
    );
    assert_eq!(host_processes_with(&detached), Vec::<String>::new());
    assert_eq!(host_processes_with(&attached), Vec::<String>::new());
    watch.check();
}

#[test]
fn a_postinst_that_loops_forever_is_killed_at_the_deadline_naming_the_package() {
    let token = token("loop");
    let watch = Watch::new(&token);
    let deb = Deb::new("hostile-loop", "1").script(
        "postinst",
        "#!/bin/sh\necho 'hostile-loop: looping'\nwhile :; do :; done\n",
    );
    let started = Instant::now();
    let (_root, result) = install(&deb, |s| s.deadline(Duration::from_secs(3)));
    let text = message(result.unwrap_err());
    eprintln!("{text}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(text.contains("configuring all packages"), "{text}");
    assert!(text.contains("did not finish within 3 s"), "{text}");
    assert!(text.contains("Setting up hostile-loop (1)"), "{text}");
    assert!(text.contains("hostile-loop: looping"), "{text}");
    assert_eq!(
        host_processes_with("hostile-loop.postinst"),
        Vec::<String>::new()
    );
    watch.check();
}

/// Peak resident memory of this test process, in bytes.
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn a_postinst_printing_gigabytes_costs_bounded_memory_and_its_failure_shows_the_tail() {
    let token = token("loud");
    let watch = Watch::new(&token);
    let deb = Deb::new("hostile-loud", "1").script(
        "postinst",
        "#!/bin/sh\nyes 'hostile-loud says: spam spam spam spam spam' | head -c 2147483648\n\
         echo 'hostile-loud: last words'\nexit 7\n",
    );
    let before = peak_memory();
    let (_root, result) = install(&deb, |s| s);
    let err = result.unwrap_err();
    let peak = peak_memory();
    assert!(
        matches!(&err, InstallError::Script { package, script, .. } if package == "hostile-loud" && *script == "postinst"),
        "{err:?}"
    );
    let text = message(err);
    eprintln!("{}", &text[..text.len().min(2000)]);
    assert!(
        text.contains("postinst script of package hostile-loud failed"),
        "{text}"
    );
    assert!(text.contains("hostile-loud: last words"), "{text}");
    assert!(
        text.len() < 64 * 1024,
        "the message is {} bytes",
        text.len()
    );
    assert!(
        peak < before + 64 * 1024 * 1024,
        "2 GiB of output took the peak memory from {before} to {peak} bytes"
    );
    watch.check();
}
