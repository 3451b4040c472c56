//! The one way to run a program: [`CommandExt`] on `std::process::Command`.
//!
//! A run captures stdout, keeps only the last [`STDERR_LINES`] lines of stderr (at most
//! [`STDERR_BYTES`]; a program that prints gigabytes costs no memory), and on failure puts the
//! command line, the exit status and that tail into the error. A program that is not there is
//! its own error that says to install it through `ci/deps`. Input for stdin is written from
//! its own thread, so a program that answers before it has read everything cannot deadlock
//! us.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};

/// Lines of stderr kept for the error.
pub const STDERR_LINES: usize = 20;
/// Bytes of stderr kept for the error, whatever the line count.
pub const STDERR_BYTES: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program is not installed (or not on `PATH`).
    #[error("cannot start `{program}`: it is not installed; install it through ci/deps")]
    Missing { program: String },
    /// The program exists but could not be started.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("`{command}` failed ({status}){}", tail_text(.stderr))]
    Failed {
        command: String,
        status: ExitStatus,
        /// The last lines of its stderr (of stdout when stderr was empty).
        stderr: String,
    },
    /// It succeeded, but its output is not what was asked for (UTF-8 text, the JSON expected).
    #[error("`{command}` printed output that cannot be read: {reason}")]
    Output { command: String, reason: String },
}

fn tail_text(tail: &str) -> String {
    if tail.is_empty() {
        " and printed nothing".to_string()
    } else {
        format!(":\n{tail}")
    }
}

impl CommandError {
    /// The tail of stderr of a failed run.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            CommandError::Failed { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

/// Running a [`Command`] to completion the one way.
pub trait CommandExt {
    /// Runs with stdin closed; returns stdout.
    fn run(&mut self) -> Result<Vec<u8>, CommandError>;
    /// Runs with `input` on stdin; returns stdout.
    fn run_with_input(&mut self, input: &[u8]) -> Result<Vec<u8>, CommandError>;
    /// Runs with stdin closed; returns stdout, which must be UTF-8.
    fn run_text(&mut self) -> Result<String, CommandError>;
    /// Runs with stdin closed and parses stdout as JSON.
    fn run_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, CommandError>;
    /// Runs with stdin closed and returns whatever it gave, failed or not: for programs whose
    /// output explains their exit status (gpgv's `--status-fd` lines). Errs only when the
    /// program could not be started or its output not read.
    fn run_finished(&mut self) -> Result<Finished, CommandError>;
}

/// A program that ran to its end, successfully or not.
#[derive(Debug)]
pub struct Finished {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// The last [`STDERR_LINES`] lines of its stderr.
    pub stderr: String,
}

impl Finished {
    /// `Ok(stdout)` when it exited 0, else the same [`CommandError::Failed`] that
    /// [`CommandExt::run`] gives.
    pub fn into_result(self) -> Result<Vec<u8>, CommandError> {
        if self.status.success() {
            return Ok(self.stdout);
        }
        let stderr = match self.stderr.trim() {
            "" => last_lines(&String::from_utf8_lossy(&self.stdout)),
            tail => tail.to_string(),
        };
        Err(CommandError::Failed {
            command: self.command,
            status: self.status,
            stderr,
        })
    }
}

impl CommandExt for Command {
    fn run(&mut self) -> Result<Vec<u8>, CommandError> {
        run(self, None)?.into_result()
    }

    fn run_with_input(&mut self, input: &[u8]) -> Result<Vec<u8>, CommandError> {
        run(self, Some(input))?.into_result()
    }

    fn run_finished(&mut self) -> Result<Finished, CommandError> {
        run(self, None)
    }

    fn run_text(&mut self) -> Result<String, CommandError> {
        let stdout = self.run()?;
        String::from_utf8(stdout).map_err(|e| CommandError::Output {
            command: describe(self),
            reason: format!("not UTF-8 text ({e})"),
        })
    }

    fn run_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, CommandError> {
        let stdout = self.run()?;
        serde_json::from_slice(&stdout).map_err(|e| CommandError::Output {
            command: describe(self),
            reason: format!("not the JSON expected ({e})"),
        })
    }
}

/// `program arg...` as one would type it into a shell, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut words = vec![quote(&cmd.get_program().to_string_lossy())];
    words.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    words.join(" ")
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn run(cmd: &mut Command, input: Option<&[u8]>) -> Result<Finished, CommandError> {
    let command = describe(cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    // ENOENT also means a missing working directory; only then is the program not missing.
    let cwd_missing = cmd.get_current_dir().is_some_and(|dir| !dir.is_dir());
    let mut child = cmd.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound if !cwd_missing => CommandError::Missing {
            program: cmd.get_program().to_string_lossy().into_owned(),
        },
        _ => CommandError::Spawn {
            command: command.clone(),
            source,
        },
    })?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (out, tail) = std::thread::scope(|scope| {
        if let (Some(data), Some(mut stdin)) = (input, stdin) {
            // A child that exits early closes the pipe; its exit status tells what went wrong.
            scope.spawn(move || {
                let _ = stdin.write_all(data);
            });
        }
        let tail = scope.spawn(move || stderr.map(tail_of).unwrap_or_default());
        let mut out = Vec::new();
        let read = match stdout {
            Some(mut stdout) => stdout.read_to_end(&mut out).map(|_| ()),
            None => Ok(()),
        };
        (read.map(|()| out), tail.join().unwrap_or_default())
    });
    let status = child.wait().map_err(|source| CommandError::Spawn {
        command: command.clone(),
        source,
    })?;
    let out = out.map_err(|source| CommandError::Spawn {
        command: command.clone(),
        source,
    })?;
    Ok(Finished {
        command,
        status,
        stdout: out,
        stderr: tail,
    })
}

/// Reads `reader` to its end, keeping only the last [`STDERR_BYTES`] bytes, and returns their
/// last [`STDERR_LINES`] lines.
fn tail_of(mut reader: impl Read) -> String {
    let mut kept: VecDeque<u8> = VecDeque::with_capacity(STDERR_BYTES);
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                kept.extend(&buf[..n]);
                let excess = kept.len().saturating_sub(STDERR_BYTES);
                kept.drain(..excess);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    last_lines(&String::from_utf8_lossy(&Vec::from(kept)))
}

fn last_lines(text: &str) -> String {
    let text = text.trim_end();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(STDERR_LINES);
    let tail = lines[start..].join("\n");
    // A single huge line: keep its end.
    let from = tail.len().saturating_sub(STDERR_BYTES);
    let from = (from..=tail.len())
        .find(|&i| tail.is_char_boundary(i))
        .unwrap_or(0);
    tail[from..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_comes_back() {
        assert_eq!(Command::new("echo").arg("hi").run().unwrap(), b"hi\n");
        assert_eq!(Command::new("printf").arg("a b").run_text().unwrap(), "a b");
    }

    #[test]
    fn a_failure_names_the_command_line_its_status_and_the_last_stderr_lines() {
        let err = Command::new("sh")
            .args([
                "-c",
                "for i in $(seq 1 100); do echo line$i >&2; done; exit 3",
            ])
            .run()
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("`sh -c 'for i in $(seq 1 100); do echo line$i >&2; done; exit 3'` failed (exit status: 3):\n"),
            "{text}"
        );
        let tail = err.stderr().unwrap();
        assert_eq!(tail.lines().count(), STDERR_LINES);
        assert!(
            tail.starts_with("line81\n") && tail.ends_with("line100"),
            "{tail}"
        );
    }

    #[test]
    fn stdout_stands_in_when_stderr_is_empty() {
        let err = Command::new("sh")
            .args(["-c", "echo said-on-stdout; exit 1"])
            .run()
            .unwrap_err();
        assert_eq!(err.stderr(), Some("said-on-stdout"));
    }

    #[test]
    fn huge_stderr_is_cut_to_its_tail() {
        let err = Command::new("sh")
            .args([
                "-c",
                "head -c 3000000 /dev/zero | tr '\\0' x >&2; echo END >&2; exit 1",
            ])
            .run()
            .unwrap_err();
        let tail = err.stderr().unwrap();
        assert!(
            tail.len() <= STDERR_BYTES && tail.ends_with("xxEND"),
            "{}",
            tail.len()
        );
    }

    #[test]
    fn a_missing_program_says_to_install_it() {
        let err = Command::new("keel-no-such-program").run().unwrap_err();
        assert!(matches!(err, CommandError::Missing { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "cannot start `keel-no-such-program`: it is not installed; install it through ci/deps"
        );
    }

    #[test]
    fn a_missing_working_directory_is_not_a_missing_program() {
        let err = Command::new("true")
            .current_dir("/nonexistent/keel")
            .run()
            .unwrap_err();
        assert!(matches!(err, CommandError::Spawn { .. }), "{err}");
    }

    #[test]
    fn input_reaches_stdin_even_when_large() {
        // Bigger than a pipe buffer both ways: writing and reading must overlap.
        let input = vec![b'z'; 4 * 1024 * 1024];
        let out = Command::new("cat").run_with_input(&input).unwrap();
        assert_eq!(out.len(), input.len());
    }

    #[test]
    fn json_output_is_parsed_or_named_as_unreadable() {
        let v: serde_json::Value = Command::new("echo")
            .arg(r#"{"a":[1,2]}"#)
            .run_json()
            .unwrap();
        assert_eq!(v["a"][1], 2);
        let err = Command::new("echo")
            .arg("not json")
            .run_json::<serde_json::Value>()
            .unwrap_err();
        assert!(
            matches!(err, CommandError::Output { .. })
                && err.to_string().contains("`echo 'not json'`"),
            "{err}"
        );
    }

    #[test]
    fn words_are_quoted_only_when_needed() {
        let mut cmd = Command::new("gpgv");
        cmd.args(["--keyring", "/a b/k.gpg", "it's", ""]);
        assert_eq!(describe(&cmd), r"gpgv --keyring '/a b/k.gpg' 'it'\''s' ''");
    }
}
