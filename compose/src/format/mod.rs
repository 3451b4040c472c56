//! The package-format seam: everything the pipeline needs from a family of packages (Debian's
//! `.deb` and apt repositories today, RPM next) behind one trait, [`PackageFormat`].
//!
//! A format owns four things, and the pipeline knows none of them:
//! - **repositories and resolution**: reading the treefile's repositories, verifying their
//!   metadata, solving dependencies, and its own resolution cache and its key (Debian keys it on
//!   the verified `InRelease` index hashes);
//! - **installation**: putting packages into a tree and running their scripts in the
//!   [`Sandbox`], either into an empty tree or over an installed base layer;
//! - **the package database**: where it lives while installing and where the commit keeps it
//!   ([`PackageDatabase`], applied by `ostreeify`);
//! - **the script environment**: variables its scripts need to behave inside a compose.
//!
//! What is the same for every format stays outside: fetching (by URL and sha256 from a
//! [`ResolvedPackage`]), the base/top layer split and the layer cache, customization, the
//! initramfs, ostree's layout and the commit.
//!
//! Adding RPM means a module `format/rpm/` implementing [`PackageFormat`] and a treefile key
//! choosing it; nothing in `pipeline/` changes.

pub mod debian;

use std::path::{Path, PathBuf};

use keel_common::progress::Progress;

use crate::cachedir::CacheDir;
use crate::install::{InstallReport, PackageCache};
use crate::package::ResolvedPackage;
use crate::release::lockfile::Lockfile;
use crate::sandbox::Sandbox;
use crate::treefile::Treefile;

/// Where a format's package database lives. While packages are installed it is at `live` (a
/// path under `/var`, where the package manager expects it); a commit keeps it at `image`
/// under `/usr` (`/var` starts empty on a host), with `live` a relative symlink to it so the
/// package manager's queries work on a booted host. `transient` files under it belong to a
/// writable database (locks, backups) and are dropped from the commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackageDatabase {
    pub live: &'static str,
    pub image: &'static str,
    pub transient: &'static [&'static str],
}

impl PackageDatabase {
    /// The symlink target that makes `live` point at `image` (both relative to the root).
    pub fn link_target(&self) -> PathBuf {
        let depth = Path::new(self.live).components().count().saturating_sub(1);
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.join(self.image)
    }
}

/// What resolution needs besides the treefile.
pub struct ResolveInput<'a> {
    pub treefile: &'a Treefile,
    pub cachedir: &'a CacheDir,
    /// The lockfile to resolve to instead of the newest versions, with its path for messages.
    pub locked: Option<&'a (Lockfile, PathBuf)>,
    /// Accept repository metadata older than the newest seen (`--allow-older-metadata`).
    pub allow_older_metadata: bool,
}

/// A resolved package set and whether the format's resolution cache supplied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub packages: Vec<ResolvedPackage>,
    pub cache_hit: bool,
}

/// One package format (see the module documentation). Errors carry the format's own error
/// types in their chain (Debian: `install::InstallError`, `apt::depsolve::DepsolveError`).
pub trait PackageFormat: Sync {
    /// Its name in messages and reports (`debian`).
    fn name(&self) -> &'static str;

    /// Resolves the treefile's package set against its repositories.
    fn resolve(
        &self,
        input: &ResolveInput<'_>,
        progress: &dyn Progress,
    ) -> anyhow::Result<Resolution>;

    /// Installs `packages` (their fetched files in `files`, in the same order) into the empty
    /// tree at `sandbox`'s root, placing files from `cache` where it can.
    fn install(
        &self,
        sandbox: &Sandbox,
        packages: &[ResolvedPackage],
        files: &[PathBuf],
        cache: &PackageCache,
    ) -> anyhow::Result<InstallReport>;

    /// Installs `packages` over a tree that holds an installed base layer; their dependencies
    /// outside `packages` are in the tree already.
    fn install_over(
        &self,
        sandbox: &Sandbox,
        packages: &[ResolvedPackage],
        files: &[PathBuf],
    ) -> anyhow::Result<InstallReport>;

    /// Environment variables every install-time script of this format gets.
    fn script_env(&self) -> &'static [(&'static str, &'static str)];

    /// Where its package database lives.
    fn database(&self) -> &'static PackageDatabase;
}

/// The format a treefile's packages are in. Debian is the only one so far.
pub fn for_treefile(_treefile: &Treefile) -> &'static dyn PackageFormat {
    &debian::Debian
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_database_links_up_to_its_image_path() {
        let db = PackageDatabase {
            live: "var/lib/dpkg",
            image: "usr/lib/sysimage/dpkg",
            transient: &[],
        };
        assert_eq!(db.link_target(), Path::new("../../usr/lib/sysimage/dpkg"));
        let shallow = PackageDatabase {
            live: "var/rpmdb",
            image: "usr/lib/sysimage/rpm",
            transient: &[],
        };
        assert_eq!(shallow.link_target(), Path::new("../usr/lib/sysimage/rpm"));
    }
}
