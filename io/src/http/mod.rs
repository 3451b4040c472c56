//! The one HTTP client: every download of the workspace goes through [`Client`].
//!
//! - **Timeouts**: one to connect and one per read ([`Settings`]), never one for the whole body,
//!   so a slow but moving download of a large file succeeds while a stalled one fails. A
//!   request may carry an overall deadline ([`Limits::deadline`]) that covers its retries.
//! - **Retries** with doubling backoff for what may pass: connection failures, timeouts, a
//!   body cut short, HTTP 408, 429 and 5xx ([`HttpError::is_transient`]). A 404 is final.
//! - **`file://` URLs** are read from the filesystem through the same calls, with the same
//!   caps, progress and cancellation (a missing file is [`HttpError::NotFound`]).
//! - **Size caps** per request, checked against `Content-Length` before the body is read and
//!   again while it streams.
//! - **Proxies** from the environment ([`Proxies`]: `http_proxy`, `https_proxy`, `all_proxy`,
//!   `no_proxy`, upper-case too).
//! - **Downloads to a file** ([`Client::download`]) write `DEST.part` and rename it to `DEST`
//!   when complete (and its sha256 is the expected one). The `.part` is removed on every
//!   error, with one exception: a download marked [`Download::resume`] keeps it when it was
//!   interrupted (cancelled, timed out, connection lost) and the next download to the same
//!   `DEST` continues it with a `Range` request, or starts over when the server sends the
//!   whole file. Resuming needs the expected sha256, so a file that changed on the server
//!   between the two attempts is caught rather than spliced. One writer per `DEST`: callers
//!   hold their own lock (the compose cache's, the sysroot's).
//!
//! Bodies are asked for without content coding (`Accept-Encoding: identity`): what is
//! counted, capped, hashed and resumed is the file's bytes.

mod body;
mod error;
mod post;
mod proxy;

pub use error::HttpError;
pub use post::Response;
pub use proxy::Proxies;

use keel_common::cancel::Cancel;
use keel_common::progress::{Discard, Progress};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How the client waits and retries; the same for every request it makes.
#[derive(Clone, Debug)]
pub struct Settings {
    /// To open a connection.
    pub connect_timeout: Duration,
    /// For each read (and write) on a connection: how long no data may arrive.
    pub read_timeout: Duration,
    /// Tries per request, the first included (at least 1).
    pub attempts: u32,
    /// Wait before the second try; doubled before each further one.
    pub backoff: Duration,
    /// Connections kept open per host for reuse (a server talking to its store many times a
    /// second wants more than the one a downloader needs).
    pub idle_connections_per_host: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            attempts: 4,
            backoff: Duration::from_millis(500),
            idle_connections_per_host: 1,
        }
    }
}

/// What one request may cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The biggest body accepted, in bytes.
    pub max_bytes: u64,
    /// The whole request, retries included, must be done within this.
    pub deadline: Option<Duration>,
}

impl Limits {
    /// At most `max_bytes`, no deadline.
    pub fn max_bytes(max_bytes: u64) -> Self {
        Limits {
            max_bytes,
            deadline: None,
        }
    }

    pub fn with_deadline(self, deadline: Duration) -> Self {
        Limits {
            deadline: Some(deadline),
            ..self
        }
    }
}

/// How [`Client::download`] writes a file.
#[derive(Clone, Debug)]
pub struct Download<'a> {
    pub limits: Limits,
    /// The lowercase hex sha256 the file must have; checked before the rename.
    pub sha256: Option<&'a str>,
    /// Keep the `.part` of an interrupted download and continue it next time (needs `sha256`).
    pub resume: bool,
}

impl<'a> Download<'a> {
    pub fn new(limits: Limits) -> Self {
        Download {
            limits,
            sha256: None,
            resume: false,
        }
    }

    pub fn sha256(self, sha256: &'a str) -> Self {
        Download {
            sha256: Some(sha256),
            ..self
        }
    }

    /// Marks the download resumable; see the module documentation.
    pub fn resume(self) -> Self {
        Download {
            resume: true,
            ..self
        }
    }
}

/// A finished download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// The file's size.
    pub bytes: u64,
    /// Its lowercase hex sha256.
    pub sha256: String,
    /// Bytes that were already in the `.part` and not downloaded again.
    pub resumed_from: u64,
}

/// The HTTP client. Cheap to share by reference between threads.
pub struct Client {
    settings: Settings,
    proxies: Proxies,
    direct: ureq::Agent,
    /// `(proxy, agent through it)` for each distinct proxy of `proxies`.
    via_proxy: Vec<(String, ureq::Agent)>,
}

impl Client {
    /// Default settings and the proxies of this process's environment.
    pub fn from_env() -> Result<Client, HttpError> {
        Client::new(Settings::default(), Proxies::from_env())
    }

    /// A client with these settings and proxies; a proxy URL ureq cannot use is an error.
    pub fn new(settings: Settings, proxies: Proxies) -> Result<Client, HttpError> {
        let builder = || {
            ureq::AgentBuilder::new()
                .timeout_connect(settings.connect_timeout)
                .timeout_read(settings.read_timeout)
                .timeout_write(settings.read_timeout)
                .max_idle_connections_per_host(settings.idle_connections_per_host)
                .user_agent(concat!("keel/", env!("CARGO_PKG_VERSION")))
        };
        let mut via_proxy: Vec<(String, ureq::Agent)> = Vec::new();
        for proxy in [&proxies.http, &proxies.https].into_iter().flatten() {
            if via_proxy.iter().any(|(p, _)| p == proxy) {
                continue;
            }
            let parsed = ureq::Proxy::new(proxy).map_err(|e| HttpError::Proxy {
                url: "the proxy settings".into(),
                proxy: proxy::redact(proxy),
                reason: e.to_string(),
            })?;
            via_proxy.push((proxy.clone(), builder().proxy(parsed).build()));
        }
        Ok(Client {
            direct: builder().build(),
            settings,
            proxies,
            via_proxy,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The agent for `url` and the proxy it goes through.
    fn agent(&self, url: &str) -> (&ureq::Agent, Option<&str>) {
        match self.proxies.for_url(url) {
            Some(proxy) => match self.via_proxy.iter().find(|(p, _)| p == proxy) {
                Some((p, agent)) => (agent, Some(p.as_str())),
                None => (&self.direct, None),
            },
            None => (&self.direct, None),
        }
    }

    /// The whole body of `url` in memory.
    pub fn get(&self, url: &str, limits: Limits, cancel: &Cancel) -> Result<Vec<u8>, HttpError> {
        check_scheme(url)?;
        self.with_retries(url, limits.deadline, cancel, |timeout| {
            let (agent, proxy) = self.agent(url);
            let mut body = body::open(agent, proxy, url, 0, limits.max_bytes, timeout)?;
            let mut bytes = Vec::new();
            body::Copy {
                url,
                cap: limits.max_bytes,
                total: body.total,
                settings: &self.settings,
                progress: &Discard,
                cancel,
            }
            .run(&mut body.reader, &mut bytes, 0, Path::new("memory"))?;
            Ok(bytes)
        })
    }

    /// Like [`Client::get`], with `None` for a missing file.
    pub fn get_optional(
        &self,
        url: &str,
        limits: Limits,
        cancel: &Cancel,
    ) -> Result<Option<Vec<u8>>, HttpError> {
        match self.get(url, limits, cancel) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(HttpError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Downloads `url` to `dest` through `DEST.part` (see the module documentation), reporting
    /// the file's bytes so far to `progress`.
    pub fn download(
        &self,
        url: &str,
        dest: &Path,
        how: &Download,
        progress: &dyn Progress,
        cancel: &Cancel,
    ) -> Result<Downloaded, HttpError> {
        check_scheme(url)?;
        let part = part_path(dest);
        let resume = how.resume && how.sha256.is_some();
        let result = self.with_retries(url, how.limits.deadline, cancel, |timeout| {
            self.download_once(url, dest, &part, how, resume, timeout, progress, cancel)
        });
        if let Err(e) = &result {
            let keep = resume
                && matches!(
                    e,
                    HttpError::Cancelled { .. }
                        | HttpError::Timeout { .. }
                        | HttpError::Connect { .. }
                        | HttpError::Transport { .. }
                        | HttpError::Status { .. }
                );
            if !keep {
                let _ = std::fs::remove_file(&part);
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn download_once(
        &self,
        url: &str,
        dest: &Path,
        part: &Path,
        how: &Download,
        resume: bool,
        timeout: Option<Duration>,
        progress: &dyn Progress,
        cancel: &Cancel,
    ) -> Result<Downloaded, HttpError> {
        let cap = how.limits.max_bytes;
        let mut file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(part)
            .map_err(HttpError::io(url, "creating", part))?;
        let held = if resume {
            file.metadata()
                .map_err(HttpError::io(url, "reading the size of", part))?
                .len()
        } else {
            0
        };
        let (agent, proxy) = self.agent(url);
        let mut body = body::open(agent, proxy, url, held, cap, timeout)?;
        // What we keep of the `.part`: all of it when the server continues it, else nothing.
        let mut hasher = Sha256::new();
        if body.start > 0 {
            file.seek(SeekFrom::Start(0))
                .map_err(HttpError::io(url, "reading", part))?;
            std::io::copy(&mut (&file).take(body.start), &mut hasher)
                .map_err(HttpError::io(url, "reading", part))?;
        }
        file.set_len(body.start)
            .map_err(HttpError::io(url, "truncating", part))?;
        file.seek(SeekFrom::Start(body.start))
            .map_err(HttpError::io(url, "seeking in", part))?;
        let mut out = Hashing {
            file: &mut file,
            hasher: &mut hasher,
        };
        let bytes = body::Copy {
            url,
            cap,
            total: body.total,
            settings: &self.settings,
            progress,
            cancel,
        }
        .run(&mut body.reader, &mut out, body.start, part)?;
        let actual = hex::encode(hasher.finalize());
        if let Some(expected) = how.sha256 {
            if actual != expected {
                return Err(HttpError::Checksum {
                    url: url.to_string(),
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        file.sync_all()
            .map_err(HttpError::io(url, "syncing", part))?;
        std::fs::rename(part, dest).map_err(HttpError::io(url, "renaming into", dest))?;
        Ok(Downloaded {
            bytes,
            sha256: actual,
            resumed_from: body.start,
        })
    }

    /// Runs `attempt` until it succeeds, fails for good, the tries are used up or the
    /// deadline passes; `attempt` is given the time left before the deadline.
    fn with_retries<T>(
        &self,
        url: &str,
        deadline: Option<Duration>,
        cancel: &Cancel,
        mut attempt: impl FnMut(Option<Duration>) -> Result<T, HttpError>,
    ) -> Result<T, HttpError> {
        let started = Instant::now();
        let end = deadline.map(|d| started + d);
        let left = || end.map(|end| end.saturating_duration_since(Instant::now()));
        let passed = |d: Duration| HttpError::Timeout {
            url: url.to_string(),
            what: format!("not done within its deadline of {} s", d.as_secs_f64()),
        };
        let mut wait = self.settings.backoff;
        let mut tries = 0;
        loop {
            tries += 1;
            if cancel.is_cancelled() {
                return Err(HttpError::Cancelled {
                    url: url.to_string(),
                });
            }
            let error = match attempt(left()) {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if let (Some(d), Some(Duration::ZERO)) = (deadline, left()) {
                return Err(if error.is_transient() {
                    passed(d)
                } else {
                    error
                });
            }
            if !error.is_transient() || tries >= self.settings.attempts.max(1) {
                return Err(error);
            }
            let pause = left().map_or(wait, |left| left.min(wait));
            sleep(pause, cancel);
            wait = wait.saturating_mul(2);
        }
    }
}

/// `DEST.part`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_os_string();
    name.push(".part");
    PathBuf::from(name)
}

fn check_scheme(url: &str) -> Result<(), HttpError> {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("http" | "https" | "file") => Ok(()),
        _ => Err(HttpError::BadUrl {
            url: url.to_string(),
            reason: "unknown scheme".into(),
        }),
    }
}

/// Sleeps `pause`, waking early when `cancel` is triggered.
fn sleep(pause: Duration, cancel: &Cancel) {
    let end = Instant::now() + pause;
    while !cancel.is_cancelled() {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Writes through to a file and hashes what it writes.
struct Hashing<'a> {
    file: &'a mut std::fs::File,
    hasher: &'a mut Sha256,
}

impl Write for Hashing<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_files_sit_beside_the_destination() {
        assert_eq!(
            part_path(Path::new("/c/ab.deb")),
            PathBuf::from("/c/ab.deb.part")
        );
    }

    #[test]
    fn only_http_https_and_file_urls_are_fetched() {
        assert!(check_scheme("http://127.0.0.1/x").is_ok());
        assert!(check_scheme("file:///x").is_ok());
        for url in ["ftp://h/x", "/just/a/path", "127.0.0.1:80/x"] {
            assert!(
                matches!(check_scheme(url), Err(HttpError::BadUrl { .. })),
                "{url}"
            );
        }
    }
}
