//! The bridge between a [`Universe`] and resolvo's SAT solver: names, version sets and
//! dependencies in Debian's terms.
//!
//! Modelling: every package in the universe is a solvable; at most one version per name is
//! chosen. A dependency group `a (>= 1) | b` is a union of version sets, in order: the real
//! `a` packages that match, the packages that provide `a` with a matching version, then the
//! same for `b` — resolvo tries the first undecided candidate of the first set first, which is
//! apt's "first satisfiable alternative". Conflicts and Breaks are constraints: whatever
//! package of that name (or providing that name) is chosen must *not* match.

use super::relation::{Group, Relation};
use super::universe::Universe;
use super::version::{Op, Version};
use resolvo::{
    ArenaId, Candidates, Condition, Dependencies, DependencyProvider, Interner, KnownDependencies,
    NameId, Requirement, SolvableId, SolverCache, StringId, VersionSetId, VersionSetUnionId,
};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt::Display;

/// What a version set admits, on the packages of one name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Match {
    /// Packages of this name whose version satisfies the constraint.
    Real(Option<(Op, Version)>),
    /// Packages of this name that provide `virtual` satisfying the constraint.
    Provides(String, Option<(Op, Version)>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct VersionSet {
    name: NameId,
    matches: Match,
    /// The complement (for Conflicts and Breaks).
    negate: bool,
}

#[derive(Default)]
struct Tables {
    names: Vec<String>,
    name_ids: HashMap<String, NameId>,
    sets: Vec<VersionSet>,
    set_ids: HashMap<VersionSet, VersionSetId>,
    unions: Vec<Vec<VersionSetId>>,
    strings: Vec<String>,
}

pub struct Provider<'u> {
    universe: &'u Universe,
    excluded: HashSet<String>,
    tables: RefCell<Tables>,
}

impl<'u> Provider<'u> {
    pub fn new(universe: &'u Universe, excluded: HashSet<String>) -> Self {
        Self {
            universe,
            excluded,
            tables: RefCell::new(Tables::default()),
        }
    }

    pub fn universe(&self) -> &'u Universe {
        self.universe
    }

    /// Whether the request excluded this package name.
    pub fn is_excluded(&self, name: &str) -> bool {
        self.excluded.contains(name)
    }

    fn name_id(&self, name: &str) -> NameId {
        let mut t = self.tables.borrow_mut();
        if let Some(id) = t.name_ids.get(name) {
            return *id;
        }
        let id = NameId::from_usize(t.names.len());
        t.names.push(name.to_string());
        t.name_ids.insert(name.to_string(), id);
        id
    }

    fn set_id(&self, set: VersionSet) -> VersionSetId {
        let mut t = self.tables.borrow_mut();
        if let Some(id) = t.set_ids.get(&set) {
            return *id;
        }
        let id = VersionSetId::from_usize(t.sets.len());
        t.sets.push(set.clone());
        t.set_ids.insert(set, id);
        id
    }

    fn string_id(&self, text: String) -> StringId {
        let mut t = self.tables.borrow_mut();
        let id = StringId::from_usize(t.strings.len());
        t.strings.push(text);
        id
    }

    /// Whether `relation` can be met on this universe's architecture at all: its `[arch]`
    /// list admits it and its `:qualifier` is `any`, `native` or the architecture itself.
    fn usable(&self, relation: &Relation) -> bool {
        let arch = self.universe.arch();
        relation.applies_to(arch)
            && relation
                .arch_qualifier
                .as_deref()
                .is_none_or(|q| q == "any" || q == "native" || q == arch)
    }

    /// The version sets that satisfy `relation`, real package first, then providers in
    /// index order (each provider name once).
    fn relation_sets(
        &self,
        relation: &Relation,
        negate: bool,
        skip: Option<&str>,
    ) -> Vec<VersionSetId> {
        let mut out = Vec::new();
        if skip != Some(relation.name.as_str()) {
            out.push(self.set_id(VersionSet {
                name: self.name_id(&relation.name),
                matches: Match::Real(relation.constraint.clone()),
                negate,
            }));
        }
        let mut seen = HashSet::new();
        for &id in self.universe.providers(&relation.name) {
            let provider = &self.universe.package(id).name;
            if skip == Some(provider.as_str()) || !seen.insert(provider) {
                continue;
            }
            out.push(self.set_id(VersionSet {
                name: self.name_id(provider),
                matches: Match::Provides(relation.name.clone(), relation.constraint.clone()),
                negate,
            }));
        }
        out
    }

    /// One requirement for a dependency group (alternatives in order).
    pub fn requirement(&self, group: &Group) -> Requirement {
        let mut sets: Vec<VersionSetId> = group
            .iter()
            .filter(|r| self.usable(r))
            .flat_map(|r| self.relation_sets(r, false, None))
            .collect();
        if sets.is_empty() {
            // Nothing here can work on this architecture: require a name nothing has.
            let name = group.first().map_or("?", |r| r.name.as_str());
            sets.push(self.set_id(VersionSet {
                name: self.name_id(&format!("{name}:{}", self.universe.arch())),
                matches: Match::Real(None),
                negate: false,
            }));
        }
        if sets.len() == 1 {
            return Requirement::Single(sets[0]);
        }
        let mut t = self.tables.borrow_mut();
        let id = VersionSetUnionId::from_usize(t.unions.len());
        t.unions.push(sets);
        Requirement::Union(id)
    }

    /// Whether package `id` is in `set`, ignoring negation.
    fn in_set(&self, id: usize, set: &VersionSet) -> bool {
        let package = self.universe.package(id);
        match &set.matches {
            Match::Real(None) => true,
            Match::Real(Some((op, v))) => op.satisfied_by(&package.version, v),
            Match::Provides(name, constraint) => package.provides.iter().any(|(p, pv)| {
                p == name
                    && match (constraint, pv) {
                        (None, _) => true,
                        (Some(_), None) => false,
                        (Some((op, v)), Some(pv)) => op.satisfied_by(pv, v),
                    }
            }),
        }
    }

    /// Whether package `id` satisfies `group` (used to report what each chosen package's
    /// dependencies resolved to, and to explain failures).
    pub fn satisfies(&self, id: usize, group: &Group) -> bool {
        group.iter().any(|r| self.satisfies_relation(id, r))
    }

    /// Whether package `id` satisfies one alternative, by its own name and version or by
    /// what it provides.
    pub fn satisfies_relation(&self, id: usize, relation: &Relation) -> bool {
        let package = self.universe.package(id);
        self.usable(relation)
            && ((package.name == relation.name && relation.satisfied_by(Some(&package.version)))
                || package
                    .provides
                    .iter()
                    .any(|(p, pv)| *p == relation.name && relation.satisfied_by(pv.as_ref())))
    }
}

fn solvable(id: SolvableId) -> usize {
    id.to_usize()
}

impl Interner for Provider<'_> {
    fn display_solvable(&self, solvable_id: SolvableId) -> impl Display + '_ {
        let p = self.universe.package(solvable(solvable_id));
        format!("{} {}", p.name, p.version)
    }

    fn display_merged_solvables(&self, solvables: &[SolvableId]) -> impl Display + '_ {
        let Some(first) = solvables.first() else {
            return String::new();
        };
        let versions: Vec<String> = solvables
            .iter()
            .map(|&s| self.universe.package(solvable(s)).version.to_string())
            .collect();
        format!(
            "{} {}",
            self.universe.package(solvable(*first)).name,
            versions.join(" | ")
        )
    }

    fn display_name(&self, name: NameId) -> impl Display + '_ {
        self.tables.borrow().names[name.to_usize()].clone()
    }

    fn display_version_set(&self, version_set: VersionSetId) -> impl Display + '_ {
        let set = self.tables.borrow().sets[version_set.to_usize()].clone();
        let constraint = |c: &Option<(Op, Version)>| {
            c.as_ref()
                .map(|(op, v)| format!(" ({op} {v})"))
                .unwrap_or_default()
        };
        let text = match &set.matches {
            Match::Real(c) => constraint(c).trim().to_string(),
            Match::Provides(name, c) => format!("providing {name}{}", constraint(c)),
        };
        match (set.negate, text.is_empty()) {
            (false, _) => text,
            (true, true) => "(none: conflicts)".to_string(),
            (true, false) => format!("(not {text})"),
        }
    }

    fn display_string(&self, string_id: StringId) -> impl Display + '_ {
        self.tables.borrow().strings[string_id.to_usize()].clone()
    }

    fn version_set_name(&self, version_set: VersionSetId) -> NameId {
        self.tables.borrow().sets[version_set.to_usize()].name
    }

    fn solvable_name(&self, solvable_id: SolvableId) -> NameId {
        self.name_id(&self.universe.package(solvable(solvable_id)).name)
    }

    fn version_sets_in_union(
        &self,
        union: VersionSetUnionId,
    ) -> impl Iterator<Item = VersionSetId> {
        self.tables.borrow().unions[union.to_usize()]
            .clone()
            .into_iter()
    }

    fn resolve_condition(&self, _condition: ConditionId) -> Condition {
        // No requirement of ours carries a condition, so the solver never asks; answer with
        // a condition on the first version set to stay total.
        Condition::Requirement(VersionSetId::from_usize(0))
    }
}

use resolvo::ConditionId;

impl DependencyProvider for Provider<'_> {
    async fn filter_candidates(
        &self,
        candidates: &[SolvableId],
        version_set: VersionSetId,
        inverse: bool,
    ) -> Vec<SolvableId> {
        let set = self.tables.borrow().sets[version_set.to_usize()].clone();
        candidates
            .iter()
            .copied()
            .filter(|&s| (self.in_set(solvable(s), &set) != set.negate) != inverse)
            .collect()
    }

    async fn get_candidates(&self, name: NameId) -> Option<Candidates> {
        let text = self.tables.borrow().names[name.to_usize()].clone();
        let ids = self.universe.by_name(&text);
        if ids.is_empty() {
            return None;
        }
        let mut candidates = Candidates::default();
        for &id in ids {
            if self.excluded.contains(&text) {
                let reason = self.string_id(format!("{text} is excluded by the request"));
                candidates
                    .excluded
                    .push((SolvableId::from_usize(id), reason));
            } else {
                candidates.candidates.push(SolvableId::from_usize(id));
            }
        }
        candidates
            .candidates
            .extend(candidates.excluded.iter().map(|(s, _)| *s));
        Some(candidates)
    }

    async fn sort_candidates(&self, _solver: &SolverCache<Self>, solvables: &mut [SolvableId]) {
        // Highest version first; equal versions keep index order (first repository first).
        solvables.sort_by(|a, b| {
            let (pa, pb) = (
                self.universe.package(solvable(*a)),
                self.universe.package(solvable(*b)),
            );
            pb.version
                .cmp(&pa.version)
                .then(a.to_usize().cmp(&b.to_usize()))
        });
    }

    async fn get_dependencies(&self, solvable_id: SolvableId) -> Dependencies {
        let package = self.universe.package(solvable(solvable_id));
        let requirements = package
            .pre_depends
            .iter()
            .chain(&package.depends)
            .map(|group| self.requirement(group).into())
            .collect();
        let constrains = package
            .conflicts
            .iter()
            .filter(|r| self.usable(r))
            .flat_map(|r| self.relation_sets(r, true, Some(&package.name)))
            .collect();
        Dependencies::Known(KnownDependencies {
            requirements,
            constrains,
        })
    }
}
