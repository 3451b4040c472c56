//! Debian repositories and dependency resolution: read apt sources, fetch and verify
//! `InRelease` and `Packages` indices, and choose the packages of a tree with a SAT solver.
//!
//! ```text
//! sources (RepoSpec, LocalRepo) -> universe::load -> Universe -> depsolve::resolve -> [ResolvedPackage]
//! ```

pub mod control;
pub mod deb_control;
pub mod depsolve;
pub mod download;
pub mod index;
pub mod index_text;
pub mod inrelease;
pub mod names;
pub mod progress;
mod provider;
pub mod relation;
pub mod seen_dates;
pub mod sources;
pub mod universe;
pub mod version;

pub use depsolve::{resolve, DepsolveError, Request};
pub use sources::{machine_sources, LocalRepo, RepoSpec};
pub use universe::{load, Universe};

use std::path::PathBuf;
use thiserror::Error;

/// Why the package indices could not be loaded.
#[derive(Debug, Error)]
pub enum AptError {
    #[error(transparent)]
    Sources(#[from] sources::SourcesError),
    #[error("downloading {0}")]
    Download(#[from] keel_io::http::HttpError),
    #[error(
        "InRelease of {url} suite {suite} is not validly signed by a key in {}: {detail}; \
         check the repository's Signed-By keyring",
        .keyring.display()
    )]
    BadSignature {
        url: String,
        suite: String,
        keyring: PathBuf,
        detail: String,
    },
    #[error("{url} is for suite {found:?}, not {suite:?}; check the Suites: of this repository")]
    WrongSuite {
        url: String,
        suite: String,
        found: String,
    },
    #[error(
        "InRelease of {url} suite {suite} expired at {valid_until} (Valid-Until); the mirror \
         is stale or replays old metadata: use a current mirror"
    )]
    Expired {
        url: String,
        suite: String,
        valid_until: String,
    },
    #[error(
        "InRelease of {url} suite {suite} is dated {date}, older than {last}, the Date this \
         cache saw last: the mirror may be replaying old metadata to hide updates; use a \
         current mirror, or pass --allow-older-metadata if you moved to an older snapshot on \
         purpose"
    )]
    OlderDate {
        url: String,
        suite: String,
        date: String,
        last: String,
    },
    #[error(
        "InRelease of {url} suite {suite} lists no {file}; check Components: and the architecture"
    )]
    NoIndex {
        url: String,
        suite: String,
        file: String,
    },
    #[error("{file}: hash mismatch: expected {expected}, got {actual}; the mirror is inconsistent or tampered with, retry later or use another mirror")]
    HashMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file}: {detail}")]
    Parse { file: String, detail: String },
    #[error(
        "repository {repo}: index {index}: {field} {value:?} is malformed: {reason}; the \
         repository is broken or hostile, refusing it (remove it from the treefile or ask its \
         maintainer to fix it)"
    )]
    BadName {
        repo: String,
        index: String,
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("local package {}: {detail}", .path.display())]
    Local { path: PathBuf, detail: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
