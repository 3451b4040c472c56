//! Fixtures shared by Keel's integration tests: loopback HTTP servers, tiny packages and
//! repositories, the VM harness.

pub mod aptrepo;
pub mod deb;
pub mod http;
pub mod oci;
pub mod ostree_cli;
pub mod sysroot;
pub mod vm;
