//! What Keel's composer and host agent both read: the commit metadata keys, ostree's ed25519
//! signature format, and trusted/revoked key files; and the two things every long operation
//! is handed, a cancellation token and a progress sink. Nothing here does I/O; callers read the
//! bytes (commit objects, summaries, key files) and hand them in. The FleetLock wire types live
//! here too, for the server and the host's client.
#![forbid(unsafe_code)]

pub mod cancel;
pub mod fleetlock;
pub mod keys;
pub mod meta;
pub mod ostree_ref;
pub mod packages;
pub mod progress;
pub mod sign;
