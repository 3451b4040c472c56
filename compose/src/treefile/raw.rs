//! The treefile exactly as written in one file: every key optional, unknown keys rejected,
//! values that later checks point at kept with their byte spans (for line numbers).

use serde::Deserialize;
use toml::Spanned;

/// One treefile as parsed, before includes are followed.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawTreefile {
    pub include: Option<Vec<Spanned<String>>>,
    #[serde(rename = "ref")]
    pub reference: Option<Spanned<String>>,
    pub automatic_version_prefix: Option<Spanned<String>>,
    pub repos: Option<Vec<Spanned<RawRepo>>>,
    pub packages: Option<Vec<Spanned<String>>>,
    pub exclude_packages: Option<Vec<Spanned<String>>>,
    pub recommends: Option<bool>,
    pub units: Option<Vec<Spanned<String>>>,
    pub default_target: Option<Spanned<String>>,
    pub add_files: Option<Vec<Spanned<RawAddFile>>>,
    pub remove_files: Option<Vec<Spanned<String>>>,
    pub postprocess: Option<Vec<Spanned<RawPostprocess>>>,
    pub initramfs: Option<RawInitramfs>,
    pub passwd: Option<RawPasswd>,
    pub static_deltas: Option<u32>,
}

/// A `[[repos]]` entry; which of its shapes it is gets decided in `layer`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawRepo {
    pub name: Spanned<String>,
    pub machine_sources: Option<bool>,
    pub url: Option<Spanned<String>>,
    pub suites: Option<Vec<String>>,
    pub components: Option<Vec<String>>,
    pub architectures: Option<Vec<String>>,
    pub keyring: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub layer: Option<Spanned<String>>,
    pub base_system: Option<bool>,
}

/// An `[[add-files]]` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawAddFile {
    pub source: Spanned<String>,
    pub dest: Spanned<String>,
    pub mode: Option<Spanned<String>>,
}

/// A `[[postprocess]]` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawPostprocess {
    pub name: Spanned<String>,
    pub script: Option<Spanned<String>>,
    pub file: Option<Spanned<String>>,
}

/// The `[initramfs]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawInitramfs {
    pub modules: Option<Vec<Spanned<String>>>,
    pub drivers: Option<Vec<Spanned<String>>>,
    pub compress: Option<Spanned<String>>,
}

/// The `[passwd]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawPasswd {
    pub check: Option<bool>,
}
