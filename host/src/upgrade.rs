//! `keel upgrade` and `keel rebase`: one pipeline. Read the remote's signed summary, find the
//! followed (or new) ref's commit, fetch that commit object alone and verify it in memory, and
//! only then pull its content (static delta first) and deploy it.
//!
//! A failure at any step leaves deployments and refs as they were: nothing is written to the
//! repo before the commit passed verification, and libostree moves the local ref only after
//! the whole commit arrived. A static delta that is refused or fails (a damaged part, a 404)
//! is given up with a warning for an object pull; only running out of space and Ctrl-C end
//! the run there, and Ctrl-C keeps the parts downloaded. The sysroot lock is held from the
//! first read of the deployments to the last write, so two keel processes never race.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use keel_common::cancel::Cancel;
use keel_common::ostree_ref::OstreeRef;
use keel_common::progress::Progress;
use keel_io::http::{Client, Proxies, Settings};
use ostree::{gio, glib};
use serde::Serialize;

use crate::config::{self, RemoteConfig};
use crate::delta;
use crate::host::{cancellable, Host};
use crate::pull::{self, explain_fetch, PullRequest, RemoteFiles};
use crate::verify::{self, CommitInfo, Policy};

mod report;
pub use keel_common::packages::PackageDiff;
pub use report::{human_bytes, CommitSummary, Report};

/// How far to go once an update is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Only report what would change.
    Check,
    /// Pull and verify, do not deploy.
    DownloadOnly,
    /// Pull, verify and deploy (staged on a booted host).
    Deploy,
}

/// What the caller asks for.
#[derive(Clone, Debug)]
pub struct Request {
    /// `Some(ref)` for a rebase onto another ref of the configured remote.
    pub rebase_to: Option<OstreeRef>,
    pub mode: Mode,
    /// Tries after the first for each file (ours and libostree's pull).
    pub network_retries: u32,
    /// How long a download may go without receiving data (per read, not per file: a slow but
    /// moving link finishes).
    pub read_timeout: Duration,
    /// The most a static delta may download; a bigger one is refused for an object pull.
    pub max_delta_bytes: u64,
}

impl Request {
    pub fn upgrade(mode: Mode) -> Self {
        Self {
            rebase_to: None,
            mode,
            network_retries: 5,
            read_timeout: Settings::default().read_timeout,
            max_delta_bytes: delta::DEFAULT_MAX_BYTES,
        }
    }

    pub fn rebase(reference: &OstreeRef, mode: Mode) -> Self {
        Self {
            rebase_to: Some(reference.clone()),
            ..Self::upgrade(mode)
        }
    }
}

/// Runs the pipeline on `host`. `progress` sees each phase and the bytes and objects (or delta
/// parts) received; cancelling `cancel` (Ctrl-C) stops the pull, keeping what arrived for the
/// next run. Unless only checking, the sysroot lock is held from before the running commit is
/// read until the deployment is written, so a second keel waits and then finds the work done.
pub fn run(
    host: &Host,
    request: &Request,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> Result<Report> {
    let _lock = match request.mode {
        Mode::Check => None,
        Mode::DownloadOnly | Mode::Deploy => {
            let lock = host.lock(cancel, progress)?;
            host.reload()?;
            Some(lock)
        }
    };
    progress.phase("check");
    let root = host.config_root();
    let remote = configured_remote(&root)?;
    let reference = request
        .rebase_to
        .clone()
        .unwrap_or_else(|| remote.reference.clone());
    let (trusted, revoked) = crate::trust::trusted_keys(&root)?;
    let repo = host.repo();
    let url = repo.remote_get_url(&remote.name).with_context(|| {
        format!(
            "the ostree remote {:?} is missing from the repo: run `keel remote add URL --ref REF --trusted-keys FILE`",
            remote.name
        )
    })?;
    let settings = Settings {
        read_timeout: request.read_timeout,
        attempts: request.network_retries.saturating_add(1),
        ..Settings::default()
    };
    let client = Client::new(settings, Proxies::from_env())?;
    let files = RemoteFiles::new(&url, &client, cancel);

    let current = current_commit(host)?;
    let (summary, summary_sig) = files
        .summary()
        .map_err(explain_fetch)
        .context("fetching the remote's summary")?;
    verify::verify_summary(&summary, summary_sig.as_deref(), &trusted, &revoked)?;
    let new_checksum = pull::resolve_ref(&files, &summary, reference.as_str())?;

    let staged = host.staged_deployment().map(|d| d.csum().to_string());
    let running = current.as_ref().map(|c| c.checksum.as_str());
    let up_to_date = request.rebase_to.is_none()
        && (running == Some(new_checksum.as_str())
            || staged.as_deref() == Some(new_checksum.as_str()));

    let (bytes, detached) = files
        .commit(&new_checksum)
        .map_err(explain_fetch)
        .with_context(|| format!("fetching commit {new_checksum} of {reference}"))?;
    let policy = Policy {
        trusted: &trusted,
        revoked: &revoked,
        followed_ref: reference.as_str(),
        not_older_than: current.as_ref().map(|c| c.timestamp),
        allow_downgrade: false,
    };
    let verified = verify::verify_commit(&new_checksum, &bytes, detached.as_ref(), &policy)?;

    // Nothing to download when an earlier `--download-only` run fetched it all.
    let complete = have_complete_commit(&repo, &new_checksum);
    let delta_size = match &current {
        Some(c) if !up_to_date && !complete => {
            match delta::download_size(&files, &c.checksum, &new_checksum, request.max_delta_bytes)
            {
                Ok(size) => size,
                Err(e) => {
                    // A pull says so when it gives the delta up.
                    if request.mode == Mode::Check {
                        progress.warning(&format!(
                            "the static delta is unusable ({e}); the update would be fetched \
                             object by object"
                        ));
                    }
                    None
                }
            }
        }
        _ => None,
    };
    let mut report = Report {
        remote: remote.name.clone(),
        reference: reference.clone(),
        rebase: request.rebase_to.is_some(),
        mode: request.mode,
        current: current.as_ref().map(CommitSummary::from),
        available: CommitSummary::from(&verified.info),
        up_to_date,
        signed_by: Some(verified.signed_by.to_base64()),
        packages: PackageDiff::between(
            current
                .as_ref()
                .map(|c| c.packages.as_slice())
                .unwrap_or_default(),
            &verified.info.packages,
        ),
        delta_size,
        pulled: None,
        deployed: false,
    };
    if up_to_date || request.mode == Mode::Check {
        return Ok(report);
    }

    let cancellable = cancellable(cancel);
    let repo_path = host.path().join("ostree/repo");
    let from = current.as_ref().map(|c| c.checksum.clone());
    let mut delta_failed = false;
    let via_delta = match &from {
        Some(from) if !complete => {
            let fetched = fetch_and_apply_delta(
                &repo,
                &files,
                from,
                &new_checksum,
                request.max_delta_bytes,
                progress,
                &cancellable,
            );
            match fetched {
                Ok(fetched) => fetched,
                Err(e) => {
                    let text = format!("{e:#}");
                    let hint = if cancel.is_cancelled() {
                        "interrupted; the delta parts downloaded so far are kept, run the command \
                         again to resume"
                            .to_string()
                    } else if is_out_of_space(&text) {
                        out_of_space_hint(&repo_path)
                    } else {
                        progress.warning(&format!(
                            "the static delta {from} -> {new_checksum} failed ({text}); \
                             fetching the update object by object instead"
                        ));
                        delta_failed = true;
                        String::new()
                    };
                    if !hint.is_empty() {
                        return Err(e.context(format!(
                            "applying the static delta to {new_checksum} for {reference} failed; \
                             nothing was deployed and the ref did not move ({hint})"
                        )));
                    }
                    None
                }
            }
        }
        _ => None,
    };
    let pull_request = PullRequest {
        remote: &remote.name,
        reference: reference.as_str(),
        checksum: &new_checksum,
        network_retries: request.network_retries,
        disable_static_deltas: delta_failed,
    };
    let mut stats = pull::pull_content(&repo, &pull_request, cancel, progress)
        .map_err(|e| explain_pull_error(e, &repo_path, reference.as_str(), &new_checksum))?;
    // What a delta that failed (and was replaced by the object pull) left behind.
    if let Some(dir) = from
        .as_deref()
        .and_then(|from| delta::cache_dir(&repo, from, &new_checksum))
    {
        let _ = std::fs::remove_dir_all(dir);
    }
    if let Some(fetched) = via_delta {
        stats.used_delta = true;
        stats.progress.bytes_transferred += fetched.bytes;
        stats.progress.delta_parts_fetched = fetched.parts as u32;
        stats.progress.delta_parts_total = fetched.parts as u32;
    }
    report.pulled = Some(stats);
    if request.mode == Mode::DownloadOnly {
        return Ok(report);
    }

    let refspec = reference.on_remote(&remote.name);
    host.deploy(&new_checksum, &refspec, None, cancel, progress)?;
    report.deployed = true;
    if request.rebase_to.is_some() {
        follow_ref(host, &remote, &reference)?;
    }
    Ok(report)
}

/// The `[remote]` section, or an error saying how to configure one.
fn configured_remote(root: &Path) -> Result<RemoteConfig> {
    config::load(root)?.remote.with_context(|| {
        format!(
            "no remote configured under {}: run `keel remote add URL --ref REF --trusted-keys FILE`",
            root.display()
        )
    })
}

/// The reference deployment's commit, read from the local repo.
fn current_commit(host: &Host) -> Result<Option<CommitInfo>> {
    let Some(deployment) = host.reference_deployment() else {
        return Ok(None);
    };
    let checksum = deployment.csum().to_string();
    let commit = host
        .repo()
        .load_variant(ostree::ObjectType::Commit, &checksum)
        .with_context(|| format!("reading the running commit {checksum} from the local repo"))?;
    Ok(Some(verify::parse_commit(
        &checksum,
        &commit.data_as_bytes(),
    )?))
}

/// Records `reference` as the followed ref in the config drop-in `keel remote add` writes,
/// under the config root of the new default deployment (or `/` on a booted host, whence the
/// staged deployment's /etc merge carries it over).
fn follow_ref(host: &Host, remote: &RemoteConfig, reference: &OstreeRef) -> Result<()> {
    host.reload()?;
    let updated = RemoteConfig {
        reference: reference.clone(),
        ..remote.clone()
    };
    let path = host.config_root().join(config::REMOTE_DROPIN);
    let dir = path.parent().context("the drop-in path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(".50-remote.toml.tmp");
    std::fs::write(&tmp, config::remote_dropin(&updated)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))
}

/// True when `checksum` and everything it references are already in `repo` (e.g. after
/// `--download-only`): no delta is needed then.
fn have_complete_commit(repo: &ostree::Repo, checksum: &str) -> bool {
    matches!(repo.load_commit(checksum), Ok((_, state)) if !state.contains(ostree::RepoCommitState::PARTIAL))
}

/// Downloads and applies the static delta `from` -> `to` when the remote publishes one (see
/// `delta` for why we do not leave this to libostree's pull). `None` when there is none.
/// Parts downloaded stay for the next run when the apply is interrupted.
fn fetch_and_apply_delta(
    repo: &ostree::Repo,
    files: &RemoteFiles,
    from: &str,
    to: &str,
    max_bytes: u64,
    progress: &dyn Progress,
    cancellable: &gio::Cancellable,
) -> Result<Option<delta::Downloaded>> {
    let Some(dir) = delta::cache_dir(repo, from, to) else {
        return Ok(None);
    };
    progress.phase("delta");
    let report = |done: usize, total: usize, bytes: u64| {
        progress.bytes(bytes, None);
        progress.items(done as u64, Some(total as u64));
    };
    let Some(downloaded) = delta::download(files, from, to, max_bytes, &dir, &report)? else {
        return Ok(None);
    };
    progress.phase("apply");
    match delta::apply(repo, &dir, cancellable) {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&dir);
            Ok(Some(downloaded))
        }
        Err(e)
            if e.matches(gio::IOErrorEnum::Cancelled)
                || gio::prelude::CancellableExt::is_cancelled(cancellable) =>
        {
            Err(anyhow::anyhow!("{}", e.message()))
        }
        Err(e) => {
            // Damaged beyond what the part checksums caught: start afresh next time.
            let _ = std::fs::remove_dir_all(&dir);
            Err(anyhow::anyhow!("{}", e.message()))
        }
    }
}

/// Turns libostree's pull error into one that says what happened to the host and what to do.
fn explain_pull_error(
    e: glib::Error,
    repo: &Path,
    reference: &str,
    checksum: &str,
) -> anyhow::Error {
    let hint = if e.matches(gio::IOErrorEnum::Cancelled) {
        "interrupted; objects already fetched are kept, run the command again to resume".into()
    } else if e.matches(gio::IOErrorEnum::NoSpace) || is_out_of_space(e.message()) {
        out_of_space_hint(repo)
    } else {
        "the remote may be unreachable or serving damaged files; run the command again later".into()
    };
    anyhow::anyhow!(
        "pulling {checksum} for {reference} failed: {}; nothing was deployed and the ref did not move ({hint})",
        e.message()
    )
}

/// True for ENOSPC and for libostree's own free-space refusals ("Delta requires 6.3 MB free
/// space", "min-free-space-percent '3%' would be exceeded").
fn is_out_of_space(message: &str) -> bool {
    ["No space left", "free space", "min-free-space"]
        .iter()
        .any(|needle| message.contains(needle))
}

fn out_of_space_hint(repo: &Path) -> String {
    let path = repo.display();
    format!(
        "not enough free space in {path}: free some space (`keel cleanup`) and run the command again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_and_libostrees_free_space_refusals_read_as_out_of_space() {
        assert!(is_out_of_space("fallocate: No space left on device"));
        assert!(is_out_of_space(
            "Delta requires 6.3 MB free space, but only 2.1 MB available"
        ));
        assert!(is_out_of_space(
            "min-free-space-percent '3%' would be exceeded, at least 6.3 MB requested"
        ));
        assert!(!is_out_of_space("Server returned HTTP 404"));
    }
}
