//! A small HTTP/1.1 server on 127.0.0.1 for the client's fault cases: each path answers with
//! a scripted list of [`Reply`]s (one per request, the last one repeating), and every request
//! head is recorded. It closes the connection after each response.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Arc<Vec<u8>>,
    /// Honour `Range: bytes=N-` with a 206.
    pub ranges: bool,
    /// Send the body in pieces of this size with `delay` between them.
    pub chunk: usize,
    pub delay: Duration,
    /// Close the connection after this many body bytes.
    pub cut_after: Option<usize>,
    /// After `cut_after` bytes, wait this long (a stall) before closing.
    pub stall: Duration,
    /// Announce this Content-Length instead of the body's.
    pub content_length: Option<u64>,
    /// Send no Content-Length: the body ends when the connection closes.
    pub no_length: bool,
}

impl Reply {
    pub fn ok(body: &[u8]) -> Reply {
        Reply {
            status: 200,
            body: Arc::new(body.to_vec()),
            ranges: false,
            chunk: 64 * 1024,
            delay: Duration::ZERO,
            cut_after: None,
            stall: Duration::ZERO,
            content_length: None,
            no_length: false,
        }
    }

    pub fn without_length(self) -> Reply {
        Reply {
            no_length: true,
            ..self
        }
    }

    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::ok(b"")
        }
    }

    pub fn with_ranges(self) -> Reply {
        Reply {
            ranges: true,
            ..self
        }
    }

    pub fn drip(self, chunk: usize, delay: Duration) -> Reply {
        Reply {
            chunk,
            delay,
            ..self
        }
    }

    pub fn cut_after(self, bytes: usize) -> Reply {
        Reply {
            cut_after: Some(bytes),
            ..self
        }
    }

    pub fn stall_after(self, bytes: usize, stall: Duration) -> Reply {
        Reply {
            cut_after: Some(bytes),
            stall,
            ..self
        }
    }

    pub fn claim_length(self, length: u64) -> Reply {
        Reply {
            content_length: Some(length),
            ..self
        }
    }
}

/// A request as received: its request line and lower-cased headers.
#[derive(Clone, Debug)]
pub struct Seen {
    pub line: String,
    pub headers: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Vec<Reply>>>,
    seen: Mutex<Vec<Seen>>,
}

pub struct Server {
    pub port: u16,
    state: Arc<State>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Server { port, state }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Requests for `path` get `replies` in turn; the last one repeats.
    pub fn route(&self, path: &str, replies: Vec<Reply>) {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(path.to_string(), replies);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, state: &State) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let line = line.trim().to_string();
    // Origin form `/x` or, through a proxy, absolute form `http://host:port/x`.
    let target = line.split(' ').nth(1).unwrap_or("/").to_string();
    let path = match target.split_once("://") {
        Some((_, rest)) => rest
            .find('/')
            .map_or("/".to_string(), |i| rest[i..].to_string()),
        None => target,
    };
    let range = headers.get("range").cloned();
    state.seen.lock().unwrap().push(Seen { line, headers });
    let reply = {
        let mut routes = state.routes.lock().unwrap();
        match routes.get_mut(&path) {
            Some(replies) if replies.len() > 1 => replies.remove(0),
            Some(replies) => replies[0].clone(),
            None => Reply::status(404),
        }
    };
    respond(stream, &reply, range.as_deref());
}

fn respond(mut stream: TcpStream, reply: &Reply, range: Option<&str>) {
    let start = range
        .filter(|_| reply.ranges && reply.status == 200)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let total = reply.body.len();
    let mut head = String::new();
    let body: &[u8] = match start {
        Some(start) if start >= total => {
            head.push_str(&format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\nContent-Length: 0\r\n"
            ));
            &[]
        }
        Some(start) => {
            head.push_str(&format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{total}\r\nContent-Length: {}\r\n",
                total - 1,
                total - start
            ));
            &reply.body[start..]
        }
        None => {
            let length = reply.content_length.unwrap_or(total as u64);
            head.push_str(&format!("HTTP/1.1 {} X\r\n", reply.status));
            if !reply.no_length {
                head.push_str(&format!("Content-Length: {length}\r\n"));
            }
            &reply.body
        }
    };
    head.push_str("Connection: close\r\n\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let limit = reply.cut_after.unwrap_or(usize::MAX).min(body.len());
    for piece in body[..limit].chunks(reply.chunk.max(1)) {
        if stream
            .write_all(piece)
            .and_then(|()| stream.flush())
            .is_err()
        {
            return;
        }
        std::thread::sleep(reply.delay);
    }
    std::thread::sleep(reply.stall);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
