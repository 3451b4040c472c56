//! The compose pipeline: treefile -> packages -> tree -> ostree commit, phase by phase.

use std::path::PathBuf;

use serde::Serialize;

/// What `keel-compose tree` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub treefile: PathBuf,
    pub repo: PathBuf,
    pub cachedir: PathBuf,
}

/// How long one phase took.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTime {
    pub phase: String,
    pub seconds: f64,
}

/// The outcome of a compose; `--json` prints it, humans read [`Report::render`].
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub commit: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub version: String,
    pub packages: usize,
    pub tree_bytes: u64,
    pub repo_bytes_added: u64,
    pub phases: Vec<PhaseTime>,
    pub no_op: bool,
}

impl Report {
    /// A short human summary.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} {} version {} ({} packages, tree {} MB, repo +{} MB)",
            self.reference,
            self.commit,
            self.version,
            self.packages,
            self.tree_bytes / 1_000_000,
            self.repo_bytes_added / 1_000_000
        );
        if self.no_op {
            out.push_str(" [no change]");
        }
        out
    }
}

/// Runs the whole compose.
pub fn compose(options: &Options) -> anyhow::Result<Report> {
    anyhow::bail!(
        "composing {} needs the treefile, apt and install modules, which are being added",
        options.treefile.display()
    )
}
