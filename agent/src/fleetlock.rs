//! The FleetLock client, the real [`Lock`] of the `fleet_lock` strategy, speaking as Zincati
//! does so that an existing FleetLock server (airlock, `keel-fleetlock`) serves Keel hosts
//! unchanged: `POST {base_url}/v1/pre-reboot` and `/v1/steady-state` with the header
//! `fleet-lock-protocol: true` and the body `{"client_params":{"id":...,"group":...}}`. Any
//! 2xx is done; otherwise the answer's `{"kind","value"}` becomes the [`LockError`]'s kind
//! (`generic_http_<status>` when the body is not that, as Zincati names it).
//!
//! The node id is app-specific, as systemd's `sd_id128_get_machine_app_specific()` makes
//! them: HMAC-SHA256 keyed by the 16 bytes of machine-id over Keel's app id, the first 16 bytes
//! of the result marked as a version-4 UUID, in 32 hex digits. machine-id itself never leaves
//! the host, and the id cannot be turned back into it.

use crate::machine::{Lock, LockError};
use hmac::{Hmac, Mac};
use keel_common::cancel::Cancel;
use keel_common::fleetlock::{
    ClientParams, Endpoint, ErrorBody, ErrorKind, LockRequest, PROTOCOL_HEADER,
    PROTOCOL_HEADER_VALUE,
};
use keel_io::http::{Client, Limits};
use sha2::Sha256;
use std::path::Path;
use std::time::Duration;

/// Keel's application id for app-specific machine ids (a random UUID, fixed forever: changing
/// it changes every node's FleetLock id).
pub const APP_ID: [u8; 16] = [
    0xa2, 0x2d, 0x45, 0x2d, 0x0b, 0xf0, 0x47, 0x0c, 0xa5, 0x7e, 0xce, 0x30, 0xc5, 0xa4, 0x88, 0xbe,
];

/// Why no node id could be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeIdError {
    #[error("machine-id {0:?} is not 32 hex digits; run `systemd-machine-id-setup`")]
    BadMachineId(String),
    #[error("reading {path}: {reason}; run `systemd-machine-id-setup`")]
    Read { path: String, reason: String },
}

/// The app-specific id for `machine_id` (32 hex digits, as in /etc/machine-id).
pub fn app_specific_id(machine_id: &str, app_id: &[u8; 16]) -> Result<String, NodeIdError> {
    let text = machine_id.trim();
    let bad = || NodeIdError::BadMachineId(text.to_string());
    if text.len() != 32 {
        return Err(bad());
    }
    let key = hex::decode(text).map_err(|_| bad())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| bad())?;
    mac.update(app_id);
    let digest = mac.finalize().into_bytes();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    Ok(hex::encode(id))
}

/// The node id of the host whose root is `root` (`etc/machine-id` under it).
pub fn node_id(root: &Path) -> Result<String, NodeIdError> {
    let path = root.join("etc/machine-id");
    let text = std::fs::read_to_string(&path).map_err(|e| NodeIdError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    app_specific_id(&text, &APP_ID)
}

/// A FleetLock client for one node in one group.
pub struct FleetLockClient {
    http: Client,
    base_url: String,
    params: ClientParams,
    cancel: Cancel,
}

/// The longest answer read: error bodies are a sentence.
const MAX_ANSWER: u64 = 64 * 1024;

impl FleetLockClient {
    pub fn new(http: Client, base_url: &str, params: ClientParams, cancel: Cancel) -> Self {
        FleetLockClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            params,
            cancel,
        }
    }

    pub fn params(&self) -> &ClientParams {
        &self.params
    }

    /// One protocol call.
    pub fn call(&self, endpoint: Endpoint) -> Result<(), LockError> {
        let url = format!("{}{}", self.base_url, endpoint.path());
        let body = LockRequest {
            client_params: self.params.clone(),
        };
        let limits = Limits::max_bytes(MAX_ANSWER).with_deadline(Duration::from_secs(60));
        let answer = self
            .http
            .post_json(
                &url,
                &[(PROTOCOL_HEADER, PROTOCOL_HEADER_VALUE)],
                &body,
                limits,
                &self.cancel,
            )
            .map_err(|e| LockError {
                kind: None,
                message: format!("{}: {e}", endpoint.name()),
            })?;
        if answer.is_success() {
            return Ok(());
        }
        let (kind, value) = match serde_json::from_slice::<ErrorBody>(&answer.body) {
            Ok(body) => (body.kind, body.value),
            Err(_) => (
                ErrorKind::Other(format!("generic_http_{}", answer.status)),
                String::from_utf8_lossy(&answer.body).trim().to_string(),
            ),
        };
        Err(LockError {
            message: format!(
                "{} at {url} refused (HTTP {}, {}): {value}",
                endpoint.name(),
                answer.status,
                kind.as_str()
            ),
            kind: Some(kind),
        })
    }
}

impl Lock for FleetLockClient {
    fn pre_reboot(&mut self) -> Result<(), LockError> {
        self.call(Endpoint::PreReboot)
    }

    fn steady_state(&mut self) -> Result<(), LockError> {
        self.call(Endpoint::SteadyState)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_app_specific_v4_uuids_and_not_the_machine_id() {
        let machine = "3d1219c7c4c5404aaa1f6d2a48adfda4";
        let id = app_specific_id(machine, &APP_ID).unwrap();
        assert_eq!(id.len(), 32);
        assert_ne!(id, machine);
        assert_eq!(&id[12..13], "4", "{id}: not a version-4 UUID");
        assert!(matches!(&id[16..17], "8" | "9" | "a" | "b"), "{id}");
        assert_eq!(
            app_specific_id(&format!("{machine}\n"), &APP_ID).unwrap(),
            id
        );
        let other = app_specific_id(machine, &[0; 16]).unwrap();
        assert_ne!(other, id, "the app id does not change the node id");
        for bad in ["", "xyz", "3d1219c7c4c5404aaa1f6d2a48adfdzz"] {
            assert!(app_specific_id(bad, &APP_ID).is_err(), "{bad}");
        }
    }

    /// systemd computes the same id (`systemd-id128 machine-id --app-specific=`), for this
    /// machine's own machine-id.
    #[test]
    fn ids_match_systemds_sd_id128_get_machine_app_specific() {
        let machine =
            std::fs::read_to_string("/etc/machine-id").expect("this machine's machine-id");
        let output = std::process::Command::new("systemd-id128")
            .arg("machine-id")
            .arg(format!("--app-specific={}", hex::encode(APP_ID)))
            .output()
            .expect("systemd-id128 (package systemd) runs");
        assert!(output.status.success(), "{output:?}");
        let systemd = String::from_utf8_lossy(&output.stdout).trim().to_string();
        assert_eq!(app_specific_id(&machine, &APP_ID).unwrap(), systemd);
        assert_eq!(node_id(Path::new("/")).unwrap(), systemd);
    }
}
