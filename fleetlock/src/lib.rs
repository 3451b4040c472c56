//! A FleetLock server: the reboot coordination protocol Zincati and Keel hosts speak
//! (`POST /v1/pre-reboot` takes a slot in a group, `POST /v1/steady-state` frees it), with
//! each group's holders in one etcd v3 key, changed only by compare-and-swap so that any
//! number of replicas never hand out more slots than configured.
//!
//! Better than airlock, the server it replaces: slot counts come from the config at every
//! request (a raised count takes effect at once), holders can expire, a full semaphore is a
//! 409 and not a 500, bodies are bounded, conflicting writes are retried instead of failing.
//!
//! Modules: [`config`] (groups, reload), [`semaphore`] (pure decisions), [`store`] and
//! [`etcd`] (compare-and-swap), [`lock`] (decide-and-swap loop), [`service`] (one request),
//! [`http`] (the edge), [`metrics`], [`admin`] (status, release).
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod etcd;
pub mod http;
pub mod lock;
pub mod metrics;
pub mod semaphore;
pub mod service;
pub mod store;
