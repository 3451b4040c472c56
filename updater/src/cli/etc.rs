//! `keel etc plan`: what the 3-way /etc merge does to the pending deployment.

use anyhow::Result;
use keel_host::etc::{self, PlanReport};
use keel_host::etc_plan::DefaultChange;
use std::fmt::Write;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show what the /etc merge will do (staged deployment) or did (written deployment).
    ///
    /// Compares the merge deployment's defaults (/usr/etc) with its /etc to find your changes,
    /// then lists: local edits kept, local additions kept, local removals kept, new defaults
    /// taken (files you never touched that change, appear or disappear in the new version),
    /// and conflicts (a file you changed that becomes a directory, or the reverse). With
    /// --commit, plans deploying that commit instead; deploys are refused while it conflicts.
    /// Exits non-zero when there are conflicts.
    Plan(PlanArgs),
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Plan for this commit (checksum or ref of the local repo) instead of the pending deployment.
    #[arg(long, value_name = "REV")]
    pub commit: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: Command, global: &super::Global) -> Result<()> {
    let Command::Plan(args) = cmd;
    let host = global.host()?;
    let report = etc::plan(&host, args.commit.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    if report.plan.conflicts.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} /etc conflict(s): resolve them before deploying",
            report.plan.conflicts.len()
        )
    }
}

pub fn render(report: &PlanReport) -> String {
    let Some(checksum) = &report.checksum else {
        return "No pending deployment: nothing to merge.\n".into();
    };
    let mut out = String::new();
    let verb = if report.applied { "did" } else { "will do" };
    let _ = writeln!(out, "The /etc merge into {checksum} {verb}:");
    let p = &report.plan;
    if p.is_empty() {
        out.push_str("  nothing: no local changes and no new defaults\n");
    }
    let section = |out: &mut String, title: &str, paths: &[String]| {
        if !paths.is_empty() {
            let _ = writeln!(out, "{title}:");
            for path in paths {
                let _ = writeln!(out, "  /etc/{path}");
            }
        }
    };
    section(&mut out, "Local edits kept", &p.local_edits_kept);
    section(&mut out, "Local additions kept", &p.local_additions_kept);
    section(&mut out, "Local removals kept", &p.local_removals_kept);
    if !p.new_defaults_taken.is_empty() {
        out.push_str("New defaults taken:\n");
        for d in &p.new_defaults_taken {
            let what = match d.change {
                DefaultChange::Added => "added",
                DefaultChange::Changed => "changed",
                DefaultChange::Removed => "removed",
            };
            let _ = writeln!(out, "  /etc/{} ({what})", d.path);
        }
    }
    if !p.conflicts.is_empty() {
        out.push_str("Conflicts (the deploy is refused until resolved):\n");
        for c in &p.conflicts {
            let _ = writeln!(out, "  /etc/{}: {}", c.path, c.reason);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_host::etc_plan::{Conflict, EtcPlan, NewDefault};

    #[test]
    fn renders_each_section() {
        let report = PlanReport {
            checksum: Some("abc".into()),
            applied: false,
            plan: EtcPlan {
                local_edits_kept: vec!["motd".into()],
                local_additions_kept: vec!["mine.conf".into()],
                local_removals_kept: vec!["issue".into()],
                new_defaults_taken: vec![NewDefault {
                    path: "os-release".into(),
                    change: DefaultChange::Changed,
                }],
                conflicts: vec![Conflict {
                    path: "foo".into(),
                    reason: "why".into(),
                }],
            },
        };
        assert_eq!(
            render(&report),
            "The /etc merge into abc will do:\nLocal edits kept:\n  /etc/motd\n\
             Local additions kept:\n  /etc/mine.conf\nLocal removals kept:\n  /etc/issue\n\
             New defaults taken:\n  /etc/os-release (changed)\n\
             Conflicts (the deploy is refused until resolved):\n  /etc/foo: why\n"
        );
        let none = PlanReport {
            checksum: None,
            applied: false,
            plan: EtcPlan::default(),
        };
        assert_eq!(render(&none), "No pending deployment: nothing to merge.\n");
    }
}
