//! `keel-fleetlock`: the FleetLock server and its admin verbs. Everything happens in the
//! library; this parses arguments and renders.
#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
