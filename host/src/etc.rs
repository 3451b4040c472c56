//! The /etc merge of the pending deployment, or of a commit about to be deployed: what it
//! keeps, takes and refuses (the pure planner is [`crate::etc_plan`]).

use crate::etc_plan::EtcPlan;
use crate::host::Host;
use anyhow::{Context, Result};
use serde::Serialize;

/// The plan and what it is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanReport {
    /// The commit /etc is merged into; `None` when nothing is pending.
    pub checksum: Option<String>,
    /// True when the merge already ran (a written, not staged, deployment).
    pub applied: bool,
    pub plan: EtcPlan,
}

/// Plans for `commit` (resolved in the local repo) or, without it, the pending deployment.
pub fn plan(host: &Host, commit: Option<&str>) -> Result<PlanReport> {
    if let Some(rev) = commit {
        let checksum = host
            .repo()
            .resolve_rev(rev, false)
            .with_context(|| format!("{rev} is not a commit or ref of the local repo"))?
            .map(|c| c.to_string())
            .with_context(|| format!("{rev} is not a commit or ref of the local repo"))?;
        let plan = host.etc_plan_for_commit(&checksum)?;
        return Ok(PlanReport {
            checksum: Some(checksum),
            applied: false,
            plan,
        });
    }
    Ok(match host.pending_etc_plan()? {
        Some((d, plan, applied)) => PlanReport {
            checksum: Some(d.csum().to_string()),
            applied,
            plan,
        },
        None => PlanReport {
            checksum: None,
            applied: false,
            plan: EtcPlan::default(),
        },
    })
}
