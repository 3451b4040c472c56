//! Debian's packages as a [`PackageFormat`]: apt repositories (the treefile's, or the machine's
//! deb822 sources) resolved by `apt::depsolve` through the resolution cache keyed on the
//! verified `InRelease` indices (`resolve_cache`), `.deb` files installed by dpkg in the
//! sandbox (`install`), and dpkg's database moved under `/usr/lib/sysimage/dpkg`.

pub mod sources;

use std::path::{Path, PathBuf};

use anyhow::Context;
use keel_common::progress::Progress;

use super::{PackageDatabase, PackageFormat, Resolution, ResolveInput};
use crate::apt::depsolve::{BaseSystem, Request};
use crate::apt::universe::Freshness;
use crate::install::{self, InstallReport, PackageCache};
use crate::package::ResolvedPackage;
use crate::resolve_cache;
use crate::sandbox::Sandbox;

pub use sources::{debian_arch, repo_sources, MACHINE_SOURCES_DIR};

/// dpkg's database: `/var/lib/dpkg` while installing, `/usr/lib/sysimage/dpkg` in a commit
/// (where rpm-ostree keeps rpm's), without the backups and locks of a writable database.
pub const DATABASE: PackageDatabase = PackageDatabase {
    live: "var/lib/dpkg",
    image: "usr/lib/sysimage/dpkg",
    transient: &[
        "status-old",
        "available-old",
        "diversions-old",
        "lock",
        "lock-frontend",
        "triggers/Lock",
    ],
};

/// Debian's package format.
#[derive(Clone, Copy, Debug, Default)]
pub struct Debian;

impl PackageFormat for Debian {
    fn name(&self) -> &'static str {
        "debian"
    }

    fn resolve(
        &self,
        input: &ResolveInput<'_>,
        progress: &dyn Progress,
    ) -> anyhow::Result<Resolution> {
        let tf = input.treefile;
        let (specs, locals) = repo_sources(&tf.repos, Path::new(MACHINE_SOURCES_DIR))?;
        let arch = debian_arch(std::env::consts::ARCH).with_context(|| {
            format!(
                "no Debian architecture known for {}",
                std::env::consts::ARCH
            )
        })?;
        let request = Request {
            packages: tf.packages.clone(),
            exclude: tf.exclude_packages.clone(),
            recommends: tf.recommends,
            base_system: BaseSystem::Repos(tf.base_system_repos.clone()),
        };
        let freshness = Freshness {
            allow_older: input.allow_older_metadata,
            ..Default::default()
        };
        let sources = resolve_cache::Sources {
            specs: &specs,
            locals: &locals,
            arch,
        };
        resolve_cache::resolve(
            &sources,
            input.cachedir,
            &request,
            input.locked,
            &freshness,
            progress,
        )
    }

    fn install(
        &self,
        sandbox: &Sandbox,
        packages: &[ResolvedPackage],
        files: &[PathBuf],
        cache: &PackageCache,
    ) -> anyhow::Result<InstallReport> {
        Ok(install::install_with(sandbox, packages, files, cache)?)
    }

    fn install_over(
        &self,
        sandbox: &Sandbox,
        packages: &[ResolvedPackage],
        files: &[PathBuf],
    ) -> anyhow::Result<InstallReport> {
        Ok(install::install_over(sandbox, packages, files)?)
    }

    /// `INITRD=No`: the kernel's postinst must not build an initramfs; the compose builds its
    /// own after every package is installed.
    fn script_env(&self) -> &'static [(&'static str, &'static str)] {
        &[("INITRD", "No")]
    }

    fn database(&self) -> &'static PackageDatabase {
        &DATABASE
    }
}
