//! [`HttpError`]: why a request failed, in kinds a caller can branch on, each naming the URL.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// HTTP 404 or 410 (`status`), or a `file://` path that does not exist (no status).
    #[error("{url}: not found ({})", match .status { Some(s) => format!("HTTP {s}"), None => "no such file".into() })]
    NotFound { url: String, status: Option<u16> },
    /// Any other status that is not a success.
    #[error("{url}: the server answered HTTP {status}")]
    Status { url: String, status: u16 },
    /// No data for longer than the read timeout, or the request's deadline passed.
    #[error(
        "{url}: {what}; check the network and any proxy (http_proxy, https_proxy), then retry"
    )]
    Timeout { url: String, what: String },
    /// The server (or the proxy) could not be reached.
    #[error("{url}: cannot connect ({reason}); check the network and any proxy (http_proxy, https_proxy), then retry")]
    Connect { url: String, reason: String },
    /// The connection broke or the server spoke broken HTTP (a body cut short, among others).
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    /// The body is (or announced itself as) bigger than the caller's cap.
    #[error("{url}: {} exceeds the limit of {limit} bytes for this file; refusing it", size_text(*.size))]
    TooLarge {
        url: String,
        limit: u64,
        size: Option<u64>,
    },
    /// The downloaded file's sha256 is not the one the caller expected.
    #[error(
        "{url}: sha256 {actual}, expected {expected}; the server sent a different or damaged file"
    )]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    /// A local file could not be read or written (the destination, or a `file://` source).
    #[error("{url}: {action} {}: {source}", .path.display())]
    Io {
        url: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The caller's [`keel_common::cancel::Cancel`] was triggered.
    #[error("{url}: cancelled")]
    Cancelled { url: String },
    /// Not an `http://`, `https://` or `file://` URL this client can fetch.
    #[error("{url}: not a URL this client can fetch ({reason}); use http://, https:// or file://")]
    BadUrl { url: String, reason: String },
    /// A proxy from the environment is unusable (credentials are not shown).
    #[error("{url}: proxy {proxy} from the environment is unusable ({reason}); fix or unset http_proxy/https_proxy")]
    Proxy {
        url: String,
        proxy: String,
        reason: String,
    },
}

fn size_text(size: Option<u64>) -> String {
    match size {
        Some(size) => format!("its size of {size} bytes"),
        None => "the body".to_string(),
    }
}

impl HttpError {
    /// The URL the request was for.
    pub fn url(&self) -> &str {
        match self {
            HttpError::NotFound { url, .. }
            | HttpError::Status { url, .. }
            | HttpError::Timeout { url, .. }
            | HttpError::Connect { url, .. }
            | HttpError::Transport { url, .. }
            | HttpError::TooLarge { url, .. }
            | HttpError::Checksum { url, .. }
            | HttpError::Io { url, .. }
            | HttpError::Cancelled { url }
            | HttpError::BadUrl { url, .. }
            | HttpError::Proxy { url, .. } => url,
        }
    }

    /// Whether trying again may succeed: connection failures, timeouts, broken connections and
    /// the statuses that mean "later" (408, 429, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            HttpError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            HttpError::Timeout { .. } | HttpError::Connect { .. } | HttpError::Transport { .. } => {
                true
            }
            _ => false,
        }
    }

    pub(crate) fn io(
        url: &str,
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> HttpError {
        let (url, path) = (url.to_string(), path.to_path_buf());
        move |source| HttpError::Io {
            url,
            action,
            path,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_later_statuses_and_network_faults_are_transient() {
        let status = |status| HttpError::Status {
            url: "u".into(),
            status,
        };
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(status(code).is_transient(), "{code}");
        }
        for code in [400, 401, 403, 416] {
            assert!(!status(code).is_transient(), "{code}");
        }
        assert!(!HttpError::NotFound {
            url: "u".into(),
            status: Some(404)
        }
        .is_transient());
        assert!(!HttpError::Cancelled { url: "u".into() }.is_transient());
        assert!(HttpError::Connect {
            url: "u".into(),
            reason: "refused".into()
        }
        .is_transient());
    }

    #[test]
    fn messages_name_the_url_and_the_cap() {
        let e = HttpError::TooLarge {
            url: "http://127.0.0.1:1/big".into(),
            limit: 10,
            size: Some(99),
        };
        let text = e.to_string();
        assert!(text.starts_with("http://127.0.0.1:1/big: "), "{text}");
        assert!(
            text.contains("99") && text.contains("limit of 10 bytes"),
            "{text}"
        );
        assert_eq!(e.url(), "http://127.0.0.1:1/big");
    }
}
