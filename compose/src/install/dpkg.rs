//! Running dpkg in the sandbox and reading what it says: the options every run gets, errors
//! that name the failing maintainer script or the refused package, and the final check that
//! dpkg reports every package installed.

use std::collections::HashMap;

use super::{describe, dpkg_log, ByName, InstallError};
use crate::package::ResolvedPackage;
use crate::sandbox::{tail, Sandbox, TAIL_LINES};

/// Options for every dpkg run: no fsync per file (the tree is committed and synced later), and
/// never ask about configuration files (stdin is closed).
pub(super) const DPKG: &[&str] = &[
    "dpkg",
    "--force-unsafe-io",
    "--force-confdef",
    "--force-confold",
];

pub(super) fn dpkg<'a>(args: &[&'a str]) -> Vec<&'a str> {
    DPKG.iter().chain(args).copied().collect()
}

/// Runs dpkg in the sandbox; a failure names the failing maintainer script when dpkg says which.
pub(super) fn run_dpkg(
    sandbox: &Sandbox,
    argv: &[&str],
    step: &str,
    packages: &[String],
    names: &Namer,
) -> Result<String, InstallError> {
    sandbox.run(argv, step).map_err(|source| {
        let output = source.output().unwrap_or("");
        let refused: Vec<String> = dpkg_log::processing_errors(output)
            .iter()
            .map(|item| names.describe(item))
            .collect();
        match dpkg_log::script_failures(output).into_iter().next() {
            Some(f) => InstallError::Script {
                package: f.package,
                script: f.script,
                status: f.status,
                step: step.to_string(),
                tail: tail(output, TAIL_LINES),
            },
            None if !refused.is_empty() => InstallError::Refused {
                packages: refused,
                step: step.to_string(),
                tail: tail(output, TAIL_LINES),
            },
            None => InstallError::Dpkg {
                step: step.to_string(),
                packages: packages.to_vec(),
                source,
            },
        }
    })
}

/// Names a package the way errors do, from what dpkg calls it: its name, or the path of its
/// `.deb` inside the sandbox.
pub(super) struct Namer(Vec<(String, String, String)>);

impl Namer {
    pub(super) fn new(by_name: &ByName) -> Self {
        Namer(
            by_name
                .values()
                .map(|(p, _, inside)| (p.name.clone(), inside.to_string(), describe(p)))
                .collect(),
        )
    }

    pub(super) fn describe(&self, item: &str) -> String {
        let name = item.split(':').next().unwrap_or(item);
        self.0
            .iter()
            .find(|(n, inside, _)| inside == item || n == name)
            .map_or_else(|| format!("package {item}"), |(_, _, d)| d.clone())
    }
}

pub(super) fn check_all_installed(
    sandbox: &Sandbox,
    packages: &[ResolvedPackage],
) -> Result<(), InstallError> {
    let argv = [
        "dpkg-query",
        "--show",
        "--showformat=${Package}\\t${db:Status-Abbrev}\\n",
    ];
    let step = "listing installed packages";
    let out = sandbox
        .run(&argv, step)
        .map_err(|source| InstallError::Dpkg {
            step: step.into(),
            packages: Vec::new(),
            source,
        })?;
    let status = parse_status_abbrev(&out);
    for p in packages {
        let got = status
            .get(p.name.as_str())
            .copied()
            .unwrap_or("not in the database");
        if got.trim_end() != "ii" {
            return Err(InstallError::NotInstalled {
                package: p.name.clone(),
                status: got.to_string(),
            });
        }
    }
    Ok(())
}

/// `NAME\tSTATUS` lines of `dpkg-query` into a map (architecture qualifiers dropped).
pub(super) fn parse_status_abbrev(out: &str) -> HashMap<&str, &str> {
    out.lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(name, status)| (name.split(':').next().unwrap_or(name), status))
        .collect()
}
