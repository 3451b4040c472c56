//! Merging the files of an include tree into one treefile, then the checks that only make
//! sense on the whole: required keys, packages both wanted and excluded.
//!
//! Rules (fragments come in order: included files first, the including file last, on top):
//! scalars override; lists append and drop repeats, keeping the first position; entries with a
//! key replace the earlier entry of the same key in place (packages by name, so an upper file
//! can pin a version; repos and postprocess steps by name; add-files by dest).

use std::path::Path;

use super::error::{Location, TreefileError};
use super::fragment::{Fragment, LoadedAddFile, RepoKeys};
use super::{Initramfs, PasswdPolicy, Postprocess, Repo, RepoLayer, Treefile};

/// dracut modules of the fast configuration measured in DESIGN.md.
pub const DEFAULT_INITRAMFS_MODULES: &[&str] = &[
    "base",
    "systemd",
    "systemd-initrd",
    "dracut-systemd",
    "udev-rules",
    "rootfs-block",
    "fs-lib",
    "kernel-modules",
    "ostree",
    "shutdown",
];
/// Kernel drivers of the fast configuration measured in DESIGN.md.
pub const DEFAULT_INITRAMFS_DRIVERS: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "ext4",
    "crc32c_generic",
];
pub const DEFAULT_INITRAMFS_COMPRESS: &str = "cat";
pub const DEFAULT_STATIC_DELTAS: u32 = 2;

/// The mode and the bytes an add-files entry puts into the tree.
pub type FileData = (u32, Vec<u8>);

/// The merged treefile (with `canonical` and `hash` still empty) and the add-files data, in
/// the order of `add_files`.
pub fn merge(
    top: &Path,
    fragments: Vec<Fragment>,
) -> Result<(Treefile, Vec<FileData>), TreefileError> {
    let mut reference = None;
    let mut automatic_version_prefix = None;
    let mut repos: Vec<(Repo, RepoKeys)> = Vec::new();
    let mut packages: Vec<String> = Vec::new();
    let mut exclude_packages = Vec::new();
    let mut recommends = false;
    let mut units = Vec::new();
    let mut default_target = None;
    let mut add_files: Vec<LoadedAddFile> = Vec::new();
    let mut remove_files = Vec::new();
    let mut postprocess: Vec<Postprocess> = Vec::new();
    let mut modules: Option<Vec<String>> = None;
    let mut drivers: Option<Vec<String>> = None;
    let mut compress = None;
    let mut passwd_check = true;
    let mut static_deltas = DEFAULT_STATIC_DELTAS;

    for fragment in fragments {
        override_with(&mut reference, fragment.reference);
        override_with(
            &mut automatic_version_prefix,
            fragment.automatic_version_prefix,
        );
        override_with(&mut default_target, fragment.default_target);
        override_with(&mut compress, fragment.initramfs_compress);
        recommends = fragment.recommends.unwrap_or(recommends);
        passwd_check = fragment.passwd_check.unwrap_or(passwd_check);
        static_deltas = fragment.static_deltas.unwrap_or(static_deltas);
        merge_keyed(&mut repos, fragment.repos, |(r, _)| r.name().to_string());
        merge_keyed(&mut packages, fragment.packages, |p| {
            package_name(p).to_string()
        });
        merge_keyed(
            &mut exclude_packages,
            fragment.exclude_packages,
            Clone::clone,
        );
        merge_keyed(&mut units, fragment.units, Clone::clone);
        merge_keyed(&mut add_files, fragment.add_files, |a| a.file.dest.clone());
        merge_keyed(&mut remove_files, fragment.remove_files, Clone::clone);
        merge_keyed(&mut postprocess, fragment.postprocess, |p| p.name.clone());
        for (merged, list) in [
            (&mut modules, fragment.initramfs_modules),
            (&mut drivers, fragment.initramfs_drivers),
        ] {
            if let Some(list) = list {
                merge_keyed(merged.get_or_insert_with(Vec::new), list, Clone::clone);
            }
        }
    }

    let at = Location::new(top, None);
    let Some(reference) = reference else {
        return Err(TreefileError::Missing {
            at,
            key: "ref".into(),
            hint: "set the ostree branch to commit to, e.g. `ref = \"keel/bookworm/x86_64/host\"`"
                .into(),
        });
    };
    if repos.is_empty() {
        return Err(TreefileError::Missing {
            at,
            key: "repos".into(),
            hint:
                "add a [[repos]] table, e.g. `name = \"debian\"` with `machine-sources = true` to \
                   use this machine's apt sources"
                    .into(),
        });
    }
    if packages.is_empty() {
        return Err(TreefileError::Missing {
            at,
            key: "packages".into(),
            hint: "list the packages to install, e.g. `packages = [\"systemd\", \"linux-image-amd64\"]`".into(),
        });
    }
    if let Some(both) = packages
        .iter()
        .map(|p| package_name(p))
        .find(|name| exclude_packages.iter().any(|e| e == name))
    {
        return Err(TreefileError::Invalid {
            at,
            key: "exclude-packages".into(),
            reason: format!(
                "`{both}` is both in `packages` and in `exclude-packages`; remove it from one"
            ),
        });
    }

    let (add_files, contents) = add_files
        .into_iter()
        .map(|a| (a.file, (a.effective_mode, a.content)))
        .unzip();
    let top_layer_repos = repos
        .iter()
        .filter(|(repo, keys)| keys.layer.unwrap_or(repo.default_layer()) == RepoLayer::Top)
        .map(|(repo, _)| repo.name().to_string())
        .collect();
    let repos_only: Vec<Repo> = repos.iter().map(|(repo, _)| repo.clone()).collect();
    let default_base = super::default_base_system(&repos_only);
    let base_system_repos = repos
        .iter()
        .filter(|(repo, keys)| {
            keys.base_system
                .unwrap_or_else(|| default_base.contains(repo.name()))
        })
        .map(|(repo, _)| repo.name().to_string())
        .collect();
    let repos = repos_only;
    let to_strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    let treefile = Treefile {
        path: top.to_path_buf(),
        reference,
        automatic_version_prefix,
        repos,
        top_layer_repos,
        base_system_repos,
        packages,
        exclude_packages,
        recommends,
        units,
        default_target,
        add_files,
        remove_files,
        postprocess,
        initramfs: Initramfs {
            modules: modules.unwrap_or_else(|| to_strings(DEFAULT_INITRAMFS_MODULES)),
            drivers: drivers.unwrap_or_else(|| to_strings(DEFAULT_INITRAMFS_DRIVERS)),
            compress: compress.unwrap_or_else(|| DEFAULT_INITRAMFS_COMPRESS.to_string()),
        },
        passwd: PasswdPolicy {
            check: passwd_check,
        },
        static_deltas,
        canonical: String::new(),
        hash: String::new(),
    };
    Ok((treefile, contents))
}

fn override_with<T>(merged: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *merged = value;
    }
}

/// Appends `items`; an item whose key is already present replaces that entry in place.
fn merge_keyed<T, K: PartialEq>(merged: &mut Vec<T>, items: Vec<T>, key: impl Fn(&T) -> K) {
    for item in items {
        let k = key(&item);
        match merged.iter().position(|existing| key(existing) == k) {
            Some(index) => merged[index] = item,
            None => merged.push(item),
        }
    }
}

/// `name` of a `name` or `name=version` spec.
pub fn package_name(spec: &str) -> &str {
    spec.split_once('=').map_or(spec, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_merge_appends_and_replaces_in_place() {
        let mut merged = vec!["a".to_string(), "b=1".to_string()];
        let upper = vec!["c".to_string(), "b=2".to_string(), "a".to_string()];
        merge_keyed(&mut merged, upper, |p| package_name(p).to_string());
        assert_eq!(merged, ["a", "b=2", "c"]);
    }

    #[test]
    fn package_names() {
        for (spec, name) in [("podman", "podman"), ("libc6=2.36-9", "libc6")] {
            assert_eq!(package_name(spec), name);
        }
    }
}
