//! deb822 / control-file paragraphs: `Key: value` fields, continuation lines that start with a
//! space or tab, paragraphs separated by blank lines, `#` comment lines (as in `*.sources`).
//! Used for `Packages`, `InRelease` bodies, `dpkg-deb -f` output and `*.sources` files.

use std::borrow::Cow;
use thiserror::Error;

/// One paragraph: fields in file order, borrowed from the parsed text where a value is one
/// line (most are; an index has millions of fields). Field names compare case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Paragraph<'a> {
    fields: Vec<(&'a str, Cow<'a, str>)>,
}

impl Paragraph<'_> {
    /// The value of `name` (case-insensitive). Multi-line values keep their lines joined by
    /// `\n`, with the leading space of each continuation line removed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (*k, v.as_ref()))
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("line {line}: continuation line before any field: {text:?}")]
    OrphanContinuation { line: usize, text: String },
    #[error("line {line}: expected `Field: value`, found {text:?}")]
    NoColon { line: usize, text: String },
}

/// Parses every paragraph of `text`. Empty paragraphs (several blank lines) are skipped.
pub fn parse(text: &str) -> Result<Vec<Paragraph<'_>>, ControlError> {
    let mut out = Vec::new();
    for_each(text, |paragraph| out.push(std::mem::take(paragraph)))?;
    Ok(out)
}

/// Hands every paragraph of `text` to `each` in order, as [`parse`] would return them, but
/// reuses one paragraph's storage: an index of 63k paragraphs is never held whole. A syntax
/// error stops the walk (after the paragraphs before it were handed over).
pub fn for_each<'a>(
    text: &'a str,
    mut each: impl FnMut(&mut Paragraph<'a>),
) -> Result<(), ControlError> {
    let mut current = Paragraph::default();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            if !current.is_empty() {
                each(&mut current);
                current.fields.clear();
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some((_, value)) = current.fields.last_mut() else {
                return Err(ControlError::OrphanContinuation {
                    line: index + 1,
                    text: line.to_string(),
                });
            };
            let rest = &line[1..];
            let value = value.to_mut();
            value.push('\n');
            // A lone "." stands for an empty line inside a multi-line value.
            value.push_str(if rest.trim() == "." { "" } else { rest });
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(ControlError::NoColon {
                line: index + 1,
                text: line.to_string(),
            });
        };
        current
            .fields
            .push((key.trim(), Cow::Borrowed(value.trim())));
    }
    if !current.is_empty() {
        each(&mut current);
    }
    Ok(())
}

/// Cuts `text` into at most `parts` pieces of about equal size, each but the last ending
/// right after a blank line. Parsing the pieces one after another gives the same
/// paragraphs as parsing `text` (after a blank line no paragraph is open), so they can be
/// parsed in parallel; only error line numbers count from the start of each piece.
pub fn split_at_paragraphs(text: &str, parts: usize) -> Vec<&str> {
    let mut out = Vec::with_capacity(parts.max(1));
    let mut start = 0;
    for k in 1..parts {
        let target = (text.len() / parts * k).max(start);
        match end_of_blank_line_from(text, target) {
            Some(end) if end < text.len() => {
                out.push(&text[start..end]);
                start = end;
            }
            _ => break,
        }
    }
    out.push(&text[start..]);
    out
}

/// The offset just past the newline of the first blank line (as [`parse`] sees one) that
/// starts at or after byte `from`; `None` if there is none.
fn end_of_blank_line_from(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let newline_from = |at: usize| {
        bytes
            .get(at..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map(|i| at + i)
    };
    let mut line_start = match from {
        0 => 0,
        _ => newline_from(from - 1)? + 1,
    };
    loop {
        let line_end = newline_from(line_start)?;
        if text[line_start..line_end].trim().is_empty() {
            return Some(line_end + 1);
        }
        line_start = line_end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        type Fields<'a> = Vec<Vec<(&'a str, &'a str)>>;
        let cases: &[(&str, Fields)] = &[
            ("", vec![]),
            ("A: 1\n", vec![vec![("A", "1")]]),
            (
                "A: 1\nB:2\n\n\nC: 3",
                vec![vec![("A", "1"), ("B", "2")], vec![("C", "3")]],
            ),
            (
                "# comment\nTypes: deb\n# inner\nURIs: x\n",
                vec![vec![("Types", "deb"), ("URIs", "x")]],
            ),
            (
                "SHA256:\n abc 1 main/x\n def 2 main/y\n",
                vec![vec![("SHA256", "\nabc 1 main/x\ndef 2 main/y")]],
            ),
            (
                "D: short\n long\n .\n more\n",
                vec![vec![("D", "short\nlong\n\nmore")]],
            ),
            (
                "A: 1\r\n\r\nB: 2\r\n",
                vec![vec![("A", "1")], vec![("B", "2")]],
            ),
            ("K: a: b\n", vec![vec![("K", "a: b")]]),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap();
            let got: Vec<Vec<(&str, &str)>> = got.iter().map(|p| p.fields().collect()).collect();
            assert_eq!(&got, want, "{text:?}");
        }
    }

    #[test]
    fn lookups_ignore_case() {
        let p = parse("Package: a\nPre-Depends: b\n").unwrap().remove(0);
        assert_eq!(p.get("package"), Some("a"));
        assert_eq!(p.get("PRE-DEPENDS"), Some("b"));
        assert_eq!(p.get("Depends"), None);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            parse(" orphan\n"),
            Err(ControlError::OrphanContinuation {
                line: 1,
                text: " orphan".into()
            })
        );
        assert_eq!(
            parse("A: 1\nnocolon\n"),
            Err(ControlError::NoColon {
                line: 2,
                text: "nocolon".into()
            })
        );
    }

    /// Paragraph ends of every kind: blank lines with spaces, tabs and CR, runs of blank
    /// lines, comments, continuation lines with " .", no newline at the very end.
    const AWKWARD: &str = "A: 1\nB: x\n y\n .\n z\n\nC: 2\n  \nD: 3\r\n\r\n\t\n\n\
        # c\nE: 4\n#x\nF: 5\n \t \nG: é\n\nH: last";

    #[test]
    fn split_pieces_parse_like_the_whole_text_for_every_cut() {
        let whole = parse(AWKWARD).unwrap();
        for parts in 1..=12 {
            let pieces = split_at_paragraphs(AWKWARD, parts);
            assert!(pieces.len() <= parts.max(1));
            assert!(parts < 4 || pieces.len() >= 3, "{parts} parts: {pieces:?}");
            assert_eq!(pieces.concat(), AWKWARD);
            let joined: Vec<Paragraph> = pieces.iter().flat_map(|p| parse(p).unwrap()).collect();
            assert_eq!(joined, whole, "{parts} parts: {pieces:?}");
        }
        for from in 0..=AWKWARD.len() {
            let Some(end) = end_of_blank_line_from(AWKWARD, from) else {
                continue;
            };
            let (head, tail) = AWKWARD.split_at(end);
            let last_line = head[..end - 1].rsplit('\n').next().unwrap_or_default();
            assert!(last_line.trim().is_empty(), "cut after {last_line:?}");
            let mut joined = parse(head).unwrap();
            joined.extend(parse(tail).unwrap());
            assert_eq!(joined, whole, "cut at {end} (from {from})");
        }
    }

    #[test]
    fn split_keeps_a_text_without_blank_lines_whole() {
        assert_eq!(split_at_paragraphs("A: 1\nB: 2\n", 4), ["A: 1\nB: 2\n"]);
        assert_eq!(split_at_paragraphs("", 3), [""]);
        assert_eq!(split_at_paragraphs("A: 1\n\nB: 2", 0), ["A: 1\n\nB: 2"]);
        assert_eq!(
            split_at_paragraphs("A: 1\n\nB: 2\n", 2),
            ["A: 1\n\n", "B: 2\n"]
        );
    }

    #[test]
    fn for_each_hands_over_what_parse_returns() {
        let mut seen = Vec::new();
        for_each(AWKWARD, |p| seen.push(p.clone())).unwrap();
        assert_eq!(seen, parse(AWKWARD).unwrap());
        assert_eq!(seen.len(), 6);
        let mut before_error = 0;
        let e = for_each("A: 1\n\nB: 2\nbad\n", |_| before_error += 1).unwrap_err();
        assert!(matches!(e, ControlError::NoColon { line: 4, .. }), "{e}");
        assert_eq!(before_error, 1);
    }
}
