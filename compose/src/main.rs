//! The `keel-compose` binary: parses arguments and calls the library (see `cli`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    match keel_compose::cli::run_from_iter(std::env::args_os()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
