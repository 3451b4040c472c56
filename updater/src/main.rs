//! `keel`, the host agent. Everything happens in the library.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    keel_updater::cli::run_from_iter(std::env::args_os())
}
