//! Opening a URL's body (over HTTP through ureq, or a `file://` path from disk) from a byte
//! offset, and copying it with a size cap, cancellation and progress.

use super::{HttpError, Settings};
use keel_common::cancel::Cancel;
use keel_common::progress::Progress;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

/// A response body being read.
pub(crate) struct Body {
    pub reader: Box<dyn Read + Send>,
    /// Where in the file the body starts: the offset asked for, or 0 when the server sent the
    /// whole file instead.
    pub start: u64,
    /// The whole file's size, when the server or the filesystem says.
    pub total: Option<u64>,
}

/// Opens `url` at byte `offset` (0: the whole file). `cap` is checked against the announced
/// size; `timeout` bounds the whole request (the remaining deadline).
pub(crate) fn open(
    agent: &ureq::Agent,
    proxy: Option<&str>,
    url: &str,
    offset: u64,
    cap: u64,
    timeout: Option<Duration>,
) -> Result<Body, HttpError> {
    let body = match url.strip_prefix("file://") {
        Some(path) => open_file(url, path, offset)?,
        None => open_http(agent, proxy, url, offset, timeout)?,
    };
    if let Some(total) = body.total {
        if total > cap {
            return Err(HttpError::TooLarge {
                url: url.to_string(),
                limit: cap,
                size: Some(total),
            });
        }
    }
    Ok(body)
}

fn open_file(url: &str, path: &str, offset: u64) -> Result<Body, HttpError> {
    let path = std::path::Path::new(path);
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => HttpError::NotFound {
            url: url.to_string(),
            status: None,
        },
        _ => HttpError::io(url, "opening", path)(e),
    })?;
    let len = file
        .metadata()
        .map_err(HttpError::io(url, "reading the size of", path))?
        .len();
    let start = if offset <= len { offset } else { 0 };
    file.seek(SeekFrom::Start(start))
        .map_err(HttpError::io(url, "seeking in", path))?;
    Ok(Body {
        reader: Box::new(file),
        start,
        total: Some(len),
    })
}

fn open_http(
    agent: &ureq::Agent,
    proxy: Option<&str>,
    url: &str,
    offset: u64,
    timeout: Option<Duration>,
) -> Result<Body, HttpError> {
    // Identity: the bytes counted, capped and resumed are the file's own bytes.
    let mut request = agent.get(url).set("accept-encoding", "identity");
    if offset > 0 {
        request = request.set("range", &format!("bytes={offset}-"));
    }
    if let Some(timeout) = timeout {
        request = request.timeout(timeout);
    }
    let response = match request.call() {
        Ok(response) => response,
        // The part we hold is at least the whole file: start again.
        Err(ureq::Error::Status(416, _)) if offset > 0 => {
            return open_http(agent, proxy, url, 0, timeout);
        }
        Err(e) => return Err(call_error(url, proxy, e)),
    };
    let length = response
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (start, total) = if response.status() == 206 {
        let range = response.header("content-range").unwrap_or("");
        match parse_content_range(range) {
            Some((first, total)) if first == offset => (first, total.or(length.map(|l| first + l))),
            _ => {
                return Err(HttpError::Transport {
                    url: url.to_string(),
                    reason: format!(
                        "asked for the bytes from {offset}, the server sent Content-Range {range:?}"
                    ),
                })
            }
        }
    } else {
        (0, length)
    };
    Ok(Body {
        reader: Box::new(response.into_reader()),
        start,
        total,
    })
}

/// `bytes FIRST-LAST/TOTAL` -> `(FIRST, TOTAL)` (`TOTAL` may be `*`).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (first, _) = range.split_once('-')?;
    Some((first.trim().parse().ok()?, total.trim().parse().ok()))
}

/// What ureq's error for a request (before the body) means for us.
pub(super) fn call_error(url: &str, proxy: Option<&str>, e: ureq::Error) -> HttpError {
    let url = url.to_string();
    let t = match e {
        ureq::Error::Status(status @ (404 | 410), _) => {
            return HttpError::NotFound {
                url,
                status: Some(status),
            }
        }
        ureq::Error::Status(status, _) => return HttpError::Status { url, status },
        ureq::Error::Transport(t) => t,
    };
    let reason = transport_reason(&t);
    let timed_out = std::error::Error::source(&t)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
    use ureq::ErrorKind as K;
    match t.kind() {
        K::Dns | K::ConnectionFailed | K::ProxyConnect => HttpError::Connect { url, reason },
        K::InvalidUrl | K::UnknownScheme => HttpError::BadUrl { url, reason },
        K::InvalidProxyUrl | K::ProxyUnauthorized => HttpError::Proxy {
            url,
            proxy: proxy.map(super::proxy::redact).unwrap_or_default(),
            reason,
        },
        _ if timed_out => HttpError::Timeout {
            url,
            what: "no answer in time".into(),
        },
        _ => HttpError::Transport { url, reason },
    }
}

/// ureq's error without the URL it also prints (ours names it once).
fn transport_reason(t: &ureq::Transport) -> String {
    let mut text = t.kind().to_string();
    if let Some(message) = t.message() {
        text.push_str(": ");
        text.push_str(message);
    }
    if let Some(source) = std::error::Error::source(t) {
        text.push_str(": ");
        text.push_str(&source.to_string());
    }
    text
}

/// Where a copy stands, for the progress sink and the cap.
pub(crate) struct Copy<'a> {
    pub url: &'a str,
    pub cap: u64,
    pub total: Option<u64>,
    pub settings: &'a Settings,
    pub progress: &'a dyn Progress,
    pub cancel: &'a Cancel,
}

impl Copy<'_> {
    /// Copies `reader` into `out`, which already holds `done` bytes of the file; returns the
    /// file's bytes written so far when the body ends.
    pub fn run(
        &self,
        reader: &mut dyn Read,
        out: &mut dyn Write,
        mut done: u64,
        dest: &std::path::Path,
    ) -> Result<u64, HttpError> {
        let mut buf = vec![0u8; 64 * 1024];
        self.progress.bytes(done, self.total);
        loop {
            if self.cancel.is_cancelled() {
                return Err(HttpError::Cancelled {
                    url: self.url.to_string(),
                });
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_error(e, done)),
            };
            done += n as u64;
            if done > self.cap {
                return Err(HttpError::TooLarge {
                    url: self.url.to_string(),
                    limit: self.cap,
                    size: None,
                });
            }
            out.write_all(&buf[..n])
                .map_err(HttpError::io(self.url, "writing", dest))?;
            self.progress.bytes(done, self.total);
        }
        Ok(done)
    }

    fn read_error(&self, e: std::io::Error, done: u64) -> HttpError {
        if let Some(path) = self.url.strip_prefix("file://") {
            return HttpError::io(self.url, "reading", std::path::Path::new(path))(e);
        }
        let url = self.url.to_string();
        if e.kind() == std::io::ErrorKind::TimedOut {
            return HttpError::Timeout {
                url,
                what: format!(
                    "no data for {} s after {done} bytes",
                    self.settings.read_timeout.as_secs_f64()
                ),
            };
        }
        HttpError::Transport {
            url,
            reason: format!("the body broke off after {done} bytes: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(parse_content_range(""), None);
    }
}
