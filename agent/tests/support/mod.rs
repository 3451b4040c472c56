//! Fixtures for the agent's tests against real parts: an etcd on loopback (Debian's
//! `etcd-server`, from `ci/deps`) and a `keel-fleetlock serve` on it (the pattern of
//! `fleetlock/tests/support/`), and the workspace's built binaries.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("local addr").port()
}

/// A binary of the workspace, beside this test's own directory (`target/debug/NAME`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/debug");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p {}` first (ci/test builds the workspace)",
        bin.display(),
        if name == "keeld" { "keel-agent" } else { name }
    );
    bin
}

/// One etcd member on loopback with a temporary data dir; killed when dropped.
pub struct Etcd {
    pub url: String,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let child = Command::new("etcd")
            .arg("--name=keel-agent-test")
            .arg(format!("--data-dir={}", dir.path().join("etcd").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=keel-agent-test={peer}"))
            .arg("--log-level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting etcd (Debian's etcd-server; run ci/deps)");
        let etcd = Etcd {
            url,
            _dir: dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = ureq::get(&format!("{}/health", etcd.url)).call() {
                if r.into_string().unwrap_or_default().contains("true") {
                    return etcd;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("etcd did not become healthy at {} within 20 s", etcd.url);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `keel-fleetlock serve` on loopback over `etcd`; killed when dropped.
pub struct LockServer {
    pub base: String,
    child: Child,
}

impl LockServer {
    pub fn start(etcd: &Etcd) -> LockServer {
        let mut child = Command::new(workspace_bin("keel-fleetlock"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg(format!("--etcd={}", etcd.url))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting keel-fleetlock serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("keel-fleetlock serve did not say where it listens within 10 s");
            };
            if line.contains("serving FleetLock on") {
                let base = line
                    .split_whitespace()
                    .find(|w| w.starts_with("http://"))
                    .unwrap_or_default()
                    .to_string();
                return LockServer { base, child };
            }
        }
    }
}

impl Drop for LockServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
