//! Running a command inside a tree with bubblewrap (`bwrap`).
//!
//! The tree is bind-mounted read-write as `/`; `/proc`, `/dev` (bwrap's minimal device set), and
//! tmpfs `/tmp` and `/run` are fresh; `/proc/sys`, `/proc/sysrq-trigger`, `/proc/fs`,
//! `/proc/irq` and `/proc/bus` are read-only (the kernel's settings there are the host's). The IPC, PID, network, UTS and cgroup namespaces are
//! private, so the command has no network (only a down-and-up `lo`) and sees nothing of the host
//! beyond the tree and what [`Sandbox::bind_ro`] adds.
//!
//! No user namespace is created, deliberately: Keel composes as root, and inside a user namespace
//! bwrap maps only uid 0, so dpkg could not `chown` files to the system users and groups that
//! packages create (`--unshare-all` would do exactly that). The command runs as root with every
//! capability dropped (`--cap-drop ALL`) but the ones in [`KEPT_CAPS`], which dpkg and
//! maintainer scripts need to lay out files within the tree:
//! - `CAP_CHOWN`: dpkg gives each file the owner the package says; `useradd`, `systemd-tmpfiles`
//!   and scripts chown to the system users they create.
//! - `CAP_DAC_OVERRIDE`: writing files and directories root does not own or that lack a write
//!   bit (a 0440 `sudoers`, a directory owned by a system user, `/etc/gshadow`).
//! - `CAP_FOWNER`: chmod, utime and xattrs on files root does not own, i.e. after dpkg (or a
//!   script) chowned them to a system user.
//! - `CAP_FSETID`: keeping setuid/setgid bits through that chown and chmod, and setting setgid on
//!   a file whose group root is not in (`chage`, `crontab` are `root:shadow`/`root:crontab`
//!   setgid).
//! - `CAP_SETUID`, `CAP_SETGID`: scripts that run a command as the package's own user (`su`,
//!   `runuser`, `setpriv`, `start-stop-daemon --chuid`). Every identity there is only a number
//!   on files in the tree: the sandbox shares no processes, IPC or network with the host.
//! - `CAP_SETFCAP`: postinsts that give a program file capabilities (`setcap cap_net_raw+ep` in
//!   iputils-ping's).
//!
//! bwrap sets `no_new_privs`, so no `execve` (of a setuid or file-capability program, or root's
//! own implicit full set) raises the set again. Dropped, among the rest: `CAP_DAC_READ_SEARCH` (it is what `open_by_handle_at` checks, and
//! `CAP_DAC_OVERRIDE` already covers reading), `CAP_MKNOD` (a block device node would be the
//! host's disk; packages that ship device nodes are refused), `CAP_SYS_ADMIN` (mounts),
//! `CAP_SYS_CHROOT`, `CAP_KILL`, `CAP_AUDIT_WRITE`, the network and time capabilities, module
//! loading, raw I/O, ptrace, `CAP_BPF` and `CAP_PERFMON`. On top, a seccomp filter (see
//! [`seccomp`]) refuses the calls that reach beyond a mount namespace and the kernel's
//! attack surface a script has no use for.
//!
//! Each step has a deadline ([`DEFAULT_DEADLINE`], [`Sandbox::deadline`]): when it passes, bwrap
//! is killed, and with it the sandbox's PID namespace, every process started in it included.
//! That is also how nothing outlives a step that ends normally: when the command exits, bwrap,
//! the namespace's init, exits and the kernel kills what is left (a daemon a script started).
//!
//! The environment is clean: `PATH`, `LANG=C.UTF-8`, `DEBIAN_FRONTEND=noninteractive`,
//! `DEBCONF_NONINTERACTIVE_SEEN=true`, `HOME=/root` plus what [`Sandbox::env`] adds. Standard
//! output and error are captured together, interleaved, keeping the last
//! [`DEFAULT_OUTPUT_CAP`] bytes ([`Sandbox::output_cap`]); a failure carries the command's
//! description, how many bytes were dropped and the last [`TAIL_LINES`] lines of the output.

mod output;
pub mod seccomp;

use keel_common::cancel::Cancel;
use output::OutputTail;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Lines of output kept in a [`SandboxError::Failed`].
pub const TAIL_LINES: usize = 30;
/// At most this many bytes of those lines (a script may print one endless line).
pub const TAIL_BYTES: usize = 16 * 1024;
/// How long one step may run: longer than a cold dpkg configure of a full host (about two
/// minutes here) or dracut (under one), with room for a slow machine.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// Bytes of a step's output kept (the newest).
pub const DEFAULT_OUTPUT_CAP: usize = 8 * 1024 * 1024;

/// Host-wide switches under `/proc` besides `/proc/sys`, made read-only where the kernel has them.
const PROC_READ_ONLY_TRY: &[&str] = &["/proc/sysrq-trigger", "/proc/fs"];

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The only capabilities the (root) command keeps; the module doc says why each one.
pub const KEPT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_SETFCAP",
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
    #[error("{0}")]
    Overdue(Box<Overdue>),
}

/// A command that ran in the sandbox and failed.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what}: `{command}` failed ({status}); last lines of its output{dropped}:\n{tail}",
    dropped = dropped_note(*.dropped)
)]
pub struct Failure {
    pub what: String,
    pub command: String,
    pub status: String,
    /// The captured output (its last [`Sandbox::output_cap`] bytes), for callers that parse it
    /// (e.g. dpkg's error lines).
    pub output: String,
    /// Bytes of output dropped before `output`.
    pub dropped: u64,
    pub tail: String,
}

/// A command that was still running at its deadline, and was killed with all it started.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what}: `{command}` did not finish within {secs} s and was killed, with every process it \
     started; if the step is only slow, give the sandbox a longer deadline; last lines of its \
     output{dropped}:\n{tail}",
    secs = .deadline.as_secs_f64(),
    dropped = dropped_note(*.dropped)
)]
pub struct Overdue {
    pub what: String,
    pub command: String,
    pub deadline: Duration,
    pub output: String,
    pub dropped: u64,
    pub tail: String,
}

fn dropped_note(dropped: u64) -> String {
    if dropped == 0 {
        String::new()
    } else {
        format!(" ({dropped} bytes before them were dropped)")
    }
}

impl SandboxError {
    /// The command's captured output, when it ran and failed or overran its deadline.
    pub fn output(&self) -> Option<&str> {
        match self {
            SandboxError::Failed(failure) => Some(&failure.output),
            SandboxError::Overdue(overdue) => Some(&overdue.output),
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
    cancel: Option<Cancel>,
    deadline: Duration,
    output_cap: usize,
}

/// How a command's run ended.
enum Ending {
    Exited(ExitStatus),
    Cancelled,
    Overdue,
}

impl Sandbox {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            ro_binds: Vec::new(),
            env: Vec::new(),
            host_usr: false,
            cancel: None,
            deadline: DEFAULT_DEADLINE,
            output_cap: DEFAULT_OUTPUT_CAP,
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

    /// Kills the command (and everything it started) when `cancel` is cancelled, e.g. from a
    /// Ctrl-C handler; [`Sandbox::run`] then returns [`SandboxError::Cancelled`].
    pub fn cancel_on(mut self, cancel: &Cancel) -> Self {
        self.cancel = Some(cancel.clone());
        self
    }

    /// How long each [`Sandbox::run`] may take before it is killed ([`DEFAULT_DEADLINE`]).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// How many bytes of each command's output are kept, the newest ([`DEFAULT_OUTPUT_CAP`]).
    pub fn output_cap(mut self, bytes: usize) -> Self {
        self.output_cap = bytes;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs `argv` in the tree and returns its combined output. `what` describes the step for
    /// error messages, e.g. "postinst of podman". When output was dropped to stay within the
    /// cap, the text starts with a line saying how much.
    pub fn run(&self, argv: &[&str], what: &str) -> Result<String, SandboxError> {
        if !self.root.is_dir() {
            return Err(SandboxError::NoRoot {
                what: what.to_string(),
                root: self.root.clone(),
            });
        }
        let command_text = argv.join(" ");
        let spawn_error = |source| SandboxError::Spawn {
            what: what.to_string(),
            source,
        };
        let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
        let writer2 = writer.try_clone().map_err(spawn_error)?;
        let filter = seccomp_filter_fd().map_err(spawn_error)?;
        let mut command = Command::new("bwrap");
        command
            .args(self.bwrap_args())
            .args(["--seccomp".to_string(), filter.as_raw_fd().to_string()])
            .arg("--")
            .args(argv)
            .env_clear()
            .envs(self.environment())
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer2);
        let started = Instant::now();
        let spawned = command.spawn();
        // The Command still holds the pipe's write ends; drop it so reading ends at exit.
        drop(command);
        drop(filter);
        let mut child = spawned.map_err(spawn_error)?;
        let mut output = OutputTail::new(self.output_cap);
        // The pipe closes when the sandbox's PID namespace is gone, i.e. every process in it.
        let (read, ending) = std::thread::scope(|scope| {
            let reading = scope.spawn(|| output.read_all(reader));
            let ending = self.wait(&mut child, started);
            let read = reading
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the output reader panicked")));
            (read, ending)
        });
        let output_error = |source| SandboxError::Output {
            what: what.to_string(),
            command: command_text.clone(),
            source,
        };
        let ending = ending.map_err(output_error)?;
        read.map_err(output_error)?;
        let (dropped, text) = (output.dropped(), output.text());
        match ending {
            Ending::Cancelled => Err(SandboxError::Cancelled {
                what: what.to_string(),
            }),
            Ending::Overdue => Err(SandboxError::Overdue(Box::new(Overdue {
                what: what.to_string(),
                command: command_text,
                deadline: self.deadline,
                tail: tail(&text, TAIL_LINES),
                output: text,
                dropped,
            }))),
            Ending::Exited(status) if status.success() => Ok(match dropped {
                0 => text,
                n => format!("[the first {n} bytes of output were dropped]\n{text}"),
            }),
            Ending::Exited(status) => Err(SandboxError::Failed(Box::new(Failure {
                what: what.to_string(),
                command: command_text,
                status: status.to_string(),
                tail: tail(&text, TAIL_LINES),
                output: text,
                dropped,
            }))),
        }
    }

    /// Waits for bwrap until it exits, the cancel token is raised or the deadline passes. In
    /// the last two cases (and when waiting fails) bwrap is killed; being the parent of the
    /// sandbox's PID namespace (`--die-with-parent`), it takes every process in it along.
    fn wait(&self, child: &mut Child, started: Instant) -> std::io::Result<Ending> {
        let mut pause = Duration::from_millis(1);
        loop {
            let ending = match child.try_wait() {
                Ok(Some(status)) => return Ok(Ending::Exited(status)),
                Ok(None) if self.cancel.as_ref().is_some_and(Cancel::is_cancelled) => {
                    Ok(Ending::Cancelled)
                }
                Ok(None) if started.elapsed() >= self.deadline => Ok(Ending::Overdue),
                Ok(None) => {
                    let left = self.deadline.saturating_sub(started.elapsed());
                    std::thread::sleep(pause.min(left));
                    pause = (pause * 2).min(Duration::from_millis(50));
                    continue;
                }
                Err(e) => Err(e),
            };
            // Already exited if kill fails; wait reaps it either way.
            let _ = child.kill();
            child.wait()?;
            return ending;
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
        // bwrap 0.8 leaves /proc/sys writable for root (its own cover skips it), and the
        // kernel's sysctls are the host's: kernel.core_pattern names a program the host runs as
        // root when any process crashes. Read-only, as container runtimes mount it.
        args.extend(["--ro-bind", "/proc/sys", "/proc/sys"].map(String::from));
        for path in PROC_READ_ONLY_TRY {
            args.extend(["--ro-bind-try".into(), path.to_string(), path.to_string()]);
        }
        for (host, inside) in &self.ro_binds {
            args.extend([
                "--ro-bind".into(),
                host.display().to_string(),
                inside.clone(),
            ]);
        }
        args.extend(["--cap-drop".into(), "ALL".into()]);
        for cap in KEPT_CAPS {
            args.extend(["--cap-add".into(), cap.to_string()]);
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

/// A pipe's read end holding the compiled seccomp program, inheritable so bwrap can read it
/// (`--seccomp FD`). The program is far smaller than a pipe's buffer, so writing it all before
/// bwrap starts cannot block. While it is inheritable, a process another thread spawns may
/// inherit it too; it only holds the program, and the write end is already closed.
fn seccomp_filter_fd() -> std::io::Result<std::io::PipeReader> {
    let (reader, mut writer) = std::io::pipe()?;
    writer.write_all(&seccomp::program_bytes())?;
    drop(writer);
    rustix::io::fcntl_setfd(&reader, rustix::io::FdFlags::empty())?;
    Ok(reader)
}

/// The last `lines` lines of `text`, at most [`TAIL_BYTES`] of them (cut at a character).
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let last = all[all.len().saturating_sub(lines)..].join("\n");
    if last.len() <= TAIL_BYTES {
        return last;
    }
    let mut cut = last.len() - TAIL_BYTES;
    while !last.is_char_boundary(cut) {
        cut += 1;
    }
    format!("[...]{}", &last[cut..])
}

#[cfg(test)]
mod tests;
