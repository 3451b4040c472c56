//! Talking to the remote: what we read ourselves before trusting anything (the summary and its
//! signature, one commit object with its detached metadata, a static delta's superblock for
//! its size), and the content pull itself, which is libostree's (static delta first, objects
//! otherwise), with progress and cancellation. Every file we read ourselves goes through
//! keel-io's HTTP client (`file://` remotes included).
//!
//! Nothing fetched by [`RemoteFiles`] is written to the repo: a commit is checked in memory, and
//! only a verified checksum is handed to [`pull_content`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use keel_common::cancel::Cancel;
use keel_common::progress::{Discard, Progress};
use keel_io::http::{Client, Download, Downloaded, HttpError, Limits};
use ostree::gio::prelude::*;
use ostree::glib;

use crate::host::cancellable;

/// The biggest metadata file we read into memory (ostree's own limit for metadata is 10 MB).
const MAX_METADATA: u64 = 10 * 1024 * 1024;

/// Reads files of an ostree archive repo published at `url` (http, https or file) through
/// keel-io's client: a timeout per read, retries, `file://` from disk, size caps.
pub struct RemoteFiles<'a> {
    base: String,
    client: &'a Client,
    cancel: &'a Cancel,
}

impl<'a> RemoteFiles<'a> {
    pub fn new(url: &str, client: &'a Client, cancel: &'a Cancel) -> Self {
        Self {
            base: url.trim_end_matches('/').to_string(),
            client,
            cancel,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path)
    }

    /// The file's bytes, or `None` when the remote has no such file (HTTP 404).
    pub fn get_optional(&self, path: &str) -> Result<Option<Vec<u8>>, HttpError> {
        self.client.get_optional(
            &self.url(path),
            Limits::max_bytes(MAX_METADATA),
            self.cancel,
        )
    }

    /// The file's bytes; a missing file is an error naming the URL.
    pub fn get(&self, path: &str) -> Result<Vec<u8>, HttpError> {
        self.client.get(
            &self.url(path),
            Limits::max_bytes(MAX_METADATA),
            self.cancel,
        )
    }

    /// `summary` and `summary.sig` (the latter `None` when the remote has none).
    pub fn summary(&self) -> Result<(Vec<u8>, Option<Vec<u8>>), HttpError> {
        Ok((self.get("summary")?, self.get_optional("summary.sig")?))
    }

    /// A commit object's bytes and its detached metadata, not yet checked.
    pub fn commit(&self, checksum: &str) -> Result<(Vec<u8>, Option<glib::Variant>), HttpError> {
        let (dir, rest) = split_checksum(checksum);
        let bytes = self.get(&format!("objects/{dir}/{rest}.commit"))?;
        let meta_path = format!("objects/{dir}/{rest}.commitmeta");
        let detached = self.get_optional(&meta_path)?.map(|b| {
            let ty = glib::VariantTy::new("a{sv}").expect("static type string");
            glib::Variant::from_data_with_type(b, ty).normal_form()
        });
        Ok((bytes, detached))
    }

    /// Downloads a file of `size` bytes with this sha256 to `dest`, through `dest.part`, which
    /// an interrupted run keeps and the next one continues.
    pub fn download_resumable(
        &self,
        path: &str,
        dest: &Path,
        size: u64,
        sha256: &str,
    ) -> Result<Downloaded, HttpError> {
        let how = Download::new(Limits::max_bytes(size))
            .sha256(sha256)
            .resume();
        self.client
            .download(&self.url(path), dest, &how, &Discard, self.cancel)
    }
}

/// A fetch error as the user should read it: what failed, and what to do about it.
pub fn explain_fetch(e: HttpError) -> anyhow::Error {
    let hint = match &e {
        HttpError::NotFound { .. } | HttpError::Status { .. } => {
            "check the remote URL (`keel remote show`) and that the ref is published"
        }
        HttpError::Connect { .. } | HttpError::Timeout { .. } | HttpError::Transport { .. } => {
            "cannot reach the remote; check the network and retry"
        }
        HttpError::Cancelled { .. } => {
            "interrupted; what arrived is kept, run the command again to resume"
        }
        _ => "",
    };
    if hint.is_empty() {
        anyhow::Error::new(e)
    } else {
        anyhow::anyhow!("{e}; {hint}")
    }
}

/// The refs a remote's summary publishes, name -> commit checksum.
pub fn summary_refs(summary: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let ty = glib::VariantTy::new("(a(s(taya{sv}))a{sv})").map_err(|e| e.to_string())?;
    let v = glib::Variant::from_bytes_with_type(&glib::Bytes::from(summary), ty);
    if !v.is_normal_form() {
        return Err("not in GVariant normal form".into());
    }
    let mut refs = BTreeMap::new();
    for entry in v.child_value(0).iter() {
        let name: String = entry.child_value(0).get().unwrap_or_default();
        let csum: Vec<u8> = entry
            .child_value(1)
            .child_value(1)
            .get()
            .unwrap_or_default();
        if csum.len() != 32 {
            return Err(format!("ref {name} has a {}-byte checksum", csum.len()));
        }
        refs.insert(name, hex::encode(csum));
    }
    Ok(refs)
}

/// Looks `reference` up in a fetched summary.
pub fn resolve_ref(remote: &RemoteFiles, summary: &[u8], reference: &str) -> Result<String> {
    let refs = summary_refs(summary).map_err(|reason| {
        anyhow::anyhow!(
            "{}: not a valid ostree summary ({reason})",
            remote.url("summary")
        )
    })?;
    refs.get(reference).cloned().with_context(|| {
        format!(
            "the remote's summary lists no ref {reference}; published refs: {}",
            if refs.is_empty() {
                "none".to_string()
            } else {
                refs.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        )
    })
}

/// `objects/XX/YYYY...`'s two halves.
fn split_checksum(checksum: &str) -> (&str, &str) {
    checksum.split_at(checksum.len().min(2))
}

/// A snapshot of a running pull, from libostree's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PullProgress {
    pub bytes_transferred: u64,
    pub objects_fetched: u32,
    pub objects_requested: u32,
    pub delta_parts_fetched: u32,
    pub delta_parts_total: u32,
    pub delta_bytes_total: u64,
    /// Bytes per second since the pull started.
    pub rate: u64,
}

/// What a finished pull did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PullStats {
    #[serde(flatten)]
    pub progress: PullProgress,
    pub used_delta: bool,
    pub seconds: f64,
}

/// How the content pull should behave.
pub struct PullRequest<'a> {
    pub remote: &'a str,
    pub reference: &'a str,
    /// The verified commit; the pull fetches exactly this one and moves `remote:reference` to it.
    pub checksum: &'a str,
    pub network_retries: u32,
    /// Objects only: the static delta was refused or failed, libostree must not try it again.
    pub disable_static_deltas: bool,
}

/// Pulls a verified commit's content into `repo`, static delta first. The local ref
/// `remote:reference` moves to `checksum` only when everything arrived; objects fetched before
/// a failure or cancellation stay in the repo, so the next run resumes.
pub fn pull_content(
    repo: &ostree::Repo,
    request: &PullRequest<'_>,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> Result<PullStats, glib::Error> {
    progress.phase("pull");
    let options = glib::VariantDict::new(None);
    options.insert_value("refs", &vec![request.reference.to_string()].to_variant());
    options.insert_value(
        "override-commit-ids",
        &vec![request.checksum.to_string()].to_variant(),
    );
    options.insert_value(
        "flags",
        &(ostree::RepoPullFlags::NONE.bits() as i32).to_variant(),
    );
    options.insert_value("n-network-retries", &request.network_retries.to_variant());
    if request.disable_static_deltas {
        options.insert_value("disable-static-deltas", &true.to_variant());
    }
    let async_progress = ostree::AsyncProgress::new();
    let start = Instant::now();
    // libostree's signal handler must be 'static and the sink is borrowed: the handler sends
    // snapshots to a scoped thread that hands them to the sink.
    let result = std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::channel::<PullProgress>();
        scope.spawn(move || {
            for p in receiver {
                progress.bytes(p.bytes_transferred, None);
                progress.items(
                    u64::from(p.objects_fetched),
                    Some(u64::from(p.objects_requested)),
                );
            }
        });
        let handler = async_progress.connect_changed(move |p| {
            let _ = sender.send(snapshot(p, start));
        });
        // Dropping the handler drops the sender, which ends the thread (on a panic too).
        let _connected = Connected(&async_progress, Some(handler));
        let result = repo.pull_with_options(
            request.remote,
            &options.end(),
            Some(&async_progress),
            Some(&cancellable(cancel)),
        );
        async_progress.finish();
        result
    });
    let last = snapshot(&async_progress, start);
    result?;
    Ok(PullStats {
        used_delta: last.delta_parts_fetched > 0,
        progress: last,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// A signal handler on the progress object, disconnected on drop.
struct Connected<'a>(&'a ostree::AsyncProgress, Option<glib::SignalHandlerId>);

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        if let Some(handler) = self.1.take() {
            self.0.disconnect(handler);
        }
    }
}

fn snapshot(p: &ostree::AsyncProgress, start: Instant) -> PullProgress {
    let bytes = number(p, "bytes-transferred");
    let secs = start.elapsed().as_secs_f64().max(0.001);
    PullProgress {
        bytes_transferred: bytes,
        objects_fetched: number(p, "fetched") as u32,
        objects_requested: number(p, "requested") as u32,
        delta_parts_fetched: number(p, "fetched-delta-parts") as u32,
        delta_parts_total: number(p, "total-delta-parts") as u32,
        delta_bytes_total: number(p, "total-delta-part-size"),
        rate: (bytes as f64 / secs) as u64,
    }
}

/// A progress key as a number, 0 when libostree has not set it (yet).
fn number(p: &ostree::AsyncProgress, key: &str) -> u64 {
    match p.variant(key) {
        Some(v) => v
            .get::<u64>()
            .or_else(|| v.get::<u32>().map(u64::from))
            .unwrap_or(0),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_refs_are_read_and_garbage_refused() {
        let meta = glib::VariantDict::new(None).end();
        let entry = glib::Variant::tuple_from_iter([
            "os/x".to_variant(),
            glib::Variant::tuple_from_iter([
                0u64.to_variant(),
                vec![0xabu8; 32].to_variant(),
                meta.clone(),
            ]),
        ]);
        let refs = glib::Variant::array_from_iter_with_type(entry.type_(), [entry.clone()]);
        let summary = glib::Variant::tuple_from_iter([refs, meta]);
        let map = summary_refs(summary.data()).unwrap();
        assert_eq!(
            map.get("os/x").map(String::as_str),
            Some("ab".repeat(32).as_str())
        );
        assert!(summary_refs(b"junk").is_err());
    }

    #[test]
    fn missing_local_files_read_as_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("summary"), b"s").unwrap();
        let client = Client::from_env().unwrap();
        let cancel = Cancel::new();
        let remote = RemoteFiles::new(
            &format!("file://{}/", dir.path().display()),
            &client,
            &cancel,
        );
        assert_eq!(remote.summary().unwrap(), (b"s".to_vec(), None));
        let err = remote.get("objects/ab/cd.commit").unwrap_err();
        assert!(matches!(err, HttpError::NotFound { .. }), "{err}");
        let text = format!("{:#}", explain_fetch(err));
        assert!(
            text.contains("keel remote show") && text.contains("cd.commit"),
            "{text}"
        );
    }
}
