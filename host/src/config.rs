//! The agent's configuration: TOML drop-ins read from `usr/lib/keel` (the OS's defaults),
//! `etc/keel` (the admin's) and `run/keel` (runtime, gone at the next boot), in that order as
//! Zincati reads its own, each as `config.toml` then `config.d/*.toml` in lexical order. Later
//! files win key by key. Parsing is per fragment,
//! merging is a pure fold, validation comes last.
//!
//! ```toml
//! [remote]
//! name = "keel"                       # the libostree remote, default "keel"
//! url = "http://updates.example/repo"
//! ref = "keel/bookworm/x86_64/stable"
//! ```

use anyhow::{Context, Result};
use keel_common::ostree_ref::{self, OstreeRef};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Directories searched for drop-ins, relative to the config root, lowest priority first.
pub const DROPIN_DIRS: [&str; 3] = ["usr/lib/keel", "etc/keel", "run/keel"];
/// The default name of the libostree remote.
pub const DEFAULT_REMOTE_NAME: &str = "keel";
/// The drop-in `keel remote add` writes, relative to the config root.
pub const REMOTE_DROPIN: &str = "etc/keel/config.d/50-remote.toml";

/// The merged, validated configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Config {
    /// The remote updates come from; `None` until `keel remote add`.
    pub remote: Option<RemoteConfig>,
    /// The drop-in files that were read, in merge order.
    pub sources: Vec<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteConfig {
    /// The libostree remote's name.
    pub name: String,
    pub url: String,
    /// The ref this host follows.
    #[serde(rename = "ref")]
    pub reference: OstreeRef,
}

impl RemoteConfig {
    /// `remote:ref`, the origin refspec of deployments made from this remote.
    pub fn refspec(&self) -> String {
        self.reference.on_remote(&self.name)
    }
}

/// One drop-in file as written; every key optional.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fragment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteFragment>,
    /// The update agent's section, read and validated by `keel-agent`; kept opaque here.
    #[serde(default, skip_serializing)]
    pub updates: Option<toml::Table>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteFragment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("[remote] has no `{0}`: set it in /etc/keel/config.d/*.toml or run `keel remote add`")]
    MissingRemoteKey(&'static str),
    #[error("[remote] `{key}` is empty")]
    Empty { key: &'static str },
    #[error("[remote] `ref`: {0}")]
    InvalidRef(ostree_ref::ParseError),
}

/// Loads and merges the drop-ins under `root` (`/` on a booted host).
pub fn load(root: &Path) -> Result<Config> {
    let files = dropin_files(root)?;
    let mut fragments = Vec::with_capacity(files.len());
    for file in &files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let fragment: Fragment = toml::from_str(&text)
            .with_context(|| format!("parsing {}: fix or remove this file", file.display()))?;
        fragments.push(fragment);
    }
    let remote = validate(merge(fragments))
        .with_context(|| format!("configuration in {}", describe(&files)))?;
    Ok(Config {
        remote,
        sources: files,
    })
}

fn describe(files: &[PathBuf]) -> String {
    if files.is_empty() {
        return "(no files)".into();
    }
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The drop-in files under `root` in merge order: each directory's `config.toml`, then the
/// `config.d/*.toml` files merged by name across the directories ([`crate::dropins`]: a later
/// directory shadows a same-named file, a symlink to /dev/null masks it).
pub fn dropin_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for dir in DROPIN_DIRS {
        let main = root.join(dir).join("config.toml");
        if main.is_file() {
            files.push(main);
        }
    }
    let dirs: Vec<PathBuf> = DROPIN_DIRS
        .iter()
        .map(|d| root.join(d).join("config.d"))
        .collect();
    files.extend(crate::dropins::scan(&dirs)?);
    Ok(files)
}

/// Folds fragments in order; a key set in a later fragment replaces the earlier value.
pub fn merge(fragments: impl IntoIterator<Item = Fragment>) -> Fragment {
    fragments
        .into_iter()
        .fold(Fragment::default(), |acc, next| Fragment {
            remote: match (acc.remote, next.remote) {
                (None, r) | (r, None) => r,
                (Some(a), Some(b)) => Some(RemoteFragment {
                    name: b.name.or(a.name),
                    url: b.url.or(a.url),
                    reference: b.reference.or(a.reference),
                }),
            },
            updates: None,
        })
}

/// Turns the merged fragment into settings; a `[remote]` needs `url` and `ref`.
pub fn validate(merged: Fragment) -> Result<Option<RemoteConfig>, ConfigError> {
    let Some(remote) = merged.remote else {
        return Ok(None);
    };
    let url = remote.url.ok_or(ConfigError::MissingRemoteKey("url"))?;
    let reference = remote
        .reference
        .ok_or(ConfigError::MissingRemoteKey("ref"))?;
    let name = remote.name.unwrap_or_else(|| DEFAULT_REMOTE_NAME.into());
    for (key, value) in [("url", &url), ("ref", &reference), ("name", &name)] {
        if value.trim().is_empty() {
            return Err(ConfigError::Empty { key });
        }
    }
    let reference = reference.parse().map_err(ConfigError::InvalidRef)?;
    Ok(Some(RemoteConfig {
        name,
        url,
        reference,
    }))
}

/// The drop-in text `keel remote add` writes.
pub fn remote_dropin(remote: &RemoteConfig) -> Result<String> {
    let fragment = Fragment {
        remote: Some(RemoteFragment {
            name: Some(remote.name.clone()),
            url: Some(remote.url.clone()),
            reference: Some(remote.reference.to_string()),
        }),
        updates: None,
    };
    Ok(format!(
        "# Written by `keel remote add`; edit or override in a later drop-in.\n{}",
        toml::to_string(&fragment)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(name: Option<&str>, url: Option<&str>, reference: Option<&str>) -> Fragment {
        Fragment {
            remote: Some(RemoteFragment {
                name: name.map(Into::into),
                url: url.map(Into::into),
                reference: reference.map(Into::into),
            }),
            updates: None,
        }
    }

    #[test]
    fn later_fragments_win_key_by_key() {
        let cases = [
            (vec![], None),
            (
                vec![frag(None, Some("http://a"), Some("os/a"))],
                Some(("keel", "http://a", "os/a")),
            ),
            (
                vec![
                    frag(Some("vendor"), Some("http://a"), Some("os/a")),
                    Fragment::default(),
                    frag(None, None, Some("os/b")),
                ],
                Some(("vendor", "http://a", "os/b")),
            ),
            (
                vec![
                    frag(None, Some("http://a"), Some("os/a")),
                    frag(None, Some("http://b"), None),
                ],
                Some(("keel", "http://b", "os/a")),
            ),
        ];
        for (fragments, want) in cases {
            let got = validate(merge(fragments.clone())).unwrap();
            let want = want.map(|(n, u, r): (&str, &str, &str)| RemoteConfig {
                name: n.into(),
                url: u.into(),
                reference: r.parse().unwrap(),
            });
            assert_eq!(got, want, "{fragments:?}");
        }
    }

    #[test]
    fn remote_without_url_or_ref_is_an_error() {
        assert_eq!(
            validate(frag(None, None, Some("os/a"))),
            Err(ConfigError::MissingRemoteKey("url"))
        );
        assert_eq!(
            validate(frag(None, Some("http://a"), None)),
            Err(ConfigError::MissingRemoteKey("ref"))
        );
        assert_eq!(
            validate(frag(None, Some(" "), Some("os/a"))),
            Err(ConfigError::Empty { key: "url" })
        );
        assert!(matches!(
            validate(frag(None, Some("http://a"), Some("keel:os/a"))),
            Err(ConfigError::InvalidRef(_))
        ));
    }

    #[test]
    fn load_reads_dirs_in_priority_order_and_names_bad_files() {
        let root = tempfile::tempdir().unwrap();
        let write = |p: &str, text: &str| {
            let p = root.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write(
            "usr/lib/keel/config.toml",
            "[remote]\nurl = \"http://vendor\"\nref = \"os/stable\"\n",
        );
        write("etc/keel/config.d/20-b.toml", "[remote]\nref = \"os/b\"\n");
        write(
            "etc/keel/config.d/10-a.toml",
            "[remote]\nref = \"os/a\"\nurl = \"http://mine\"\n",
        );
        write("etc/keel/config.d/README", "not toml");
        let config = load(root.path()).unwrap();
        let remote = config.remote.unwrap();
        assert_eq!(
            (remote.url.as_str(), remote.reference.as_str()),
            ("http://mine", "os/b")
        );
        assert_eq!(remote.refspec(), "keel:os/b");
        assert_eq!(config.sources.len(), 3);

        // A runtime drop-in shadows the admin's file of the same name, as in Zincati.
        write(
            "run/keel/config.d/20-b.toml",
            "[remote]\nref = \"os/runtime\"\n",
        );
        let remote = load(root.path()).unwrap().remote.unwrap();
        assert_eq!(
            (remote.url.as_str(), remote.reference.as_str()),
            ("http://mine", "os/runtime")
        );

        write("run/keel/config.d/x.toml", "[remote]\nurll = 1\n");
        let err = format!("{:#}", load(root.path()).unwrap_err());
        assert!(err.contains("run/keel/config.d/x.toml"), "{err}");
    }

    #[test]
    fn remote_dropin_round_trips() {
        let remote = RemoteConfig {
            name: "keel".into(),
            url: "http://127.0.0.1:8080/repo".into(),
            reference: "keel/stable".parse().unwrap(),
        };
        let text = remote_dropin(&remote).unwrap();
        let back: Fragment = toml::from_str(&text).unwrap();
        assert_eq!(validate(back).unwrap(), Some(remote));
    }
}
