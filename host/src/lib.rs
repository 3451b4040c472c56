//! Keel's host operations on an ostree sysroot: what the `keel` CLI, the image builder and
//! (later) the daemon call. One module per operation; every change goes through libostree.
//! Nothing here prints: long operations report through a [`keel_common::progress::Progress`]
//! sink and stop through a [`keel_common::cancel::Cancel`] token, both passed in.
#![forbid(unsafe_code)]

pub mod cleanup;
pub mod config;
pub mod delta;
pub mod deploy;
pub mod dropins;
pub mod etc;
pub mod etc_plan;
pub mod host;
pub mod kargs;
pub mod pin;
pub mod provision;
pub mod pull;
pub mod remote;
pub mod rollback;
pub mod status;
pub mod trust;
pub mod upgrade;
pub mod verify;

pub use host::Host;
