//! Running a command inside a tree with bubblewrap (`bwrap`).
//!
//! The tree is bind-mounted read-write as `/`; `/proc`, `/dev` (bwrap's minimal device set), and
//! tmpfs `/tmp` and `/run` are fresh. The IPC, PID, network, UTS and cgroup namespaces are
//! private, so the command has no network (only a down-and-up `lo`) and sees nothing of the host
//! beyond the tree and what [`Sandbox::bind_ro`] adds.
//!
//! No user namespace is created, deliberately: Keel composes as root, and inside a user namespace
//! bwrap maps only uid 0, so dpkg could not `chown` files to the system users and groups that
//! packages create (`--unshare-all` would do exactly that). Capabilities that reach beyond the
//! tree (modules, reboot, clock, raw I/O, mounts, network administration) are dropped instead.
//!
//! The environment is clean: `PATH`, `LANG=C.UTF-8`, `DEBIAN_FRONTEND=noninteractive`,
//! `DEBCONF_NONINTERACTIVE_SEEN=true`, `HOME=/root` plus what [`Sandbox::env`] adds. Standard
//! output and error are captured together, interleaved, into one buffer; a failure carries the
//! command's description and the last [`TAIL_LINES`] lines of that output.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Lines of output kept in a [`SandboxError::Failed`].
pub const TAIL_LINES: usize = 30;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Capabilities removed from the (root) process in the sandbox: none of them is needed to
/// install packages into a tree, and each one reaches beyond it.
const DROPPED_CAPS: &[&str] = &[
    "CAP_SYS_MODULE",
    "CAP_SYS_BOOT",
    "CAP_SYS_TIME",
    "CAP_SYS_RAWIO",
    "CAP_SYS_ADMIN",
    "CAP_SYS_PTRACE",
    "CAP_NET_ADMIN",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_CONTROL",
];

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{what}: cannot run bwrap ({source}); install bubblewrap through ci/deps")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: reading the output of `{command}` failed")]
    Output {
        what: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: the tree {} does not exist or is not a directory", root.display())]
    NoRoot { what: String, root: PathBuf },
    #[error("{what}: interrupted; the command was killed")]
    Cancelled { what: String },
    #[error("{0}")]
    Failed(Box<Failure>),
}

/// A command that ran in the sandbox and failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: `{command}` failed ({status}); last lines of its output:\n{tail}")]
pub struct Failure {
    pub what: String,
    pub command: String,
    pub status: String,
    /// The whole captured output, for callers that parse it (e.g. dpkg's error lines).
    pub output: String,
    pub tail: String,
}

impl SandboxError {
    /// The command's whole captured output, when it ran and failed.
    pub fn output(&self) -> Option<&str> {
        match self {
            SandboxError::Failed(failure) => Some(&failure.output),
            _ => None,
        }
    }
}

/// A tree to run commands in. Cheap to build; each [`Sandbox::run`] is one bwrap process.
#[derive(Clone, Debug)]
pub struct Sandbox {
    root: PathBuf,
    ro_binds: Vec<(PathBuf, String)>,
    env: Vec<(String, String)>,
    host_usr: bool,
    cancel: Option<Arc<AtomicBool>>,
}

impl Sandbox {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            ro_binds: Vec::new(),
            env: Vec::new(),
            host_usr: false,
            cancel: None,
        }
    }

    /// Makes the host's `host` visible read-only at `inside` (an absolute path in the tree).
    pub fn bind_ro(mut self, host: &Path, inside: &str) -> Self {
        self.ro_binds.push((host.to_path_buf(), inside.to_string()));
        self
    }

    /// Sets an environment variable for the command, on top of the clean defaults.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// FOR TESTS ONLY: mounts the host's `/usr` read-only over the tree's `/usr`, so a tree made
    /// of a few tiny test packages still has a shell, dpkg and coreutils. Whatever the tree has
    /// under `/usr` is hidden, and nothing can be written there; the tree needs the merged-/usr
    /// links (`bin -> usr/bin`, ...) to find programs at their classic paths.
    pub fn with_host_usr(mut self) -> Self {
        self.host_usr = true;
        self
    }

    /// Kills the command (and everything it started) when `flag` becomes true, e.g. from a
    /// Ctrl-C handler; [`Sandbox::run`] then returns [`SandboxError::Cancelled`].
    pub fn cancel_on(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs `argv` in the tree and returns its combined output. `what` describes the step for
    /// error messages, e.g. "postinst of podman".
    pub fn run(&self, argv: &[&str], what: &str) -> Result<String, SandboxError> {
        if !self.root.is_dir() {
            return Err(SandboxError::NoRoot {
                what: what.to_string(),
                root: self.root.clone(),
            });
        }
        let command_text = argv.join(" ");
        let (reader, writer) = std::io::pipe().map_err(|source| SandboxError::Spawn {
            what: what.to_string(),
            source,
        })?;
        let writer2 = writer.try_clone().map_err(|source| SandboxError::Spawn {
            what: what.to_string(),
            source,
        })?;
        let mut command = Command::new("bwrap");
        command
            .args(self.bwrap_args())
            .arg("--")
            .args(argv)
            .env_clear()
            .envs(self.environment())
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer2);
        let mut child = command.spawn().map_err(|source| SandboxError::Spawn {
            what: what.to_string(),
            source,
        })?;
        // The Command still holds the pipe's write ends; drop it so reading ends at exit.
        drop(command);
        let mut bytes = Vec::new();
        let mut reader = reader;
        // The pipe closes when the sandbox's PID namespace is gone, i.e. every process in it.
        let (read, status, cancelled) = std::thread::scope(|scope| {
            let reading = scope.spawn(|| reader.read_to_end(&mut bytes));
            let (status, cancelled) = self.wait(&mut child);
            let read = reading
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the output reader panicked")));
            (read, status, cancelled)
        });
        if cancelled {
            return Err(SandboxError::Cancelled {
                what: what.to_string(),
            });
        }
        let output_error = |source| SandboxError::Output {
            what: what.to_string(),
            command: command_text.clone(),
            source,
        };
        read.map_err(output_error)?;
        let status = status.map_err(output_error)?;
        let output = String::from_utf8_lossy(&bytes).into_owned();
        if status.success() {
            return Ok(output);
        }
        Err(SandboxError::Failed(Box::new(Failure {
            what: what.to_string(),
            command: command_text,
            status: status.to_string(),
            tail: tail(&output, TAIL_LINES),
            output,
        })))
    }

    /// Waits for bwrap, killing it when the cancel flag is raised; bwrap's `--die-with-parent`
    /// then takes the sandboxed processes along.
    fn wait(&self, child: &mut Child) -> (std::io::Result<ExitStatus>, bool) {
        let Some(flag) = &self.cancel else {
            return (child.wait(), false);
        };
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return (Ok(status), false),
                Ok(None) if flag.load(Ordering::SeqCst) => {
                    // Already exited if kill fails; wait reaps it either way.
                    let _ = child.kill();
                    return (child.wait(), true);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return (Err(e), false),
            }
        }
    }

    fn bwrap_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "keel-sandbox",
            "--bind",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(self.root.display().to_string());
        args.push("/".into());
        if self.host_usr {
            args.extend(["--ro-bind".into(), "/usr".into(), "/usr".into()]);
        }
        for a in [
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run",
        ] {
            args.push(a.into());
        }
        for (host, inside) in &self.ro_binds {
            args.extend([
                "--ro-bind".into(),
                host.display().to_string(),
                inside.clone(),
            ]);
        }
        for cap in DROPPED_CAPS {
            args.extend(["--cap-drop".into(), cap.to_string()]);
        }
        args.extend(["--chdir".into(), "/".into()]);
        args
    }

    fn environment(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("PATH", PATH),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C.UTF-8"),
            ("HOME", "/root"),
            ("DEBIAN_FRONTEND", "noninteractive"),
            ("DEBCONF_NONINTERACTIVE_SEEN", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in &self.env {
            env.retain(|(key, _)| key != k);
            env.push((k.clone(), v.clone()));
        }
        env
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn later_env_overrides_defaults() {
        let env = Sandbox::new(Path::new("/nonexistent"))
            .env("LANG", "C")
            .environment();
        assert!(env.contains(&("LANG".into(), "C".into())));
        assert_eq!(env.iter().filter(|(k, _)| k == "LANG").count(), 1);
    }

    #[test]
    fn binds_come_after_the_root_and_network_is_unshared() {
        let args = Sandbox::new(Path::new("/t"))
            .bind_ro(Path::new("/h"), "/in")
            .bwrap_args();
        let root = args.iter().position(|a| a == "/t").unwrap();
        let bind = args.iter().position(|a| a == "/h").unwrap();
        assert!(root < bind);
        assert!(args.contains(&"--unshare-net".to_string()));
        assert!(!args.iter().any(|a| a.starts_with("--unshare-user")));
    }

    #[test]
    fn a_raised_cancel_flag_kills_the_command() {
        let root = tempfile::tempdir().unwrap();
        for link in ["bin", "lib", "lib64"] {
            std::os::unix::fs::symlink(format!("usr/{link}"), root.path().join(link)).unwrap();
        }
        let flag = Arc::new(AtomicBool::new(false));
        let sandbox = Sandbox::new(root.path())
            .with_host_usr()
            .cancel_on(flag.clone());
        let raiser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            flag.store(true, Ordering::SeqCst);
        });
        let started = std::time::Instant::now();
        let err = sandbox.run(&["sleep", "30"], "sleeping").unwrap_err();
        raiser.join().unwrap();
        assert!(matches!(err, SandboxError::Cancelled { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn missing_root_is_an_error_naming_it() {
        let err = Sandbox::new(Path::new("/nonexistent-keel-root"))
            .run(&["true"], "a test step")
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent-keel-root"), "{err}");
    }
}
