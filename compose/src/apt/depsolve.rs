//! Dependency resolution with Debian's rules, on resolvo's SAT solver (see `provider.rs` for
//! the encoding).
//!
//! What gets installed: the requested packages, every package that is `Essential: yes` or
//! `Priority: required` (mmdebstrap's `required` variant: the essential set plus
//! `?priority(required)`, which includes apt) of the repositories that form the base system
//! ([`BaseSystem`]), and their `Pre-Depends` and `Depends`, all hard. `Recommends` only when asked, and then only as wishes: a recommended package that
//! cannot be installed is left out, as apt does. Of several versions the highest is
//! preferred; of alternatives the first that can be satisfied.

use super::provider::Provider;
use super::relation::{Group, Relation};
use super::universe::Universe;
use crate::package::ResolvedPackage;
use resolvo::{
    ArenaId, ConditionalRequirement, Problem, SolvableId, Solver, UnsolvableOrCancelled,
};
use std::collections::{BTreeSet, HashMap, VecDeque};
use thiserror::Error;

/// What to install.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// `name` or `name=version`.
    pub packages: Vec<String>,
    /// Package names that must not be installed; whatever needs one of them fails to resolve.
    pub exclude: Vec<String>,
    /// Also install `Recommends` where possible.
    pub recommends: bool,
    /// Which repositories' `Essential: yes` and `Priority: required` packages are installed
    /// without being asked for.
    pub base_system: BaseSystem,
}

/// The repositories that form the base system (the treefile's `base-system` repos).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaseSystem {
    /// Every repository (a universe made of the distribution alone).
    #[default]
    AllRepos,
    /// Only these, by repository name; none: nothing is installed unless requested (a
    /// lockfile names every package).
    Repos(BTreeSet<String>),
}

impl BaseSystem {
    pub fn includes(&self, repo: &str) -> bool {
        match self {
            BaseSystem::AllRepos => true,
            BaseSystem::Repos(names) => names.contains(repo),
        }
    }
}

/// Why no package set could be chosen. Messages name the package, the chain of packages
/// that asked for it, and the repositories searched.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DepsolveError {
    #[error("request {item:?}: {detail}")]
    BadRequest { item: String, detail: String },
    #[error("{}: no such package in {searched}", chain.join(" -> "))]
    Missing {
        chain: Vec<String>,
        searched: String,
    },
    #[error("{}: {reason}", chain.join(" -> "))]
    Unsatisfiable { chain: Vec<String>, reason: String },
    #[error("{first} conflicts with {second} (needed as {} and {}); remove one of them from \
             the request or exclude what pulls it in", .first_chain.join(" -> "),
             .second_chain.join(" -> "))]
    Conflict {
        first: String,
        second: String,
        first_chain: Vec<String>,
        second_chain: Vec<String>,
    },
    #[error("no version of {name} satisfies both {} and {}", .first.join(" -> "),
             .second.join(" -> "))]
    Clash {
        name: String,
        first: Vec<String>,
        second: Vec<String>,
    },
    #[error("no installable package set:\n{0}")]
    Unsolvable(String),
}

/// Resolves `request` against `universe`. The result is sorted by package name.
pub fn resolve(
    universe: &Universe,
    request: &Request,
) -> Result<Vec<ResolvedPackage>, DepsolveError> {
    let provider = Provider::new(universe, request.exclude.iter().cloned().collect());
    let roots = roots(&provider, request)?;
    let requirements: Vec<ConditionalRequirement> = roots
        .iter()
        .map(|(_, g)| provider.requirement(g).into())
        .collect();
    let mut solver = Solver::new(provider);
    let mut chosen = match solver.solve(Problem::new().requirements(requirements.clone())) {
        Ok(chosen) => chosen,
        Err(UnsolvableOrCancelled::Unsolvable(conflict)) => {
            let text = conflict.display_user_friendly(&solver).to_string();
            return Err(diagnose(solver.provider(), &roots, text));
        }
        Err(UnsolvableOrCancelled::Cancelled(_)) => {
            return Err(DepsolveError::Unsolvable("cancelled".into()))
        }
    };
    if request.recommends {
        let mut wishes: Vec<SolvableId> = Vec::new();
        // Each round may bring packages with recommends of their own; a few rounds settle it.
        for _ in 0..8 {
            let more = recommended(solver.provider(), &chosen, &wishes);
            if more.is_empty() {
                break;
            }
            wishes.extend(more);
            let problem = Problem::new()
                .requirements(requirements.clone())
                .soft_requirements(wishes.clone());
            if let Ok(next) = solver.solve(problem) {
                chosen = next;
            }
        }
    }
    Ok(report(solver.provider(), &chosen))
}

/// Requested packages and the essential/required base, each as a one-alternative group
/// with a label for error chains.
fn roots(provider: &Provider, request: &Request) -> Result<Vec<(String, Group)>, DepsolveError> {
    let universe = provider.universe();
    let mut out = Vec::new();
    for item in &request.packages {
        let text = match item.split_once('=') {
            Some((name, version)) => format!("{name} (= {version})"),
            None => item.clone(),
        };
        let relation =
            super::relation::parse_relation(&text).map_err(|e| DepsolveError::BadRequest {
                item: item.clone(),
                detail: e.to_string(),
            })?;
        out.push((item.clone(), vec![relation]));
    }
    // A name is in the base set when its highest version among the base system's
    // repositories is Essential or required (whose fields decide, as apt's candidate
    // version does); another repository's package of the same name may still be chosen.
    let mut newest: HashMap<&str, &super::universe::Package> = HashMap::new();
    for package in universe.packages() {
        if !request.base_system.includes(&package.repo) {
            continue;
        }
        let entry = newest.entry(package.name.as_str()).or_insert(package);
        if package.version > entry.version {
            *entry = package;
        }
    }
    let mut base = BTreeSet::new();
    for (name, package) in newest {
        if (package.essential || package.priority == "required") && !provider.is_excluded(name) {
            base.insert(name.to_string());
        }
    }
    for name in base {
        let relation =
            super::relation::parse_relation(&name).map_err(|e| DepsolveError::BadRequest {
                item: name.clone(),
                detail: e.to_string(),
            })?;
        out.push((format!("{name} (essential/required)"), vec![relation]));
    }
    Ok(out)
}

/// The best candidate of each unmet Recommends group of the chosen packages.
fn recommended(
    provider: &Provider,
    chosen: &[SolvableId],
    already: &[SolvableId],
) -> Vec<SolvableId> {
    let universe = provider.universe();
    let ids: Vec<usize> = chosen.iter().map(|s| s.to_usize()).collect();
    let mut out = Vec::new();
    for &id in &ids {
        for group in &universe.package(id).recommends {
            if ids.iter().any(|&c| provider.satisfies(c, group)) {
                continue;
            }
            if let Some(best) = best_candidate(provider, group) {
                let s = SolvableId::from_usize(best);
                if !already.contains(&s) && !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    out
}

/// The package apt would try first for `group`: the highest version of the first
/// alternative that has any, real packages before providers.
fn best_candidate(provider: &Provider, group: &Group) -> Option<usize> {
    let universe = provider.universe();
    group.iter().find_map(|relation| {
        let pick = |ids: &[usize]| {
            ids.iter()
                .copied()
                .filter(|&id| {
                    !provider.is_excluded(&universe.package(id).name)
                        && provider.satisfies_relation(id, relation)
                })
                .max_by(|&a, &b| {
                    universe
                        .package(a)
                        .version
                        .cmp(&universe.package(b).version)
                })
        };
        pick(universe.by_name(&relation.name)).or_else(|| pick(universe.providers(&relation.name)))
    })
}

/// Turns the solver's choice into the sorted package list.
fn report(provider: &Provider, chosen: &[SolvableId]) -> Vec<ResolvedPackage> {
    let universe = provider.universe();
    let ids: Vec<usize> = chosen.iter().map(|s| s.to_usize()).collect();
    let resolved_names = |groups: &[Group]| -> Vec<String> {
        let mut names: Vec<String> = groups
            .iter()
            .filter_map(|g| ids.iter().find(|&&c| provider.satisfies(c, g)))
            .map(|&c| universe.package(c).name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let mut out: Vec<ResolvedPackage> = ids
        .iter()
        .map(|&id| {
            let p = universe.package(id);
            ResolvedPackage {
                name: p.name.clone(),
                version: p.version.to_string(),
                arch: p.arch.clone(),
                sha256: p.sha256.clone(),
                size: p.size,
                source: p.source.clone(),
                repo: p.repo.clone(),
                essential: p.essential,
                priority: p.priority.clone(),
                pre_depends: resolved_names(&p.pre_depends),
                depends: resolved_names(&p.depends),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Explains an unsolvable request in Debian terms. Walks the dependency graph from the roots
/// along the candidates apt would try first; the first dependency nothing can satisfy, or
/// the first conflict between two of those packages, is the answer. Otherwise resolvo's own
/// explanation (`solver_text`) is returned.
fn diagnose(provider: &Provider, roots: &[(String, Group)], solver_text: String) -> DepsolveError {
    let universe = provider.universe();
    let mut chains: HashMap<usize, Vec<String>> = HashMap::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    // Single-alternative requirements seen on the way, with the chain that ends in them.
    let mut wants: Vec<(Relation, Vec<String>)> = Vec::new();
    let mut visit = |group: &Group,
                     chain: &[String],
                     queue: &mut VecDeque<usize>,
                     chains: &mut HashMap<usize, Vec<String>>| {
        let mut here = chain.to_vec();
        here.push(show_group(group));
        if let [relation] = group.as_slice() {
            wants.push((relation.clone(), here.clone()));
        }
        match best_candidate(provider, group) {
            Some(id) => {
                if let std::collections::hash_map::Entry::Vacant(e) = chains.entry(id) {
                    let mut next = chain.to_vec();
                    next.push(universe.package(id).name.clone());
                    e.insert(next);
                    queue.push_back(id);
                }
                Ok(())
            }
            None => Err(unmet(provider, group, here)),
        }
    };
    for (label, group) in roots {
        let chain: Vec<String> = Vec::new();
        if let Err(e) = visit(group, &chain, &mut queue, &mut chains) {
            return match e {
                DepsolveError::Missing { searched, .. } => DepsolveError::Missing {
                    chain: vec![label.clone()],
                    searched,
                },
                DepsolveError::Unsatisfiable { reason, .. } => DepsolveError::Unsatisfiable {
                    chain: vec![label.clone()],
                    reason,
                },
                other => other,
            };
        }
    }
    while let Some(id) = queue.pop_front() {
        let chain = chains[&id].clone();
        let package = universe.package(id);
        for group in package.pre_depends.iter().chain(&package.depends) {
            if let Err(e) = visit(group, &chain, &mut queue, &mut chains) {
                return e;
            }
        }
    }
    if let Some(clash) = clash(provider, &wants) {
        return clash;
    }
    let mut picked: Vec<usize> = chains.keys().copied().collect();
    picked.sort_unstable();
    for &a in &picked {
        let pa = universe.package(a);
        for relation in &pa.conflicts {
            for &b in &picked {
                let pb = universe.package(b);
                if pb.name != pa.name && provider.satisfies_relation(b, relation) {
                    let (first, second) = (
                        format!("{} {}", pa.name, pa.version),
                        format!("{} {}", pb.name, pb.version),
                    );
                    return DepsolveError::Conflict {
                        first,
                        second,
                        first_chain: chains[&a].clone(),
                        second_chain: chains[&b].clone(),
                    };
                }
            }
        }
    }
    DepsolveError::Unsolvable(solver_text)
}

/// Two requirements on the same name that no single package meets together, e.g.
/// `a -> lib (>= 2)` and `b -> lib (<< 2)`.
fn clash(provider: &Provider, wants: &[(Relation, Vec<String>)]) -> Option<DepsolveError> {
    let universe = provider.universe();
    let mut by_name: HashMap<&str, Vec<&(Relation, Vec<String>)>> = HashMap::new();
    for want in wants {
        by_name.entry(want.0.name.as_str()).or_default().push(want);
    }
    let mut names: Vec<&&str> = by_name.keys().collect();
    names.sort();
    for name in names {
        let list = &by_name[*name];
        let candidates: Vec<usize> = universe
            .by_name(name)
            .iter()
            .chain(universe.providers(name))
            .copied()
            .filter(|&id| !provider.is_excluded(&universe.package(id).name))
            .collect();
        for (i, (first, first_chain)) in list.iter().map(|w| (&w.0, &w.1)).enumerate() {
            for (second, second_chain) in list[i + 1..].iter().map(|w| (&w.0, &w.1)) {
                let together = candidates.iter().any(|&id| {
                    provider.satisfies_relation(id, first)
                        && provider.satisfies_relation(id, second)
                });
                if !together {
                    return Some(DepsolveError::Clash {
                        name: name.to_string(),
                        first: first_chain.clone(),
                        second: second_chain.clone(),
                    });
                }
            }
        }
    }
    None
}

/// The error for a group that nothing satisfies; `chain` ends with the group itself.
fn unmet(provider: &Provider, group: &Group, chain: Vec<String>) -> DepsolveError {
    let universe = provider.universe();
    let known = |r: &Relation| {
        !universe.by_name(&r.name).is_empty() || !universe.providers(&r.name).is_empty()
    };
    if let Some(r) = group.iter().find(|r| provider.is_excluded(&r.name)) {
        return DepsolveError::Unsatisfiable {
            chain,
            reason: format!("{} is excluded by the request", r.name),
        };
    }
    if !group.iter().any(known) {
        return DepsolveError::Missing {
            chain,
            searched: searched(universe),
        };
    }
    let versions: Vec<String> = group
        .iter()
        .flat_map(|r| {
            universe.by_name(&r.name).iter().map(|&id| {
                let p = universe.package(id);
                format!("{} {}", p.name, p.version)
            })
        })
        .collect();
    DepsolveError::Unsatisfiable {
        chain,
        reason: if versions.is_empty() {
            format!(
                "no package provides it with a matching version in {}",
                searched(universe)
            )
        } else {
            format!(
                "only {} available in {}",
                versions.join(", "),
                searched(universe)
            )
        },
    }
}

fn searched(universe: &Universe) -> String {
    if universe.origins().is_empty() {
        "an empty package universe".into()
    } else {
        universe.origins().join(", ")
    }
}

fn show_group(group: &Group) -> String {
    group
        .iter()
        .map(Relation::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
#[path = "depsolve_tests.rs"]
mod tests;
