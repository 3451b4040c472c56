//! The treefile's repositories as the apt module's sources, for the machine's architecture.

use std::path::Path;

use anyhow::{bail, Context};

use crate::apt::sources::{machine_sources, LocalRepo, RepoSpec};
use crate::treefile::Repo;

/// Where the machine's apt sources are read for `machine-sources = true` repositories.
pub const MACHINE_SOURCES_DIR: &str = "/etc/apt/sources.list.d";

/// The treefile's repositories as the apt module's sources.
pub fn repo_sources(
    repos: &[Repo],
    machine_dir: &Path,
) -> anyhow::Result<(Vec<RepoSpec>, Vec<LocalRepo>)> {
    let mut specs = Vec::new();
    let mut locals = Vec::new();
    for repo in repos {
        match repo {
            Repo::Machine { name } => {
                let found = machine_sources(machine_dir).with_context(|| {
                    format!("reading the machine's apt sources for repository {name}")
                })?;
                if found.is_empty() {
                    bail!(
                        "repository {name} uses the machine's apt sources, but {} has no enabled deb822 `*.sources` entry",
                        machine_dir.display()
                    );
                }
                specs.extend(found.into_iter().map(|spec| RepoSpec {
                    name: name.clone(),
                    ..spec
                }));
            }
            Repo::Apt(apt) => specs.push(RepoSpec {
                name: apt.name.clone(),
                url: apt.url.clone(),
                suites: apt.suites.clone(),
                components: apt.components.clone(),
                architectures: apt.architectures.clone(),
                keyring: apt.keyring.clone(),
            }),
            Repo::Local { name, path } => locals.push(LocalRepo {
                name: name.clone(),
                path: path.clone(),
            }),
        }
    }
    Ok((specs, locals))
}

/// Debian's name for the machine's architecture.
pub fn debian_arch(rust_arch: &str) -> Option<&'static str> {
    Some(match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::treefile::AptRepo;

    #[test]
    fn debian_arch_names() {
        assert_eq!(debian_arch("x86_64"), Some("amd64"));
        assert_eq!(debian_arch("aarch64"), Some("arm64"));
        assert_eq!(debian_arch("sparc"), None);
    }

    #[test]
    fn treefile_repos_map_to_apt_sources() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mirror.sources"),
            "Types: deb\nURIs: http://127.0.0.1:9/debian\nSuites: bookworm\nComponents: main\nSigned-By: /k.gpg\n",
        )
        .unwrap();
        let repos = vec![
            Repo::Machine {
                name: "debian".into(),
            },
            Repo::Apt(AptRepo {
                name: "extra".into(),
                url: "http://127.0.0.1:9/extra".into(),
                suites: vec!["stable".into()],
                components: vec!["main".into()],
                architectures: vec![],
                keyring: "/extra.gpg".into(),
            }),
            Repo::Local {
                name: "overlay".into(),
                path: "/srv/debs".into(),
            },
        ];
        let (specs, locals) = repo_sources(&repos, dir.path()).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(
            specs[0].name, "debian",
            "machine sources carry the treefile's name"
        );
        assert_eq!(specs[0].url, "http://127.0.0.1:9/debian");
        assert_eq!(specs[1].name, "extra");
        assert_eq!(
            locals,
            vec![LocalRepo {
                name: "overlay".into(),
                path: "/srv/debs".into()
            }]
        );
    }

    #[test]
    fn machine_sources_that_are_empty_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = repo_sources(
            &[Repo::Machine {
                name: "debian".into(),
            }],
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("has no enabled deb822"), "{err}");
    }
}
