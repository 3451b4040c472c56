//! Depends-style fields: `a (>= 1.2) | b, c:any [amd64] <!nocheck>`.
//! A field is a list of groups that must all hold; a group holds when any alternative does.

use super::version::{Op, Version};
use std::fmt;
use thiserror::Error;

/// One alternative: a package name with optional version constraint and qualifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    /// `:any`, `:native` or an architecture after the name.
    pub arch_qualifier: Option<String>,
    pub constraint: Option<(Op, Version)>,
    /// `[amd64 !i386]`: (negated, arch). Empty when absent.
    pub arch_restrictions: Vec<(bool, String)>,
}

/// Alternatives, in the order the package lists them (apt prefers the first it can satisfy).
pub type Group = Vec<Relation>;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RelationError {
    #[error("relation {0:?}: missing package name")]
    NoName(String),
    #[error("relation {0:?}: unclosed '(' , '[' or '<'")]
    Unclosed(String),
    #[error("relation {0:?}: bad version constraint: {1}")]
    BadConstraint(String, String),
}

impl Relation {
    /// Whether this alternative applies on `arch` (its `[...]` list, if any, admits it).
    pub fn applies_to(&self, arch: &str) -> bool {
        if self.arch_restrictions.is_empty() {
            return true;
        }
        let negated = self.arch_restrictions.iter().all(|(neg, _)| *neg);
        let listed = self
            .arch_restrictions
            .iter()
            .any(|(_, a)| a == arch || a == "any");
        if negated {
            !listed
        } else {
            listed
        }
    }

    /// Whether a package of `version` (or a provide with that version) satisfies it.
    /// A versioned relation is never satisfied by an unversioned provide (`None`).
    pub fn satisfied_by(&self, version: Option<&Version>) -> bool {
        match (&self.constraint, version) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((op, reference)), Some(v)) => op.satisfied_by(v, reference),
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(q) = &self.arch_qualifier {
            write!(f, ":{q}")?;
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, " ({op} {v})")?;
        }
        Ok(())
    }
}

/// Parses a whole field. An empty field gives no groups.
pub fn parse_field(text: &str) -> Result<Vec<Group>, RelationError> {
    text.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|group| group.split('|').map(parse_relation).collect())
        .collect()
}

/// Parses one alternative, e.g. `libc6:any (>= 2.36) [amd64] <!stage1>`: a name, then in
/// any order a `(OP VERSION)`, an `[arch ...]` list and `<profile ...>` lists (ignored:
/// build profiles do not matter for binary packages). Works on slices, without copying.
pub fn parse_relation(text: &str) -> Result<Relation, RelationError> {
    let whole = text.trim();
    let err_unclosed = || RelationError::Unclosed(whole.to_string());
    let name_end = whole.find(['(', '[', '<']).unwrap_or(whole.len());
    let name_part = whole[..name_end].trim();
    if name_part.is_empty() || name_part.contains(char::is_whitespace) {
        return Err(RelationError::NoName(whole.to_string()));
    }
    let mut constraint = None;
    let mut arch_restrictions = Vec::new();
    let mut rest = whole[name_end..].trim_start();
    while let Some(open) = rest.chars().next() {
        let close = match open {
            '(' => ')',
            '[' => ']',
            '<' => '>',
            _ => return Err(RelationError::NoName(whole.to_string())),
        };
        let end = rest.find(close).ok_or_else(err_unclosed)?;
        let inner = rest[1..end].trim();
        match open {
            '(' => constraint = Some(parse_constraint(inner, whole)?),
            '[' => {
                arch_restrictions = inner
                    .split_whitespace()
                    .map(|a| match a.strip_prefix('!') {
                        Some(a) => (true, a.to_string()),
                        None => (false, a.to_string()),
                    })
                    .collect()
            }
            _ => {}
        }
        rest = rest[end + 1..].trim_start();
    }
    let (name, arch_qualifier) = match name_part.split_once(':') {
        Some((n, q)) => (n, Some(q.to_string())),
        None => (name_part, None),
    };
    if name.is_empty() {
        return Err(RelationError::NoName(whole.to_string()));
    }
    Ok(Relation {
        name: name.to_string(),
        arch_qualifier,
        constraint,
        arch_restrictions,
    })
}

/// `>= 1.2` inside the parentheses of a relation.
fn parse_constraint(inner: &str, whole: &str) -> Result<(Op, Version), RelationError> {
    let split = inner
        .find(|c: char| !matches!(c, '<' | '>' | '='))
        .unwrap_or(inner.len());
    let (op, version) = inner.split_at(split);
    let op: Op = op
        .trim()
        .parse()
        .map_err(|e| RelationError::BadConstraint(whole.to_string(), e))?;
    let version: Version = version
        .trim()
        .parse()
        .map_err(|e: super::version::VersionError| {
            RelationError::BadConstraint(whole.to_string(), e.to_string())
        })?;
    Ok((op, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(groups: &[Group]) -> String {
        groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn table() {
        let cases = [
            ("", ""),
            ("a", "a"),
            ("a, b", "a, b"),
            (
                "a (>= 1.2), b | c (<< 2:3-1)",
                "a (>= 1.2), b | c (<< 2:3-1)",
            ),
            ("a(>=1)", "a (>= 1)"),
            ("a (> 1)", "a (>= 1)"),
            ("python3:any (>= 3.11~)", "python3:any (>= 3.11~)"),
            ("libc6 (>= 2.36) [amd64] <!nocheck>", "libc6 (>= 2.36)"),
            ("foo <stage1 cross> <!nocheck>", "foo"),
            (" a ,\n b | c ", "a, b | c"),
            ("perl:native", "perl:native"),
        ];
        for (text, want) in cases {
            assert_eq!(show(&parse_field(text).unwrap()), want, "{text:?}");
        }
    }

    #[test]
    fn arch_restrictions() {
        let r = parse_relation("a [amd64 arm64]").unwrap();
        assert!(r.applies_to("amd64") && !r.applies_to("i386"));
        let r = parse_relation("a [!amd64]").unwrap();
        assert!(!r.applies_to("amd64") && r.applies_to("i386"));
        assert!(parse_relation("a").unwrap().applies_to("amd64"));
    }

    #[test]
    fn satisfaction() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        let r = parse_relation("a (>= 2)").unwrap();
        assert!(r.satisfied_by(Some(&v("2"))));
        assert!(!r.satisfied_by(Some(&v("1.9"))));
        assert!(!r.satisfied_by(None), "versioned needs a versioned provide");
        assert!(parse_relation("a").unwrap().satisfied_by(None));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_field("a, (>= 1)"),
            Err(RelationError::NoName(_))
        ));
        assert!(matches!(
            parse_field("a (>= 1"),
            Err(RelationError::Unclosed(_))
        ));
        assert!(matches!(
            parse_field("a (~ 1)"),
            Err(RelationError::BadConstraint(..))
        ));
        assert!(matches!(
            parse_field("a (>= x)"),
            Err(RelationError::BadConstraint(..))
        ));
        assert!(matches!(
            parse_field("a [amd64"),
            Err(RelationError::Unclosed(_))
        ));
    }
}
