//! One treefile file, checked on its own: values validated, relative paths made absolute
//! against the file's directory, add-files sources and postprocess files read.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use super::error::{from_toml, Location, TreefileError};
use super::raw::{RawAddFile, RawPostprocess, RawRepo, RawTreefile};
use super::syntax;
use super::{AddFile, AptRepo, Postprocess, Repo, RepoLayer};

/// An add-files entry with what the compose will copy, read at load time (it feeds the hash).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedAddFile {
    pub file: AddFile,
    /// The mode the file gets in the tree: `mode`, else the source's permission bits.
    pub effective_mode: u32,
    pub content: Vec<u8>,
}

/// The keys of a `[[repos]]` entry that say how its packages are used, as set in one file.
#[derive(Debug, Default, Clone, Copy)]
pub struct RepoKeys {
    pub layer: Option<RepoLayer>,
    pub base_system: Option<bool>,
}

/// What one file contributes to the merged treefile. `None` and empty lists contribute nothing.
#[derive(Debug, Default)]
pub struct Fragment {
    pub reference: Option<String>,
    pub automatic_version_prefix: Option<String>,
    /// Each repo with its `layer` and `base-system` keys, if set.
    pub repos: Vec<(Repo, RepoKeys)>,
    pub packages: Vec<String>,
    pub exclude_packages: Vec<String>,
    pub recommends: Option<bool>,
    pub units: Vec<String>,
    pub default_target: Option<String>,
    pub add_files: Vec<LoadedAddFile>,
    pub remove_files: Vec<String>,
    pub postprocess: Vec<Postprocess>,
    pub initramfs_modules: Option<Vec<String>>,
    pub initramfs_drivers: Option<Vec<String>>,
    pub initramfs_compress: Option<String>,
    pub passwd_check: Option<bool>,
    pub static_deltas: Option<u32>,
}

/// Parses `source` (the text of `file`) into its include list and the raw treefile.
pub fn parse(file: &Path, source: &str) -> Result<(Vec<String>, RawTreefile), TreefileError> {
    let mut raw: RawTreefile = toml::from_str(source).map_err(|e| from_toml(file, source, &e))?;
    let includes = raw
        .include
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(Spanned::into_inner)
        .collect();
    Ok((includes, raw))
}

/// Checks one parsed file. `file` is the path as displayed in errors; `dir` the absolute
/// directory holding it, against which relative paths resolve.
pub fn resolve(
    file: &Path,
    dir: &Path,
    source: &str,
    raw: RawTreefile,
) -> Result<Fragment, TreefileError> {
    let cx = Context { file, dir, source };
    let mut fragment = Fragment {
        recommends: raw.recommends,
        static_deltas: raw.static_deltas,
        passwd_check: raw.passwd.and_then(|p| p.check),
        ..Fragment::default()
    };
    if let Some(reference) = raw.reference {
        cx.check(&reference, "ref", syntax::check_ref)?;
        fragment.reference = Some(reference.into_inner());
    }
    if let Some(prefix) = raw.automatic_version_prefix {
        cx.check(&prefix, "automatic-version-prefix", check_version_prefix)?;
        fragment.automatic_version_prefix = Some(prefix.into_inner());
    }
    let mut seen = HashSet::new();
    for spec in raw.packages.unwrap_or_default() {
        let name = syntax::check_package_spec(spec.get_ref())
            .map_err(|reason| cx.invalid(&spec, "packages", reason))?
            .to_string();
        if !seen.insert(name.clone()) {
            return Err(cx.invalid(
                &spec,
                "packages",
                format!("package `{name}` is listed twice in this file; keep one entry"),
            ));
        }
        fragment.packages.push(spec.into_inner());
    }
    for name in raw.exclude_packages.unwrap_or_default() {
        cx.check(&name, "exclude-packages", syntax::check_package_name)?;
        fragment.exclude_packages.push(name.into_inner());
    }
    for unit in raw.units.unwrap_or_default() {
        cx.check(&unit, "units", syntax::check_unit)?;
        fragment.units.push(unit.into_inner());
    }
    if let Some(target) = raw.default_target {
        cx.check(&target, "default-target", |t| {
            syntax::check_unit(t)?;
            match t.ends_with(".target") {
                true => Ok(()),
                false => Err(format!("`{t}` is not a .target unit")),
            }
        })?;
        fragment.default_target = Some(target.into_inner());
    }
    for path in raw.remove_files.unwrap_or_default() {
        cx.check(&path, "remove-files", syntax::check_remove_path)?;
        fragment.remove_files.push(path.into_inner());
    }
    let mut names = HashSet::new();
    for repo in raw.repos.unwrap_or_default() {
        let span = repo.span();
        let layer_key = repo.get_ref().layer.clone();
        let base_system = repo.get_ref().base_system;
        let repo = cx.repo(repo)?;
        let repo_layer = match layer_key {
            None => None,
            Some(value) => Some(match value.get_ref().as_str() {
                "base" => RepoLayer::Base,
                "top" => RepoLayer::Top,
                other => {
                    return Err(cx.invalid(
                        &value,
                        "repos.layer",
                        format!(
                            "`{other}` is not a layer; use \"base\" (cached, reused while its \
                             packages do not change) or \"top\" (installed over the base on \
                             every compose)"
                        ),
                    ))
                }
            }),
        };
        let name = repo.name().to_string();
        if !names.insert(name.clone()) {
            return Err(cx.invalid_at(
                Some(span.start),
                "repos",
                format!("two repos are named `{name}` in this file; give each its own name"),
            ));
        }
        fragment.repos.push((
            repo,
            RepoKeys {
                layer: repo_layer,
                base_system,
            },
        ));
    }
    let mut dests = HashSet::new();
    for add in raw.add_files.unwrap_or_default() {
        let span = add.span();
        let add = cx.add_file(add.into_inner())?;
        if !dests.insert(add.file.dest.clone()) {
            return Err(cx.invalid_at(
                Some(span.start),
                "add-files",
                format!(
                    "`{}` is the dest of two entries in this file",
                    add.file.dest
                ),
            ));
        }
        fragment.add_files.push(add);
    }
    let mut steps = HashSet::new();
    for step in raw.postprocess.unwrap_or_default() {
        let span = step.span();
        let step = cx.postprocess(step.into_inner())?;
        if !steps.insert(step.name.clone()) {
            return Err(cx.invalid_at(
                Some(span.start),
                "postprocess",
                format!("two steps are named `{}` in this file", step.name),
            ));
        }
        fragment.postprocess.push(step);
    }
    if let Some(initramfs) = raw.initramfs {
        for (key, names, out) in [
            (
                "initramfs.modules",
                initramfs.modules,
                &mut fragment.initramfs_modules,
            ),
            (
                "initramfs.drivers",
                initramfs.drivers,
                &mut fragment.initramfs_drivers,
            ),
        ] {
            let Some(names) = names else { continue };
            let mut list = Vec::new();
            for name in names {
                cx.check(&name, key, syntax::check_module_name)?;
                list.push(name.into_inner());
            }
            *out = Some(list);
        }
        if let Some(compress) = initramfs.compress {
            cx.check(&compress, "initramfs.compress", |c| {
                match c.trim().is_empty() {
                    true => Err("name a compressor for dracut's --compress, e.g. \"cat\"".into()),
                    false => Ok(()),
                }
            })?;
            fragment.initramfs_compress = Some(compress.into_inner());
        }
    }
    Ok(fragment)
}

/// `automatic-version-prefix`: non-empty, no whitespace, `<...>` placeholders closed.
fn check_version_prefix(prefix: &str) -> Result<(), String> {
    let balanced = prefix.matches('<').count() == prefix.matches('>').count();
    if prefix.is_empty() || prefix.contains(char::is_whitespace) || !balanced {
        return Err(format!(
            "`{prefix}` is not a version prefix: write e.g. \"<date:%Y%m%d>\" or \"1.2\""
        ));
    }
    Ok(())
}

struct Context<'a> {
    file: &'a Path,
    dir: &'a Path,
    source: &'a str,
}

impl Context<'_> {
    fn invalid_at(&self, offset: Option<usize>, key: &str, reason: String) -> TreefileError {
        let at = match offset {
            Some(offset) => Location::at_offset(self.file, self.source, offset),
            None => Location::new(self.file, None),
        };
        TreefileError::Invalid {
            at,
            key: key.to_string(),
            reason,
        }
    }

    fn invalid<T>(&self, value: &Spanned<T>, key: &str, reason: String) -> TreefileError {
        self.invalid_at(Some(value.span().start), key, reason)
    }

    fn check(
        &self,
        value: &Spanned<String>,
        key: &str,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Result<(), TreefileError> {
        check(value.get_ref()).map_err(|reason| self.invalid(value, key, reason))
    }

    /// `relative` made absolute against this file's directory, `.` and `..` resolved.
    fn absolute(&self, relative: &str) -> PathBuf {
        normalize(&self.dir.join(relative))
    }

    fn repo(&self, spanned: Spanned<RawRepo>) -> Result<Repo, TreefileError> {
        let offset = spanned.span().start;
        let raw = spanned.into_inner();
        self.check(&raw.name, "repos.name", syntax::check_name)?;
        let name = raw.name.get_ref().clone();
        let bad = |reason: String| {
            self.invalid_at(Some(offset), "repos", format!("repo `{name}`: {reason}"))
        };
        let machine = raw.machine_sources == Some(true);
        let apt_keys = [
            ("suites", raw.suites.is_some()),
            ("components", raw.components.is_some()),
            ("architectures", raw.architectures.is_some()),
            ("keyring", raw.keyring.is_some()),
        ];
        let stray_apt_key = apt_keys.iter().find(|(_, set)| *set).map(|(k, _)| *k);
        match (machine, &raw.url, &raw.path) {
            (true, None, None) => match stray_apt_key {
                Some(key) => Err(bad(format!(
                    "`{key}` does not apply with `machine-sources = true`, which reads the \
                     machine's apt sources as they are; remove it, or describe the repo with `url`"
                ))),
                None => Ok(Repo::Machine { name }),
            },
            (false, Some(url), None) => self.apt_repo(name, url, raw.suites, raw.components, raw.architectures, raw.keyring, offset),
            (false, None, Some(path)) => match stray_apt_key {
                Some(key) => Err(bad(format!(
                    "`{key}` does not apply to a local `path` repo (a directory of .deb files); remove it"
                ))),
                None => {
                    let dir = self.absolute(path.get_ref());
                    if !dir.is_dir() {
                        return Err(self.invalid(
                            path,
                            "repos.path",
                            format!("`{}` is not a directory; point `path` at a directory of .deb files", dir.display()),
                        ));
                    }
                    Ok(Repo::Local { name, path: dir })
                }
            },
            (false, None, None) => Err(bad(
                "say where packages come from: `machine-sources = true`, `url = \"...\"` with \
                 `suites` and `keyring`, or `path = \"dir\"` of .deb files"
                    .into(),
            )),
            _ => Err(bad(
                "`machine-sources = true`, `url` and `path` are alternatives; keep exactly one".into(),
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apt_repo(
        &self,
        name: String,
        url: &Spanned<String>,
        suites: Option<Vec<String>>,
        components: Option<Vec<String>>,
        architectures: Option<Vec<String>>,
        keyring: Option<Spanned<String>>,
        offset: usize,
    ) -> Result<Repo, TreefileError> {
        let bad = |reason: String| {
            self.invalid_at(Some(offset), "repos", format!("repo `{name}`: {reason}"))
        };
        self.check(url, "repos.url", |u| {
            let scheme_ok = ["http://", "https://", "file://"]
                .iter()
                .any(|s| u.starts_with(s));
            match scheme_ok && !u.contains(char::is_whitespace) {
                true => Ok(()),
                false => Err(format!("`{u}` is not an http://, https:// or file:// URL")),
            }
        })?;
        let Some(keyring) = keyring else {
            return Err(bad(
                "a `url` repo needs `keyring`, the OpenPGP keyring its Release file is verified \
                 with (e.g. \"/usr/share/keyrings/debian-archive-keyring.gpg\")"
                    .into(),
            ));
        };
        let keyring_path = self.absolute(keyring.get_ref());
        if !keyring_path.is_file() {
            return Err(self.invalid(
                &keyring,
                "repos.keyring",
                format!(
                    "`{}` is not a file; install the keyring or fix the path",
                    keyring_path.display()
                ),
            ));
        }
        let suites = suites.unwrap_or_default();
        if suites.is_empty() {
            return Err(bad(
                "a `url` repo needs `suites`, e.g. [\"bookworm\"]".into()
            ));
        }
        let components = components.unwrap_or_else(|| vec!["main".to_string()]);
        let architectures = match architectures {
            Some(list) => list,
            None => vec![host_debian_arch().ok_or_else(|| {
                bad(format!(
                    "this machine's architecture `{}` has no known Debian name; set `architectures`",
                    std::env::consts::ARCH
                ))
            })?
            .to_string()],
        };
        for (key, list) in [
            ("suites", &suites),
            ("components", &components),
            ("architectures", &architectures),
        ] {
            if list.is_empty()
                || list
                    .iter()
                    .any(|v| v.is_empty() || v.contains(char::is_whitespace))
            {
                return Err(bad(format!("`{key}` must be a non-empty list of words")));
            }
        }
        Ok(Repo::Apt(AptRepo {
            name,
            url: url.get_ref().trim_end_matches('/').to_string(),
            suites,
            components,
            architectures,
            keyring: keyring_path,
        }))
    }

    fn add_file(&self, raw: RawAddFile) -> Result<LoadedAddFile, TreefileError> {
        self.check(&raw.dest, "add-files.dest", syntax::check_dest)?;
        let mode = match &raw.mode {
            Some(mode) => Some(
                syntax::parse_mode(mode.get_ref())
                    .map_err(|r| self.invalid(mode, "add-files.mode", r))?,
            ),
            None => None,
        };
        let source = self.absolute(raw.source.get_ref());
        let read = std::fs::read(&source).and_then(|content| {
            let permissions = std::fs::metadata(&source)?.permissions();
            Ok((content, permissions.mode() & 0o7777))
        });
        let (content, source_mode) = read.map_err(|e| {
            self.invalid(
                &raw.source,
                "add-files.source",
                format!(
                    "cannot read `{}`: {e}; paths are relative to this treefile's directory",
                    source.display()
                ),
            )
        })?;
        Ok(LoadedAddFile {
            file: AddFile {
                source,
                dest: raw.dest.into_inner(),
                mode,
            },
            effective_mode: mode.unwrap_or(source_mode),
            content,
        })
    }

    fn postprocess(&self, raw: RawPostprocess) -> Result<Postprocess, TreefileError> {
        self.check(&raw.name, "postprocess.name", syntax::check_name)?;
        let name = raw.name.get_ref().clone();
        let script = match (raw.script, raw.file) {
            (Some(script), None) => script.into_inner(),
            (None, Some(file)) => {
                let path = self.absolute(file.get_ref());
                std::fs::read_to_string(&path).map_err(|e| {
                    self.invalid(
                        &file,
                        "postprocess.file",
                        format!("cannot read `{}`: {e}; paths are relative to this treefile's directory", path.display()),
                    )
                })?
            }
            _ => {
                return Err(self.invalid(
                    &raw.name,
                    "postprocess",
                    format!(
                        "step `{name}` needs exactly one of `script` (inline) or `file` (a path)"
                    ),
                ))
            }
        };
        if script.trim().is_empty() {
            return Err(self.invalid(
                &raw.name,
                "postprocess",
                format!("step `{name}` has an empty script"),
            ));
        }
        Ok(Postprocess { name, script })
    }
}

/// Debian's name for the architecture this program runs on.
fn host_debian_arch() -> Option<&'static str> {
    Some(match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        _ => return None,
    })
}

/// Resolves `.` and `..` lexically (no symlinks followed); `..` at the root stays at the root.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let popped =
                    matches!(out.components().next_back(), Some(Component::Normal(_))) && out.pop();
                if !popped && !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically() {
        let cases = [
            ("/a/b/../c", "/a/c"),
            ("/a/./b", "/a/b"),
            ("/../x", "/x"),
            ("a/../../b", "../b"),
            ("treefiles/../common/base.toml", "common/base.toml"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize(Path::new(input)),
                PathBuf::from(expected),
                "{input}"
            );
        }
    }

    #[test]
    fn version_prefixes() {
        for (input, ok) in [
            ("<date:%Y%m%d>", true),
            ("1.2", true),
            ("", false),
            ("<date", false),
            ("a b", false),
        ] {
            assert_eq!(check_version_prefix(input).is_ok(), ok, "{input:?}");
        }
    }
}
