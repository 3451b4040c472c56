//! The text of a `Packages` index (or of `dpkg-deb -f` output) turned into [`Package`]s:
//! identity fields checked against Debian's syntax first ([`names`]), then every field the
//! resolver needs. Big indices are parsed on several cores.

use super::control::{self, Paragraph};
use super::names;
use super::relation::{self, Group, Relation};
use super::universe::Package;
use super::version::Version;
use crate::package::PackageSource;

/// Why a paragraph of an index gave no package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParagraphError {
    /// Its `Package`, `Version` or `Architecture` breaks Debian's syntax: such a value could
    /// name files outside where it belongs, so the whole index is refused.
    BadName {
        field: names::Field,
        value: String,
        reason: String,
    },
    /// Anything else (a missing field, a relation that does not parse): the paragraph is
    /// skipped, as Debian's own tools skip it.
    Skipped(String),
}

/// Why an index could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("{}: {reason}", .field.as_str())]
    BadName {
        field: names::Field,
        value: String,
        reason: String,
    },
}

/// Turns one paragraph of an index (or `dpkg-deb -f` output) into a [`Package`], with its
/// `.deb` at `base_url/Filename`.
pub fn package_from_paragraph(
    p: &Paragraph,
    base_url: &str,
    repo: &str,
    origin: &str,
) -> Result<Package, ParagraphError> {
    let skipped = ParagraphError::Skipped;
    for field in [
        names::Field::Package,
        names::Field::Version,
        names::Field::Architecture,
    ] {
        if let Some(value) = p.get(field.as_str()) {
            field
                .check(value)
                .map_err(|reason| ParagraphError::BadName {
                    field,
                    value: value.to_string(),
                    reason,
                })?;
        }
    }
    let field = |name: &str| p.get(name).ok_or_else(|| format!("no {name}: field"));
    let name = field("Package").map_err(skipped)?.to_string();
    package_fields(p, &name, base_url, repo, origin).map_err(skipped)
}

/// [`package_from_paragraph`] once the identity fields are checked.
fn package_fields(
    p: &Paragraph,
    name: &str,
    base_url: &str,
    repo: &str,
    origin: &str,
) -> Result<Package, String> {
    let field = |name: &str| p.get(name).ok_or_else(|| format!("no {name}: field"));
    let name = name.to_string();
    let in_pkg = |e: String| format!("package {name}: {e}");
    let version: Version = field("Version")
        .map_err(in_pkg)?
        .parse()
        .map_err(|e: super::version::VersionError| in_pkg(e.to_string()))?;
    let relations = |f: &str| -> Result<Vec<Group>, String> {
        relation::parse_field(p.get(f).unwrap_or_default())
            .map_err(|e| format!("package {name}: {f}: {e}"))
    };
    let mut conflicts: Vec<Relation> = relations("Conflicts")?.into_iter().flatten().collect();
    conflicts.extend(relations("Breaks")?.into_iter().flatten());
    let provides = relations("Provides")?
        .into_iter()
        .flatten()
        .map(|r| (r.name, r.constraint.map(|(_, v)| v)))
        .collect();
    let filename = field("Filename").map_err(in_pkg)?;
    Ok(Package {
        arch: field("Architecture").map_err(in_pkg)?.to_string(),
        sha256: field("SHA256").map_err(in_pkg)?.to_ascii_lowercase(),
        size: field("Size")
            .map_err(in_pkg)?
            .parse()
            .map_err(|_| in_pkg("Size is not a number".into()))?,
        source: PackageSource::Url(format!("{}/{}", base_url.trim_end_matches('/'), filename)),
        repo: repo.to_string(),
        origin: origin.to_string(),
        essential: p
            .get("Essential")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
        priority: p.get("Priority").unwrap_or("optional").to_string(),
        pre_depends: relations("Pre-Depends")?,
        depends: relations("Depends")?,
        recommends: relations("Recommends")?,
        conflicts,
        provides,
        version,
        name,
    })
}

/// Parses a whole `Packages` text; paragraphs that do not parse are skipped and their
/// errors returned beside the packages (Debian's own tools skip them too), but a malformed
/// name, version or architecture refuses the text ([`ParagraphError::BadName`]). A big index is
/// cut at paragraph boundaries and parsed on up to [`MAX_THREADS`] cores; the result is the
/// same as parsing it in one go.
pub fn parse_packages(
    text: &str,
    base_url: &str,
    repo: &str,
    origin: &str,
) -> Result<(Vec<Package>, Vec<String>), IndexError> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = cores.min(MAX_THREADS).min(text.len() / MIN_PIECE).max(1);
    parse_packages_in(text, threads, base_url, repo, origin)
}

/// Threads [`parse_packages`] uses at most (bookworm's main index takes ~0.3 s on one).
const MAX_THREADS: usize = 4;

/// Smaller pieces are not worth a thread.
const MIN_PIECE: usize = 1 << 20;

/// [`parse_packages`] with `text` cut into at most `pieces` pieces, parsed concurrently
/// and concatenated in order. A piece that fails to parse as control text makes the whole
/// text be parsed again in one go, so the error's line number counts from its start.
fn parse_packages_in(
    text: &str,
    pieces: usize,
    base_url: &str,
    repo: &str,
    origin: &str,
) -> Result<(Vec<Package>, Vec<String>), IndexError> {
    let pieces = control::split_at_paragraphs(text, pieces);
    if pieces.len() == 1 {
        return parse_piece(text, base_url, repo, origin);
    }
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = pieces
            .iter()
            .map(|piece| scope.spawn(move || parse_piece(piece, base_url, repo, origin)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect()
    });
    let mut packages = Vec::new();
    let mut skipped = Vec::new();
    for result in results {
        let Ok((found, errors)) = result else {
            return parse_piece(text, base_url, repo, origin);
        };
        packages.extend(found);
        skipped.extend(errors);
    }
    Ok((packages, skipped))
}

fn parse_piece(
    text: &str,
    base_url: &str,
    repo: &str,
    origin: &str,
) -> Result<(Vec<Package>, Vec<String>), IndexError> {
    let mut packages = Vec::new();
    let mut skipped = Vec::new();
    let mut bad = None;
    control::for_each(text, |p| {
        match package_from_paragraph(p, base_url, repo, origin) {
            Ok(pkg) => packages.push(pkg),
            Err(ParagraphError::Skipped(e)) => skipped.push(e),
            Err(ParagraphError::BadName {
                field,
                value,
                reason,
            }) => {
                bad.get_or_insert(IndexError::BadName {
                    field,
                    value,
                    reason,
                });
            }
        }
    })?;
    match bad {
        Some(e) => Err(e),
        None => Ok((packages, skipped)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apt::universe::Universe;

    const INDEX: &str = "\
Package: aa
Version: 1.0
Architecture: amd64
Priority: required
Essential: yes
Pre-Depends: bb (>= 2)
Depends: cc | dd, ee:any
Breaks: ff (<< 3)
Conflicts: gg
Provides: virt (= 1.0), other
Filename: pool/main/a/aa_1.0_amd64.deb
Size: 10
SHA256: AB

Package: aa
Version: 1.0
Architecture: amd64
Filename: pool/dup.deb
Size: 1
SHA256: cd

Package: i386-only
Version: 1
Architecture: i386
Filename: pool/x.deb
Size: 1
SHA256: ef

Package: broken
Version: 1
Architecture: all
Filename: pool/y.deb
Size: many
SHA256: 00
";

    #[test]
    fn reads_an_index_into_a_universe() {
        let (packages, skipped) =
            parse_packages(INDEX, "http://m/debian/", "debian", "debian (s main)").unwrap();
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("broken"), "{skipped:?}");
        let u = Universe::new("amd64", packages);
        assert_eq!(u.packages().len(), 1, "duplicate and foreign arch dropped");
        let a = u.package(u.by_name("aa")[0]);
        assert_eq!(
            a.source,
            PackageSource::Url("http://m/debian/pool/main/a/aa_1.0_amd64.deb".into())
        );
        assert_eq!(a.sha256, "ab");
        assert!(a.essential);
        assert_eq!(a.priority, "required");
        assert_eq!(a.pre_depends.len(), 1);
        assert_eq!(a.depends.len(), 2);
        assert_eq!(a.depends[0].len(), 2);
        assert_eq!(a.conflicts.len(), 2);
        assert_eq!(u.providers("virt"), &[0]);
        assert_eq!(u.providers("other"), &[0]);
        assert_eq!(
            a.provides[0].1.as_ref().map(|v| v.to_string()),
            Some("1.0".into())
        );
        assert_eq!(u.origins(), ["debian (s main)"]);
        assert!(u.by_name("nope").is_empty());
    }

    #[test]
    fn a_malformed_name_version_or_architecture_refuses_the_index() {
        let good = "Package: ok\nVersion: 1\nArchitecture: all\nFilename: pool/ok.deb\nSize: 1\n\
                    SHA256: 00\n\n";
        let cases = [
            (
                "Package: ../../x\nVersion: 1\nArchitecture: all\n",
                "Package",
                "../../x",
            ),
            (
                "Package: evil\nVersion: 1/../2\nArchitecture: all\n",
                "Version",
                "1/../2",
            ),
            (
                "Package: evil\nVersion: 1\nArchitecture: ../amd64\n",
                "Architecture",
                "../amd64",
            ),
            (
                "Package: Evil\nVersion: 1\nArchitecture: all\n",
                "Package",
                "Evil",
            ),
        ];
        for (paragraph, field, value) in cases {
            let text = format!("{good}{paragraph}Filename: pool/e.deb\nSize: 1\nSHA256: 00\n");
            for pieces in [1, 2] {
                let e =
                    parse_packages_in(&text, pieces, "http://127.0.0.1/", "r", "o").unwrap_err();
                assert!(
                    matches!(&e, IndexError::BadName { field: f, value: v, .. }
                        if f.as_str() == field && v == value),
                    "{paragraph:?}: {e}"
                );
            }
        }
    }

    /// An index whose paragraphs end in every way `control::parse` allows, with packages
    /// that fail to parse among them.
    fn awkward_index(count: usize) -> String {
        let mut text = String::new();
        let ends = [
            "\n\n",
            "\n  \n",
            "\n\t\n\n",
            "\r\n\r\n",
            "\n \n# comment\n\n",
        ];
        for i in 0..count {
            let size = if i % 7 == 3 {
                "bad size".to_string()
            } else {
                i.to_string()
            };
            text.push_str(&format!(
                "Package: p{i}\nVersion: 1.0\nArchitecture: amd64\n\
                 Depends: p{} (>= 1) | other, libc6\nDescription: p{i}\n long\n .\n text\n\
                 Filename: pool/p{i}.deb\nSize: {size}\nSHA256: {i:064x}",
                i + 1
            ));
            if i + 1 < count {
                text.push_str(ends[i % ends.len()]);
            }
        }
        text
    }

    #[test]
    fn parallel_parse_equals_sequential_parse() {
        let text = awkward_index(60);
        assert!(!text.ends_with('\n'), "the last paragraph has no newline");
        let (packages, skipped) = parse_piece(&text, "http://127.0.0.1/", "r", "o").unwrap();
        assert_eq!(packages.len() + skipped.len(), 60);
        assert_eq!(skipped.len(), 9);
        for pieces in [2, 3, 4, 7, 60, 100] {
            let (got, got_skipped) =
                parse_packages_in(&text, pieces, "http://127.0.0.1/", "r", "o").unwrap();
            assert_eq!(
                format!("{got:?}"),
                format!("{packages:?}"),
                "{pieces} pieces"
            );
            assert_eq!(got_skipped, skipped, "{pieces} pieces");
        }
    }

    #[test]
    fn parallel_parse_reports_control_errors_with_whole_text_line_numbers() {
        let mut text = awkward_index(20);
        text.push_str("\n\n continuation without a field\n");
        let want = parse_piece(&text, "", "r", "o").unwrap_err();
        assert!(
            matches!(want, IndexError::Control(control::ControlError::OrphanContinuation { line, .. }) if line > 100),
            "{want}"
        );
        for pieces in [2, 4, 8] {
            assert_eq!(
                parse_packages_in(&text, pieces, "", "r", "o").unwrap_err(),
                want
            );
        }
    }
}
