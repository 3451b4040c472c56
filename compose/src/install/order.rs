//! The order in which dpkg installs the resolved packages: pure logic, no I/O.
//!
//! First the Essential set (packages marked `Essential: yes` and everything they depend on or
//! pre-depend on), which bootstraps a tree in which dpkg and the maintainer scripts can run.
//! Then rounds: each round unpacks every remaining package whose pre-dependencies are already
//! configured, then configures what a later round pre-depends on (with everything that needs,
//! so dpkg's dependency checks pass). A last `dpkg --configure --pending` configures the rest.

use crate::package::ResolvedPackage;
use std::collections::{BTreeSet, HashMap};

/// One step of the plan after the Essential set: `dpkg --unpack` these, then `dpkg --configure`
/// those (names; `configure` may be empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    pub unpack: Vec<String>,
    pub configure: Vec<String>,
}

/// The whole installation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Installed first, with `dpkg --install --force-depends`, after a plain extraction.
    pub essential: Vec<String>,
    pub rounds: Vec<Round>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OrderError {
    #[error(
        "packages {0:?} pre-depend on each other in a cycle, so none can be unpacked first; \
         drop one of them from the treefile or report the packaging bug"
    )]
    PreDependsCycle(Vec<String>),
    #[error("package {0} is listed twice in the resolved set; the resolver output is broken")]
    Duplicate(String),
}

/// Plans the installation of `packages`. Dependencies naming packages outside the set are
/// ignored (the resolver already accounted for them, e.g. as virtual packages).
pub fn plan(packages: &[ResolvedPackage]) -> Result<Plan, OrderError> {
    let mut by_name: HashMap<&str, &ResolvedPackage> = HashMap::new();
    for p in packages {
        if by_name.insert(&p.name, p).is_some() {
            return Err(OrderError::Duplicate(p.name.clone()));
        }
    }
    let deps_of = |name: &str| -> Vec<String> {
        by_name
            .get(name)
            .map(|p| {
                p.pre_depends
                    .iter()
                    .chain(&p.depends)
                    .filter(|d| by_name.contains_key(d.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let closure = |start: Vec<String>| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = start;
        while let Some(name) = todo.pop() {
            if seen.insert(name.clone()) {
                todo.extend(deps_of(&name));
            }
        }
        seen
    };

    let essential = closure(
        packages
            .iter()
            .filter(|p| p.essential)
            .map(|p| p.name.clone())
            .collect(),
    );
    let mut configured: BTreeSet<String> = essential.clone();
    let mut unpacked: BTreeSet<String> = essential.clone();
    // Keep the input order for determinism and readable logs.
    let mut remaining: Vec<&ResolvedPackage> = packages
        .iter()
        .filter(|p| !essential.contains(&p.name))
        .collect();
    let pre_deps_ready = |p: &ResolvedPackage, configured: &BTreeSet<String>| {
        p.pre_depends
            .iter()
            .all(|d| configured.contains(d) || !by_name.contains_key(d.as_str()))
    };

    let mut rounds = Vec::new();
    while !remaining.is_empty() {
        let (ready, rest): (Vec<&ResolvedPackage>, Vec<&ResolvedPackage>) = remaining
            .iter()
            .partition(|p| pre_deps_ready(p, &configured));
        if ready.is_empty() {
            return Err(OrderError::PreDependsCycle(
                rest.iter().map(|p| p.name.clone()).collect(),
            ));
        }
        unpacked.extend(ready.iter().map(|p| p.name.clone()));
        remaining = rest;
        let wanted: Vec<String> = remaining
            .iter()
            .flat_map(|p| p.pre_depends.iter())
            .filter(|d| by_name.contains_key(d.as_str()) && !configured.contains(*d))
            .cloned()
            .collect();
        // Configure a wanted package only when all it needs is unpacked already.
        let mut configure = BTreeSet::new();
        for name in wanted {
            let needs = closure(vec![name]);
            if needs.iter().all(|n| unpacked.contains(n)) {
                configure.extend(needs.into_iter().filter(|n| !configured.contains(n)));
            }
        }
        configured.extend(configure.iter().cloned());
        rounds.push(Round {
            unpack: ready.iter().map(|p| p.name.clone()).collect(),
            configure: configure.into_iter().collect(),
        });
    }
    Ok(Plan {
        essential: packages
            .iter()
            .filter(|p| essential.contains(&p.name))
            .map(|p| p.name.clone())
            .collect(),
        rounds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::PackageSource;

    fn pkg(name: &str, essential: bool, pre: &[&str], deps: &[&str]) -> ResolvedPackage {
        ResolvedPackage {
            name: name.into(),
            version: "1".into(),
            arch: "amd64".into(),
            sha256: "00".repeat(32),
            size: 1,
            source: PackageSource::Url(format!("http://127.0.0.1/{name}.deb")),
            repo: "test".into(),
            essential,
            priority: "optional".into(),
            pre_depends: pre.iter().map(|s| s.to_string()).collect(),
            depends: deps.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn essential_set_includes_what_essentials_depend_on() {
        let plan = plan(&[
            pkg("app", false, &[], &["libc"]),
            pkg("libc", false, &[], &[]),
            pkg("dpkg", true, &["libc"], &["tar"]),
            pkg("tar", true, &[], &[]),
        ])
        .unwrap();
        assert_eq!(plan.essential, names(&["libc", "dpkg", "tar"]));
        assert_eq!(
            plan.rounds,
            vec![Round {
                unpack: names(&["app"]),
                configure: vec![]
            }]
        );
    }

    #[test]
    fn pre_dependencies_are_configured_before_the_unpack_that_needs_them() {
        let plan = plan(&[
            pkg("podman", false, &["init"], &["conmon"]),
            pkg("conmon", false, &[], &[]),
            pkg("init", false, &["helpers"], &["lib"]),
            pkg("helpers", false, &[], &[]),
            pkg("lib", false, &[], &[]),
        ])
        .unwrap();
        assert!(plan.essential.is_empty());
        assert_eq!(
            plan.rounds,
            vec![
                Round {
                    unpack: names(&["conmon", "helpers", "lib"]),
                    configure: names(&["helpers"]),
                },
                Round {
                    unpack: names(&["init"]),
                    configure: names(&["init", "lib"]),
                },
                Round {
                    unpack: names(&["podman"]),
                    configure: vec![],
                },
            ]
        );
    }

    #[test]
    fn unknown_dependencies_are_ignored() {
        let plan = plan(&[pkg("a", false, &["virtual-thing"], &["other"])]).unwrap();
        assert_eq!(plan.rounds.len(), 1);
    }

    #[test]
    fn a_pre_depends_cycle_is_an_error_naming_the_packages() {
        let err = plan(&[pkg("a", false, &["b"], &[]), pkg("b", false, &["a"], &[])]).unwrap_err();
        assert_eq!(err, OrderError::PreDependsCycle(names(&["a", "b"])));
        assert!(err.to_string().contains("\"a\""));
    }

    #[test]
    fn duplicates_are_rejected() {
        let err = plan(&[pkg("a", false, &[], &[]), pkg("a", false, &[], &[])]).unwrap_err();
        assert_eq!(err, OrderError::Duplicate("a".into()));
    }
}
