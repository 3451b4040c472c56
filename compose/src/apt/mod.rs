//! Debian repositories and dependency resolution: read apt sources, fetch and verify
//! `InRelease` and `Packages` indices, and choose the packages of a tree with a SAT solver.
//!
//! ```text
//! sources (RepoSpec, LocalRepo) -> universe::load -> Universe -> depsolve::resolve -> [ResolvedPackage]
//! ```

pub mod control;
pub mod depsolve;
pub mod download;
pub mod index;
pub mod progress;
mod provider;
pub mod relation;
pub mod release;
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
        "{url} expired at {valid_until} (Valid-Until); the mirror is stale or replayed, use a \
         current mirror"
    )]
    Expired { url: String, valid_until: String },
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
    #[error("local package {}: {detail}", .path.display())]
    Local { path: PathBuf, detail: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
