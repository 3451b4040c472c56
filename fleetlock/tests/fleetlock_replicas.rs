//! Several `keel-fleetlock serve` replicas on one real etcd: many clients never get more
//! slots than configured, and an etcd crash loses and duplicates no holder.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{holder_ids, read_group, write_config, Client, Etcd, Server};

const SLOTS: usize = 3;

#[test]
fn fifty_clients_through_three_replicas_never_exceed_the_slots() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &format!("[groups.default]\nslots = {SLOTS}\n"));
    let servers: Vec<Server> = (0..3)
        .map(|_| Server::start(&[&etcd.url], Some(&config)))
        .collect();
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();

    // A watcher reads the key from etcd all through the run.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (url, done) = (etcd.url.clone(), done.clone());
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(Ordering::SeqCst) {
                let semaphore = read_group(&url, "default");
                assert!(semaphore.holders.len() <= SLOTS, "etcd holds {semaphore:?}");
                most = most.max(semaphore.holders.len());
            }
            most
        })
    };

    let rebooting = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let (url, rebooting) = (etcd.url.clone(), rebooting.clone());
            let base = bases[i % bases.len()].clone();
            std::thread::spawn(move || {
                let client = Client::default();
                let id = format!("node-{i:02}");
                for _round in 0..2 {
                    loop {
                        let answer = client.pre_reboot(&base, &id, "default");
                        match answer.status {
                            200 => break,
                            409 => {
                                std::thread::sleep(Duration::from_millis(10 + (i as u64 % 7) * 3))
                            }
                            _ => panic!("{id}: {answer:?}"),
                        }
                    }
                    // At every step: etcd holds this node, and no more than the slots.
                    let semaphore = read_group(&url, "default");
                    assert!(semaphore.holders.len() <= SLOTS, "etcd holds {semaphore:?}");
                    assert!(
                        semaphore.holds(&id),
                        "{id} got 200 but etcd holds {semaphore:?}"
                    );
                    let now = rebooting.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(now <= SLOTS, "{now} nodes rebooting at once");
                    std::thread::sleep(Duration::from_millis(3));
                    rebooting.fetch_sub(1, Ordering::SeqCst);
                    let answer = client.steady_state(&base, &id, "default");
                    assert_eq!(answer.status, 200, "{id}: {answer:?}");
                }
            })
        })
        .collect();
    let failed = clients
        .into_iter()
        .map(|c| c.join())
        .filter(Result::is_err)
        .count();
    done.store(true, Ordering::SeqCst);
    assert_eq!(failed, 0, "clients failed (see their panics above)");
    let most = watcher.join().expect("the watcher failed");
    assert_eq!(most, SLOTS, "the run should fill every slot at some point");
    assert!(etcd.group("default").holders.is_empty());

    let conflicts: u64 = servers
        .iter()
        .filter_map(|s| {
            let text = s.scrape();
            text.lines()
                .find_map(|l| l.strip_prefix("keel_fleetlock_store_conflicts_total "))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum();
    eprintln!("compare-and-swap conflicts retried across the replicas: {conflicts}");
}

#[test]
fn etcd_killed_and_restarted_mid_run_loses_and_duplicates_no_holder() {
    let mut etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "[groups.default]\nslots = 8\n");
    let servers: Vec<Server> = (0..2)
        .map(|_| Server::start(&[&etcd.url], Some(&config)))
        .collect();
    let client = Client::default();

    // Four nodes hold a slot through the crash.
    let keepers: Vec<String> = (0..4).map(|i| format!("keeper-{i}")).collect();
    for (i, id) in keepers.iter().enumerate() {
        assert_eq!(
            client
                .pre_reboot(&servers[i % 2].base, id, "default")
                .status,
            200
        );
    }

    // Four more cycle through pre-reboot and steady-state, retrying on errors.
    let stop = Arc::new(AtomicBool::new(false));
    let restarted_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let cyclers: Vec<_> = (0..4)
        .map(|i| {
            let base = servers[i % 2].base.clone();
            let (stop, restarted_at) = (stop.clone(), restarted_at.clone());
            std::thread::spawn(move || {
                let client = Client::default();
                let id = format!("cycler-{i}");
                let (mut errors, mut after_restart) = (0, 0);
                let mut call = |take: bool| loop {
                    let answer = match take {
                        true => client.pre_reboot(&base, &id, "default"),
                        false => client.steady_state(&base, &id, "default"),
                    };
                    if answer.status == 200 {
                        if restarted_at.lock().map(|t| t.is_some()).unwrap_or(false) {
                            after_restart += 1;
                        }
                        return;
                    }
                    assert_eq!(
                        (answer.status, answer.kind().as_str()),
                        (503, "failed_lock"),
                        "{id}"
                    );
                    errors += 1;
                    std::thread::sleep(Duration::from_millis(50));
                };
                while !stop.load(Ordering::SeqCst) {
                    call(true);
                    call(false);
                }
                (errors, after_restart)
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(500));
    etcd.kill();
    std::thread::sleep(Duration::from_millis(1500));
    // While etcd is down the keepers' own calls fail too, and say so.
    let down = client.pre_reboot(&servers[0].base, &keepers[0], "default");
    assert_eq!(
        (down.status, down.kind().as_str()),
        (503, "failed_lock"),
        "{down:?}"
    );
    assert!(down.body.contains("etcd is unreachable"), "{}", down.body);
    etcd.restart();
    *restarted_at.lock().expect("lock") = Some(Instant::now());
    std::thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::SeqCst);

    for (i, cycler) in cyclers.into_iter().enumerate() {
        let (errors, after_restart) = cycler.join().expect("a cycler failed");
        assert!(errors > 0, "cycler-{i} saw no error while etcd was down");
        assert!(
            after_restart > 0,
            "cycler-{i} did not succeed after the restart"
        );
    }

    // Every cycler ended on a steady state: only the keepers hold, each once.
    let semaphore = etcd.group("default");
    assert_eq!(semaphore.holders.len(), keepers.len(), "{semaphore:?}");
    assert_eq!(holder_ids(&semaphore), keepers);
    for (i, id) in keepers.iter().enumerate() {
        assert_eq!(
            client
                .pre_reboot(&servers[i % 2].base, id, "default")
                .status,
            200
        );
    }
    assert_eq!(
        holder_ids(&etcd.group("default")),
        keepers,
        "repeats changed nothing"
    );
    assert!(servers[0].scrape().contains("keel_fleetlock_etcd_up 1"));
}

#[test]
fn an_etcd_url_that_does_not_answer_is_passed_over() {
    let etcd = Etcd::start();
    let dead = "http://127.0.0.1:1";
    let server = Server::start(&[dead, &etcd.url], None);
    let client = Client::default();
    assert_eq!(client.pre_reboot(&server.base, "a", "default").status, 200);
    assert_eq!(
        client.steady_state(&server.base, "a", "default").status,
        200
    );
    assert_eq!(client.pre_reboot(&server.base, "b", "default").status, 200);
    assert_eq!(holder_ids(&etcd.group("default")), vec!["b"]);
}
