//! Keel's composer: a TOML treefile becomes a signed, versioned ostree commit of a bootable
//! Debian container host.
#![forbid(unsafe_code)]

pub mod apt;
pub mod cachedir;
pub mod cli;
pub mod commit;
pub mod customize;
pub mod fetch;
pub mod format;
pub mod initramfs;
pub mod install;
pub mod ostreeify;
pub mod overlay;
pub mod package;
pub mod passwd;
pub mod pipeline;
pub mod release;
pub mod resolve_cache;
pub mod sandbox;
pub mod scratch;
pub mod tree_dir;
pub mod treefile;
