//! `keel`, the host agent. Everything happens in the library; the CLI installs the Ctrl-C
//! handler.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    keel_updater::cli::run_with_ctrlc(std::env::args_os())
}
