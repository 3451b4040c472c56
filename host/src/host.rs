//! Access to the ostree sysroot this agent manages: the booted host (`/`) or a directory
//! sysroot (`--sysroot DIR`, for images and tests). Every change goes through libostree while
//! holding the sysroot lock; the checks that make a change safe (the /etc plan) run first.

use crate::etc_plan::{self, EtcPlan};
use anyhow::{bail, Context, Result};
use keel_common::cancel::Cancel;
use keel_common::progress::{Discard, Progress};
use keel_io::command::CommandExt;
use ostree::gio::{self, prelude::*};
use ostree::glib;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The origin file key that pins a deployment to one commit of its ref (as rpm-ostree does):
/// the refspec stays, so the next upgrade follows the ref again.
pub const OVERRIDE_COMMIT: &str = "override-commit";

pub struct Host {
    sysroot: ostree::Sysroot,
    path: PathBuf,
    osname: String,
    booted: bool,
    /// How many [`SysrootLock`]s of this handle are alive (the lock is taken once).
    lock_depth: AtomicU32,
}

/// Holds the sysroot lock (libostree's `ostree/lock`) for one [`Host`]; released when the last
/// guard of that host is dropped. Taking it again through the same host while it is held
/// (an upgrade that deploys) does not wait.
pub struct SysrootLock<'a> {
    host: &'a Host,
}

impl Drop for SysrootLock<'_> {
    fn drop(&mut self) {
        if self.host.lock_depth.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.host.sysroot.unlock();
        }
    }
}

impl Host {
    /// Loads the sysroot at `sysroot`, or the booted system's (`/`) when `None`.
    pub fn open(sysroot: Option<&Path>) -> Result<Host> {
        let path = sysroot.map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let handle = match sysroot {
            None => ostree::Sysroot::new_default(),
            Some(p) => ostree::Sysroot::new(Some(&gio::File::for_path(p))),
        };
        handle.load(gio::Cancellable::NONE).with_context(|| {
            format!(
                "loading the ostree sysroot at {}: is this an ostree system (or pass --sysroot DIR)?",
                path.display()
            )
        })?;
        let booted_deployment = handle.booted_deployment();
        let booted = booted_deployment.is_some();
        let osname = match booted_deployment.or_else(|| handle.deployments().into_iter().next()) {
            Some(d) => d.osname().to_string(),
            None => only_osname(&path)?,
        };
        Ok(Host {
            sysroot: handle,
            path,
            osname,
            booted,
            lock_depth: AtomicU32::new(0),
        })
    }

    /// Rereads deployments after a change.
    pub fn reload(&self) -> Result<()> {
        self.sysroot
            .load(gio::Cancellable::NONE)
            .with_context(|| format!("reloading the sysroot at {}", self.path.display()))
    }

    pub fn sysroot(&self) -> &ostree::Sysroot {
        &self.sysroot
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn repo(&self) -> ostree::Repo {
        self.sysroot.repo()
    }

    pub fn osname(&self) -> &str {
        &self.osname
    }

    /// True when running on a host booted from this sysroot: changes are staged.
    pub fn is_booted(&self) -> bool {
        self.booted
    }

    /// This OS's deployments in boot order (a staged one first).
    pub fn deployments(&self) -> Vec<ostree::Deployment> {
        self.sysroot
            .deployments()
            .into_iter()
            .filter(|d| d.osname() == self.osname)
            .collect()
    }

    pub fn booted_deployment(&self) -> Option<ostree::Deployment> {
        self.sysroot.booted_deployment()
    }

    pub fn staged_deployment(&self) -> Option<ostree::Deployment> {
        self.sysroot.staged_deployment()
    }

    /// The deployment new commits are compared with: the booted one, else the default one.
    pub fn reference_deployment(&self) -> Option<ostree::Deployment> {
        self.booted_deployment()
            .or_else(|| self.deployments().into_iter().find(|d| !d.is_staged()))
    }

    /// The checkout directory of `deployment`.
    pub fn deployment_path(&self, deployment: &ostree::Deployment) -> PathBuf {
        self.path
            .join(self.sysroot.deployment_dirpath(deployment).as_str())
    }

    /// Root dir whose etc/keel and usr/lib/keel hold config: `/` on a booted host, else the
    /// default deployment's checkout (the sysroot itself while it has none).
    pub fn config_root(&self) -> PathBuf {
        if self.booted {
            return PathBuf::from("/");
        }
        match self.deployments().first() {
            Some(d) => self.deployment_path(d),
            None => self.path.clone(),
        }
    }

    /// The origin refspec of `deployment` (`remote:ref` or `ref`), if it has one.
    pub fn origin_refspec(deployment: &ostree::Deployment) -> Option<String> {
        let origin = deployment.origin()?;
        origin
            .string("origin", "refspec")
            .ok()
            .map(|s| s.to_string())
    }

    /// The commit the origin pins with `override-commit`, if any.
    pub fn origin_override(deployment: &ostree::Deployment) -> Option<String> {
        let origin = deployment.origin()?;
        origin
            .string("origin", OVERRIDE_COMMIT)
            .ok()
            .map(|s| s.to_string())
    }

    /// Kernel arguments of `deployment`'s boot entry, without the `ostree=` one libostree
    /// manages (it points at the deployment and changes with every deploy).
    pub fn kargs(deployment: &ostree::Deployment) -> Vec<String> {
        deployment
            .bootconfig()
            .and_then(|b| b.get("options"))
            .map(|o| {
                o.split_whitespace()
                    .filter(|a| !a.starts_with("ostree="))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What the /etc merge will do when `commit` is deployed over the merge deployment.
    pub fn etc_plan_for_commit(&self, commit: &str) -> Result<EtcPlan> {
        let Some(merge) = self.sysroot.merge_deployment(Some(&self.osname)) else {
            return Ok(EtcPlan::default());
        };
        let (root, _) = self
            .repo()
            .read_commit(commit, gio::Cancellable::NONE)
            .with_context(|| format!("reading commit {commit}"))?;
        let new_defaults = etc_plan::read_tree(&root.resolve_relative_path("usr/etc"))
            .with_context(|| format!("reading /usr/etc of commit {commit}"))?;
        self.etc_plan_against(&merge, &new_defaults)
    }

    /// The plan for the pending deployment (staged, or the default one when it is not the
    /// booted one; on a directory sysroot the default one over the next) and whether the
    /// merge already ran. `None` when nothing is pending.
    pub fn pending_etc_plan(&self) -> Result<Option<(ostree::Deployment, EtcPlan, bool)>> {
        let deployments = self.deployments();
        let (pending, merge) = match (self.staged_deployment(), self.booted_deployment()) {
            (Some(staged), Some(booted)) => (staged, booted),
            (None, Some(booted)) => match deployments.first() {
                Some(first) if !first.equal(&booted) => (first.clone(), booted),
                _ => return Ok(None),
            },
            (_, None) => match deployments.as_slice() {
                [first, second, ..] => (first.clone(), second.clone()),
                _ => return Ok(None),
            },
        };
        let applied = !pending.is_staged();
        let new_defaults = read_disk_tree(&self.deployment_path(&pending).join("usr/etc"))?;
        let plan = self.etc_plan_against(&merge, &new_defaults)?;
        Ok(Some((pending, plan, applied)))
    }

    fn etc_plan_against(
        &self,
        merge: &ostree::Deployment,
        new_defaults: &etc_plan::Tree,
    ) -> Result<EtcPlan> {
        let dir = self.deployment_path(merge);
        let old_defaults = read_disk_tree(&dir.join("usr/etc"))?;
        let local = read_disk_tree(&dir.join("etc"))?;
        Ok(etc_plan::plan(&old_defaults, &local, new_defaults))
    }

    /// Deploys `checksum` with origin `refspec` ("remote:ref" or "ref"): staged on a booted host
    /// (finalized at shutdown by ostree-finalize-staged.service), written directly otherwise.
    /// libostree does the 3-way /etc merge; kargs stay those of the merge deployment unless
    /// given. When `checksum` is not the ref's current commit the origin gets
    /// `override-commit`, so the deployment stays on it but still follows the ref.
    /// Refuses, before writing anything, when the /etc merge would conflict.
    pub fn deploy(
        &self,
        checksum: &str,
        refspec: &str,
        kargs: Option<&[String]>,
        cancel: &Cancel,
        progress: &dyn Progress,
    ) -> Result<()> {
        let origin = self.sysroot.origin_new_from_refspec(refspec);
        let head = self
            .repo()
            .resolve_rev(refspec, true)
            .with_context(|| format!("resolving {refspec}"))?;
        if head.as_deref() != Some(checksum) {
            origin.set_string("origin", OVERRIDE_COMMIT, checksum);
        }
        self.deploy_with_origin(checksum, &origin, kargs, cancel, progress)
    }

    /// [`Host::deploy`] with a ready origin (e.g. a copy of an existing deployment's).
    pub fn deploy_with_origin(
        &self,
        checksum: &str,
        origin: &glib::KeyFile,
        kargs: Option<&[String]>,
        cancel: &Cancel,
        progress: &dyn Progress,
    ) -> Result<()> {
        cancel.check()?;
        progress.phase("deploy");
        let _lock = self.lock(cancel, progress)?;
        self.reload()?;
        let plan = self.etc_plan_for_commit(checksum)?;
        if let Some(conflict) = plan.conflicts.first() {
            bail!(
                "not deploying {checksum}: the /etc merge would fail on /etc/{}: {} \
                 (`keel etc plan --commit {checksum}` lists every conflict; nothing was changed)",
                conflict.path,
                conflict.reason
            );
        }
        let merge = self.sysroot.merge_deployment(Some(&self.osname));
        let kargs: Option<Vec<&str>> = kargs.map(|k| k.iter().map(String::as_str).collect());
        let opts = ostree::SysrootDeployTreeOpts {
            override_kernel_argv: kargs.as_deref(),
            ..Default::default()
        };
        let what = format!("deploying {checksum} for {}", self.osname);
        let cancellable = cancellable(cancel);
        if self.booted {
            self.sysroot
                .stage_tree_with_options(
                    Some(&self.osname),
                    checksum,
                    Some(origin),
                    merge.as_ref(),
                    &opts,
                    Some(&cancellable),
                )
                .with_context(|| what.clone())?;
        } else {
            let written = self
                .sysroot
                .deploy_tree_with_options(
                    Some(&self.osname),
                    checksum,
                    Some(origin),
                    merge.as_ref(),
                    Some(&opts),
                    Some(&cancellable),
                )
                .and_then(|new| {
                    self.sysroot.simple_write_deployment(
                        Some(&self.osname),
                        &new,
                        merge.as_ref(),
                        ostree::SysrootSimpleWriteDeploymentFlags::NO_CLEAN,
                        gio::Cancellable::NONE,
                    )
                });
            if let Err(e) = written {
                // The boot entries did not change; drop the half-written checkout with them.
                let _ = self.sysroot.prepare_cleanup(gio::Cancellable::NONE);
                return Err(
                    anyhow::Error::new(e).context(format!("{what}; the deployments are unchanged"))
                );
            }
            self.cleanup_locked()?;
        }
        self.reload()
    }

    /// Writes a new deployment list (boot order), e.g. reordered for a rollback, then removes
    /// what the old list alone used; returns the bytes freed in the repo.
    pub fn write_deployments(&self, deployments: &[ostree::Deployment]) -> Result<u64> {
        let _lock = self.lock(&Cancel::new(), &Discard)?;
        let opts = ostree::SysrootWriteDeploymentsOpts {
            do_postclean: false,
        };
        self.sysroot
            .write_deployments_with_options(deployments, &opts, gio::Cancellable::NONE)
            .context("writing the deployment list")?;
        let freed = self.cleanup_locked()?;
        self.reload()?;
        Ok(freed)
    }

    pub fn set_pinned(&self, deployment: &ostree::Deployment, pinned: bool) -> Result<()> {
        let _lock = self.lock(&Cancel::new(), &Discard)?;
        self.sysroot
            .deployment_set_pinned(deployment, pinned)
            .with_context(|| format!("setting pinned={pinned} on {}", deployment.csum()))?;
        self.reload()
    }

    /// Removes unreferenced deployment directories, boot files and repo objects; returns the
    /// bytes freed in the repo.
    pub fn cleanup(&self) -> Result<u64> {
        let _lock = self.lock(&Cancel::new(), &Discard)?;
        let freed = self.cleanup_locked()?;
        self.reload()?;
        Ok(freed)
    }

    /// libostree's cleanup without its repo prune (which prints to stdout and would spoil
    /// `--json` output), then the same prune done quietly: objects reachable from no ref,
    /// where deployments hold theirs through the `ostree/B/S/N` refs libostree writes.
    fn cleanup_locked(&self) -> Result<u64> {
        self.sysroot
            .prepare_cleanup(gio::Cancellable::NONE)
            .context("cleaning up old deployments and boot files")?;
        let (_, _, freed) = self
            .repo()
            .prune(ostree::RepoPruneFlags::REFS_ONLY, 0, gio::Cancellable::NONE)
            .context("pruning unreferenced objects from the sysroot's repo")?;
        Ok(freed)
    }

    /// Takes the sysroot lock, so that no other keel (or ostree) process changes the sysroot
    /// until the guard is dropped. While another process holds it this waits, says once
    /// through `progress` who holds it (when keel recorded it), and stops when `cancel` is
    /// triggered.
    pub fn lock(&self, cancel: &Cancel, progress: &dyn Progress) -> Result<SysrootLock<'_>> {
        if self.lock_depth.load(Ordering::SeqCst) == 0 {
            let mut told = false;
            loop {
                let acquired = self
                    .sysroot
                    .try_lock()
                    .with_context(|| format!("locking the sysroot at {}", self.path.display()))?;
                if acquired {
                    break;
                }
                if cancel.is_cancelled() {
                    bail!(
                        "interrupted while waiting for the sysroot lock at {}; nothing was changed",
                        self.path.display()
                    );
                }
                if !told {
                    progress.message(&format!(
                        "waiting for the sysroot lock at {}, {}",
                        self.path.display(),
                        lock_holder::describe(&self.lock_file())
                    ));
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            lock_holder::record(&self.lock_file());
        }
        self.lock_depth.fetch_add(1, Ordering::SeqCst);
        Ok(SysrootLock { host: self })
    }

    /// libostree's lock file, which also holds what keel wrote about its holder.
    fn lock_file(&self) -> PathBuf {
        self.path.join("ostree/lock")
    }
}

/// Who holds the sysroot lock, recorded in libostree's lock file itself by the keel process
/// that took it. libostree removes that file when the lock is released, so what a waiter
/// reads is the current holder's; a holder that died leaves a note naming a process that is
/// gone, which reads as unknown.
mod lock_holder {
    use std::path::Path;

    /// Writes this process's id and command line into the lock file (best effort: a note
    /// that cannot be written only makes the holder unknown to waiters).
    pub fn record(lock_file: &Path) {
        let command: Vec<String> = std::env::args().collect();
        let mut command = command.join(" ");
        command.truncate(200);
        let since = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
        let note = format!(
            "pid={}\ncommand={command}\nsince={since}\n",
            std::process::id()
        );
        let _ = std::fs::write(lock_file, note);
    }

    /// `held by pid 12 (`keel upgrade`) since ...`, or that the holder is unknown.
    pub fn describe(lock_file: &Path) -> String {
        let note = std::fs::read_to_string(lock_file).unwrap_or_default();
        match parse(&note) {
            Some((pid, command, since)) if Path::new(&format!("/proc/{pid}")).exists() => {
                format!("held by process {pid} (`{command}`) since {since}")
            }
            _ => "held by another process (not one keel recorded; an `ostree admin` command?)"
                .to_string(),
        }
    }

    fn parse(note: &str) -> Option<(u32, &str, &str)> {
        let field = |key: &str| {
            note.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        };
        Some((
            field("pid")?.parse().ok()?,
            field("command")?,
            field("since")?,
        ))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_recorded_live_holder_is_named_and_a_dead_or_unknown_one_is_not() {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("lock");
            std::fs::write(&file, "").unwrap();
            assert!(describe(&file).contains("not one keel recorded"));
            record(&file);
            let text = describe(&file);
            assert!(
                text.starts_with(&format!("held by process {} (`", std::process::id())),
                "{text}"
            );
            std::fs::write(&file, "pid=999999999\ncommand=keel upgrade\nsince=x\n").unwrap();
            assert!(describe(&file).contains("not one keel recorded"));
        }
    }
}

/// A libostree cancellable that `cancel` cancels.
pub fn cancellable(cancel: &Cancel) -> gio::Cancellable {
    let cancellable = gio::Cancellable::new();
    let hook = cancellable.clone();
    cancel.on_cancel(move || hook.cancel());
    cancellable
}

/// The /etc-like tree at `path` (empty when missing), read through a directory handle.
fn read_disk_tree(path: &Path) -> Result<etc_plan::Tree> {
    let dir = match cap_std::fs::Dir::open_ambient_dir(path, cap_std::ambient_authority()) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(etc_plan::Tree::new()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    etc_plan::read_dir_tree(&dir).with_context(|| format!("reading {}", path.display()))
}

/// Reboots a booted host into its next default deployment (`systemctl reboot`, which also runs
/// ostree-finalize-staged.service for a staged one). `what` says what boots next, for errors.
pub fn reboot(host: &Host, what: &str) -> Result<()> {
    if !host.is_booted() {
        bail!(
            "--reboot needs a booted host; {} is a directory sysroot ({what} is in place)",
            host.path().display()
        );
    }
    std::process::Command::new("systemctl")
        .arg("reboot")
        .run()
        .with_context(|| format!("rebooting failed; {what} takes effect at the next boot"))?;
    Ok(())
}

/// The one OS under `ostree/deploy`, for a sysroot with no deployment yet.
fn only_osname(sysroot: &Path) -> Result<String> {
    let dir = sysroot.join("ostree/deploy");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "{} has no OS: run `ostree admin os-init --sysroot ... NAME`",
            dir.display()
        ),
        _ => bail!(
            "{} has several OSes ({}) and no deployment to choose by",
            dir.display(),
            names.join(", ")
        ),
    }
}
