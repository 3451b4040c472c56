//! Debian package versions (`[epoch:]upstream[-revision]`) compared the way dpkg compares
//! them, and the relation operators of dependency fields.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// A parsed version. Equality and ordering follow dpkg (`1.0` == `0:1.0`).
#[derive(Clone, Debug)]
pub struct Version {
    epoch: u32,
    /// The version as written; `upstream` and `revision` are byte ranges of it (one
    /// allocation per version: indices hold hundreds of thousands of them).
    text: String,
    upstream: std::ops::Range<usize>,
    revision: std::ops::Range<usize>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum VersionError {
    #[error("version {0:?}: empty")]
    Empty(String),
    #[error("version {0:?}: the epoch before ':' is not a number")]
    BadEpoch(String),
    #[error("version {0:?}: the upstream version must start with a digit")]
    NoLeadingDigit(String),
    #[error("version {0:?}: contains {1:?}, allowed are letters, digits and . + ~ - :")]
    BadChar(String, char),
    #[error(
        "version {0:?}: the Debian revision after the last '-' is empty or holds {1:?}; it \
         allows only letters, digits and . + ~"
    )]
    BadRevision(String, String),
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.is_empty() {
            return Err(VersionError::Empty(s.to_string()));
        }
        let (epoch, rest_start) = match text.split_once(':') {
            // Digits only: `u32::from_str` would also take a leading `+`.
            Some((e, _)) if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(VersionError::BadEpoch(text.to_string()))
            }
            Some((e, _)) => (
                e.parse::<u32>()
                    .map_err(|_| VersionError::BadEpoch(text.to_string()))?,
                e.len() + 1,
            ),
            None => (0, 0),
        };
        let rest = &text[rest_start..];
        let (upstream, revision) = match rest.rfind('-') {
            Some(dash) => (
                rest_start..rest_start + dash,
                rest_start + dash + 1..text.len(),
            ),
            None => (rest_start..text.len(), text.len()..text.len()),
        };
        if !text[upstream.clone()].starts_with(|c: char| c.is_ascii_digit()) {
            return Err(VersionError::NoLeadingDigit(text.to_string()));
        }
        if let Some(c) = rest
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '-' | ':')))
        {
            return Err(VersionError::BadChar(text.to_string(), c));
        }
        // Debian policy 5.6.12: a revision, when there is a '-', is not empty and has no ':'.
        let revision_text = &text[revision.clone()];
        if rest.contains('-') && (revision_text.is_empty() || revision_text.contains(':')) {
            return Err(VersionError::BadRevision(
                text.to_string(),
                revision_text.to_string(),
            ));
        }
        Ok(Self {
            epoch,
            text: text.to_string(),
            upstream,
            revision,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Version {
    /// The version as written in the index.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn upstream(&self) -> &str {
        &self.text[self.upstream.clone()]
    }

    fn revision(&self) -> &str {
        &self.text[self.revision.clone()]
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(self.upstream(), other.upstream()))
            .then_with(|| compare_part(self.revision(), other.revision()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl std::hash::Hash for Version {
    /// Hashes the normalized parts, so versions that compare equal hash equally in the
    /// common case; `1.0` and `1.00` compare equal but hash differently, which only costs a
    /// duplicate entry in a hash-consed table.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.epoch.hash(state);
        self.upstream().hash(state);
        self.revision().hash(state);
    }
}

/// dpkg's character weight in the non-digit parts: `~` before the end of the string, the end
/// before letters, letters before everything else.
fn weight(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs.
fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ca = a.get(i).copied().filter(|c| !c.is_ascii_digit());
            let cb = b.get(j).copied().filter(|c| !c.is_ascii_digit());
            let (wa, wb) = (weight(ca), weight(cb));
            if wa != wb {
                return wa.cmp(&wb);
            }
            if ca.is_some() {
                i += 1;
            }
            if cb.is_some() {
                j += 1;
            }
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let start_i = i;
        let start_j = j;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (da, db) = (&a[start_i..i], &b[start_j..j]);
        let order = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

/// A relation operator of a dependency field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `<<`
    Less,
    /// `<=` (also the obsolete `<`)
    LessEq,
    /// `=`
    Eq,
    /// `>=` (also the obsolete `>`)
    GreaterEq,
    /// `>>`
    Greater,
}

impl Op {
    /// Whether `version` satisfies `version OP reference`.
    pub fn satisfied_by(self, version: &Version, reference: &Version) -> bool {
        let order = version.cmp(reference);
        match self {
            Op::Less => order == Ordering::Less,
            Op::LessEq => order != Ordering::Greater,
            Op::Eq => order == Ordering::Equal,
            Op::GreaterEq => order != Ordering::Less,
            Op::Greater => order == Ordering::Greater,
        }
    }
}

impl FromStr for Op {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "<<" => Op::Less,
            "<=" | "<" => Op::LessEq,
            "=" => Op::Eq,
            ">=" | ">" => Op::GreaterEq,
            ">>" => Op::Greater,
            other => return Err(format!("unknown relation operator {other:?}")),
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Less => "<<",
            Op::LessEq => "<=",
            Op::Eq => "=",
            Op::GreaterEq => ">=",
            Op::Greater => ">>",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn ordering_table() {
        use Ordering::*;
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "0:1.0", Equal),
            ("1.0", "1.00", Equal),
            ("1.0-1", "1.0-01", Equal),
            ("1.0", "1.1", Less),
            ("1.9", "1.10", Less),
            ("1:0.1", "2.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0+", Less),
            ("1.0+", "1.0.", Less),
            ("1.0-1", "1.0-2", Less),
            ("1.0-1", "1.0", Greater),
            ("1.0-1~bpo1", "1.0-1", Less),
            ("2.36-9+deb12u10", "2.36-9+deb12u9", Greater),
            ("1.2.3-4-5", "1.2.3-4-6", Less),
            ("252.38-1~deb12u1", "252.22-1~deb12u1", Greater),
            ("7.88.1-10+deb12u5", "7.88.1-10", Greater),
            ("0.0.0", "0", Greater),
            ("1a", "1b", Less),
            ("1~a", "1~b", Less),
            ("10", "9", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(v(a).cmp(&v(b)), want, "{a} vs {b}");
            assert_eq!(v(b).cmp(&v(a)), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            "".parse::<Version>().unwrap_err(),
            VersionError::Empty("".into())
        );
        assert!(matches!(
            "x:1".parse::<Version>(),
            Err(VersionError::BadEpoch(_))
        ));
        assert!(matches!(
            "abc".parse::<Version>(),
            Err(VersionError::NoLeadingDigit(_))
        ));
        assert!(matches!(
            "1.0 2".parse::<Version>(),
            Err(VersionError::BadChar(_, ' '))
        ));
        assert_eq!(v("1:2.0-3").to_string(), "1:2.0-3");
        // Debian policy 5.6.12, table-driven: (version, valid).
        let cases = [
            ("1.0", true),
            ("0:1.0-1", true),
            ("2:1.0~rc1+dfsg-3.1~deb12u1", true),
            ("1:2:3-4", true),
            ("1.0-1-2", true),
            ("+1:1.0", false),
            (":1.0", false),
            ("1.0-", false),
            ("1.0-1:2", false),
            ("1.0_1", false),
            ("1.0/../x", false),
            ("a1.0", false),
        ];
        for (text, valid) in cases {
            assert_eq!(text.parse::<Version>().is_ok(), valid, "{text:?}");
        }
    }

    #[test]
    fn relations() {
        let cases = [
            ("1.0", "<<", "1.1", true),
            ("1.1", "<<", "1.1", false),
            ("1.1", "<=", "1.1", true),
            ("1.1", "<", "1.1", true),
            ("1.1", "=", "1.1", true),
            ("1.1", "=", "1.1-1", false),
            ("1.1", ">=", "1.1~", true),
            ("1.1~", ">=", "1.1", false),
            ("1.2", ">>", "1.1", true),
            ("1.1", ">>", "1.1", false),
            ("1.1", ">", "1.1", true),
        ];
        for (have, op, reference, want) in cases {
            let op: Op = op.parse().unwrap();
            assert_eq!(
                op.satisfied_by(&v(have), &v(reference)),
                want,
                "{have} {op} {reference}"
            );
        }
        assert!("=>".parse::<Op>().is_err());
    }
}
