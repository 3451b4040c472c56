//! What Keel's composer and host agent both read: the commit metadata keys, ostree's ed25519
//! signature format, and trusted/revoked key files. Nothing here does I/O; callers read the
//! bytes (commit objects, summaries, key files) and hand them in.
#![forbid(unsafe_code)]

pub mod keys;
pub mod meta;
pub mod sign;
