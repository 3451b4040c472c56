//! Package lists as commits record them (`keel.packages`: `(name, version)` pairs) and the
//! changes between two of them. The composer's `tree --dry-run` and `diff`, the host's `status`,
//! `upgrade` and `db diff` all show changes through this one type, so they read alike.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Package changes from one package list to another, each list sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PackageDiff {
    /// `(name, version)` of packages only the new list has.
    pub added: Vec<(String, String)>,
    /// `(name, version)` of packages only the old list has.
    pub removed: Vec<(String, String)>,
    /// `(name, old version, new version)`.
    pub changed: Vec<(String, String, String)>,
}

impl PackageDiff {
    /// Added, removed and changed packages from `old` to `new` (either sorted or not).
    pub fn between(old: &[(String, String)], new: &[(String, String)]) -> Self {
        let old: BTreeMap<&str, &str> = old.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let new: BTreeMap<&str, &str> = new.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let mut diff = Self::default();
        for (name, version) in &new {
            match old.get(name) {
                None => diff.added.push((name.to_string(), version.to_string())),
                Some(was) if was != version => {
                    diff.changed
                        .push((name.to_string(), was.to_string(), version.to_string()))
                }
                Some(_) => {}
            }
        }
        for (name, version) in &old {
            if !new.contains_key(name) {
                diff.removed.push((name.to_string(), version.to_string()));
            }
        }
        diff
    }

    /// True when both lists hold the same packages at the same versions.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// One line per change, `indent` before each: `+ name version`, `- name version`,
    /// `~ name old -> new`.
    pub fn render(&self, indent: &str) -> String {
        let mut out = String::new();
        for (n, v) in &self.added {
            let _ = writeln!(out, "{indent}+ {n} {v}");
        }
        for (n, v) in &self.removed {
            let _ = writeln!(out, "{indent}- {n} {v}");
        }
        for (n, a, b) in &self.changed {
            let _ = writeln!(out, "{indent}~ {n} {a} -> {b}");
        }
        out
    }
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
    fn lists_added_removed_and_changed_packages() {
        let old = pkgs(&[("bash", "5.1"), ("curl", "7"), ("zsh", "5")]);
        let new = pkgs(&[("bash", "5.2"), ("podman", "4.3"), ("zsh", "5")]);
        let d = PackageDiff::between(&old, &new);
        assert_eq!(d.added, pkgs(&[("podman", "4.3")]));
        assert_eq!(d.removed, pkgs(&[("curl", "7")]));
        assert_eq!(d.changed, vec![("bash".into(), "5.1".into(), "5.2".into())]);
        assert!(!d.is_empty());
        assert!(PackageDiff::between(&new, &new).is_empty());
    }

    #[test]
    fn renders_one_marked_line_per_change() {
        let d = PackageDiff::between(
            &pkgs(&[("bash", "5.1"), ("curl", "7")]),
            &pkgs(&[("bash", "5.2"), ("podman", "4.3")]),
        );
        assert_eq!(
            d.render("  "),
            "  + podman 4.3\n  - curl 7\n  ~ bash 5.1 -> 5.2\n"
        );
        assert_eq!(PackageDiff::default().render("  "), "");
    }
}
