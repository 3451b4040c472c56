//! Bootable disk images from a Keel commit.
#![forbid(unsafe_code)]
