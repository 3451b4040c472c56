//! Keel's host agent `keel`: argument parsing and rendering over the operations of
//! [`keel_host`]. The binary (`main.rs`) only hands its arguments to [`cli::run_from_iter`].
#![forbid(unsafe_code)]

pub mod cli;
