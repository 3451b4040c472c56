//! Keel's update agent: the `[updates]` configuration ([`config`]), maintenance windows
//! ([`window`]), the update state machine ([`machine`]), the FleetLock client ([`fleetlock`])
//! and the `keeld` D-Bus service ([`service`]).
#![forbid(unsafe_code)]

pub mod config;
pub mod fleetlock;
pub mod machine;
pub mod service;
pub mod system;
pub mod transaction;
pub mod window;
