//! Cancelling `pipeline::compose` through its token: it stops at the next phase, names the
//! phase, carries `Cancelled` in its error and leaves no repository and no scratch tree.

use keel_common::cancel::{Cancel, Cancelled};
use keel_common::progress::{Event, Progress, Recorder};
use keel_compose::pipeline::{self, Options};
use keel_tests::deb::Deb;

/// Records events and cancels `cancel` when phase `phase` starts, as a user pressing Ctrl-C
/// while it runs would.
struct CancelDuring {
    phase: &'static str,
    cancel: Cancel,
    seen: Recorder,
}

impl Progress for CancelDuring {
    fn report(&self, event: Event) {
        if event
            == (Event::Phase {
                name: self.phase.into(),
            })
        {
            self.cancel.cancel();
        }
        self.seen.report(event);
    }
}

#[test]
fn a_compose_cancelled_while_resolving_stops_before_creating_the_repository() {
    let work = tempfile::tempdir().unwrap();
    let debs = work.path().join("debs");
    std::fs::create_dir(&debs).unwrap();
    Deb::new("keel-tiny", "1")
        .file("/opt/keel-tiny/data", "tiny\n")
        .build(&debs)
        .unwrap();
    let treefile = work.path().join("tiny.toml");
    std::fs::write(
        &treefile,
        "ref = \"keel/test/tiny\"\npackages = [\"keel-tiny\"]\n\n[[repos]]\nname = \"mine\"\npath = \"debs\"\n",
    )
    .unwrap();
    let options = Options {
        treefile,
        repo: work.path().join("repo"),
        cachedir: work.path().join("cache"),
        allow_older_metadata: false,
    };
    let cancel = Cancel::new();
    let sink = CancelDuring {
        phase: "resolve",
        cancel: cancel.clone(),
        seen: Recorder::default(),
    };
    let err = pipeline::compose(&options, &cancel, &sink).unwrap_err();
    assert!(err.downcast_ref::<Cancelled>().is_some(), "{err:#}");
    assert!(
        format!("{err:#}").contains("stopped before phase fetch"),
        "{err:#}"
    );
    assert!(
        !options.repo.exists(),
        "a cancelled compose created the repository"
    );
    let scratch: Vec<_> = std::fs::read_dir(options.cachedir.join("tmp"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(scratch.is_empty(), "scratch trees left: {scratch:?}");
    let phases: Vec<_> = sink
        .seen
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Phase { name } => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(phases, ["load", "resolve"]);
}
