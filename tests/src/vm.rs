//! The VM harness: boots a disk image under `qemu-system-x86_64 -accel tcg` through its own
//! bootloader, captures the serial console in a log file, and runs commands in the guest
//! through a small agent on a virtio-serial port.
//!
//! Protocol (one line each way): the host writes `ID BASE64(script)`; the guest agent runs the
//! script with `bash -c`, stdin closed, and answers `KEEL-AGENT ID EXIT_CODE BASE64(output)`,
//! output being stdout and stderr together. Replies to other IDs (stale pings, commands cut
//! short by a reboot) are skipped, so the stream survives guest reboots: qemu keeps the socket.
//!
//! Every wait has a deadline. qemu runs under `timeout -s KILL` (a watchdog that holds even if
//! the test process dies) in its own process group, which `Drop` kills.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Name of the virtio-serial port the guest agent listens on (`/dev/virtio-ports/NAME`).
pub const AGENT_PORT: &str = "keel.agent";

/// The guest agent script: install it at [`AGENT_SCRIPT_PATH`].
pub const AGENT_SCRIPT: &str = r#"#!/bin/bash
# Keel test agent: runs the host's commands from a virtio-serial port (see keel-tests vm.rs).
port=/dev/virtio-ports/keel.agent
while [ ! -e "$port" ]; do sleep 1; done
exec 3<>"$port"
exec 4>&3
while IFS=' ' read -r id script <&3; do
  [ -n "$id" ] || continue
  body=$(printf '%s' "$script" | base64 -d)
  out=$(bash -c "$body" </dev/null 2>&1)
  rc=$?
  printf 'KEEL-AGENT %s %s %s\n' "$id" "$rc" "$(printf '%s' "$out" | base64 -w0)" >&4
done
"#;
pub const AGENT_SCRIPT_PATH: &str = "/usr/libexec/keel-test-agent";

/// The agent's systemd unit, at [`AGENT_UNIT_PATH`].
pub const AGENT_UNIT: &str = "[Unit]
Description=Keel test agent (runs commands from the VM test harness)
DefaultDependencies=no
After=local-fs.target

[Service]
ExecStart=/bin/bash /usr/libexec/keel-test-agent
Restart=always
RestartSec=1
";
pub const AGENT_UNIT_PATH: &str = "/usr/lib/systemd/system/keel-test-agent.service";

/// A drop-in that pulls the agent into multi-user.target: a plain file, so packages and
/// add-files can ship it without an enable symlink.
pub const AGENT_WANTS: &str = "[Unit]\nWants=keel-test-agent.service\n";
pub const AGENT_WANTS_PATH: &str =
    "/usr/lib/systemd/system/multi-user.target.d/keel-test-agent.conf";

/// The files a guest needs for the harness: (absolute path, content). All are plain files
/// with mode 0644 (the unit runs the script through bash).
pub fn agent_files() -> Vec<(&'static str, &'static str)> {
    vec![
        (AGENT_SCRIPT_PATH, AGENT_SCRIPT),
        (AGENT_UNIT_PATH, AGENT_UNIT),
        (AGENT_WANTS_PATH, AGENT_WANTS),
    ]
}

/// How to start a VM.
#[derive(Clone, Debug)]
pub struct VmConfig {
    pub disk: PathBuf,
    /// `raw` or `qcow2`.
    pub disk_format: String,
    /// Where the serial log and the agent socket go.
    pub work_dir: PathBuf,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Watchdog: qemu is killed after this long, whatever happens.
    pub max_lifetime: Duration,
}

impl VmConfig {
    /// `-m 2048 -smp 2` (DESIGN.md's measured boots), one hour of lifetime at most.
    pub fn new(disk: &Path, disk_format: &str, work_dir: &Path) -> Self {
        Self {
            disk: disk.to_path_buf(),
            disk_format: disk_format.to_string(),
            work_dir: work_dir.to_path_buf(),
            memory_mb: 2048,
            cpus: 2,
            max_lifetime: Duration::from_secs(3600),
        }
    }
}

/// What a guest command printed and how it exited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestOutput {
    pub code: i32,
    pub output: String,
}

/// A running VM; killed (with its process group) on drop.
pub struct Vm {
    child: Child,
    serial_log: PathBuf,
    socket: PathBuf,
    stream: Option<UnixStream>,
    replies: Option<Receiver<String>>,
    next_id: u64,
    started: Instant,
}

impl Vm {
    /// Starts qemu: TCG, the disk on virtio, user networking (the host's loopback is 10.0.2.2
    /// in the guest), the serial console into `work_dir/serial.log`, the agent port on a unix
    /// socket. The guest boots through the disk's own bootloader.
    pub fn start(config: &VmConfig) -> Result<Vm> {
        std::fs::create_dir_all(&config.work_dir)
            .with_context(|| format!("creating {}", config.work_dir.display()))?;
        let serial_log = config.work_dir.join("serial.log");
        let socket = config.work_dir.join("agent.sock");
        let _ = std::fs::remove_file(&socket);
        let mut cmd = Command::new("timeout");
        cmd.args(["-s", "KILL"])
            .arg(config.max_lifetime.as_secs().to_string())
            .arg("qemu-system-x86_64")
            .args(["-accel", "tcg", "-machine", "pc", "-cpu", "max"])
            .arg("-m")
            .arg(config.memory_mb.to_string())
            .arg("-smp")
            .arg(config.cpus.to_string())
            .args(["-display", "none", "-vga", "none", "-monitor", "none"])
            .arg("-serial")
            .arg(format!("file:{}", serial_log.display()))
            .arg("-drive")
            .arg(format!(
                "file={},format={},if=virtio,cache=unsafe",
                config.disk.display(),
                config.disk_format
            ))
            .args(["-nic", "user,model=virtio-net-pci"])
            .args(["-device", "virtio-serial-pci"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=agent,path={},server=on,wait=off",
                socket.display()
            ))
            .arg("-device")
            .arg(format!("virtserialport,chardev=agent,name={AGENT_PORT}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(config.work_dir.join("qemu.stderr"))
                    .context("creating qemu.stderr")?,
            )
            .process_group(0);
        let child = cmd
            .spawn()
            .context("starting qemu-system-x86_64 (install qemu-system-x86 through ci/deps)")?;
        Ok(Vm {
            child,
            serial_log,
            socket,
            stream: None,
            replies: None,
            next_id: 1,
            started: Instant::now(),
        })
    }

    /// Seconds since qemu started.
    pub fn uptime(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The serial console so far.
    pub fn serial(&self) -> String {
        std::fs::read(&self.serial_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` bytes of the serial console, for failure messages.
    pub fn serial_tail(&self, n: usize) -> String {
        let text = self.serial();
        let start = text.char_indices().rev().nth(n).map_or(0, |(i, _)| i);
        text[start..].to_string()
    }

    fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("checking qemu")? {
            bail!(
                "qemu exited ({status}); serial console tail:\n{}",
                self.serial_tail(3000)
            );
        }
        Ok(())
    }

    fn connect(&mut self, deadline: Instant) -> Result<()> {
        if self.stream.is_some() {
            return Ok(());
        }
        loop {
            self.ensure_running()?;
            match UnixStream::connect(&self.socket) {
                Ok(stream) => {
                    let reader = stream.try_clone().context("cloning the agent socket")?;
                    let (tx, rx) = mpsc::channel();
                    std::thread::spawn(move || {
                        for line in BufReader::new(reader).lines() {
                            let Ok(line) = line else { break };
                            if tx.send(line).is_err() {
                                break;
                            }
                        }
                    });
                    self.stream = Some(stream);
                    self.replies = Some(rx);
                    return Ok(());
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "connecting to qemu's agent socket {}",
                            self.socket.display()
                        )
                    })
                }
            }
        }
    }

    /// Sends `script` and returns its request id without waiting.
    fn send(&mut self, script: &str, deadline: Instant) -> Result<u64> {
        self.connect(deadline)?;
        let id = self.next_id;
        self.next_id += 1;
        let line = format!("{id} {}\n", base64_encode(script.as_bytes()));
        let stream = self.stream.as_mut().context("agent socket not connected")?;
        stream
            .write_all(line.as_bytes())
            .context("writing to the agent socket")?;
        Ok(id)
    }

    /// Waits for the reply to request `id` until `deadline`; `None` on timeout.
    fn reply(&mut self, id: u64, deadline: Instant) -> Result<Option<GuestOutput>> {
        loop {
            self.ensure_running()?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wait = (deadline - now).min(Duration::from_secs(1));
            let rx = self
                .replies
                .as_ref()
                .context("agent socket not connected")?;
            match rx.recv_timeout(wait) {
                Ok(line) => {
                    if let Some((reply_id, out)) = parse_reply(&line) {
                        if reply_id == id {
                            return Ok(Some(out));
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "qemu closed the agent socket; serial console tail:\n{}",
                    self.serial_tail(3000)
                ),
            }
        }
    }

    /// Waits until the guest agent answers (the guest reached the point where systemd starts
    /// it), pinging every few seconds.
    pub fn wait_for_agent(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let id = self.send("true", deadline)?;
            let step = (Instant::now() + Duration::from_secs(5)).min(deadline);
            if self.reply(id, step)?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the guest agent did not answer within {}s; serial console tail:\n{}",
                    timeout.as_secs(),
                    self.serial_tail(3000)
                );
            }
        }
    }

    /// Runs `script` in the guest (bash), returns its exit code and output.
    pub fn run(&mut self, script: &str, timeout: Duration) -> Result<GuestOutput> {
        let deadline = Instant::now() + timeout;
        let id = self.send(script, deadline)?;
        match self.reply(id, deadline)? {
            Some(out) => Ok(out),
            None => bail!(
                "guest command {script:?} did not finish within {}s; serial console tail:\n{}",
                timeout.as_secs(),
                self.serial_tail(2000)
            ),
        }
    }

    /// Runs `script` and fails unless it exits 0; returns its output.
    pub fn must(&mut self, script: &str, timeout: Duration) -> Result<String> {
        let out = self.run(script, timeout)?;
        if out.code != 0 {
            bail!(
                "guest command {script:?} exited {}:\n{}",
                out.code,
                out.output
            );
        }
        Ok(out.output)
    }

    /// The guest's boot id (changes with every boot).
    pub fn boot_id(&mut self) -> Result<String> {
        Ok(self
            .must(
                "cat /proc/sys/kernel/random/boot_id",
                Duration::from_secs(60),
            )?
            .trim()
            .to_string())
    }

    /// Runs `script`, which reboots the guest (e.g. `keel upgrade --reboot`), and waits until
    /// the guest is back with a new boot id. Fails early if the script exits non-zero.
    pub fn run_and_wait_for_reboot(&mut self, script: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let before = self.boot_id()?;
        let id = self.send(script, deadline)?;
        // The script's own reply, if it comes before the reboot, must say success.
        let first = (Instant::now() + Duration::from_secs(600)).min(deadline);
        if let Some(out) = self.reply_or_reboot(id, first)? {
            if out.code != 0 {
                bail!(
                    "guest command {script:?} exited {}:\n{}",
                    out.code,
                    out.output
                );
            }
        }
        loop {
            if Instant::now() >= deadline {
                bail!(
                    "the guest did not come back from {script:?} within {}s; serial tail:\n{}",
                    timeout.as_secs(),
                    self.serial_tail(3000)
                );
            }
            let ping = self.send("cat /proc/sys/kernel/random/boot_id", deadline)?;
            let step = (Instant::now() + Duration::from_secs(5)).min(deadline);
            if let Some(out) = self.reply(ping, step)? {
                if out.code == 0 && out.output.trim() != before {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    }

    /// Waits for the reply to `id`, giving up (with `None`) once the serial console shows
    /// the guest going down for a reboot.
    fn reply_or_reboot(&mut self, id: u64, deadline: Instant) -> Result<Option<GuestOutput>> {
        let mark = self.serial().len();
        loop {
            let step = (Instant::now() + Duration::from_secs(2)).min(deadline);
            if let Some(out) = self.reply(id, step)? {
                return Ok(Some(out));
            }
            let serial = self.serial();
            let recent = serial.get(mark..).unwrap_or("");
            let going_down = recent.contains("reboot: Restarting system")
                || (recent.contains("Reached target") && recent.contains("System Reboot"));
            if going_down {
                return Ok(None);
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Powers the guest off and waits for qemu to exit; kills it after `timeout`.
    pub fn shutdown(mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        // No reply comes: the agent dies with the system. qemu exiting is the answer.
        let _ = self.send("systemctl poweroff", deadline);
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.child.try_wait().context("checking qemu")?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bail!(
            "qemu did not exit within {}s of poweroff",
            timeout.as_secs()
        )
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // The child leads its own process group: `timeout` and qemu go together.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Parses `KEEL-AGENT ID CODE BASE64` (anything else on the port is ignored).
pub fn parse_reply(line: &str) -> Option<(u64, GuestOutput)> {
    let mut parts = line.trim_end().splitn(4, ' ');
    if parts.next()? != "KEEL-AGENT" {
        return None;
    }
    let id = parts.next()?.parse().ok()?;
    let code = parts.next()?.parse().ok()?;
    let output = base64_decode(parts.next().unwrap_or(""))?;
    Some((
        id,
        GuestOutput {
            code,
            output: String::from_utf8_lossy(&output).into_owned(),
        },
    ))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        if c == b'=' {
            break;
        }
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for text in ["", "a", "ab", "abc", "abcd", "echo 'hi' && ls /\n\u{e9}"] {
            let enc = base64_encode(text.as_bytes());
            assert_eq!(base64_decode(&enc).unwrap(), text.as_bytes(), "{text}");
        }
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
    }

    #[test]
    fn replies_parse_and_noise_is_skipped() {
        assert_eq!(
            parse_reply("KEEL-AGENT 7 0 aGVsbG8="),
            Some((
                7,
                GuestOutput {
                    code: 0,
                    output: "hello".into()
                }
            ))
        );
        assert_eq!(
            parse_reply("KEEL-AGENT 8 3 "),
            Some((
                8,
                GuestOutput {
                    code: 3,
                    output: String::new()
                }
            ))
        );
        assert_eq!(parse_reply("login: "), None);
        assert_eq!(parse_reply("KEEL-AGENT x 0 aGVsbG8="), None);
    }

    #[test]
    fn agent_script_answers_in_the_protocol() {
        // The guest script with the port split into an input file and an output file.
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        let output = dir.path().join("out");
        let script = AGENT_SCRIPT
            .replace("/dev/virtio-ports/keel.agent", &input.display().to_string())
            .replace(
                "exec 3<>\"$port\"\nexec 4>&3",
                "exec 3<\"$port\" 4>\"$KEEL_OUT\"",
            );
        assert!(
            script.contains("KEEL_OUT"),
            "the test must rewrite the port lines"
        );
        let requests = format!(
            "1 {}\n2 {}\n",
            base64_encode(b"echo hi; exit 4"),
            base64_encode(b"printf x; cat")
        );
        std::fs::write(&input, requests).unwrap();
        let status = Command::new("bash")
            .args(["-c", &script])
            .env("KEEL_OUT", &output)
            .status()
            .unwrap();
        assert!(status.success());
        let written = std::fs::read_to_string(&output).unwrap();
        let replies: Vec<_> = written.lines().filter_map(parse_reply).collect();
        assert_eq!(
            replies,
            [
                (
                    1,
                    GuestOutput {
                        code: 4,
                        output: "hi".into()
                    }
                ),
                (
                    2,
                    GuestOutput {
                        code: 0,
                        output: "x".into()
                    }
                ),
            ]
        );
    }
}
