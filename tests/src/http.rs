//! A real HTTP file server on loopback for tests: serves a directory (GET and HEAD, with
//! `Range`), counts the bytes it sends, and can be told to fail requests or to send slowly.
//! Each request is answered on its own thread, so a stalled answer does not hold up the next.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the server does with a request for a path that matches a rule.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and no body.
    Status(u16),
    /// Send only the first N bytes of the body, then close the connection.
    Truncate(u64),
    /// Send the first `after` bytes, then nothing for `pause`, then close the connection.
    Stall { after: u64, pause: Duration },
    /// Send the whole body, `chunk` bytes at a time with `every` between them.
    Slow { chunk: usize, every: Duration },
}

#[derive(Default)]
struct State {
    bytes_sent: AtomicU64,
    requests: Mutex<Vec<String>>,
    /// `(needle, fault, only once)`.
    faults: Mutex<Vec<(String, Fault, bool)>>,
}

/// A file server for one directory on `127.0.0.1:<random port>`, stopped on drop.
pub struct FileServer {
    url: String,
    root: PathBuf,
    state: Arc<State>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    pub fn serve(root: &Path) -> anyhow::Result<Self> {
        let server = Arc::new(
            tiny_http::Server::http("127.0.0.1:0").map_err(|e| anyhow::anyhow!("binding: {e}"))?,
        );
        let port = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow::anyhow!("no IP address"))?
            .port();
        let state = Arc::new(State::default());
        let thread = {
            let (server, state, root) = (server.clone(), state.clone(), root.to_path_buf());
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    let (state, root) = (state.clone(), root.clone());
                    std::thread::spawn(move || handle(&root, &state, request));
                }
            })
        };
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            root: root.to_path_buf(),
            state,
            server,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Body bytes sent since start or the last [`FileServer::reset_counters`].
    pub fn bytes_sent(&self) -> u64 {
        self.state.bytes_sent.load(Ordering::SeqCst)
    }

    /// Paths requested, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub fn reset_counters(&self) {
        self.state.bytes_sent.store(0, Ordering::SeqCst);
        if let Ok(mut r) = self.state.requests.lock() {
            r.clear();
        }
    }

    /// Requests whose path contains `needle` get `fault` from now on.
    pub fn inject(&self, needle: &str, fault: Fault) {
        if let Ok(mut f) = self.state.faults.lock() {
            f.push((needle.to_string(), fault, false));
        }
    }

    /// The next request whose path contains `needle` gets `fault`; later ones are served.
    pub fn inject_once(&self, needle: &str, fault: Fault) {
        if let Ok(mut f) = self.state.faults.lock() {
            f.push((needle.to_string(), fault, true));
        }
    }

    pub fn clear_faults(&self) {
        if let Ok(mut f) = self.state.faults.lock() {
            f.clear();
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(root: &Path, state: &State, request: tiny_http::Request) {
    let path = request.url().split('?').next().unwrap_or("/").to_string();
    if let Ok(mut r) = state.requests.lock() {
        r.push(path.clone());
    }
    let fault = state.faults.lock().ok().and_then(|mut f| {
        let index = f
            .iter()
            .position(|(needle, _, _)| path.contains(needle.as_str()))?;
        let fault = f[index].1.clone();
        if f[index].2 {
            f.remove(index);
        }
        Some(fault)
    });
    if let Some(Fault::Status(code)) = fault {
        let _ = request.respond(tiny_http::Response::empty(code));
        return;
    }
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        let _ = request.respond(tiny_http::Response::empty(400));
        return;
    }
    let Ok(body) = std::fs::read(root.join(rel)) else {
        let _ = request.respond(tiny_http::Response::empty(404));
        return;
    };
    let (status, start, end) = match range(&request, body.len() as u64) {
        Some((s, e)) => (206, s, e),
        None => (200, 0, body.len() as u64),
    };
    let mut part = body[start as usize..end as usize].to_vec();
    let length = part.len();
    let mut pace = Pace {
        pause_after: None,
        chunk: usize::MAX,
        every: Duration::ZERO,
    };
    match fault {
        Some(Fault::Truncate(n)) => part.truncate(n as usize),
        Some(Fault::Stall { after, pause }) => {
            part.truncate(after as usize);
            pace.pause_after = Some(pause);
        }
        Some(Fault::Slow { chunk, every }) => {
            pace.chunk = chunk.max(1);
            pace.every = every;
        }
        _ => {}
    }
    let head = request.method() == &tiny_http::Method::Head;
    if head {
        part.clear();
    } else {
        state
            .bytes_sent
            .fetch_add(part.len() as u64, Ordering::SeqCst);
    }
    let mut headers = Vec::new();
    if status == 206 {
        let value = format!("bytes {}-{}/{}", start, end.saturating_sub(1), body.len());
        if let Ok(h) = tiny_http::Header::from_bytes("Content-Range", value) {
            headers.push(h);
        }
    }
    // A stalled body announces the whole answer's length, so the client waits for the rest.
    let announced = if pace.pause_after.is_some() {
        length
    } else {
        part.len()
    };
    let reader = Paced {
        data: std::io::Cursor::new(part),
        pace,
        sent_any: false,
    };
    let response = tiny_http::Response::new(
        tiny_http::StatusCode(status),
        headers,
        reader,
        Some(announced),
        None,
    );
    let _ = request.respond(response);
}

/// How [`Paced`] hands out its bytes.
struct Pace {
    /// Sleep this long once the data is used up, before ending.
    pause_after: Option<Duration>,
    chunk: usize,
    every: Duration,
}

/// A body that sends slowly or stalls, as a slow or broken link would.
struct Paced {
    data: std::io::Cursor<Vec<u8>>,
    pace: Pace,
    sent_any: bool,
}

impl std::io::Read for Paced {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.sent_any && !self.pace.every.is_zero() {
            std::thread::sleep(self.pace.every);
        }
        let n = buf.len().min(self.pace.chunk);
        let got = self.data.read(&mut buf[..n])?;
        if got == 0 {
            if let Some(pause) = self.pace.pause_after.take() {
                std::thread::sleep(pause);
            }
        }
        self.sent_any = true;
        Ok(got)
    }
}

/// `Range: bytes=S-[E]` as a half-open byte range within `len`.
fn range(request: &tiny_http::Request, len: u64) -> Option<(u64, u64)> {
    let header = request.headers().iter().find(|h| h.field.equiv("Range"))?;
    let spec = header.value.as_str().strip_prefix("bytes=")?;
    let (s, e) = spec.split_once('-')?;
    let start: u64 = s.parse().ok()?;
    let end = if e.is_empty() {
        len
    } else {
        e.parse::<u64>().ok()? + 1
    };
    (start < end && end <= len).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str) -> (u16, Vec<u8>) {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", url])
            .output()
            .unwrap();
        let mut body = out.stdout;
        let pos = body.iter().rposition(|b| *b == b'\n').unwrap();
        let code = String::from_utf8_lossy(&body[pos + 1..]).parse().unwrap();
        body.truncate(pos);
        (code, body)
    }

    #[test]
    fn serves_files_counts_bytes_and_injects_faults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
        let server = FileServer::serve(dir.path()).unwrap();
        assert_eq!(
            get(&format!("{}/a.txt", server.url())),
            (200, b"hello".to_vec())
        );
        assert_eq!(server.bytes_sent(), 5);
        assert_eq!(get(&format!("{}/missing", server.url())).0, 404);
        server.inject("a.txt", Fault::Status(503));
        assert_eq!(get(&format!("{}/a.txt", server.url())).0, 503);
        assert_eq!(server.requests(), vec!["/a.txt", "/missing", "/a.txt"]);
    }
}
