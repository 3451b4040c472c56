//! What can go wrong loading a treefile, and turning toml's errors into ones that name the
//! file, the line and the key.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in which file: displays as `file:line`, or `file` when no line is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: Option<usize>,
}

impl Location {
    pub fn new(file: &Path, line: Option<usize>) -> Self {
        Location {
            file: file.to_path_buf(),
            line,
        }
    }

    /// The line holding byte `offset` of `source`.
    pub fn at_offset(file: &Path, source: &str, offset: usize) -> Self {
        Location::new(file, Some(line_of(source, offset)))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// A treefile that cannot be used, and why. Every variant says where.
#[derive(Debug, thiserror::Error)]
pub enum TreefileError {
    /// The file (top-level, included, an add-files source, a postprocess file) cannot be read.
    #[error("{}: cannot read it: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML.
    #[error("{at}: not valid TOML: {message}")]
    Syntax { at: Location, message: String },
    /// A key the treefile format does not have (often a typo).
    #[error(
        "{at}: unknown key `{key}`{}{}",
        in_table(table),
        did_you_mean(suggestion)
    )]
    UnknownKey {
        at: Location,
        /// The table holding the key, e.g. `initramfs` or `repos`; `None` at the top level.
        table: Option<String>,
        key: String,
        suggestion: Option<String>,
    },
    /// A value of the wrong type, e.g. a string where a list is expected.
    #[error("{at}: wrong type for `{key}`: {message}")]
    WrongType {
        at: Location,
        key: String,
        message: String,
    },
    /// A required key is absent (after includes were merged, for top-level keys).
    #[error("{at}: missing key `{key}`: {hint}")]
    Missing {
        at: Location,
        key: String,
        hint: String,
    },
    /// A value with the right type that is still unusable (bad ref, repo shape, path, mode...).
    #[error("{at}: `{key}`: {reason}")]
    Invalid {
        at: Location,
        key: String,
        reason: String,
    },
    /// Files that include each other; `chain` starts and ends with the same file.
    #[error("include cycle: {}; remove one of these includes", render_chain(chain))]
    IncludeCycle { chain: Vec<PathBuf> },
}

fn in_table(table: &Option<String>) -> String {
    table
        .as_ref()
        .map(|t| format!(" in [{t}]"))
        .unwrap_or_default()
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

fn render_chain(chain: &[PathBuf]) -> String {
    chain
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// 1-based line number of byte `offset` in `source`.
pub fn line_of(source: &str, offset: usize) -> usize {
    let end = offset.min(source.len());
    source.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Turns a toml/serde error on `file` (whose text is `source`) into a [`TreefileError`].
pub fn from_toml(file: &Path, source: &str, err: &toml::de::Error) -> TreefileError {
    let offset = err.span().map(|s| s.start);
    let at = Location::new(file, offset.map(|o| line_of(source, o)));
    let message = err.message().trim().replace('\n', "; ");
    let (table, key_here) = offset
        .map(|o| key_context(source, o))
        .unwrap_or((None, None));
    let dotted = |key: &str| match &table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    };

    if let Some(rest) = message.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or_default().to_string();
        let expected = rest.split_once("expected").map(|(_, e)| e).unwrap_or("");
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let suggestion = closest(&key, &candidates).map(str::to_string);
        return TreefileError::UnknownKey {
            at,
            table,
            key,
            suggestion,
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or_default();
        return TreefileError::Missing {
            at,
            key: dotted(key),
            hint: "add it to this table (see docs/treefile.md)".into(),
        };
    }
    let type_error = ["invalid type", "invalid value", "invalid length"]
        .iter()
        .any(|p| message.starts_with(p));
    if type_error {
        let key = key_here.map(|k| dotted(&k)).or(table).unwrap_or_default();
        let message = in_toml_words(&message);
        return TreefileError::WrongType { at, key, message };
    }
    TreefileError::Syntax { at, message }
}

/// serde's type names in the words of TOML: a sequence is a list, a map or struct a table.
fn in_toml_words(message: &str) -> String {
    let message = match message.find("expected struct ") {
        Some(index) => format!("{}expected a table", &message[..index]),
        None => message.to_string(),
    };
    [
        ("invalid type: sequence", "invalid type: list"),
        ("invalid type: map", "invalid type: table"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a table"),
    ]
    .iter()
    .fold(message, |m, (from, to)| m.replace(from, to))
}

/// The table header and the key governing byte `offset`, found by scanning back from its line:
/// the nearest `key = ...` line (a value may span lines, like a list) and the nearest `[table]`.
fn key_context(source: &str, offset: usize) -> (Option<String>, Option<String>) {
    let offset = offset.min(source.len());
    let line_end = source[offset..]
        .find('\n')
        .map_or(source.len(), |i| offset + i);
    let mut key = None;
    for line in source[..line_end].lines().rev() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            let name = line.trim_start_matches('[');
            let name = name.split(']').next().unwrap_or_default().trim();
            return (Some(name.to_string()), key);
        }
        if key.is_none() {
            key = key_of_line(line);
        }
    }
    (None, key)
}

/// `Some(key)` when the line assigns a value: `key = ...` or `"key" = ...`.
fn key_of_line(line: &str) -> Option<String> {
    let (key, rest) = if let Some(quoted) = line.strip_prefix('"') {
        let close = quoted.find('"')?;
        (&quoted[..close], &quoted[close + 1..])
    } else {
        let len = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
            .unwrap_or(line.len());
        (&line[..len], &line[len..])
    };
    let rest = rest.trim_start();
    (!key.is_empty() && rest.starts_with('=') && !rest.starts_with("==")).then(|| key.to_string())
}

/// The candidate nearest to `key` by edit distance, if it is near enough to be a typo.
pub fn closest<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(key, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = ["packages", "exclude-packages", "ref", "repos", "units"];
        let cases = [
            ("pakages", Some("packages")),
            ("packges", Some("packages")),
            ("exclude-package", Some("exclude-packages")),
            ("rf", Some("ref")),
            ("repo", Some("repos")),
            ("zzzzzz", None),
            ("kernel", None),
        ];
        for (typo, expected) in cases {
            assert_eq!(closest(typo, &keys), expected, "{typo}");
        }
    }

    #[test]
    fn type_messages_use_toml_words() {
        let cases = [
            (
                "invalid type: map, expected a sequence",
                "invalid type: table, expected a list",
            ),
            (
                "invalid type: sequence, expected struct RawPasswd",
                "invalid type: list, expected a table",
            ),
            (
                "invalid type: string \"map\", expected a boolean",
                "invalid type: string \"map\", expected a boolean",
            ),
        ];
        for (serde, toml) in cases {
            assert_eq!(in_toml_words(serde), toml);
        }
    }

    #[test]
    fn keys_of_lines() {
        let cases = [
            ("packages = [", Some("packages")),
            ("ref=\"x\"", Some("ref")),
            ("\"quoted-key\" = 1", Some("quoted-key")),
            ("\"libc6=2.36\",", None),
            ("\"podman\",", None),
            ("]", None),
            ("a == b", None),
        ];
        for (line, expected) in cases {
            assert_eq!(key_of_line(line).as_deref(), expected, "{line}");
        }
    }

    #[test]
    fn context_finds_table_and_key_across_lines() {
        let source = "ref = \"a\"\n[initramfs]\n# modules = 1\nmodules = [\n  \"base\",\n  7,\n]\n";
        let offset = source.find('7').unwrap();
        assert_eq!(
            key_context(source, offset),
            (Some("initramfs".into()), Some("modules".into()))
        );
        assert_eq!(key_context(source, 0), (None, Some("ref".into())));
        assert_eq!(line_of(source, offset), 6);
    }

    #[test]
    fn locations_display() {
        let with_line = Location::new(Path::new("treefiles/x.toml"), Some(12));
        assert_eq!(with_line.to_string(), "treefiles/x.toml:12");
        let without = Location::new(Path::new("x.toml"), None);
        assert_eq!(without.to_string(), "x.toml");
    }
}
