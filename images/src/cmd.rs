//! The one way this crate runs programs: the command line and the tail of stderr go into the
//! error, so a failed `mkfs.ext4` or `qemu-img convert` says what it printed.

use std::process::{Command, Stdio};

const STDERR_TAIL: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("could not start `{command}`: {source} (is it installed? ci/deps installs it)")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

/// `program args...` as a person would type it, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` to completion with stdin closed; returns stdout, or an error naming the command
/// with the last lines of its stderr.
pub fn run(cmd: &mut Command) -> Result<String, CmdError> {
    run_with_input(cmd, None)
}

/// Like [`run`], feeding `input` on stdin.
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>) -> Result<String, CmdError> {
    use std::io::Write;
    let command = describe(cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| CmdError::Spawn {
        command: command.clone(),
        source,
    })?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        // A child that exits early closes the pipe; its exit status tells what went wrong.
        let _ = stdin.write_all(data);
    }
    let output = child.wait_with_output().map_err(|source| CmdError::Spawn {
        command: command.clone(),
        source,
    })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let trimmed = stderr.trim();
    let start = trimmed
        .char_indices()
        .rev()
        .nth(STDERR_TAIL)
        .map_or(0, |(i, _)| i);
    Err(CmdError::Failed {
        command,
        status: output.status.to_string(),
        stderr: trimmed[start..].to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_returns_stdout() {
        let out = run(Command::new("sh").args(["-c", "echo hello"])).unwrap();
        assert_eq!(out, "hello\n");
    }

    #[test]
    fn failure_names_the_command_and_its_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`sh -c echo oops >&2; exit 3`"), "{text}");
        assert!(text.contains("oops"), "{text}");
        assert!(text.contains('3'), "{text}");
    }

    #[test]
    fn missing_program_says_so() {
        let err = run(&mut Command::new("keel-no-such-program")).unwrap_err();
        assert!(matches!(err, CmdError::Spawn { .. }), "{err}");
    }

    #[test]
    fn input_reaches_stdin() {
        let out = run_with_input(&mut Command::new("cat"), Some(b"abc")).unwrap();
        assert_eq!(out, "abc");
    }
}
