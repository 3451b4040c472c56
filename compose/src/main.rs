//! The `keel-compose` binary: turns Ctrl-C into the cancellation token, parses arguments and
//! calls the library (see `cli`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use keel_common::cancel::Cancel;

fn main() -> ExitCode {
    let cancel = Cancel::new();
    let on_interrupt = cancel.clone();
    // Without a handler Ctrl-C still stops us, only less tidily; not fatal.
    let _ = ctrlc::set_handler(move || {
        eprintln!("keel-compose: interrupted; stopping and cleaning up");
        on_interrupt.cancel();
    });
    match keel_compose::cli::run_with(std::env::args_os(), &cancel) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
