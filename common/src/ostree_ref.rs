//! ostree refs as a type that is valid once parsed: an [`OstreeRef`] went through
//! [`OstreeRef::from_str`], so it is a ref libostree accepts and nothing downstream checks it
//! again. clap and serde parse straight into it.

use std::fmt;
use std::str::FromStr;

/// A ref without a `remote:` prefix, e.g. `keel/bookworm/x86_64/stable`: fragments of
/// `[A-Za-z0-9_][-._A-Za-z0-9]*` joined by `/` (ostree's `OSTREE_REF_REGEXP`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OstreeRef(String);

/// Why a string is not a ref; the message says what a valid one looks like.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("a ref must not be empty; write e.g. \"keel/bookworm/x86_64/host\"")]
    EmptyRef,
    #[error(
        "`{0}` is not a valid ostree ref: it names no remote (no `remote:` prefix), and each \
         `/`-separated part must start with a letter, digit or `_` and hold only letters, \
         digits, `-`, `.` and `_`"
    )]
    InvalidRef(String),
}

impl OstreeRef {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `remote:ref`, the refspec of this ref on `remote`.
    pub fn on_remote(&self, remote: &str) -> String {
        format!("{remote}:{}", self.0)
    }
}

impl FromStr for OstreeRef {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ParseError::EmptyRef);
        }
        let fragment_ok = |fragment: &str| {
            let mut chars = fragment.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        };
        if !s.split('/').all(fragment_ok) {
            return Err(ParseError::InvalidRef(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }
}

impl fmt::Display for OstreeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for OstreeRef {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for OstreeRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for OstreeRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_follow_ostrees_grammar() {
        for (input, ok) in [
            ("keel/bookworm/x86_64/stable", true),
            ("a", true),
            ("_x/1.2-3", true),
            ("", false),
            ("keel:os/stable", false),
            ("/leading", false),
            ("trailing/", false),
            ("a//b", false),
            ("-dash", false),
            ("a/.hidden", false),
            ("sp ace", false),
        ] {
            assert_eq!(input.parse::<OstreeRef>().is_ok(), ok, "{input:?}");
        }
        assert_eq!(
            "a/b".parse::<OstreeRef>().map(|r| r.on_remote("keel")),
            Ok("keel:a/b".to_string())
        );
    }

    #[test]
    fn a_bad_ref_says_what_a_good_one_looks_like() {
        let err = "keel:os".parse::<OstreeRef>().unwrap_err().to_string();
        assert!(err.contains("`keel:os` is not a valid ostree ref"), "{err}");
        assert!(err.contains("no `remote:` prefix"), "{err}");
        let empty = "".parse::<OstreeRef>().unwrap_err().to_string();
        assert!(empty.contains("must not be empty"), "{empty}");
    }

    #[test]
    fn refs_round_trip_through_serde_and_refuse_bad_ones() {
        let r: OstreeRef = serde_json::from_str("\"os/stable\"").unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"os/stable\"");
        assert!(serde_json::from_str::<OstreeRef>("\"os:stable\"").is_err());
    }
}
