//! Fetching repository files: `http://`/`https://` through ureq, `file://` from disk.

use std::io::Read;
use std::time::Duration;

/// Why a download failed; `NotFound` lets callers try the next compression of an index.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error("{url}: {message}")]
    Other { url: String, message: String },
}

/// Refuses bodies over this size (the biggest Debian `Packages` file is ~50 MB uncompressed).
const MAX_BODY: u64 = 512 * 1024 * 1024;

/// Downloads `url` whole into memory.
pub fn get(url: &str) -> Result<Vec<u8>, DownloadError> {
    let other = |message: String| DownloadError::Other {
        url: url.to_string(),
        message,
    };
    if let Some(path) = url.strip_prefix("file://") {
        return std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DownloadError::NotFound {
                url: url.to_string(),
            },
            _ => other(e.to_string()),
        });
    }
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(20))
        .timeout_read(Duration::from_secs(60))
        .build();
    let response = match agent.get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(404 | 410, _)) => {
            return Err(DownloadError::NotFound {
                url: url.to_string(),
            })
        }
        Err(ureq::Error::Status(code, _)) => return Err(other(format!("HTTP status {code}"))),
        Err(e) => return Err(other(e.to_string())),
    };
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_BODY)
        .read_to_end(&mut body)
        .map_err(|e| other(format!("reading the body: {e}")))?;
    Ok(body)
}
