//! The merged treefile written back as one deterministic TOML document, and the hash that
//! says whether the inputs of a compose changed.
//!
//! Paths inside the top-level treefile's directory are written relative to it, so the text
//! and the hash do not depend on where the checkout lives; other paths stay absolute.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Initramfs, PasswdPolicy, Repo, RepoLayer, Treefile};

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct View<'a> {
    #[serde(rename = "ref")]
    reference: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    automatic_version_prefix: Option<&'a str>,
    packages: &'a [String],
    exclude_packages: &'a [String],
    recommends: bool,
    units: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    default_target: Option<&'a str>,
    remove_files: &'a [String],
    static_deltas: u32,
    repos: Vec<RepoView<'a>>,
    add_files: Vec<AddFileView<'a>>,
    postprocess: Vec<PostprocessView<'a>>,
    initramfs: &'a Initramfs,
    passwd: &'a PasswdPolicy,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct RepoView<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    machine_sources: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suites: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    components: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    architectures: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keyring: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    /// Only when it differs from the repo's default, so treefiles without the key keep
    /// their canonical form (and hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    layer: Option<&'static str>,
    /// Likewise only when it differs from the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    base_system: Option<bool>,
}

#[derive(Serialize)]
struct AddFileView<'a> {
    source: String,
    dest: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
}

#[derive(Serialize)]
struct PostprocessView<'a> {
    name: &'a str,
    script: &'a str,
}

/// The canonical TOML of `treefile` (its own `canonical` and `hash` are ignored); `base` is the
/// absolute directory of the top-level file.
pub fn render(treefile: &Treefile, base: &Path) -> String {
    let shown = |path: &Path| match path.strip_prefix(base) {
        Ok(relative) => relative.display().to_string(),
        Err(_) => path.display().to_string(),
    };
    let default_base = super::default_base_system(&treefile.repos);
    let repos = treefile
        .repos
        .iter()
        .map(|repo| {
            let mut view = RepoView {
                name: repo.name(),
                machine_sources: None,
                url: None,
                suites: None,
                components: None,
                architectures: None,
                keyring: None,
                path: None,
                layer: None,
                base_system: None,
            };
            let base = treefile.base_system_repos.contains(repo.name());
            if base != default_base.contains(repo.name()) {
                view.base_system = Some(base);
            }
            let layer = if treefile.top_layer_repos.contains(repo.name()) {
                RepoLayer::Top
            } else {
                RepoLayer::Base
            };
            if layer != repo.default_layer() {
                view.layer = Some(layer.as_str());
            }
            match repo {
                Repo::Machine { .. } => view.machine_sources = Some(true),
                Repo::Apt(apt) => {
                    view.url = Some(&apt.url);
                    view.suites = Some(&apt.suites);
                    view.components = Some(&apt.components);
                    view.architectures = Some(&apt.architectures);
                    view.keyring = Some(shown(&apt.keyring));
                }
                Repo::Local { path, .. } => view.path = Some(shown(path)),
            }
            view
        })
        .collect();
    let view = View {
        reference: &treefile.reference,
        automatic_version_prefix: treefile.automatic_version_prefix.as_deref(),
        packages: &treefile.packages,
        exclude_packages: &treefile.exclude_packages,
        recommends: treefile.recommends,
        units: &treefile.units,
        default_target: treefile.default_target.as_deref(),
        remove_files: &treefile.remove_files,
        static_deltas: treefile.static_deltas,
        repos,
        add_files: treefile
            .add_files
            .iter()
            .map(|add| AddFileView {
                source: shown(&add.source),
                dest: &add.dest,
                mode: add.mode.map(|m| format!("{m:04o}")),
            })
            .collect(),
        postprocess: treefile
            .postprocess
            .iter()
            .map(|step| PostprocessView {
                name: &step.name,
                script: &step.script,
            })
            .collect(),
        initramfs: &treefile.initramfs,
        passwd: &treefile.passwd,
    };
    // Serializing plain strings, lists and tables cannot fail; an error here is a bug in the
    // view above, so it is shown in place of the document rather than hidden.
    toml::to_string(&view).unwrap_or_else(|e| format!("# cannot render the treefile: {e}\n"))
}

/// What the hash covers of one add-files entry.
pub struct HashedFile<'a> {
    pub dest: &'a str,
    /// The mode the file gets in the tree.
    pub mode: u32,
    pub content: &'a [u8],
}

/// sha256 hex over the canonical text, then each add-files entry's dest, mode and content
/// (length framed, so no two different inputs give the same byte stream). Postprocess files
/// are already inlined in the canonical text as `script`.
pub fn hash(canonical: &str, add_files: &[HashedFile]) -> String {
    let mut hasher = Sha256::new();
    let mut frame = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    frame(canonical.as_bytes());
    for file in add_files {
        frame(file.dest.as_bytes());
        frame(&file.mode.to_le_bytes());
        frame(file.content);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_frames_its_inputs() {
        let file = |dest, mode, content| HashedFile {
            dest,
            mode,
            content,
        };
        let a = hash("x", &[file("/a", 0o644, b"bc")]);
        assert_ne!(a, hash("x", &[file("/ab", 0o644, b"c")]));
        assert_ne!(a, hash("x", &[file("/a", 0o755, b"bc")]));
        assert_ne!(a, hash("y", &[file("/a", 0o644, b"bc")]));
        assert_eq!(a, hash("x", &[file("/a", 0o644, b"bc")]));
        assert_eq!(a.len(), 64);
    }
}
