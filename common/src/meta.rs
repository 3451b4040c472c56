//! Keys of the metadata that every Keel commit carries. Both the composer (which writes them)
//! and the agent (which checks them) use these names, so they live in one place.

/// The human version string, e.g. `20261122.0`. ostree's own key.
pub const VERSION: &str = "version";
/// `as`: the refs this commit may be published on; the agent refuses a commit whose binding
/// does not name the ref it follows. ostree's own key.
pub const REF_BINDING: &str = "ostree.ref-binding";
/// `s`: sha256 of everything that went into the compose (treefile, resolved packages with
/// their sha256, Keel's own version). Equal input hashes mean a no-op compose.
pub const INPUT_HASH: &str = "keel.input-hash";
/// `a(ss)`: installed packages as (name, version), sorted by name.
pub const PACKAGES: &str = "keel.packages";
/// `s`: the merged treefile the commit was composed from, as TOML.
pub const TREEFILE: &str = "keel.treefile";
/// `s`: sha256 of the treefile's merged content.
pub const TREEFILE_HASH: &str = "keel.treefile-hash";
/// `s`: the version of Keel that composed the commit.
pub const COMPOSER_VERSION: &str = "keel.composer-version";
/// `s`: the kernel version shipped under `/usr/lib/modules/$kver`.
pub const KERNEL_VERSION: &str = "ostree.linux";
