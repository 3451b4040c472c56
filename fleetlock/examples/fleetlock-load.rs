//! The load generator `ci/bench fleetlock` runs (not part of the server):
//!
//!   fleetlock-load cas      --etcd URL    --seconds S --clients C
//!   fleetlock-load read-cas --etcd URL    --seconds S --clients C
//!   fleetlock-load pairs --server URL  --seconds S --clients C
//!
//! `cas` measures etcd's own compare-and-swap rate through the same client the server uses
//! (`EtcdStore::compare_and_swap`: one `/v3/kv/txn` comparing the key's mod revision and
//! putting a new value, the revision known from the previous answer), each client on its own
//! key. `read-cas` is the compare-and-swap a client does when it does not know the revision
//! (airlock does this per request): a `/v3/kv/range`, then that transaction. `pairs` runs pre-reboot + steady-state pairs through a server, each client with its
//! own id in its own group `bench-N`. Both print one JSON line: operations, seconds, rate and
//! latency percentiles in milliseconds.
#![forbid(unsafe_code)]

use keel_fleetlock::etcd::EtcdStore;
use keel_fleetlock::store::{Cas, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| panic!("missing {name}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_default();
    let seconds: f64 = arg(&args, "--seconds").parse().expect("--seconds");
    let clients: usize = arg(&args, "--clients").parse().expect("--clients");
    let run_for = Duration::from_secs_f64(seconds);
    let work: Arc<dyn Fn(usize, Instant) -> Vec<Duration> + Send + Sync> = match mode.as_str() {
        "cas" => {
            let store = Arc::new(EtcdStore::new(vec![arg(&args, "--etcd")]).expect("store"));
            Arc::new(move |client, until| cas_loop(&store, client, until, false))
        }
        "read-cas" => {
            let store = Arc::new(EtcdStore::new(vec![arg(&args, "--etcd")]).expect("store"));
            Arc::new(move |client, until| cas_loop(&store, client, until, true))
        }
        "pairs" => {
            let server = arg(&args, "--server");
            Arc::new(move |client, until| pairs_loop(&server, client, until))
        }
        _ => panic!("usage: fleetlock-load cas|read-cas|pairs ..."),
    };
    let start = Instant::now();
    let until = start + run_for;
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let work = work.clone();
            std::thread::spawn(move || work(client, until))
        })
        .collect();
    let mut latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a load thread failed"))
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{{\"mode\":\"{mode}\",\"clients\":{clients},\"ops\":{},\"seconds\":{elapsed:.2},\"rate\":{:.1},\"p50_ms\":{:.2},\"p99_ms\":{:.2}}}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
}

fn cas_loop(store: &EtcdStore, client: usize, until: Instant, read: bool) -> Vec<Duration> {
    let key = format!("bench/cas/{client}");
    let mut revision = store.get(&key).expect("etcd").map_or(0, |v| v.mod_revision);
    let mut latencies = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let value = format!("{{\"n\":{n}}}");
        let started = Instant::now();
        if read {
            revision = store.get(&key).expect("etcd").map_or(0, |v| v.mod_revision);
        }
        match store
            .compare_and_swap(&key, revision, Some(value.as_bytes()))
            .expect("etcd")
        {
            Cas::Done { mod_revision } => revision = mod_revision,
            Cas::Conflict { current } => panic!("nobody else writes {key}: {current:?}"),
        }
        latencies.push(started.elapsed());
    }
    latencies
}

fn pairs_loop(server: &str, client: usize, until: Instant) -> Vec<Duration> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let body =
        format!("{{\"client_params\":{{\"id\":\"node-{client}\",\"group\":\"bench-{client}\"}}}}");
    let post = |path: &str| {
        let response = agent
            .post(&format!("{server}{path}"))
            .set("fleet-lock-protocol", "true")
            .send_string(&body)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(response.status(), 200, "{path}");
    };
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        post("/v1/pre-reboot");
        post("/v1/steady-state");
        latencies.push(started.elapsed());
    }
    latencies
}
