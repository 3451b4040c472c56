//! Bootable disk images from a Keel commit: an MBR disk with a /boot partition (extlinux,
//! libostree's boot entries) and a root partition holding an ostree sysroot with one
//! deployment, set up to update itself from a remote.
#![forbid(unsafe_code)]

pub mod bootcfg;
pub mod build;
pub mod guard;
pub mod layout;
pub mod remote;
pub mod sysroot;

pub use build::{build, Format, ImageReport, ImageSpec};
pub use remote::RemoteSpec;
