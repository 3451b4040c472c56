//! The first deployment through keel-host on a real libostree sysroot, read back with the
//! independent `ostree admin status`, and cancelled before it writes anything.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_common::cancel::Cancel;
use keel_common::ostree_ref::OstreeRef;
use keel_common::progress::{Discard, Event, Recorder};
use keel_host::{provision, Host};
use keel_tests::sysroot::{run, TreeBuilder};

const REF: &str = "keel/test/x86_64/host";

fn reference() -> OstreeRef {
    REF.parse().unwrap()
}

/// An archive repo holding one commit of [`REF`]; returns the repo and the commit.
fn source_repo(dir: &Path) -> (PathBuf, String) {
    let repo = dir.join("source");
    run(Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", repo.display()))
        .arg("--mode=archive"))
    .unwrap();
    let commit = TreeBuilder::new("1.0")
        .file("/usr/etc/motd", "hello\n")
        .commit(&repo, REF)
        .unwrap();
    (repo, commit)
}

/// Clears the immutable flag libostree sets on deployment directories, so the temp dir goes.
fn release(dir: &Path) {
    let _ = Command::new("chattr")
        .args(["-R", "-f", "-i"])
        .arg(dir)
        .status();
}

#[test]
fn a_provisioned_sysroot_has_one_deployment_that_follows_the_ref() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let (source, commit) = source_repo(dir.path());
    let sysroot = dir.path().join("sysroot");
    std::fs::create_dir(&sysroot).unwrap();

    provision::init_sysroot(&sysroot, "keel", None).unwrap();
    let host = Host::open(Some(&sysroot)).unwrap();
    assert_eq!(host.osname(), "keel");
    let progress = Recorder::default();
    let cancel = Cancel::new();
    let pulled =
        provision::pull_local(&host, &source, &reference(), "origin", &cancel, &progress).unwrap();
    assert_eq!(pulled, commit);
    let done = provision::first_deploy(
        &host,
        &reference(),
        "origin",
        &["quiet".to_string()],
        &cancel,
        &progress,
    )
    .unwrap();
    assert_eq!(done.commit, commit);
    assert_eq!(
        done.deployment,
        sysroot.join(format!("ostree/deploy/keel/deploy/{commit}.0"))
    );
    assert_eq!(
        std::fs::read_to_string(done.deployment.join("etc/motd")).unwrap(),
        "hello\n",
        "the /etc merge made /etc from /usr/etc"
    );
    let phases: Vec<Event> = progress
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Phase { .. }))
        .collect();
    assert_eq!(
        phases,
        vec![
            Event::Phase {
                name: "pull".into()
            },
            Event::Phase {
                name: "deploy".into()
            }
        ]
    );

    let status = run(Command::new("ostree")
        .args(["admin", "status"])
        .arg(format!("--sysroot={}", sysroot.display())))
    .unwrap();
    assert!(status.contains(&format!("keel {commit}.0")), "{status}");
    assert!(
        status.contains(&format!("origin refspec: origin:{REF}")),
        "{status}"
    );
    let origin = std::fs::read_to_string(done.deployment.with_extension("0.origin")).unwrap();
    assert!(!origin.contains("override-commit"), "{origin}");
    assert_eq!(Host::kargs(&host.deployments()[0]), vec!["quiet"]);
    release(dir.path());
}

#[test]
fn a_cancelled_first_deployment_writes_nothing() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let (source, _) = source_repo(dir.path());
    let sysroot = dir.path().join("sysroot");
    std::fs::create_dir(&sysroot).unwrap();
    provision::init_sysroot(&sysroot, "keel", None).unwrap();
    let host = Host::open(Some(&sysroot)).unwrap();

    let cancel = Cancel::new();
    cancel.cancel();
    let err = provision::pull_local(&host, &source, &reference(), "origin", &cancel, &Discard)
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains(REF) && text.contains("cancelled"), "{text}");
    assert_eq!(
        host.repo()
            .resolve_rev(&format!("origin:{REF}"), true)
            .unwrap(),
        None
    );

    provision::pull_local(
        &host,
        &source,
        &reference(),
        "origin",
        &Cancel::new(),
        &Discard,
    )
    .unwrap();
    let err =
        provision::first_deploy(&host, &reference(), "origin", &[], &cancel, &Discard).unwrap_err();
    assert!(format!("{err:#}").contains("cancelled"), "{err:#}");
    host.reload().unwrap();
    assert!(host.deployments().is_empty());
    release(dir.path());
}
