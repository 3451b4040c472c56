//! Scratch directories for composes: `compose-XXXX` in the cache directory's scratch directory
//! (`CACHEDIR/tmp`, see `cachedir`), on the package cache's file system (so a base layer checks out with hardlinks), each naming the process that owns it.
//! A compose removes its own when done (the [`tempfile::TempDir`] drops); one killed outright
//! (SIGKILL, power loss) leaves its directory, maybe with an overlay still mounted, and the
//! next compose with that cachedir removes it.

use std::path::Path;

use anyhow::Context;
use keel_common::progress::Progress;

use crate::overlay;

/// Creates a fresh scratch directory in `scratch_parent`, after removing the stale ones.
pub fn create(scratch_parent: &Path, progress: &dyn Progress) -> anyhow::Result<tempfile::TempDir> {
    std::fs::create_dir_all(scratch_parent)
        .with_context(|| format!("creating {}", scratch_parent.display()))?;
    remove_stale_scratch(scratch_parent, progress);
    let scratch = tempfile::Builder::new()
        .prefix(SCRATCH_PREFIX)
        .tempdir_in(scratch_parent)
        .with_context(|| {
            format!(
                "creating a scratch directory in {}",
                scratch_parent.display()
            )
        })?;
    if let Some(owner) = process_identity("self") {
        let owner_file = scratch.path().join(SCRATCH_OWNER);
        std::fs::write(&owner_file, owner)
            .with_context(|| format!("writing {}", owner_file.display()))?;
    }
    Ok(scratch)
}

const SCRATCH_PREFIX: &str = "compose-";
/// Names the process that owns a scratch directory, for [`remove_stale_scratch`].
const SCRATCH_OWNER: &str = "owner";

/// `PID STARTTIME` of a process (`self` or a pid), which names it uniquely even when pids are
/// reused; `None` when it does not exist.
fn process_identity(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (pid_field, rest) = stat.split_once(' ')?;
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let after_comm = rest.rsplit_once(')')?.1;
    let starttime = after_comm.split_whitespace().nth(19)?;
    Some(format!("{pid_field} {starttime}"))
}

/// Removes scratch trees left behind by composes that were killed (SIGKILL, power loss) and
/// so could not clean up. A tree whose owner process still runs is left alone.
fn remove_stale_scratch(parent: &Path, progress: &dyn Progress) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(SCRATCH_PREFIX) {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(entry.path().join(SCRATCH_OWNER)) else {
            continue;
        };
        let alive = owner
            .split_whitespace()
            .next()
            .and_then(process_identity)
            .is_some_and(|now| now == owner.trim());
        if !alive {
            progress.message(&format!(
                "removing {} left by an interrupted compose",
                entry.path().display()
            ));
            // Its overlay may still be mounted; removing through it would be wrong and slow.
            if let Err(err) = overlay::unmount_below(&entry.path()) {
                progress.warning(&err.to_string());
                continue;
            }
            if let Err(err) = std::fs::remove_dir_all(entry.path()) {
                progress.warning(&format!(
                    "could not remove {}: {err}",
                    entry.path().display()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_scratch_trees_are_removed_live_ones_kept() {
        let parent = tempfile::tempdir().unwrap();
        let stale = parent.path().join("compose-stale");
        let live = parent.path().join("compose-live");
        let foreign = parent.path().join("compose-no-owner");
        for dir in [&stale, &live, &foreign] {
            std::fs::create_dir_all(dir.join("tree/usr")).unwrap();
        }
        // A pid that cannot exist (above the kernel's maximum) with our start time.
        std::fs::write(stale.join(SCRATCH_OWNER), "4194305 1").unwrap();
        std::fs::write(live.join(SCRATCH_OWNER), process_identity("self").unwrap()).unwrap();
        let sink = keel_common::progress::Recorder::default();
        remove_stale_scratch(parent.path(), &sink);
        assert!(!stale.exists());
        assert_eq!(
            sink.lines().len(),
            1,
            "says what it removed: {:?}",
            sink.lines()
        );
        assert!(
            sink.lines()[0].contains("compose-stale"),
            "{:?}",
            sink.lines()
        );
        assert!(live.exists());
        assert!(
            foreign.exists(),
            "a directory without an owner file may be starting up"
        );
    }

    #[test]
    fn process_identity_is_pid_and_start_time() {
        let me = process_identity("self").unwrap();
        let (pid, start) = me.split_once(' ').unwrap();
        assert_eq!(pid, std::process::id().to_string());
        assert!(start.parse::<u64>().is_ok(), "{me}");
        assert_eq!(process_identity("4194305"), None);
    }
}
