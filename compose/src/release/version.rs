//! Automatic version numbers: a treefile's `automatic-version-prefix` (e.g. `<date:%Y%m%d>`)
//! expands to a stem such as `20261122`, and each compose on that stem for the same ref gets the
//! next serial: `20261122.0`, `20261122.1`, ... The serial comes from the versions already on
//! the ref's history, so two composes on one day never share a version. `--version` overrides.
//!
//! The expansion and the numbering are pure; [`ref_history_versions`] reads the repo.

use chrono::format::{Item, StrftimeItems};
pub use chrono::NaiveDate;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    #[error("automatic-version-prefix `{prefix}`: unclosed `<` (write e.g. `<date:%Y%m%d>`)")]
    Unclosed { prefix: String },
    #[error("automatic-version-prefix `{prefix}`: unknown placeholder `<{name}>` (only `<date:FORMAT>` exists)")]
    UnknownPlaceholder { prefix: String, name: String },
    #[error("automatic-version-prefix `{prefix}`: bad date format `{format}` (use strftime codes such as %Y%m%d)")]
    BadDateFormat { prefix: String, format: String },
    #[error("version `{version}` is not usable: {reason}")]
    Invalid {
        version: String,
        reason: &'static str,
    },
}

/// Expands every `<date:FORMAT>` placeholder in `prefix` with `date` (strftime codes).
pub fn expand_prefix(prefix: &str, date: NaiveDate) -> Result<String, VersionError> {
    let mut out = String::new();
    let mut rest = prefix;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('>').ok_or_else(|| VersionError::Unclosed {
            prefix: prefix.to_string(),
        })?;
        let placeholder = &after[..end];
        let format =
            placeholder
                .strip_prefix("date:")
                .ok_or_else(|| VersionError::UnknownPlaceholder {
                    prefix: prefix.to_string(),
                    name: placeholder.to_string(),
                })?;
        let items: Vec<Item> = StrftimeItems::new(format).collect();
        if format.is_empty() || items.iter().any(|i| matches!(i, Item::Error)) {
            return Err(VersionError::BadDateFormat {
                prefix: prefix.to_string(),
                format: format.to_string(),
            });
        }
        out.push_str(&date.format_with_items(items.into_iter()).to_string());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    validate(&out)?;
    Ok(out)
}

/// The next version on `stem`: one more than the highest `stem.N` among `existing`, or
/// `stem.0` when there is none. Versions that do not have the form `stem.N` are ignored.
pub fn next_version(stem: &str, existing: &[String]) -> String {
    let highest = existing
        .iter()
        .filter_map(|v| v.strip_prefix(stem)?.strip_prefix('.')?.parse::<u64>().ok())
        .max();
    match highest {
        Some(n) => format!("{stem}.{}", n + 1),
        None => format!("{stem}.0"),
    }
}

/// The version for a new commit: `explicit` (from `--version`) when given, else the expanded
/// `prefix` numbered after `existing`, else `None` (the commit gets no version).
pub fn choose(
    explicit: Option<&str>,
    prefix: Option<&str>,
    today: NaiveDate,
    existing: &[String],
) -> Result<Option<String>, VersionError> {
    if let Some(v) = explicit {
        validate(v)?;
        return Ok(Some(v.to_string()));
    }
    let Some(prefix) = prefix else {
        return Ok(None);
    };
    let stem = expand_prefix(prefix, today)?;
    Ok(Some(next_version(&stem, existing)))
}

fn validate(version: &str) -> Result<(), VersionError> {
    let reason = if version.is_empty() {
        "it is empty"
    } else if version.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "it contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(VersionError::Invalid {
        version: version.to_string(),
        reason,
    })
}

/// The `version` metadata of every commit on `reference`'s history that is present in the
/// repo, newest first (commits without a version are skipped). An absent ref gives nothing.
pub fn ref_history_versions(
    repo: &ostree::Repo,
    reference: &str,
) -> Result<Vec<String>, ostree::glib::Error> {
    let mut versions = Vec::new();
    let mut next = repo.resolve_rev(reference, true)?.map(|c| c.to_string());
    while let Some(checksum) = next {
        let Some(commit) = super::load_commit_if_present(repo, &checksum)? else {
            break;
        };
        if let Some(v) = super::commit_metadata_string(&commit, keel_common::meta::VERSION) {
            versions.push(v);
        }
        next = ostree::commit_get_parent(&commit).map(|c| c.to_string());
    }
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn prefix_expansion_table() {
        let d = day(2026, 11, 22);
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("<date:%Y%m%d>", Ok("20261122")),
            ("keel-<date:%Y>.<date:%m%d>", Ok("keel-2026.1122")),
            ("42", Ok("42")),
            ("<date:%Y%m%d", Err("unclosed")),
            ("<time:%H>", Err("unknown placeholder")),
            ("<date:%Q>", Err("bad date format")),
            ("<date:>", Err("bad date format")),
            ("a b<date:%Y>", Err("whitespace")),
        ];
        for (prefix, want) in cases {
            let got = expand_prefix(prefix, d);
            match want {
                Ok(v) => assert_eq!(got.as_deref(), Ok(*v), "{prefix}"),
                Err(text) => {
                    let msg = got.unwrap_err().to_string();
                    assert!(msg.contains(text), "{prefix}: {msg}");
                }
            }
        }
    }

    #[test]
    fn serial_counts_up_per_stem() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: &[(&[&str], &str)] = &[
            (&[], "20261122.0"),
            (&["20261121.0", "20261121.3"], "20261122.0"),
            (&["20261122.0"], "20261122.1"),
            (
                &["20261122.1", "20261122.0", "20261122.10", "20261122.9"],
                "20261122.11",
            ),
            // Versions that merely start with the stem, or were set by hand, do not count.
            (
                &["202611220.5", "20261122.x", "20261122", "custom"],
                "20261122.0",
            ),
        ];
        for (existing, want) in cases {
            assert_eq!(
                next_version("20261122", &v(existing)),
                *want,
                "{existing:?}"
            );
        }
    }

    #[test]
    fn explicit_version_wins_and_none_without_prefix() {
        let d = day(2026, 1, 2);
        let existing = vec!["20260102.0".to_string()];
        assert_eq!(
            choose(Some("1.2.3"), Some("<date:%Y%m%d>"), d, &existing),
            Ok(Some("1.2.3".into()))
        );
        assert_eq!(
            choose(None, Some("<date:%Y%m%d>"), d, &existing),
            Ok(Some("20260102.1".into()))
        );
        assert_eq!(choose(None, None, d, &existing), Ok(None));
        assert!(choose(Some(""), None, d, &existing).is_err());
    }
}
