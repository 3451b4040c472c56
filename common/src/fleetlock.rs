//! The FleetLock wire protocol, as Zincati's client speaks it and airlock serves it: paths, the
//! header, the request body, and the error body with its kinds. Pure types; the server
//! (`keel-fleetlock`) and the host's client both use them.
//!
//! Facts (read from Zincati's `src/fleet_lock/mod.rs` and airlock's `internal/server/*.go`):
//! - `POST {base}/v1/pre-reboot` takes a slot, `POST {base}/v1/steady-state` releases it; both
//!   carry the header `fleet-lock-protocol: true` and the body
//!   `{"client_params":{"id":"...","group":"..."}}`. Zincati sends it pretty-printed and with
//!   no `Content-Type`, so a server must not require one.
//! - Any 2xx is success; otherwise the client reads `{"kind","value"}` from the body, and falls
//!   back to the kind `generic_http_<status>` when the body is not that.
//! - airlock answers 400 `invalid_client_identity` for a wrong header, a body that is not the
//!   JSON above, or an empty id or group; 400 `unknown_group`; 500 `failed_lock` when a lock or
//!   unlock fails (a full semaphore included); 500 `failed_sem_init` when etcd cannot be set up.
//! - The protocol's text names `failed_lock_semaphore_full` for a full semaphore and asks that
//!   groups match `^[a-zA-Z0-9.-]+$`.

use serde::{Deserialize, Serialize};

/// The header every lock request carries, with [`PROTOCOL_HEADER_VALUE`].
pub const PROTOCOL_HEADER: &str = "fleet-lock-protocol";
pub const PROTOCOL_HEADER_VALUE: &str = "true";

/// The longest id and group a server accepts (Zincati's ids are 32 hex digits).
pub const MAX_LABEL_LEN: usize = 256;

/// The two operations of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// Take (or keep) a reboot slot.
    PreReboot,
    /// Release the slot if held.
    SteadyState,
}

impl Endpoint {
    pub const ALL: [Endpoint; 2] = [Endpoint::PreReboot, Endpoint::SteadyState];

    /// The path relative to the server's base URL, with its leading slash.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::PreReboot => "/v1/pre-reboot",
            Endpoint::SteadyState => "/v1/steady-state",
        }
    }

    /// The name Zincati labels its metrics with.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::PreReboot => "pre-reboot",
            Endpoint::SteadyState => "steady-state",
        }
    }

    pub fn from_path(path: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.path() == path)
    }
}

/// The body of both requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRequest {
    pub client_params: ClientParams,
}

/// Who asks, and in which reboot group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientParams {
    /// The node's app-specific id (never its machine-id). Case-sensitive.
    pub id: String,
    pub group: String,
}

/// Why a request's client params are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidParams {
    #[error("empty client id")]
    EmptyId,
    #[error("empty client group")]
    EmptyGroup,
    #[error("client {field} is longer than {MAX_LABEL_LEN} bytes")]
    TooLong { field: &'static str },
    #[error("client id contains a control character")]
    ControlInId,
    #[error("client group {0:?} does not match ^[a-zA-Z0-9.-]+$")]
    BadGroup(String),
}

impl ClientParams {
    /// Checks the params as the protocol asks: non-empty id and group, a group of
    /// `[a-zA-Z0-9.-]`, both bounded.
    pub fn validate(&self) -> Result<(), InvalidParams> {
        if self.id.is_empty() {
            return Err(InvalidParams::EmptyId);
        }
        if self.group.is_empty() {
            return Err(InvalidParams::EmptyGroup);
        }
        if self.id.len() > MAX_LABEL_LEN {
            return Err(InvalidParams::TooLong { field: "id" });
        }
        if self.group.len() > MAX_LABEL_LEN {
            return Err(InvalidParams::TooLong { field: "group" });
        }
        if self.id.chars().any(char::is_control) {
            return Err(InvalidParams::ControlInId);
        }
        if !is_group_name(&self.group) {
            return Err(InvalidParams::BadGroup(self.group.clone()));
        }
        Ok(())
    }
}

/// Whether `name` is a valid group name (`^[a-zA-Z0-9.-]+$`).
pub fn is_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LABEL_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// The error kinds a FleetLock server answers with. The first four are airlock's (so Zincati
/// dashboards built on airlock read the same labels); the rest cover what airlock does not
/// check. A kind from another server parses as [`ErrorKind::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The header is missing or not `true`, the body is not the protocol's JSON, or the id or
    /// group is empty or malformed (airlock: 400).
    InvalidClientIdentity,
    /// The group is not configured on the server (airlock: 400).
    UnknownGroup,
    /// The lock or unlock could not be done: the store failed or stayed contended
    /// (airlock: 500, also for a full semaphore).
    FailedLock,
    /// The store could not be reached to set the semaphore up (airlock: 500).
    FailedSemInit,
    /// Every slot of the group is held (the protocol text's example kind).
    SemaphoreFull,
    /// The body is larger than the server accepts.
    BodyTooLarge,
    /// Not `POST`.
    MethodNotAllowed,
    /// A path that is not one of the protocol's.
    NotFound,
    /// A kind this crate does not know, as another server sent it.
    Other(String),
}

impl ErrorKind {
    pub fn as_str(&self) -> &str {
        match self {
            ErrorKind::InvalidClientIdentity => "invalid_client_identity",
            ErrorKind::UnknownGroup => "unknown_group",
            ErrorKind::FailedLock => "failed_lock",
            ErrorKind::FailedSemInit => "failed_sem_init",
            ErrorKind::SemaphoreFull => "failed_lock_semaphore_full",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Other(kind) => kind,
        }
    }

    pub fn parse(kind: &str) -> ErrorKind {
        const KNOWN: [ErrorKind; 8] = [
            ErrorKind::InvalidClientIdentity,
            ErrorKind::UnknownGroup,
            ErrorKind::FailedLock,
            ErrorKind::FailedSemInit,
            ErrorKind::SemaphoreFull,
            ErrorKind::BodyTooLarge,
            ErrorKind::MethodNotAllowed,
            ErrorKind::NotFound,
        ];
        KNOWN
            .into_iter()
            .find(|k| k.as_str() == kind)
            .unwrap_or_else(|| ErrorKind::Other(kind.to_string()))
    }

    /// The HTTP status Keel's server answers this kind with. Where airlock answers 500 for a
    /// full semaphore, Keel answers 409: a node waiting for its turn is not a server fault, and
    /// a 5xx would page whoever watches the load balancer all through a rollout. Store outages
    /// are 503 (retry later). Clients only look at 2xx or not.
    pub fn status(&self) -> u16 {
        match self {
            ErrorKind::InvalidClientIdentity | ErrorKind::UnknownGroup => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::SemaphoreFull => 409,
            ErrorKind::BodyTooLarge => 413,
            ErrorKind::FailedLock | ErrorKind::FailedSemInit => 503,
            ErrorKind::Other(_) => 500,
        }
    }
}

impl Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let kind = String::deserialize(deserializer)?;
        Ok(ErrorKind::parse(&kind))
    }
}

/// The body of every error answer: a kind of small cardinality and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub kind: ErrorKind,
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(id: &str, group: &str) -> ClientParams {
        ClientParams {
            id: id.into(),
            group: group.into(),
        }
    }

    #[test]
    fn zincatis_pretty_body_parses_and_unknown_fields_are_ignored() {
        let body = "{\n  \"client_params\": {\n    \"id\": \"c988d2509fdf4cdcbed39037c56406fb\",\n    \"group\": \"default\",\n    \"extra\": 1\n  }\n}";
        let request: LockRequest = serde_json::from_str(body).expect("parses");
        assert_eq!(
            request.client_params,
            params("c988d2509fdf4cdcbed39037c56406fb", "default")
        );
        assert_eq!(request.client_params.validate(), Ok(()));
    }

    #[test]
    fn the_request_serializes_as_the_protocol_shows_it() {
        let request = LockRequest {
            client_params: params("node-1", "workers"),
        };
        let json = serde_json::to_string(&request).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"client_params":{"id":"node-1","group":"workers"}}"#
        );
    }

    #[test]
    fn bodies_missing_a_field_do_not_parse() {
        for body in [
            r#"{}"#,
            r#"{"client_params":{"group":"default"}}"#,
            r#"{"client_params":{"id":"a"}}"#,
            r#"{"client_params":{"id":1,"group":"default"}}"#,
            r#"[]"#,
        ] {
            assert!(serde_json::from_str::<LockRequest>(body).is_err(), "{body}");
        }
    }

    #[test]
    fn params_are_validated_as_the_protocol_asks() {
        let long = "a".repeat(MAX_LABEL_LEN + 1);
        let cases = [
            (params("a", "default"), Ok(())),
            (params("a", "db-1.eu"), Ok(())),
            (params("", "default"), Err(InvalidParams::EmptyId)),
            (params("a", ""), Err(InvalidParams::EmptyGroup)),
            (
                params(&long, "g"),
                Err(InvalidParams::TooLong { field: "id" }),
            ),
            (
                params("a", &long),
                Err(InvalidParams::TooLong { field: "group" }),
            ),
            (params("a\nb", "g"), Err(InvalidParams::ControlInId)),
            (
                params("a", "a b"),
                Err(InvalidParams::BadGroup("a b".into())),
            ),
            (params("a", "ä"), Err(InvalidParams::BadGroup("ä".into()))),
            (
                params("a", "x/y"),
                Err(InvalidParams::BadGroup("x/y".into())),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(p.validate(), want, "{p:?}");
        }
    }

    #[test]
    fn kinds_round_trip_and_unknown_kinds_are_kept() {
        for kind in [
            "invalid_client_identity",
            "unknown_group",
            "failed_lock",
            "failed_sem_init",
            "failed_lock_semaphore_full",
            "body_too_large",
            "method_not_allowed",
            "not_found",
            "generic_error",
        ] {
            assert_eq!(ErrorKind::parse(kind).as_str(), kind);
        }
        assert_eq!(
            ErrorKind::parse("generic_error"),
            ErrorKind::Other("generic_error".into())
        );
    }

    #[test]
    fn error_bodies_are_kind_and_value() {
        let body = ErrorBody {
            kind: ErrorKind::UnknownGroup,
            value: "unknown group \"x\"".into(),
        };
        let json = serde_json::to_string(&body).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"kind":"unknown_group","value":"unknown group \"x\""}"#
        );
        let back: ErrorBody = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, body);
    }

    #[test]
    fn statuses_are_client_errors_for_the_client_and_5xx_for_the_store() {
        assert_eq!(ErrorKind::InvalidClientIdentity.status(), 400);
        assert_eq!(ErrorKind::UnknownGroup.status(), 400);
        assert_eq!(ErrorKind::SemaphoreFull.status(), 409);
        assert_eq!(ErrorKind::BodyTooLarge.status(), 413);
        assert_eq!(ErrorKind::FailedLock.status(), 503);
    }

    #[test]
    fn endpoints_map_to_paths() {
        assert_eq!(
            Endpoint::from_path("/v1/pre-reboot"),
            Some(Endpoint::PreReboot)
        );
        assert_eq!(
            Endpoint::from_path("/v1/steady-state"),
            Some(Endpoint::SteadyState)
        );
        assert_eq!(Endpoint::from_path("/v1/steady-state/"), None);
        assert_eq!(Endpoint::SteadyState.name(), "steady-state");
    }
}
