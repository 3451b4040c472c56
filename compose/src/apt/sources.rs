//! Where packages come from: Debian repositories described like apt's deb822 `*.sources`
//! stanzas, and local directories of trusted `.deb` files.

use super::control;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// One signed Debian repository (one URI of a `*.sources` stanza).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoSpec {
    /// A short name for messages, lockfiles and commit metadata (the treefile's name, or the
    /// `*.sources` file's stem).
    pub name: String,
    /// Base URL, e.g. `http://mirror.example/debian` (no trailing slash needed).
    pub url: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    /// Architectures to read; empty means the requested architecture (plus `all`).
    pub architectures: Vec<String>,
    /// OpenPGP keyring (binary `.gpg` or armored `.asc`) that must have signed `InRelease`.
    pub keyring: PathBuf,
}

/// A directory of `.deb` files that the user trusts as they are (no signature). A package
/// here competes with archive packages by plain Debian rules: the highest version wins, so a
/// local package with the same name replaces the archive's only if its version is higher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRepo {
    pub name: String,
    pub path: PathBuf,
}

#[derive(Debug, Error)]
pub enum SourcesError {
    #[error("reading apt sources directory {}: {source}", .dir.display())]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {}: {source}", .file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", .file.display())]
    Syntax {
        file: PathBuf,
        source: control::ControlError,
    },
    #[error("{}: stanza {stanza} has no {field}: field; add it (e.g. {example})", .file.display())]
    Missing {
        file: PathBuf,
        stanza: usize,
        field: &'static str,
        example: &'static str,
    },
    #[error(
        "{}: stanza {stanza}: Signed-By holds an inline key; Keel needs a keyring file: save \
         the key to a file and point Signed-By at its path",
        .file.display()
    )]
    InlineKey { file: PathBuf, stanza: usize },
}

/// Reads every enabled `deb` stanza of the `*.sources` files in `dir` (apt's
/// `/etc/apt/sources.list.d`), in file-name order. One `RepoSpec` per URI, named after the
/// file's stem.
pub fn machine_sources(dir: &Path) -> Result<Vec<RepoSpec>, SourcesError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SourcesError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sources"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| SourcesError::Read {
            file: file.clone(),
            source,
        })?;
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.extend(parse_sources(&text, &name, &file)?);
    }
    Ok(out)
}

/// Parses the text of one `*.sources` file; `file` is only used in errors.
pub fn parse_sources(text: &str, name: &str, file: &Path) -> Result<Vec<RepoSpec>, SourcesError> {
    let paragraphs = control::parse(text).map_err(|source| SourcesError::Syntax {
        file: file.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (index, p) in paragraphs.iter().enumerate() {
        let stanza = index + 1;
        let words = |field: &str| -> Vec<String> {
            p.get(field)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        if !words("Types").iter().any(|t| t == "deb") {
            continue;
        }
        if p.get("Enabled")
            .is_some_and(|v| v.eq_ignore_ascii_case("no"))
        {
            continue;
        }
        let missing = |field, example| SourcesError::Missing {
            file: file.to_path_buf(),
            stanza,
            field,
            example,
        };
        let uris = words("URIs");
        if uris.is_empty() {
            return Err(missing("URIs", "URIs: http://mirror.example/debian"));
        }
        let suites = words("Suites");
        if suites.is_empty() {
            return Err(missing("Suites", "Suites: bookworm"));
        }
        let components = words("Components");
        if components.is_empty() {
            return Err(missing("Components", "Components: main"));
        }
        let signed_by = p.get("Signed-By").map(str::trim).unwrap_or_default();
        if signed_by.is_empty() {
            return Err(missing(
                "Signed-By",
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg",
            ));
        }
        if signed_by.contains('\n') || signed_by.contains("BEGIN PGP") {
            return Err(SourcesError::InlineKey {
                file: file.to_path_buf(),
                stanza,
            });
        }
        for uri in uris {
            out.push(RepoSpec {
                name: name.to_string(),
                url: uri.trim_end_matches('/').to_string(),
                suites: suites.clone(),
                components: components.clone(),
                architectures: words("Architectures"),
                keyring: PathBuf::from(signed_by),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stanzas_skipping_disabled_and_source_only() {
        let text = "\
Types: deb
# a comment
URIs: http://a.example/debian http://b.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /k.gpg

Types: deb-src
URIs: http://a.example/debian
Suites: bookworm
Components: main
Signed-By: /k.gpg

Types: deb deb-src
URIs: http://c.example/sec
Suites: bookworm-security
Components: main
Architectures: amd64
Signed-By: /s.asc
Enabled: no

Types: deb
URIs: http://d.example/x
Suites: stable
Components: main
Architectures: arm64
Signed-By: /d.asc
";
        let specs = parse_sources(text, "debian", Path::new("debian.sources")).unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[0].url, "http://a.example/debian");
        assert_eq!(specs[1].url, "http://b.example/debian");
        assert_eq!(specs[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(specs[0].components, ["main", "contrib"]);
        assert!(specs[0].architectures.is_empty());
        assert_eq!(specs[2].architectures, ["arm64"]);
        assert_eq!(specs[2].keyring, PathBuf::from("/d.asc"));
        assert_eq!(specs[2].name, "debian");
    }

    #[test]
    fn missing_fields_and_inline_keys_are_errors() {
        let e = parse_sources(
            "Types: deb\nURIs: http://x\nSuites: s\nComponents: main\n",
            "x",
            Path::new("x.sources"),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("x.sources: stanza 1 has no Signed-By"),
            "{e}"
        );
        let inline = "Types: deb\nURIs: http://x\nSuites: s\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n abc\n";
        let e = parse_sources(inline, "x", Path::new("x.sources")).unwrap_err();
        assert!(
            matches!(e, SourcesError::InlineKey { stanza: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn machine_sources_reads_only_sources_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("b.sources"),
            "Types: deb\nURIs: http://b\nSuites: s\nComponents: main\nSigned-By: /k\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("a.list"), "deb http://a s main\n").unwrap();
        let specs = machine_sources(dir.path()).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].name, "b");
        assert!(machine_sources(&dir.path().join("nope")).is_err());
    }
}
