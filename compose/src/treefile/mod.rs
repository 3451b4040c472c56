//! The treefile: a TOML description of what goes into a host's tree (ref, repositories,
//! packages, files, initramfs), in the spirit of rpm-ostree's treefile. `docs/treefile.md`
//! describes every key.
//!
//! [`load`] parses each file (unknown keys and wrong types are errors with file and line),
//! checks it on its own and resolves its relative paths ([`fragment`]), follows `include`s
//! depth-first (a cycle is an error naming the chain), merges the files ([`merge`]) and
//! renders the result as canonical TOML with a hash over every input ([`canonical`]).

#[cfg(test)]
mod base_system_tests;
mod canonical;
mod error;
mod fragment;
mod merge;
mod raw;
mod syntax;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use error::{Location, TreefileError};
pub use merge::{
    package_name, DEFAULT_INITRAMFS_COMPRESS, DEFAULT_INITRAMFS_DRIVERS, DEFAULT_INITRAMFS_MODULES,
    DEFAULT_STATIC_DELTAS,
};

/// A loaded, merged and validated treefile.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Treefile {
    /// The top-level file as given to [`load`].
    pub path: PathBuf,
    /// Key `ref`: the ostree branch, e.g. `keel/bookworm/x86_64/host`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Key `automatic-version-prefix`, e.g. `<date:%Y%m%d>`.
    pub automatic_version_prefix: Option<String>,
    pub repos: Vec<Repo>,
    /// Names of the repos whose packages start the top layer (key `layer`, by default the
    /// `path` repos; see `install::layers`).
    pub top_layer_repos: BTreeSet<String>,
    /// Names of the repos that form the base system: only their `Essential: yes` and
    /// `Priority: required` packages are installed without being asked for (key
    /// `base-system`; see [`default_base_system`]).
    pub base_system_repos: BTreeSet<String>,
    /// `name` or `name=version`.
    pub packages: Vec<String>,
    pub exclude_packages: Vec<String>,
    /// Install Recommends:; default false.
    pub recommends: bool,
    /// systemd units to enable.
    pub units: Vec<String>,
    pub default_target: Option<String>,
    pub add_files: Vec<AddFile>,
    /// Paths in the tree, relative to `/`.
    pub remove_files: Vec<String>,
    pub postprocess: Vec<Postprocess>,
    pub initramfs: Initramfs,
    pub passwd: PasswdPolicy,
    /// Static deltas from the previous N commits of the ref; default 2.
    pub static_deltas: u32,
    /// The merged result as deterministic TOML.
    pub canonical: String,
    /// sha256 hex of `canonical` plus every add-files source's content.
    pub hash: String,
}

/// Where packages come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Repo {
    /// `machine-sources = true`: the composing machine's deb822 apt sources.
    Machine { name: String },
    /// `url` with `suites`, `components`, `architectures` and `keyring`.
    Apt(AptRepo),
    /// `path`: a directory of .deb files (absolute after load).
    Local { name: String, path: PathBuf },
}

/// Key `layer` of a repo: which install layer its packages start in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepoLayer {
    /// Cached and reused while its packages do not change.
    Base,
    /// Installed over the base layer on every compose.
    Top,
}

impl RepoLayer {
    pub fn as_str(self) -> &'static str {
        match self {
            RepoLayer::Base => "base",
            RepoLayer::Top => "top",
        }
    }
}

impl Repo {
    /// The layer a repo's packages start in when it has no `layer` key: `top` for a local
    /// `path` repo (the maintainer's own packages), `base` otherwise.
    pub fn default_layer(&self) -> RepoLayer {
        match self {
            Repo::Local { .. } => RepoLayer::Top,
            Repo::Machine { .. } | Repo::Apt(_) => RepoLayer::Base,
        }
    }

    /// The repo's `name` key.
    pub fn name(&self) -> &str {
        match self {
            Repo::Machine { name } | Repo::Local { name, .. } => name,
            Repo::Apt(apt) => &apt.name,
        }
    }
}

/// The repos that form the base system when they do not say (`base-system`): the
/// `machine-sources` repos, or, in a treefile without one, the first `url` repo. A local
/// `path` repo never does by default. So a repository added for a few packages does not
/// bring its Essential set into the tree.
pub fn default_base_system(repos: &[Repo]) -> BTreeSet<String> {
    let machine: BTreeSet<String> = repos
        .iter()
        .filter(|r| matches!(r, Repo::Machine { .. }))
        .map(|r| r.name().to_string())
        .collect();
    if !machine.is_empty() {
        return machine;
    }
    repos
        .iter()
        .find(|r| matches!(r, Repo::Apt(_)))
        .map(|r| r.name().to_string())
        .into_iter()
        .collect()
}

/// An explicit apt repository.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AptRepo {
    pub name: String,
    /// Base URL without a trailing `/`.
    pub url: String,
    pub suites: Vec<String>,
    /// Default `["main"]`.
    pub components: Vec<String>,
    /// Default: this machine's architecture in Debian's naming (`amd64` on x86_64).
    pub architectures: Vec<String>,
    /// OpenPGP keyring verifying the Release files (absolute after load).
    pub keyring: PathBuf,
}

/// A file copied into the tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AddFile {
    /// Absolute path on the composing machine.
    pub source: PathBuf,
    /// Absolute path in the tree.
    pub dest: String,
    pub mode: Option<u32>,
}

/// A script run in the tree after packages are installed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Postprocess {
    pub name: String,
    /// The script's text (a `file` is read at load time).
    pub script: String,
}

/// dracut settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Initramfs {
    pub modules: Vec<String>,
    pub drivers: Vec<String>,
    pub compress: String,
}

/// `[passwd]`: whether uids/gids may change between commits.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PasswdPolicy {
    pub check: bool,
}

/// Reads the treefile at `path`, follows its includes, merges and validates them.
pub fn load(path: &Path) -> Result<Treefile, TreefileError> {
    let mut fragments = Vec::new();
    collect(path, &mut Vec::new(), &mut fragments)?;
    let (mut treefile, contents) = merge::merge(path, fragments)?;
    let base = absolute_dir(path)?;
    treefile.canonical = canonical::render(&treefile, &base);
    let add_files: Vec<canonical::HashedFile> = treefile
        .add_files
        .iter()
        .zip(&contents)
        .map(|(add, (mode, content))| canonical::HashedFile {
            dest: &add.dest,
            mode: *mode,
            content,
        })
        .collect();
    treefile.hash = canonical::hash(&treefile.canonical, &add_files);
    Ok(treefile)
}

/// Loads `file` and, before it, everything it includes (depth-first, in order), appending one
/// fragment per file to `fragments`. `stack` holds the chain of including files (canonical path,
/// displayed path) to detect cycles.
fn collect(
    file: &Path,
    stack: &mut Vec<(PathBuf, PathBuf)>,
    fragments: &mut Vec<fragment::Fragment>,
) -> Result<(), TreefileError> {
    let read_error = |source| TreefileError::Read {
        path: file.to_path_buf(),
        source,
    };
    let real = std::fs::canonicalize(file).map_err(read_error)?;
    if let Some(start) = stack.iter().position(|(seen, _)| *seen == real) {
        let mut chain: Vec<PathBuf> = stack[start..]
            .iter()
            .map(|(_, shown)| shown.clone())
            .collect();
        chain.push(file.to_path_buf());
        return Err(TreefileError::IncludeCycle { chain });
    }
    let source = std::fs::read_to_string(file).map_err(read_error)?;
    let (includes, raw) = fragment::parse(file, &source)?;
    let shown_dir = file.parent().unwrap_or(Path::new(""));
    stack.push((real.clone(), file.to_path_buf()));
    for include in includes {
        collect(&shown_dir.join(include), stack, fragments)?;
    }
    stack.pop();
    let dir = real.parent().unwrap_or(Path::new("/"));
    fragments.push(fragment::resolve(file, dir, &source, raw)?);
    Ok(())
}

/// The absolute directory holding `path` (symlinks resolved, like the paths in the fragments).
fn absolute_dir(path: &Path) -> Result<PathBuf, TreefileError> {
    let real = std::fs::canonicalize(path).map_err(|source| TreefileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(real.parent().unwrap_or(Path::new("/")).to_path_buf())
}
