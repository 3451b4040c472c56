//! The HTTP edge: tiny_http servers for the protocol and for the metrics, each served by a few
//! threads that hand requests to [`Service`]. Bodies are read up to [`MAX_BODY`] and no
//! further.

use crate::service::{Incoming, Reply, Service, MAX_BODY};
use crate::store::Store;
use keel_common::cancel::Cancel;
use keel_common::fleetlock::PROTOCOL_HEADER;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A listening server and its worker threads.
pub struct Listening {
    pub addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
}

impl Listening {
    /// Waits until the workers stopped (after the [`Cancel`] given to [`listen`] fired).
    pub fn join(self) {
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {reason}; is the address free and local?")]
pub struct ListenError {
    addr: String,
    reason: String,
}

/// What a listener serves.
#[derive(Clone, Copy)]
pub enum Role {
    Protocol,
    Metrics,
}

/// Listens on `addr` and serves `role` from `threads` threads until `cancel` fires.
pub fn listen<S: Store + 'static>(
    addr: &str,
    role: Role,
    service: Arc<Service<S>>,
    threads: usize,
    cancel: &Cancel,
) -> Result<Listening, ListenError> {
    let server = tiny_http::Server::http(addr).map_err(|e| ListenError {
        addr: addr.to_string(),
        reason: e.to_string(),
    })?;
    let bound = server.server_addr().to_ip().ok_or_else(|| ListenError {
        addr: addr.to_string(),
        reason: "not an IP address".into(),
    })?;
    let server = Arc::new(server);
    let mut workers = Vec::new();
    for _ in 0..threads.max(1) {
        let (server, service, cancel) = (server.clone(), service.clone(), cancel.clone());
        workers.push(std::thread::spawn(move || {
            while !cancel.is_cancelled() {
                match server.recv_timeout(Duration::from_millis(200)) {
                    Ok(Some(request)) => match role {
                        Role::Protocol => serve_protocol(&service, request),
                        Role::Metrics => serve_metrics(&service, request),
                    },
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        }));
    }
    Ok(Listening {
        addr: bound,
        workers,
    })
}

fn serve_protocol<S: Store>(service: &Service<S>, mut request: tiny_http::Request) {
    let method = request.method().as_str().to_string();
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let header = request
        .headers()
        .iter()
        .find(|h| h.field.equiv(PROTOCOL_HEADER))
        .map(|h| h.value.as_str().to_string());
    let declared_too_large = request.body_length().is_some_and(|len| len > MAX_BODY);
    let mut body = Vec::new();
    let too_large = declared_too_large
        || request
            .as_reader()
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut body)
            .is_err()
        || body.len() > MAX_BODY;
    let reply = service.handle(&Incoming {
        method: &method,
        path: &path,
        protocol_header: header.as_deref(),
        body: (!too_large).then_some(body.as_slice()),
    });
    respond(request, reply, too_large);
}

fn serve_metrics<S: Store>(service: &Service<S>, request: tiny_http::Request) {
    let reply = if request.url().split('?').next() == Some("/metrics") {
        Reply {
            status: 200,
            body: service.metrics_text(),
        }
    } else {
        Reply {
            status: 404,
            body: "metrics are at /metrics\n".into(),
        }
    };
    let mut response = tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
    add_header(
        &mut response,
        "Content-Type: text/plain; version=0.0.4; charset=utf-8",
    );
    let _ = request.respond(response);
}

fn respond(request: tiny_http::Request, reply: Reply, close: bool) {
    let mut response = tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
    if reply.status != 200 {
        add_header(&mut response, "Content-Type: application/json");
    }
    if close {
        add_header(&mut response, "Connection: close");
    }
    let _ = request.respond(response);
}

/// Adds `line` (`Name: value`, an ASCII constant) to the response.
fn add_header<R: Read>(response: &mut tiny_http::Response<R>, line: &str) {
    if let Ok(header) = line.parse::<tiny_http::Header>() {
        response.add_header(header);
    }
}
