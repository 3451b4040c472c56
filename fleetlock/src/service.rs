//! One FleetLock request, from method, path, header and body to status and JSON answer. No
//! HTTP library here ([`crate::http`] is the edge), so the protocol's answers are unit-tested
//! as plain values.
//!
//! | request | status | kind |
//! |---|---|---|
//! | taken, already held, released, not held | 200 | (empty body) |
//! | header missing or not `true`; body not the protocol's JSON; bad id or group | 400 | `invalid_client_identity` |
//! | group not configured | 400 | `unknown_group` |
//! | every slot held | 409 | `failed_lock_semaphore_full` |
//! | body over [`MAX_BODY`] | 413 | `body_too_large` |
//! | etcd down, contended, or holding garbage | 503 | `failed_lock` |
//! | not `POST` / another path | 405 / 404 | `method_not_allowed` / `not_found` |

use crate::config::{ConfigSource, Reload};
use crate::lock::{LockError, Locker};
use crate::metrics::{Gauges, Metrics};
use crate::semaphore::Acquire;
use crate::store::Store;
use keel_common::fleetlock::{
    Endpoint, ErrorBody, ErrorKind, LockRequest, PROTOCOL_HEADER, PROTOCOL_HEADER_VALUE,
};
use keel_common::progress::Progress;
use std::sync::Arc;

/// The largest request body read; Zincati's is about 100 bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// A request as the HTTP edge read it.
pub struct Incoming<'a> {
    pub method: &'a str,
    /// Without the query string.
    pub path: &'a str,
    /// The value of the `fleet-lock-protocol` header, if sent.
    pub protocol_header: Option<&'a str>,
    /// The body, or `None` when it was longer than [`MAX_BODY`].
    pub body: Option<&'a [u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Empty on success, an [`ErrorBody`] as JSON otherwise.
    pub body: String,
}

impl Reply {
    fn ok() -> Reply {
        Reply {
            status: 200,
            body: String::new(),
        }
    }

    fn error(kind: ErrorKind, value: String) -> Reply {
        let status = kind.status();
        let body = serde_json::to_string(&ErrorBody { kind, value }).unwrap_or_default();
        Reply { status, body }
    }

    /// The error kind, when this is an error reply.
    pub fn kind(&self) -> Option<ErrorKind> {
        serde_json::from_str::<ErrorBody>(&self.body)
            .ok()
            .map(|b| b.kind)
    }
}

/// Seconds since the epoch, as the server's holders are stamped.
pub type Clock = Box<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Box::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}

pub struct Service<S> {
    /// The path prefix of the base URL hosts are given (`/fleet_lock` for
    /// `http://host/fleet_lock/`), empty for the root.
    pub base_path: String,
    pub locker: Locker<S>,
    pub config: ConfigSource,
    pub metrics: Metrics,
    pub progress: Arc<dyn Progress>,
    pub clock: Clock,
}

impl<S: Store> Service<S> {
    pub fn handle(&self, request: &Incoming) -> Reply {
        let path = request.path.strip_prefix(self.base_path.as_str());
        let Some(endpoint) = path.and_then(Endpoint::from_path) else {
            self.metrics.request("other");
            let reply = Reply::error(
                ErrorKind::NotFound,
                format!(
                    "no such path {:?}; FleetLock serves POST {base}/v1/pre-reboot and {base}/v1/steady-state",
                    request.path,
                    base = self.base_path
                ),
            );
            self.metrics.error("other", ErrorKind::NotFound.as_str());
            return reply;
        };
        self.metrics.request(endpoint.name());
        let reply = self.handle_endpoint(endpoint, request);
        if let Some(kind) = reply.kind() {
            self.metrics.error(endpoint.name(), kind.as_str());
        }
        reply
    }

    fn handle_endpoint(&self, endpoint: Endpoint, request: &Incoming) -> Reply {
        if request.method != "POST" {
            return Reply::error(
                ErrorKind::MethodNotAllowed,
                format!("{} takes POST, not {}", endpoint.path(), request.method),
            );
        }
        if request.protocol_header.map(str::trim) != Some(PROTOCOL_HEADER_VALUE) {
            return Reply::error(
                ErrorKind::InvalidClientIdentity,
                format!("missing or wrong '{PROTOCOL_HEADER}' header: send '{PROTOCOL_HEADER}: {PROTOCOL_HEADER_VALUE}'"),
            );
        }
        let Some(body) = request.body else {
            return Reply::error(
                ErrorKind::BodyTooLarge,
                format!("request body is over {MAX_BODY} bytes; a FleetLock body is one small JSON object"),
            );
        };
        let params = match serde_json::from_slice::<LockRequest>(body) {
            Ok(request) => request.client_params,
            Err(err) => {
                return Reply::error(
                    ErrorKind::InvalidClientIdentity,
                    format!(
                    "body is not {{\"client_params\":{{\"id\":\"...\",\"group\":\"...\"}}}}: {err}"
                ),
                )
            }
        };
        if let Err(err) = params.validate() {
            return Reply::error(ErrorKind::InvalidClientIdentity, err.to_string());
        }
        let config = self.current_config();
        let Some(policy) = config.group(&params.group) else {
            let known: Vec<&str> = config.groups.keys().map(String::as_str).collect();
            return Reply::error(
                ErrorKind::UnknownGroup,
                format!(
                    "unknown group {:?}; this server has {}",
                    params.group,
                    known.join(", ")
                ),
            );
        };
        let (id, group) = (params.id.as_str(), params.group.as_str());
        let now = (self.clock)();
        match endpoint {
            Endpoint::PreReboot => {
                match self.locker.apply(group, |s| s.acquire(id, &policy, now)) {
                    Ok(applied) => {
                        self.note_applied(group, &applied.expired, applied.conflicts);
                        match applied.outcome {
                            Acquire::Taken | Acquire::AlreadyHeld => Reply::ok(),
                            Acquire::Full { slots, holders } => Reply::error(
                                ErrorKind::SemaphoreFull,
                                format!(
                                    "all {slots} reboot slot(s) of group {group:?} are held (by {}); \
                                     try again after one reports steady state",
                                    name_some(&holders)
                                ),
                            ),
                        }
                    }
                    Err(err) => self.store_failure(endpoint, group, &err),
                }
            }
            Endpoint::SteadyState => match self.locker.apply(group, |s| s.release(id)) {
                Ok(applied) => {
                    self.note_applied(group, &applied.expired, applied.conflicts);
                    Reply::ok()
                }
                Err(err) => self.store_failure(endpoint, group, &err),
            },
        }
    }

    fn current_config(&self) -> Arc<crate::config::Config> {
        let (config, reload) = self.config.current();
        match reload {
            Reload::Unchanged => {}
            Reload::Reloaded => self.progress.message("config changed; reloaded"),
            Reload::Failed(err) => {
                self.metrics.config_reload_error();
                self.progress
                    .warning(&format!("{err}; keeping the last good config"));
            }
        }
        config
    }

    fn note_applied(&self, group: &str, expired: &[crate::semaphore::Holder], conflicts: u32) {
        self.metrics.conflicts(conflicts);
        if !expired.is_empty() {
            self.metrics.expired(group, expired.len());
            for holder in expired {
                self.progress.message(&format!(
                    "group {group}: dropped {} (held its slot since {} without reporting steady state)",
                    holder.id, holder.since
                ));
            }
        }
    }

    fn store_failure(&self, endpoint: Endpoint, group: &str, err: &LockError) -> Reply {
        let value = format!("{} in group {group:?} failed: {err}", endpoint.name());
        self.progress.warning(&value);
        Reply::error(ErrorKind::FailedLock, value)
    }

    /// The metrics page: counters, slots from config, holders read from etcd now.
    pub fn metrics_text(&self) -> String {
        let config = self.current_config();
        let mut gauges = Gauges {
            groups: Vec::new(),
            etcd_up: true,
        };
        for (group, policy) in &config.groups {
            let holders = match self.locker.state(group) {
                Ok(state) => Some(state.holders.len()),
                Err(_) => {
                    gauges.etcd_up = false;
                    None
                }
            };
            gauges.groups.push((group.clone(), policy.slots, holders));
        }
        self.metrics.render(&gauges)
    }
}

/// The first few holders, for a refusal's message (a group may have hundreds).
fn name_some(holders: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = holders
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if holders.len() > SHOWN {
        text.push_str(&format!(" and {} more", holders.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use keel_common::progress::Recorder;

    fn service() -> (Service<MemoryStore>, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        let service = Service {
            base_path: String::new(),
            locker: Locker::new(MemoryStore::default()),
            config: ConfigSource::open(None).expect("default config"),
            metrics: Metrics::default(),
            progress: recorder.clone(),
            clock: Box::new(|| 1000),
        };
        (service, recorder)
    }

    fn post<'a>(path: &'a str, header: Option<&'a str>, body: Option<&'a [u8]>) -> Incoming<'a> {
        Incoming {
            method: "POST",
            path,
            protocol_header: header,
            body,
        }
    }

    fn body(id: &str, group: &str) -> Vec<u8> {
        format!(r#"{{"client_params":{{"id":"{id}","group":"{group}"}}}}"#).into_bytes()
    }

    #[test]
    fn answers_follow_the_protocol_table() {
        let (service, _) = service();
        let a = body("a", "default");
        let b = body("b", "default");
        let stranger = body("a", "nope");
        let cases: Vec<(Incoming, u16, Option<&str>)> = vec![
            (
                post("/v1/pre-reboot", None, Some(&a)),
                400,
                Some("invalid_client_identity"),
            ),
            (
                post("/v1/pre-reboot", Some("yes"), Some(&a)),
                400,
                Some("invalid_client_identity"),
            ),
            (
                post("/v1/pre-reboot", Some("true"), None),
                413,
                Some("body_too_large"),
            ),
            (
                post("/v1/pre-reboot", Some("true"), Some(b"{")),
                400,
                Some("invalid_client_identity"),
            ),
            (
                post("/v1/pre-reboot", Some("true"), Some(&stranger)),
                400,
                Some("unknown_group"),
            ),
            (post("/v1/pre-reboot", Some("true"), Some(&a)), 200, None),
            (post("/v1/pre-reboot", Some("true"), Some(&a)), 200, None),
            (
                post("/v1/pre-reboot", Some("true"), Some(&b)),
                409,
                Some("failed_lock_semaphore_full"),
            ),
            (post("/v1/steady-state", Some("true"), Some(&b)), 200, None),
            (post("/v1/steady-state", Some("true"), Some(&a)), 200, None),
            (post("/v1/pre-reboot", Some("true"), Some(&b)), 200, None),
            (
                post("/v2/pre-reboot", Some("true"), Some(&b)),
                404,
                Some("not_found"),
            ),
        ];
        for (i, (request, status, kind)) in cases.iter().enumerate() {
            let reply = service.handle(request);
            assert_eq!(reply.status, *status, "case {i}: {reply:?}");
            assert_eq!(
                reply.kind().as_ref().map(ErrorKind::as_str),
                *kind,
                "case {i}"
            );
        }
        let get = Incoming {
            method: "GET",
            ..post("/v1/steady-state", Some("true"), Some(&a))
        };
        assert_eq!(
            service.handle(&get).kind(),
            Some(ErrorKind::MethodNotAllowed)
        );
    }

    #[test]
    fn a_base_path_is_served_under_its_prefix_only() {
        let (mut service, _) = service();
        service.base_path = "/fleet_lock".into();
        let a = body("a", "default");
        let under = service.handle(&post("/fleet_lock/v1/pre-reboot", Some("true"), Some(&a)));
        assert_eq!(under.status, 200, "{under:?}");
        let root = service.handle(&post("/v1/pre-reboot", Some("true"), Some(&a)));
        assert_eq!(root.kind(), Some(ErrorKind::NotFound));
        assert!(
            root.body.contains("/fleet_lock/v1/pre-reboot"),
            "{}",
            root.body
        );
    }

    #[test]
    fn a_refusal_names_at_most_five_holders() {
        let ids: Vec<String> = (0..7).map(|i| format!("n{i}")).collect();
        assert_eq!(name_some(&ids[..2]), "n0, n1");
        assert_eq!(name_some(&ids), "n0, n1, n2, n3, n4 and 2 more");
    }

    #[test]
    fn a_store_outage_is_a_503_failed_lock_that_says_what_to_do() {
        let (service, recorder) = service();
        service.locker.store().set_down(true);
        let a = body("a", "default");
        let reply = service.handle(&post("/v1/steady-state", Some("true"), Some(&a)));
        assert_eq!(
            (reply.status, reply.kind()),
            (503, Some(ErrorKind::FailedLock))
        );
        assert!(reply.body.contains("etcd is unreachable"), "{}", reply.body);
        assert_eq!(recorder.lines().len(), 1, "the server logs it");
        let text = service.metrics_text();
        assert!(text.contains("keel_fleetlock_etcd_up 0"), "{text}");
        assert!(text.contains(
            "keel_fleetlock_errors_total{endpoint=\"steady-state\",kind=\"failed_lock\"} 1"
        ));
    }
}
