//! A package chosen by dependency resolution: what fetch, unpack, the lockfile and the commit
//! metadata all need to know about it. Produced by a package format's resolver (`format`;
//! Debian's is `apt::depsolve`), consumed downstream. The ordering facts (`essential`,
//! `priority`, `pre_depends`) are named as Debian names them; another format fills them in its
//! own terms (RPM: `Requires(pre)` is a pre-dependency, nothing is Essential).

use serde::{Deserialize, Serialize};

/// Where a package's file comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "location")]
pub enum PackageSource {
    /// A URL on an HTTP(S) repository (the repository's base URL joined with `Filename:`).
    Url(String),
    /// A `.deb` on the local filesystem (a treefile's local overlay repository).
    Path(std::path::PathBuf),
}

/// One resolved binary package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Lowercase hex sha256 of the `.deb`, from the verified Packages index.
    pub sha256: String,
    /// Size of the `.deb` in bytes.
    pub size: u64,
    pub source: PackageSource,
    /// The treefile's name for the repository it came from.
    pub repo: String,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority:` (e.g. `required`, `important`, `optional`).
    pub priority: String,
    /// Names of the resolved packages this one pre-depends on (after alternatives and virtual
    /// packages were resolved), for unpack ordering.
    pub pre_depends: Vec<String>,
    /// Names of the resolved packages this one depends on, likewise.
    pub depends: Vec<String>,
}
