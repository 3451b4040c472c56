//! What a compose reports: [`Report`], which `--json` prints and humans read rendered.

use serde::Serialize;

use crate::install;
use crate::release;

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
    pub kernel: String,
    /// Bytes of regular files in the committed tree.
    pub tree_bytes: u64,
    /// Bytes the repository's objects grew by.
    pub repo_bytes_added: u64,
    pub phases: Vec<PhaseTime>,
    pub seconds: f64,
    pub no_op: bool,
    /// The cached base layer the tree was built on (`null`: no base layer, see
    /// `install::layers`).
    pub base_layer: Option<install::base::BaseReport>,
    /// Signature, static deltas and lockfile (see `release::steps`).
    pub release: release::steps::ReleaseReport,
}

impl Report {
    /// A short human summary.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} => {}\nversion {}, {} packages, kernel {}, tree {} MB, repository +{} MB, {:.1} s",
            self.reference,
            self.commit,
            self.version,
            self.packages,
            self.kernel,
            self.tree_bytes / 1_000_000,
            self.repo_bytes_added / 1_000_000,
            self.seconds
        );
        if self.no_op {
            out.push_str("\nnothing changed since the ref's current commit; nothing was written");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(no_op: bool) -> Report {
        Report {
            commit: "ab12".into(),
            reference: "keel/test/host".into(),
            version: "20261122.1".into(),
            packages: 199,
            kernel: "6.1.0-56-amd64".into(),
            tree_bytes: 928_836_608,
            repo_bytes_added: 328_485_251,
            phases: vec![PhaseTime {
                phase: "commit".into(),
                seconds: 16.7,
            }],
            seconds: 109.3,
            no_op,
            base_layer: None,
            release: Default::default(),
        }
    }

    #[test]
    fn report_renders_for_people_and_serializes_for_scripts() {
        assert_eq!(
            report(false).render(),
            "keel/test/host => ab12\nversion 20261122.1, 199 packages, kernel 6.1.0-56-amd64, \
             tree 928 MB, repository +328 MB, 109.3 s"
        );
        assert!(report(true).render().ends_with("nothing was written"));
        let json: serde_json::Value = serde_json::to_value(report(true)).unwrap();
        assert_eq!(json["ref"], "keel/test/host");
        assert_eq!(json["no_op"], true);
        assert_eq!(json["phases"][0]["phase"], "commit");
    }
}
