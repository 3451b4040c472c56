//! `POST` with a JSON body, for small protocol calls (FleetLock). Unlike the GET side, every
//! answer the server gives comes back as a [`Response`], whatever its status, because such
//! protocols put their error in the body; only a failure to get an answer is an [`HttpError`].
//! One attempt, no retries: a POST may not be idempotent, and its callers retry on their own
//! schedule.

use super::{body, check_scheme, Client, HttpError, Limits};
use keel_common::cancel::Cancel;
use std::io::Read;

/// An answer: its status and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Client {
    /// POSTs `body` as JSON (`Content-Type: application/json`) with the extra `headers`; the
    /// answer's body is read up to `limits.max_bytes`.
    pub fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &impl serde::Serialize,
        limits: Limits,
        cancel: &Cancel,
    ) -> Result<Response, HttpError> {
        check_scheme(url)?;
        if url.starts_with("file://") {
            return Err(HttpError::BadUrl {
                url: url.to_string(),
                reason: "a file:// URL cannot be posted to".into(),
            });
        }
        if cancel.is_cancelled() {
            return Err(HttpError::Cancelled {
                url: url.to_string(),
            });
        }
        let text = serde_json::to_string(body).map_err(|e| HttpError::BadUrl {
            url: url.to_string(),
            reason: format!("the body does not serialize as JSON: {e}"),
        })?;
        let (agent, proxy) = self.agent(url);
        let mut request = agent
            .post(url)
            .set("content-type", "application/json")
            .set("accept-encoding", "identity");
        for (name, value) in headers {
            request = request.set(name, value);
        }
        if let Some(deadline) = limits.deadline {
            request = request.timeout(deadline);
        }
        let response = match request.send_string(&text) {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(e) => return Err(body::call_error(url, proxy, e)),
        };
        let status = response.status();
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(limits.max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| HttpError::Transport {
                url: url.to_string(),
                reason: format!("reading the answer: {e}"),
            })?;
        if bytes.len() as u64 > limits.max_bytes {
            return Err(HttpError::TooLarge {
                url: url.to_string(),
                limit: limits.max_bytes,
                size: None,
            });
        }
        Ok(Response {
            status,
            body: bytes,
        })
    }
}
