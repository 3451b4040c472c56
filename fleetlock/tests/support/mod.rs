//! Fixtures for the FleetLock tests: a real etcd (Debian's `etcd-server`, installed by
//! `ci/deps`) on loopback ports with a temporary data directory, `keel-fleetlock serve`
//! replicas started from the built binary, and a FleetLock client speaking as Zincati does.
#![allow(dead_code)]

use keel_fleetlock::etcd::EtcdStore;
use keel_fleetlock::lock::Locker;
use keel_fleetlock::semaphore::Semaphore;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("local addr").port()
}

/// One etcd member on loopback; killed when dropped.
pub struct Etcd {
    pub url: String,
    peer_url: String,
    data_dir: PathBuf,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut etcd = Etcd {
            url: format!("http://127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            data_dir: dir.path().join("etcd"),
            _dir: dir,
            child: None,
        };
        etcd.run();
        etcd
    }

    fn run(&mut self) {
        let log = std::fs::File::create(self.data_dir.with_extension("log")).expect("etcd log");
        let child = Command::new("etcd")
            .arg("--name=keel-test")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={}", self.url))
            .arg(format!("--advertise-client-urls={}", self.url))
            .arg(format!("--listen-peer-urls={}", self.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url))
            .arg(format!("--initial-cluster=keel-test={}", self.peer_url))
            .arg("--log-level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting etcd (Debian's etcd-server; run ci/deps)");
        self.child = Some(child);
        self.wait_healthy();
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(1))
            .build();
        while Instant::now() < deadline {
            if let Ok(response) = agent.get(&format!("{}/health", self.url)).call() {
                if response.into_string().unwrap_or_default().contains("true") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("etcd did not become healthy at {} within 20 s", self.url);
    }

    /// SIGKILL: no clean shutdown, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    /// The group's semaphore as etcd holds it now.
    pub fn group(&self, group: &str) -> Semaphore {
        read_group(&self.url, group)
    }
}

/// The group's semaphore as the etcd at `url` holds it now. Threads get the URL, not the
/// [`Etcd`], so that a failing test still drops (and kills) it.
pub fn read_group(url: &str, group: &str) -> Semaphore {
    let locker = Locker::new(EtcdStore::new(vec![url.to_string()]).expect("store"));
    locker.state(group).expect("reading the group from etcd")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_keel-fleetlock")
}

/// A `keel-fleetlock serve` replica; killed when dropped.
pub struct Server {
    pub base: String,
    pub metrics: String,
    child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(etcd: &[&str], config: Option<&Path>) -> Server {
        let mut command = Command::new(bin());
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg(format!("--etcd={}", etcd.join(",")));
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting keel-fleetlock serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                lines.lock().map(|mut l| l.push(line)).ok();
            }
        });
        let (mut base, mut metrics) = (None, None);
        while base.is_none() || metrics.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("keel-fleetlock serve said where it listens");
            let url = line.split_whitespace().find(|w| w.starts_with("http://"));
            if line.contains("serving FleetLock on") {
                base = url.map(str::to_string);
            } else if line.contains("serving metrics on") {
                metrics = url.map(str::to_string);
            }
        }
        Server {
            base: base.unwrap_or_default(),
            metrics: metrics.unwrap_or_default(),
            child,
            log,
        }
    }

    pub fn scrape(&self) -> String {
        ureq::get(&self.metrics)
            .call()
            .expect("scraping metrics")
            .into_string()
            .expect("metrics text")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn kind(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// A client that speaks as Zincati: POST, the header, a pretty-printed body, no content type.
pub struct Client {
    agent: ureq::Agent,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .build(),
        }
    }
}

impl Client {
    pub fn raw(&self, method: &str, url: &str, header: Option<&str>, body: &str) -> Answer {
        let mut request = self.agent.request(method, url);
        if let Some(value) = header {
            request = request.set("fleet-lock-protocol", value);
        }
        match request.send_string(body) {
            Ok(response) => Answer {
                status: response.status(),
                body: response.into_string().unwrap_or_default(),
            },
            Err(ureq::Error::Status(status, response)) => Answer {
                status,
                body: response.into_string().unwrap_or_default(),
            },
            Err(err) => panic!("{method} {url}: {err}"),
        }
    }

    fn call(&self, base: &str, path: &str, id: &str, group: &str) -> Answer {
        let body = format!(
            "{{\n  \"client_params\": {{\n    \"id\": \"{id}\",\n    \"group\": \"{group}\"\n  }}\n}}"
        );
        self.raw("POST", &format!("{base}{path}"), Some("true"), &body)
    }

    pub fn pre_reboot(&self, base: &str, id: &str, group: &str) -> Answer {
        self.call(base, "/v1/pre-reboot", id, group)
    }

    pub fn steady_state(&self, base: &str, id: &str, group: &str) -> Answer {
        self.call(base, "/v1/steady-state", id, group)
    }
}

/// Runs `keel-fleetlock ARGS` and returns its stdout; panics with stderr on failure.
pub fn admin(args: &[&str]) -> String {
    let output = Command::new(bin())
        .args(args)
        .output()
        .expect("running keel-fleetlock");
    assert!(
        output.status.success(),
        "keel-fleetlock {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn holder_ids(semaphore: &Semaphore) -> Vec<String> {
    let mut ids: Vec<String> = semaphore.holders.iter().map(|h| h.id.clone()).collect();
    ids.sort();
    ids
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("fleetlock.toml");
    std::fs::write(&path, text).expect("writing the config");
    path
}
