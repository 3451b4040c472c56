//! What one upgrade or rebase run found and did ([`Report`]), rendered for people or printed
//! as JSON, and the package changes between two commits.

use serde::Serialize;

use super::Mode;
use crate::pull::PullStats;
use crate::verify::{self, CommitInfo};
use keel_common::ostree_ref::OstreeRef;
use keel_common::packages::PackageDiff;

/// The commit a deployment runs, as far as the report needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CommitSummary {
    pub checksum: String,
    pub version: Option<String>,
    pub timestamp: u64,
}

impl From<&CommitInfo> for CommitSummary {
    fn from(c: &CommitInfo) -> Self {
        Self {
            checksum: c.checksum.clone(),
            version: c.version.clone(),
            timestamp: c.timestamp,
        }
    }
}

/// The outcome of one run, rendered for humans or printed as JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub remote: String,
    pub reference: OstreeRef,
    pub rebase: bool,
    pub mode: Mode,
    pub current: Option<CommitSummary>,
    /// The remote's commit for `reference`.
    pub available: CommitSummary,
    /// True when nothing needs doing: the reference (or staged) deployment already runs it.
    pub up_to_date: bool,
    /// The key that signed the new commit (base64), once verified.
    pub signed_by: Option<String>,
    pub packages: PackageDiff,
    /// Bytes the static delta from the current commit would download, when the remote has one.
    pub delta_size: Option<u64>,
    pub pulled: Option<PullStats>,
    pub deployed: bool,
}

impl Report {
    /// The human summary `keel upgrade` prints.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let version = |c: &CommitSummary| {
            c.version
                .clone()
                .unwrap_or_else(|| c.checksum[..12.min(c.checksum.len())].to_string())
        };
        let target = format!("{}:{}", self.remote, self.reference);
        if self.up_to_date {
            let _ = writeln!(
                out,
                "Already up to date with {target} ({}).",
                version(&self.available)
            );
            return out;
        }
        let from = self
            .current
            .as_ref()
            .map(version)
            .unwrap_or_else(|| "nothing".into());
        let _ = writeln!(
            out,
            "{} {target}: {from} -> {} ({}, {})",
            if self.rebase {
                "Rebase to"
            } else {
                "Update on"
            },
            version(&self.available),
            self.available.checksum,
            verify::format_time(self.available.timestamp)
        );
        if let Some(key) = &self.signed_by {
            let _ = writeln!(out, "  Signed by: {key}");
        }
        out.push_str(&self.packages.render("  "));
        match self.delta_size {
            Some(size) => {
                let _ = writeln!(out, "  Download: {} (static delta)", human_bytes(size));
            }
            None => {
                let _ = writeln!(
                    out,
                    "  Download: no static delta published; objects are fetched one by one"
                );
            }
        }
        if let Some(p) = &self.pulled {
            let _ = writeln!(
                out,
                "  Pulled: {} in {:.1} s, {} objects, {}",
                human_bytes(p.progress.bytes_transferred),
                p.seconds,
                p.progress.objects_fetched,
                if p.used_delta {
                    "through the static delta"
                } else {
                    "object by object"
                }
            );
        }
        let _ = writeln!(
            out,
            "{}",
            match (self.mode, self.deployed) {
                (Mode::Check, _) => "Run `keel upgrade` to download and deploy it.",
                (Mode::DownloadOnly, _) =>
                    "Downloaded and verified; run `keel upgrade` to deploy it.",
                (Mode::Deploy, true) => "Deployed; it boots next.",
                (Mode::Deploy, false) => "Not deployed.",
            }
        );
        out
    }
}

/// `1.2 MiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkgs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    fn report() -> Report {
        let commit = |c: &str, v: &str, t: u64| CommitSummary {
            checksum: c.repeat(64),
            version: Some(v.into()),
            timestamp: t,
        };
        Report {
            remote: "keel".into(),
            reference: "os/stable".parse().unwrap(),
            rebase: false,
            mode: Mode::Check,
            current: Some(commit("a", "1", 1_700_000_000)),
            available: commit("b", "2", 1_700_086_400),
            up_to_date: false,
            signed_by: Some("KEY=".into()),
            packages: PackageDiff::between(
                &pkgs(&[("bash", "5.1")]),
                &pkgs(&[("bash", "5.2"), ("jq", "1.6")]),
            ),
            delta_size: Some(7 * 1024),
            pulled: None,
            deployed: false,
        }
    }

    #[test]
    fn check_report_renders_versions_packages_and_download_size() {
        let text = report().render();
        let expected = format!(
            "Update on keel:os/stable: 1 -> 2 ({}, 2023-11-15 22:13:20 UTC)\n  Signed by: KEY=\n  + jq 1.6\n  ~ bash 5.1 -> 5.2\n  Download: 7.0 KiB (static delta)\nRun `keel upgrade` to download and deploy it.\n",
            "b".repeat(64)
        );
        assert_eq!(text, expected);
        let mut r = report();
        r.up_to_date = true;
        assert_eq!(r.render(), "Already up to date with keel:os/stable (2).\n");
    }
}
