//! The fixture both upgrade test files share: a publisher (archive repo, key, loopback HTTP
//! server) and a client directory sysroot deployed from it.
#![allow(dead_code, unused_imports)]

pub use std::path::{Path, PathBuf};
pub use std::process::Command;

pub use keel_common::cancel::Cancel;
pub use keel_common::keys::SecretKey;
pub use keel_common::progress::Discard;
pub use keel_common::sign;
pub use keel_host::config::RemoteConfig;
pub use keel_host::host::Host;
pub use keel_host::upgrade::{self, Mode, Report, Request};
pub use keel_tests::http::{Fault, FileServer};
pub use keel_tests::sysroot::{run, TestSysroot, TreeBuilder};
pub use ostree::gio::prelude::*;
pub use ostree::{gio, glib};

pub const REF: &str = "keel/test/x86_64/stable";
pub const OTHER_REF: &str = "keel/test/x86_64/testing";
pub const T1: i64 = 1_700_000_000;

/// A publisher (archive repo + key + HTTP server) and a client sysroot deployed from it.
pub struct World {
    pub _server_dir: tempfile::TempDir,
    pub server_repo: PathBuf,
    pub server: FileServer,
    pub key: SecretKey,
    pub sysroot: TestSysroot,
    pub v1: String,
}

/// Pseudo-random bytes (xorshift), so the big file neither compresses nor dedups.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn ostree(args: &[&str]) -> String {
    run(Command::new("ostree").args(args)).unwrap()
}

/// The v1 tree; `big` bytes of noise that stay the same in later versions.
pub fn tree(version: &str, big: usize) -> TreeBuilder {
    TreeBuilder::new(version)
        .package("bash", "5.2.15-2")
        .file("usr/share/keel-test/big", noise(big, 42))
        .file("usr/share/keel-test/small", format!("version {version}\n"))
}

impl World {
    pub fn new(big: usize) -> World {
        let server_dir = tempfile::tempdir().unwrap();
        let server_repo = server_dir.path().join("repo");
        ostree(&[
            "init",
            "--mode=archive",
            &format!("--repo={}", server_repo.display()),
        ]);
        let key = SecretKey::generate().unwrap();
        let server = FileServer::serve(&server_repo).unwrap();
        let sysroot = TestSysroot::new("keel").unwrap();
        let mut world = World {
            _server_dir: server_dir,
            server_repo,
            server,
            key,
            sysroot,
            v1: String::new(),
        };
        world.v1 = world.publish(tree("1", big).timestamp(T1), REF);

        // First deployment the independent way, then configure keel on it.
        let repo = format!("--repo={}", world.sysroot.repo_path().display());
        ostree(&[
            "remote",
            "add",
            "--no-gpg-verify",
            &repo,
            "keel",
            world.server.url(),
        ]);
        ostree(&["pull", &repo, "keel", REF]);
        world
            .sysroot
            .deploy_cli(&format!("keel:{REF}"), &["root=/dev/vda"])
            .unwrap();
        let keys = world._server_dir.path().join("trusted.pub");
        std::fs::write(&keys, format!("{}\n", world.key.public())).unwrap();
        let remote = RemoteConfig {
            name: "keel".into(),
            url: world.server.url().into(),
            reference: REF.parse().unwrap(),
        };
        keel_host::remote::add(&world.host(), &remote, &keys).unwrap();
        world.server.reset_counters();
        world
    }

    pub fn host(&self) -> Host {
        Host::open(Some(self.sysroot.path())).unwrap()
    }

    pub fn repo_arg(&self) -> String {
        format!("--repo={}", self.server_repo.display())
    }

    pub fn server_repo(&self) -> ostree::Repo {
        let repo = ostree::Repo::new_for_path(&self.server_repo);
        repo.open(gio::Cancellable::NONE).unwrap();
        repo
    }

    /// Commits `tree` to `branch`, signs it with the publisher's key, refreshes the summary.
    pub fn publish(&self, tree: TreeBuilder, branch: &str) -> String {
        let csum = self.commit_unsigned(tree, branch);
        self.sign_commit(&csum, &self.key);
        self.refresh_summary();
        csum
    }

    pub fn commit_unsigned(&self, tree: TreeBuilder, branch: &str) -> String {
        tree.commit(&self.server_repo, branch).unwrap()
    }

    pub fn commit_bytes(&self, csum: &str) -> Vec<u8> {
        let v = self
            .server_repo()
            .load_variant(ostree::ObjectType::Commit, csum)
            .unwrap();
        v.data_as_bytes().to_vec()
    }

    pub fn sign_commit(&self, csum: &str, key: &SecretKey) {
        let signature = sign::sign(key, &self.commit_bytes(csum));
        self.set_detached(csum, &sign::add_signature(None, &signature).unwrap());
    }

    pub fn set_detached(&self, csum: &str, detached: &glib::Variant) {
        self.server_repo()
            .write_commit_detached_metadata(csum, Some(detached), gio::Cancellable::NONE)
            .unwrap();
    }

    pub fn detached(&self, csum: &str) -> glib::Variant {
        self.server_repo()
            .read_commit_detached_metadata(csum, gio::Cancellable::NONE)
            .unwrap()
            .unwrap()
    }

    /// `ostree summary -u` (which drops summary.sig), then a fresh summary.sig.
    pub fn refresh_summary(&self) {
        ostree(&["summary", "-u", &self.repo_arg()]);
        let summary = std::fs::read(self.server_repo.join("summary")).unwrap();
        let sig = sign::add_signature(None, &sign::sign(&self.key, &summary)).unwrap();
        std::fs::write(self.server_repo.join("summary.sig"), sig.data()).unwrap();
    }

    pub fn static_delta(&self, from: &str, to: &str) {
        ostree(&[
            "static-delta",
            "generate",
            &self.repo_arg(),
            &format!("--from={from}"),
            &format!("--to={to}"),
        ]);
        self.refresh_summary();
    }

    /// Deployments (checksum, origin) in boot order and every ref of the client's repo.
    pub fn state(&self) -> (Vec<(String, Option<String>)>, String) {
        let host = self.host();
        let deployments = host
            .deployments()
            .iter()
            .map(|d| (d.csum().to_string(), Host::origin_refspec(d)))
            .collect();
        let refs = ostree(&[
            "refs",
            "--list",
            &format!("--repo={}", self.sysroot.repo_path().display()),
        ]);
        let mut refs: Vec<String> = refs
            .lines()
            .map(|r| {
                let csum = ostree(&[
                    "rev-parse",
                    &format!("--repo={}", self.sysroot.repo_path().display()),
                    r,
                ]);
                format!("{r} {}", csum.trim())
            })
            .collect();
        refs.sort();
        (deployments, refs.join("\n"))
    }

    /// The server's `.filez` object holding `path` of `commit`.
    pub fn object_of(&self, commit: &str, path: &str) -> PathBuf {
        let line = ostree(&["ls", "-C", &self.repo_arg(), commit, path]);
        let csum = line.split_whitespace().nth(4).unwrap().to_string();
        let (dir, rest) = csum.split_at(2);
        self.server_repo.join(format!("objects/{dir}/{rest}.filez"))
    }

    pub fn client_has_commit(&self, csum: &str) -> bool {
        self.host()
            .repo()
            .has_object(ostree::ObjectType::Commit, csum, gio::Cancellable::NONE)
            .unwrap()
    }

    pub fn upgrade(&self, request: &Request) -> anyhow::Result<Report> {
        upgrade::run(&self.host(), request, &Cancel::new(), &Discard)
    }

    /// Runs an upgrade that must fail with `expected` in its message and change nothing.
    pub fn assert_rejected(&self, rejected: &str, expected: &str) -> String {
        let before = self.state();
        let mut request = Request::upgrade(Mode::Deploy);
        request.network_retries = 0;
        let err = format!("{:#}", self.upgrade(&request).unwrap_err());
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
        assert_eq!(
            self.state(),
            before,
            "a rejected upgrade changed deployments or refs"
        );
        if !rejected.is_empty() {
            assert!(
                !self.client_has_commit(rejected),
                "rejected commit {rejected} reached the repo"
            );
        }
        err
    }
}
