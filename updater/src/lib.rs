//! Keel's host agent: what `keel` does, as a library the CLI, the tests and later the daemon
//! call. The binary (`main.rs`) only hands its arguments to [`cli::run_from_iter`].
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod delta;
pub mod etc_plan;
pub mod host;
pub mod keys;
pub mod pull;
pub mod status;
pub mod upgrade;
pub mod verify;
