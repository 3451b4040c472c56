//! [`Store`] on etcd v3 through its JSON gateway (`POST /v3/kv/range`, `/v3/kv/txn` on the
//! client URL, served by etcd 3.4; keys and values base64, 64-bit integers as strings). This
//! avoids a gRPC build; one HTTP round trip per compare-and-swap.
//!
//! The compare-and-swap is one transaction: `if mod_revision(key) == expected then put(key)
//! else range(key)`, so a loser learns the current value in the same round trip. Several
//! client URLs may be given: the one that answered last is tried first, the others in turn
//! when it does not answer. A request that failed on the wire is sent again once: a retried
//! compare-and-swap that had landed comes back as a conflict showing the caller's own write,
//! which the lock logic reads as done.

use crate::store::{Cas, Store, StoreError, Versioned};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use keel_common::cancel::Cancel;
use keel_io::http::{Client, Limits, Proxies, Settings};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub struct EtcdStore {
    endpoints: Vec<String>,
    client: Client,
    preferred: AtomicUsize,
    /// Store calls are not cancelled; the server's requests end when etcd answers or times out.
    never: Cancel,
}

/// An etcd answer for one key is small; a whole request, reconnect included, is over in 5 s.
const REQUEST_LIMITS: Limits = Limits {
    max_bytes: 4 << 20,
    deadline: Some(Duration::from_secs(5)),
};

impl EtcdStore {
    /// `endpoints` are client URLs (`http://127.0.0.1:2379`); none may be empty.
    pub fn new(endpoints: Vec<String>) -> Result<EtcdStore, StoreError> {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(StoreError::Failed(
                "no etcd endpoint given; pass --etcd http://HOST:2379[,...]".into(),
            ));
        }
        // etcd is a local service: no proxies; one attempt here, `call` moves on to the next
        // endpoint; many idle connections, since every lock request is a few etcd calls.
        let settings = Settings {
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(5),
            attempts: 1,
            idle_connections_per_host: 64,
            ..Settings::default()
        };
        let client = Client::new(settings, Proxies::none())
            .map_err(|e| StoreError::Failed(format!("setting up the etcd client: {e}")))?;
        Ok(EtcdStore {
            endpoints,
            client,
            preferred: AtomicUsize::new(0),
            never: Cancel::new(),
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Posts `body` to `path` on the first endpoint that answers.
    fn call(&self, path: &str, body: &Value) -> Result<Value, StoreError> {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in 0..self.endpoints.len() {
            let index = (first + i) % self.endpoints.len();
            let url = format!("{}{path}", self.endpoints[index]);
            for _attempt in 0..2 {
                match self
                    .client
                    .post_json(&url, &[], body, REQUEST_LIMITS, &self.never)
                {
                    Ok(response) if response.is_success() => {
                        self.preferred.store(index, Ordering::Relaxed);
                        return serde_json::from_slice(&response.body).map_err(|e| {
                            StoreError::Failed(format!("{url}: not etcd's JSON ({e})"))
                        });
                    }
                    Ok(response) => {
                        let text = String::from_utf8_lossy(&response.body);
                        let message = format!("{url}: HTTP {}: {}", response.status, text.trim());
                        if response.status < 500 {
                            return Err(StoreError::Failed(message));
                        }
                        failures.push(message);
                        break;
                    }
                    Err(err) => failures.push(err.to_string()),
                }
            }
        }
        Err(StoreError::Unavailable(failures.join("; ")))
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn int(value: &Value) -> i64 {
    match value {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn key_value(kv: &Value) -> Result<(String, Versioned), StoreError> {
    let decode = |field: &str| {
        B64.decode(kv[field].as_str().unwrap_or_default())
            .map_err(|e| StoreError::Failed(format!("etcd sent a {field} that is not base64: {e}")))
    };
    let key = String::from_utf8_lossy(&decode("key")?).into_owned();
    let versioned = Versioned {
        value: decode("value")?,
        mod_revision: int(&kv["mod_revision"]),
    };
    Ok((key, versioned))
}

fn kvs(range: &Value) -> Result<Vec<(String, Versioned)>, StoreError> {
    match range["kvs"].as_array() {
        None => Ok(Vec::new()),
        Some(kvs) => kvs.iter().map(key_value).collect(),
    }
}

/// The end of the range of keys that start with `prefix` (etcd's `range_end`).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Store for EtcdStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let response = self.call("/v3/kv/range", &json!({ "key": b64(key.as_bytes()) }))?;
        Ok(kvs(&response)?.into_iter().next().map(|(_, v)| v))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: i64,
        value: Option<&[u8]>,
    ) -> Result<Cas, StoreError> {
        let key64 = b64(key.as_bytes());
        let success = match value {
            Some(value) => json!([{ "request_put": { "key": key64, "value": b64(value) } }]),
            None => json!([]),
        };
        let request = json!({
            "compare": [{
                "target": "MOD",
                "key": key64,
                "result": "EQUAL",
                "mod_revision": expected.to_string(),
            }],
            "success": success,
            "failure": [{ "request_range": { "key": key64 } }],
        });
        let response = self.call("/v3/kv/txn", &request)?;
        if response["succeeded"].as_bool() == Some(true) {
            let mod_revision = match value {
                Some(_) => int(&response["header"]["revision"]),
                None => expected,
            };
            return Ok(Cas::Done { mod_revision });
        }
        let range = &response["responses"][0]["response_range"];
        let current = kvs(range)?.into_iter().next().map(|(_, v)| v);
        Ok(Cas::Conflict { current })
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        let request = json!({
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix)),
        });
        kvs(&self.call("/v3/kv/range", &request)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_range_ends_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end("a/"), b"a0".to_vec());
        assert_eq!(prefix_end("\u{7f}"), vec![0x80]);
        assert_eq!(prefix_end(""), vec![0]);
    }

    #[test]
    fn etcds_json_key_values_decode() {
        let kv = json!({"key": "Zy9h", "mod_revision": "12", "value": "eyJoIjoxfQ=="});
        let (key, v) = key_value(&kv).expect("decodes");
        assert_eq!(key, "g/a");
        assert_eq!(v.mod_revision, 12);
        assert_eq!(v.value, br#"{"h":1}"#.to_vec());
    }

    #[test]
    fn no_endpoint_is_refused() {
        assert!(EtcdStore::new(vec![" ".into()]).is_err());
    }
}
