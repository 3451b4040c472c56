//! The agent's FleetLock client against the real `keel-fleetlock` server on a real etcd, on
//! loopback: take, a no-op retake, held by another node (the kind in the agent's status),
//! release, and an unreachable server.

mod support;

use keel_agent::fleetlock::{app_specific_id, FleetLockClient, APP_ID};
use keel_agent::machine::{Lock, LockState};
use keel_common::cancel::Cancel;
use keel_common::fleetlock::{ClientParams, ErrorKind};
use keel_fleetlock::etcd::EtcdStore;
use keel_fleetlock::lock::Locker;
use keel_io::http::Client;
use support::{Etcd, LockServer};

fn node(base: &str, machine_id: &str) -> FleetLockClient {
    FleetLockClient::new(
        Client::from_env().expect("http client"),
        base,
        ClientParams {
            id: app_specific_id(machine_id, &APP_ID).expect("node id"),
            group: "default".into(),
        },
        Cancel::new(),
    )
}

fn holders(etcd: &Etcd) -> Vec<String> {
    let locker = Locker::new(EtcdStore::new(vec![etcd.url.clone()]).expect("store"));
    let mut ids: Vec<String> = locker
        .state("default")
        .expect("reading the group from etcd")
        .holders
        .iter()
        .map(|h| h.id.clone())
        .collect();
    ids.sort();
    ids
}

#[test]
fn take_retake_refused_while_held_and_release_on_the_real_server() {
    let etcd = Etcd::start();
    let server = LockServer::start(&etcd);
    let mut a = node(&server.base, "11111111111111111111111111111111");
    let mut b = node(&server.base, "22222222222222222222222222222222");
    let a_id = a.params().id.clone();

    a.pre_reboot().expect("a free slot is taken");
    assert_eq!(holders(&etcd), vec![a_id.clone()], "the id on the wire");
    assert_ne!(
        a_id, "11111111111111111111111111111111",
        "machine-id itself was sent"
    );
    a.pre_reboot().expect("the holder retaking is a no-op");
    assert_eq!(holders(&etcd), vec![a_id.clone()]);

    let refused = b.pre_reboot().expect_err("the only slot is held by a");
    assert_eq!(refused.kind, Some(ErrorKind::SemaphoreFull), "{refused}");
    assert!(refused.message.contains("pre-reboot"), "{refused}");
    let status = serde_json::to_value(LockState::Error(refused)).expect("json");
    assert_eq!(
        status["error"]["kind"], "failed_lock_semaphore_full",
        "the kind in the agent's status: {status}"
    );

    b.steady_state()
        .expect("releasing a slot not held is a no-op");
    assert_eq!(holders(&etcd), vec![a_id]);
    a.steady_state().expect("the holder releases");
    assert!(holders(&etcd).is_empty());
    b.pre_reboot().expect("the freed slot is taken by b");
    assert_eq!(holders(&etcd), vec![b.params().id.clone()]);
}

#[test]
fn no_server_is_an_error_without_a_protocol_kind() {
    let base = format!("http://127.0.0.1:{}", support::free_port());
    let err = node(&base, "33333333333333333333333333333333")
        .pre_reboot()
        .expect_err("nothing listens");
    assert_eq!(err.kind, None, "{err}");
    assert!(err.message.contains("pre-reboot"), "{err}");
}
