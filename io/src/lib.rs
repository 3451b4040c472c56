//! Keel's edges to the outside world, each done one way for the whole workspace:
//!
//! - [`http`]: the HTTP client every download goes through (repository indices, packages, the
//!   host's pull), with `file://` URLs served from disk through the same calls.
//! - [`command`]: running a program, with its command line and the tail of its stderr in the
//!   error.
//!
//! `keel-common` stays free of I/O; what talks to the network or starts processes lives here.
#![forbid(unsafe_code)]

pub mod command;
pub mod http;
