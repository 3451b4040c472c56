//! Every subprocess of this module goes through [`run`]: it captures stdout, and on failure
//! puts the program, its exit status and the tail of its stderr into the error.

use std::process::Command;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CommandError {
    #[error("could not start {program}: {source} (is it installed? see ci/deps)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// How much of stderr an error keeps.
const STDERR_TAIL: usize = 2000;

/// Runs `command` to completion and returns its stdout.
pub fn run(command: &mut Command) -> Result<Vec<u8>, CommandError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| CommandError::Spawn {
            program: program.clone(),
            source,
        })?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr);
        let text = text.trim();
        let start = text
            .char_indices()
            .rev()
            .nth(STDERR_TAIL)
            .map_or(0, |(i, _)| i);
        return Err(CommandError::Failed {
            program,
            status: output.status,
            stderr: text[start..].to_string(),
        });
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_and_stderr_tail() {
        assert_eq!(run(Command::new("echo").arg("hi")).unwrap(), b"hi\n");
        let e = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("sh failed") && text.ends_with("oops"),
            "{text}"
        );
        assert!(matches!(
            run(&mut Command::new("/nonexistent/keel-tool")),
            Err(CommandError::Spawn { .. })
        ));
    }
}
