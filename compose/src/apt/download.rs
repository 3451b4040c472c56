//! Repository files (`InRelease`, `Packages` indices) fetched whole into memory through
//! keel-io's HTTP client (`http://`, `https://` and `file://` alike, with its timeouts,
//! retries and proxies).
//!
//! The resolver's call chain carries no client or cancellation token yet, so each call makes
//! its own client: a few index files per compose, against downloads of megabytes each.

use keel_common::cancel::Cancel;
use keel_io::http::{Client, HttpError, Limits};

/// Refuses bodies over this size (the biggest Debian `Packages` file is ~50 MB uncompressed).
const MAX_BODY: u64 = 512 * 1024 * 1024;

/// Downloads `url` whole into memory; a missing file is [`HttpError::NotFound`], so callers
/// can try the next compression of an index.
pub fn get(url: &str) -> Result<Vec<u8>, HttpError> {
    Client::from_env()?.get(url, Limits::max_bytes(MAX_BODY), &Cancel::new())
}
