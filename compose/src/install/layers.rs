//! Which packages go in the cached base layer and which are installed over it: pure logic.
//!
//! A compose installs its packages in two layers. The **base layer** is installed into an
//! empty tree, as one dpkg run would, and kept as a commit in the package cache, keyed by
//! exactly what went into it ([`base_key`]). The **top layer** is installed over a hardlinked
//! checkout of that commit, as `apt install` installs new packages on a running system. A
//! compose whose base packages did not change reuses the base commit and runs dpkg for the top
//! layer alone.
//!
//! The split depends only on the package set and the treefile, never on what a cache happens to
//! hold, so a cold compose and a warm one run the same steps and build the same tree:
//! - the top layer starts with the packages from the treefile's top-layer repositories (by
//!   default the local `path` repositories, the packages a maintainer builds and bumps; a
//!   repo's `layer` key says otherwise);
//! - every package that depends or pre-depends on a top-layer package, directly or not, joins
//!   the top layer, so the base layer is closed under dependencies and installs on its own;
//! - if the top layer then holds an `Essential: yes` package, every package implicitly depends
//!   on it, so there is no base layer: everything is installed in one go.

use crate::package::ResolvedPackage;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};

/// Version of the recipe that builds a base layer (the install steps, dpkg options and the
/// sandbox's environment). Bump it when any of them changes: old base layers are then unused.
pub const BASE_LAYER_RECIPE: &str = "keel-base-layer 1; dpkg --force-unsafe-io; INITRD=No";

/// Indices into the package list, in list order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub base: Vec<usize>,
    pub top: Vec<usize>,
}

impl Split {
    /// Everything in one layer, installed without a cached base.
    fn all_top(count: usize) -> Self {
        Split {
            base: Vec::new(),
            top: (0..count).collect(),
        }
    }
}

/// Splits `packages` into base and top layer; `top_repos` names the treefile repositories whose
/// packages start the top layer.
pub fn split(packages: &[ResolvedPackage], top_repos: &BTreeSet<String>) -> Split {
    let index: HashMap<&str, usize> = packages
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    // Reverse edges: for each package, who depends or pre-depends on it.
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); packages.len()];
    for (i, p) in packages.iter().enumerate() {
        for dep in p.pre_depends.iter().chain(&p.depends) {
            if let Some(&d) = index.get(dep.as_str()) {
                dependents[d].push(i);
            }
        }
    }
    let mut top = vec![false; packages.len()];
    let mut todo: Vec<usize> = packages
        .iter()
        .enumerate()
        .filter(|(_, p)| top_repos.contains(&p.repo))
        .map(|(i, _)| i)
        .collect();
    while let Some(i) = todo.pop() {
        if !std::mem::replace(&mut top[i], true) {
            todo.extend(&dependents[i]);
        }
    }
    if packages.iter().zip(&top).any(|(p, &t)| t && p.essential) {
        return Split::all_top(packages.len());
    }
    let (top, base): (Vec<usize>, Vec<usize>) = (0..packages.len()).partition(|&i| top[i]);
    Split { base, top }
}

/// The cache key of the base layer made of `packages[base]`: a sha256 over the recipe and, per
/// package in name order, everything the install reads from it (name, version, architecture,
/// the `.deb`'s sha256, and the resolved dependencies that order the unpack rounds).
pub fn base_key(packages: &[ResolvedPackage], base: &[usize]) -> String {
    let mut chosen: Vec<&ResolvedPackage> = base.iter().filter_map(|&i| packages.get(i)).collect();
    chosen.sort_by(|a, b| a.name.cmp(&b.name));
    let mut hasher = Sha256::new();
    hasher.update(BASE_LAYER_RECIPE.as_bytes());
    hasher.update(b"\n");
    for p in chosen {
        let line = format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            p.name,
            p.version,
            p.arch,
            p.sha256,
            p.pre_depends.join(","),
            p.depends.join(",")
        );
        hasher.update(line.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::PackageSource;

    fn pkg(name: &str, repo: &str, depends: &[&str]) -> ResolvedPackage {
        ResolvedPackage {
            name: name.into(),
            version: "1".into(),
            arch: "amd64".into(),
            sha256: format!("{name:0>64}"),
            size: 1,
            source: PackageSource::Url(format!("http://127.0.0.1/{name}.deb")),
            repo: repo.into(),
            essential: false,
            priority: "optional".into(),
            pre_depends: Vec::new(),
            depends: depends.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn names(packages: &[ResolvedPackage], indices: &[usize]) -> Vec<String> {
        indices.iter().map(|&i| packages[i].name.clone()).collect()
    }

    fn overlay() -> BTreeSet<String> {
        BTreeSet::from(["overlay".to_string()])
    }

    #[test]
    fn packages_from_top_repos_and_their_dependents_form_the_top_layer() {
        let packages = vec![
            pkg("libc6", "debian", &[]),
            pkg("tool", "overlay", &["libc6"]),
            pkg("uses-tool", "debian", &["tool"]),
            pkg("uses-that", "debian", &["uses-tool"]),
            pkg("bystander", "debian", &["libc6"]),
        ];
        let split = split(&packages, &overlay());
        assert_eq!(names(&packages, &split.base), ["libc6", "bystander"]);
        assert_eq!(
            names(&packages, &split.top),
            ["tool", "uses-tool", "uses-that"]
        );
    }

    #[test]
    fn pre_dependencies_pull_dependents_into_the_top_layer_too() {
        let mut needs = pkg("needs", "debian", &[]);
        needs.pre_depends = vec!["tool".into()];
        let packages = vec![pkg("tool", "overlay", &[]), needs];
        assert!(split(&packages, &overlay()).base.is_empty());
    }

    #[test]
    fn the_base_layer_is_closed_under_dependencies() {
        let packages = vec![
            pkg("a", "debian", &["b"]),
            pkg("b", "debian", &["c"]),
            pkg("c", "overlay", &[]),
            pkg("d", "debian", &["a", "e"]),
            pkg("e", "debian", &[]),
        ];
        let split = split(&packages, &overlay());
        let base: std::collections::HashSet<String> =
            names(&packages, &split.base).into_iter().collect();
        assert_eq!(base, std::collections::HashSet::from(["e".to_string()]));
        for &i in &split.base {
            for dep in &packages[i].depends {
                assert!(base.contains(dep), "{} needs {dep}", packages[i].name);
            }
        }
    }

    #[test]
    fn an_essential_package_in_the_top_layer_leaves_no_base_layer() {
        let mut essential = pkg("base-files", "overlay", &[]);
        essential.essential = true;
        let packages = vec![pkg("libc6", "debian", &[]), essential];
        let split = split(&packages, &overlay());
        assert!(split.base.is_empty());
        assert_eq!(split.top, [0, 1]);
    }

    #[test]
    fn an_essential_dependent_of_a_top_package_also_leaves_no_base_layer() {
        let mut dash = pkg("dash", "debian", &["libc6"]);
        dash.essential = true;
        let packages = vec![pkg("libc6", "overlay", &[]), dash, pkg("x", "debian", &[])];
        assert!(split(&packages, &overlay()).base.is_empty());
    }

    #[test]
    fn without_top_repos_everything_is_base() {
        let packages = vec![pkg("a", "debian", &["b"]), pkg("b", "debian", &[])];
        let split = split(&packages, &BTreeSet::new());
        assert_eq!(split.base, [0, 1]);
        assert!(split.top.is_empty());
    }

    #[test]
    fn the_base_key_ignores_order_and_top_packages() {
        let packages = vec![
            pkg("a", "debian", &[]),
            pkg("b", "debian", &[]),
            pkg("t", "overlay", &[]),
        ];
        let mut bumped = packages.clone();
        bumped[2].version = "2".into();
        bumped[2].sha256 = "f".repeat(64);
        assert_eq!(base_key(&packages, &[0, 1]), base_key(&bumped, &[1, 0]));
        assert_eq!(base_key(&packages, &[0, 1]).len(), 64);
    }

    #[test]
    fn every_input_of_a_base_package_changes_the_key() {
        let packages = vec![pkg("a", "debian", &[]), pkg("b", "debian", &[])];
        let key = base_key(&packages, &[0, 1]);
        let changes: Vec<fn(&mut ResolvedPackage)> = vec![
            |p| p.version = "2".into(),
            |p| p.arch = "all".into(),
            |p| p.sha256 = "e".repeat(64),
            |p| p.depends = vec!["b".into()],
            |p| p.pre_depends = vec!["b".into()],
            |p| p.name = "z".into(),
        ];
        for change in changes {
            let mut changed = packages.clone();
            change(&mut changed[0]);
            assert_ne!(base_key(&changed, &[0, 1]), key, "{:?}", changed[0]);
        }
        assert_ne!(base_key(&packages, &[0]), key, "a package fewer");
    }
}
