//! The package cache for warm composes (rpm-ostree's pkgcache idea): a package's unpacked
//! content is kept, keyed by the `.deb`'s sha256, so a later compose places it without
//! decompressing the archive or running dpkg's unpack.
//!
//! Storage (through libostree): an ostree repository in `bare` mode at `CACHEDIR/pkgcache-repo` (bare, not
//! bare-user: composes run as root and the files must keep their real owners and modes). Each
//! package is one commit on the ref `pkgcache/<sha256>` holding `data/` (the filesystem archive,
//! with the merged-/usr aliases folded into `usr/`), `control/` (the control members) and
//! `files.keel` (each archive member as dpkg names it, with its type).
//!
//! Soundness: placing files is only half of what `dpkg --unpack` does; it also runs `preinst`,
//! records conffiles, honours diversions, activates file triggers and checks for files owned by
//! other packages. Rather than imitate all of that, only packages for which the other half is
//! empty are cached and placed:
//! - the control archive holds nothing but `control`, `md5sums`, `shlibs`, `symbols` and a
//!   `triggers` file with only `activate-noawait` lines (no maintainer scripts, no conffiles,
//!   no trigger interests, no debconf `config`/`templates`): dpkg activates those triggers
//!   again when it configures the placed package, from the copy in its info directory;
//! - at placement time, none of the package's paths is diverted (`var/lib/dpkg/diversions`),
//!   lies under a path some installed package has a file-trigger interest in
//!   (`var/lib/dpkg/triggers/File`), or already exists in the tree as anything but a directory;
//! - dpkg's journal (`var/lib/dpkg/updates`) is empty, so appending to `status` is safe.
//!
//! Every other package goes through `dpkg --unpack` as on a cold compose. A placed package gets
//! dpkg's info files (`.list`, `.md5sums`, `.shlibs`, `.symbols`, `.triggers`) and a status
//! entry "install ok unpacked"; the following `dpkg --configure` marks it installed exactly
//! as for the others. Files are checked out by copy, not hardlinked: a later maintainer script or postprocess
//! script that edits a file in place then cannot corrupt the cache. The price is a copy per
//! file, still far cheaper than decompressing and unpacking. Cold composes pay one extra
//! extraction and commit per cacheable package, after the install succeeded (in parallel); a
//! package found uncacheable is remembered as an empty file `keel-uncacheable-2/<sha256>` in the
//! repository so later composes do not inspect it again.
//!
//! Measured on Debian bookworm's required set (96 packages, 62 of them cacheable, 2 cores):
//! cold 22.5 s (of which 6.7 s filling the cache), warm 11.1 s, and the two trees agree entry
//! by entry and under `dpkg --verify` (`heavy_install_debian_required_set_cold_then_warm`).
//! What remains is dpkg unpacking and configuring the packages with maintainer scripts.

use super::extract;
use super::usr_links;
use crate::package::ResolvedPackage;
use crate::tree_dir::{Kind, TreeDir};
use ostree::prelude::*;
use ostree::{gio, glib};
use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Directory in the repository with an empty file per `.deb` sha256 known not to be cacheable.
/// (Versioned: what counts as cacheable may grow.)
const UNCACHEABLE: &str = "keel-uncacheable-2";

/// Control members a cacheable package may have.
const HARMLESS_MEMBERS: &[&str] = &["control", "md5sums", "shlibs", "symbols", "triggers"];

/// Control members copied to `var/lib/dpkg/info/PACKAGE.MEMBER` when placing a package.
const INFO_MEMBERS: &[&str] = &["md5sums", "shlibs", "symbols", "triggers"];

#[derive(Debug, thiserror::Error)]
pub enum PackageCacheError {
    #[error("package cache {}: {action}: {source}", repo.display())]
    Io {
        repo: PathBuf,
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}package cache {}: {action}: {source}; delete {} if it is damaged (the next compose \
         fills it again)",
        package.as_ref().map(|p| format!("{p}: ")).unwrap_or_default(),
        repo.display(),
        repo.display()
    )]
    Ostree {
        /// `describe`'s text, when a package is involved.
        package: Option<String>,
        repo: PathBuf,
        action: String,
        #[source]
        source: glib::Error,
    },
    /// `package` is `describe`'s text; `reason` follows it.
    #[error("{package} {reason} (while adding it to the package cache)")]
    Extract { package: String, reason: String },
    #[error("{package}: writing its files into the tree {}: {action}: {source}", tree.display())]
    Tree {
        package: String,
        tree: PathBuf,
        action: String,
        #[source]
        source: std::io::Error,
    },
}

/// See the module documentation. [`PackageCache::disabled`] makes every compose cold.
#[derive(Clone, Debug)]
pub struct PackageCache {
    repo: Option<PathBuf>,
}

/// One archive member of a cached package.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Member {
    /// As dpkg lists it: `/.`, `/usr`, `/bin/sh`.
    path: String,
    dir: bool,
}

impl PackageCache {
    pub fn disabled() -> Self {
        Self { repo: None }
    }

    /// Opens (creating if needed) the cache's bare repository `repo` (the cache directory's
    /// `CacheDir::package_repo`).
    pub fn open(repo: &Path) -> Result<Self, PackageCacheError> {
        let repo = repo.to_path_buf();
        if !repo.join("config").exists() {
            std::fs::create_dir_all(&repo).map_err(|source| PackageCacheError::Io {
                repo: repo.clone(),
                action: "creating the directory".into(),
                source,
            })?;
            ostree::Repo::new_for_path(&repo)
                .create(ostree::RepoMode::Bare, gio::Cancellable::NONE)
                .map_err(ostree_err(&repo, None, "creating the repository"))?;
        }
        Ok(Self { repo: Some(repo) })
    }

    /// A libostree handle on the repository (one per call: `ostree::Repo` is not `Sync`, and
    /// imports run on several threads).
    fn handle(
        &self,
        repo: &Path,
        package: &ResolvedPackage,
    ) -> Result<ostree::Repo, PackageCacheError> {
        let handle = ostree::Repo::new_for_path(repo);
        handle.open(gio::Cancellable::NONE).map_err(ostree_err(
            repo,
            Some(package),
            "opening the repository",
        ))?;
        Ok(handle)
    }

    /// The cache's bare repository, unless the cache is disabled.
    pub fn repo_path(&self) -> Option<&Path> {
        self.repo.as_deref()
    }

    /// Whether the package with this `.deb` sha256 is cached.
    pub fn contains(&self, sha256: &str) -> bool {
        let Some(repo) = &self.repo else {
            return false;
        };
        let handle = ostree::Repo::new_for_path(repo);
        handle.open(gio::Cancellable::NONE).is_ok()
            && matches!(handle.resolve_rev(&cache_ref(sha256), true), Ok(Some(_)))
    }

    /// Adds `package` (from `deb`) to the cache if it is cacheable and not cached yet; returns
    /// whether it was added.
    pub(crate) fn import(
        &self,
        package: &ResolvedPackage,
        deb: &Path,
    ) -> Result<bool, PackageCacheError> {
        let Some(repo) = &self.repo else {
            return Ok(false);
        };
        let skip = repo.join(UNCACHEABLE).join(&package.sha256);
        if self.contains(&package.sha256) || skip.exists() {
            return Ok(false);
        }
        let io = |action: &str| {
            let (repo, action) = (repo.clone(), action.to_string());
            move |source| PackageCacheError::Io {
                repo,
                action,
                source,
            }
        };
        let extract_err = |reason| PackageCacheError::Extract {
            package: super::describe(package),
            reason,
        };
        let staging = tempfile::tempdir_in(repo).map_err(io("creating a staging directory"))?;
        let control = staging.path().join("control");
        extract::unpack_control(deb, &control).map_err(extract_err)?;
        if !harmless_control(&control).map_err(io("reading control members"))? {
            // Remembered, so later composes do not look again at the same file.
            std::fs::create_dir_all(repo.join(UNCACHEABLE))
                .and_then(|()| std::fs::write(&skip, ""))
                .map_err(io("marking a package uncacheable"))?;
            return Ok(false);
        }
        let data = staging.path().join("data");
        std::fs::create_dir(&data).map_err(io("creating a staging directory"))?;
        let links = usr_links(&package.arch);
        for link in &links {
            std::fs::create_dir_all(data.join("usr").join(link))
                .map_err(io("creating a staging directory"))?;
            std::os::unix::fs::symlink(format!("usr/{link}"), data.join(link))
                .map_err(io("creating a staging link"))?;
        }
        let members = extract::unpack_data(deb, &data).map_err(extract_err)?;
        for link in &links {
            std::fs::remove_file(data.join(link)).map_err(io("removing a staging link"))?;
        }
        let mut listing = String::new();
        for member in &members {
            let path = dpkg_path(&member.name);
            listing.push_str(if member.dir { "d " } else { "f " });
            listing.push_str(&path);
            listing.push('\n');
        }
        std::fs::write(staging.path().join("files.keel"), listing)
            .map_err(io("writing the file list"))?;
        let subject = format!("{} {} {}", package.name, package.version, package.arch);
        let handle = self.handle(repo, package)?;
        let staged =
            std::fs::File::open(staging.path()).map_err(io("opening the staging directory"))?;
        commit_consuming(&handle, &staged, &subject, &cache_ref(&package.sha256))
            .map_err(ostree_err(repo, Some(package), "storing the package"))?;
        Ok(true)
    }

    /// [`PackageCache::import`] for every package, `jobs` at a time; returns how many were added.
    pub(crate) fn import_all(
        &self,
        packages: &[ResolvedPackage],
        debs: &[PathBuf],
        jobs: usize,
    ) -> Result<usize, PackageCacheError> {
        if self.repo.is_none() {
            return Ok(0);
        }
        let next = AtomicUsize::new(0);
        let added = AtomicUsize::new(0);
        let first_error = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..jobs.max(1) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let (Some(p), Some(deb)) = (packages.get(i), debs.get(i)) else {
                        break;
                    };
                    match self.import(p, deb) {
                        Ok(true) => {
                            added.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert(e);
                            }
                            break;
                        }
                    }
                });
            }
        });
        match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(added.into_inner()),
        }
    }

    /// Places a cached `package` into `root` and registers it with dpkg as unpacked, when that
    /// is sound (see the module documentation); returns whether it did.
    pub(crate) fn place(
        &self,
        root: &Path,
        package: &ResolvedPackage,
    ) -> Result<bool, PackageCacheError> {
        let Some(repo) = &self.repo else {
            return Ok(false);
        };
        if !self.contains(&package.sha256) {
            return Ok(false);
        }
        let io = |action: String| {
            let repo = repo.clone();
            move |source| PackageCacheError::Io {
                repo,
                action,
                source,
            }
        };
        let tree_err = |action: String| {
            let (package, tree) = (super::describe(package), root.to_path_buf());
            move |source| PackageCacheError::Tree {
                package,
                tree,
                action,
                source,
            }
        };
        let tree = TreeDir::open(root).map_err(tree_err("opening the tree".into()))?;
        let admin = Path::new("var/lib/dpkg");
        if journal_pending(&tree, &admin.join("updates"))
            .map_err(tree_err("reading dpkg's journal".into()))?
        {
            return Ok(false);
        }
        let handle = self.handle(repo, package)?;
        // checkout_at wants the commit's checksum, not a ref.
        let rev = handle
            .resolve_rev(&cache_ref(&package.sha256), false)
            .map_err(ostree_err(repo, Some(package), "looking up its commit"))?
            .map(|c| c.to_string())
            .unwrap_or_default();
        let listing = read_listing(&handle, &rev).map_err(ostree_err(
            repo,
            Some(package),
            "reading its file list",
        ))?;
        let members = parse_listing(&listing);
        let links = usr_links(&package.arch);
        let text = |rel: &Path| -> std::io::Result<String> {
            Ok(String::from_utf8_lossy(&tree.read_or_empty(rel)?).into_owned())
        };
        let diverted =
            text(&admin.join("diversions")).map_err(tree_err("reading diversions".into()))?;
        let interests =
            text(&admin.join("triggers/File")).map_err(tree_err("reading file triggers".into()))?;
        if !placeable(&tree, &members, &links, &diverted, &interests) {
            return Ok(false);
        }

        let staging =
            tempfile::tempdir_in(repo).map_err(io("creating a staging directory".into()))?;
        let control = staging.path().join("control");
        let staged = std::fs::File::open(staging.path())
            .map_err(io("opening the staging directory".into()))?;
        let options = ostree::RepoCheckoutAtOptions {
            subpath: Some("/control".into()),
            ..Default::default()
        };
        handle
            .checkout_at(
                Some(&options),
                staged.as_raw_fd(),
                "control",
                &rev,
                gio::Cancellable::NONE,
            )
            .map_err(ostree_err(
                repo,
                Some(package),
                "checking out its control members",
            ))?;
        if !harmless_control(&control).map_err(io("reading control members".into()))? {
            return Ok(false);
        }
        let fields = std::fs::read_to_string(control.join("control"))
            .map_err(io(format!("reading the control file of {}", package.name)))?;
        // `placeable` saw every directory the checkout enters as a real directory (or
        // absent), so libostree's union checkout cannot be led out of the tree by a link.
        let options = ostree::RepoCheckoutAtOptions {
            subpath: Some("/data".into()),
            overwrite_mode: ostree::RepoCheckoutOverwriteMode::UnionFiles,
            force_copy: true,
            ..Default::default()
        };
        handle
            .checkout_at(
                Some(&options),
                tree.fd().as_raw_fd(),
                ".",
                &rev,
                gio::Cancellable::NONE,
            )
            .map_err(ostree_err(
                repo,
                Some(package),
                "placing its files into the tree",
            ))?;

        let info_name = info_name(&fields, &package.name);
        let info = admin.join("info");
        let list: String = members.iter().map(|m| format!("{}\n", m.path)).collect();
        tree.write(
            &info.join(format!("{info_name}.list")),
            list.as_bytes(),
            0o644,
        )
        .map_err(tree_err(format!(
            "writing the file list of {}",
            package.name
        )))?;
        for member in INFO_MEMBERS {
            let from = control.join(member);
            if from.exists() {
                let content = std::fs::read(&from)
                    .map_err(io(format!("reading the {member} of {}", package.name)))?;
                tree.write(&info.join(format!("{info_name}.{member}")), &content, 0o644)
                    .map_err(tree_err(format!(
                        "writing the {member} of {}",
                        package.name
                    )))?;
            }
        }
        append_status(&tree, &admin.join("status"), &fields).map_err(tree_err(format!(
            "adding {} to dpkg's status",
            package.name
        )))?;
        Ok(true)
    }
}

/// The ref a package's cache commit lives on.
fn cache_ref(sha256: &str) -> String {
    format!("pkgcache/{sha256}")
}

fn ostree_err(
    repo: &Path,
    package: Option<&ResolvedPackage>,
    action: &str,
) -> impl FnOnce(glib::Error) -> PackageCacheError {
    let (repo, package, action) = (
        repo.to_path_buf(),
        package.map(super::describe),
        action.to_string(),
    );
    move |source| PackageCacheError::Ostree {
        package,
        repo,
        action,
        source,
    }
}

/// Commits the directory `dir` (consuming it: its files move into the repository) on `reference`.
fn commit_consuming(
    repo: &ostree::Repo,
    dir: &std::fs::File,
    subject: &str,
    reference: &str,
) -> Result<(), glib::Error> {
    let cancellable = gio::Cancellable::NONE;
    let modifier = ostree::RepoCommitModifier::new(ostree::RepoCommitModifierFlags::CONSUME, None);
    repo.prepare_transaction(cancellable)?;
    let written = (|| -> Result<(), glib::Error> {
        let mtree = ostree::MutableTree::new();
        repo.write_dfd_to_mtree(dir.as_raw_fd(), ".", &mtree, Some(&modifier), cancellable)?;
        let root = repo.write_mtree(&mtree, cancellable)?;
        let root = root.downcast::<ostree::RepoFile>().map_err(|_| {
            glib::Error::new(gio::IOErrorEnum::Failed, "write_mtree returned no RepoFile")
        })?;
        let commit = repo.write_commit(None, Some(subject), None, None, &root, cancellable)?;
        repo.transaction_set_ref(None, reference, Some(&commit));
        repo.commit_transaction(cancellable)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = repo.abort_transaction(cancellable);
    }
    written
}

/// The `files.keel` of a cached package.
fn read_listing(repo: &ostree::Repo, rev: &str) -> Result<String, glib::Error> {
    let (root, _) = repo.read_commit(rev, gio::Cancellable::NONE)?;
    let (bytes, _) = root
        .child("files.keel")
        .load_contents(gio::Cancellable::NONE)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn harmless_control(dir: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if !HARMLESS_MEMBERS.contains(&name.to_string_lossy().as_ref()) {
            return Ok(false);
        }
        if name == "triggers" && !only_activates(&std::fs::read_to_string(dir.join("triggers"))?) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether a `triggers` control file only activates triggers without awaiting them (what
/// dh_makeshlibs writes for libraries: `activate-noawait ldconfig`). dpkg reads the installed
/// copy of that file when it configures the package, so a placed package still activates them;
/// `interest` lines, which dpkg registers at unpack, make a package uncacheable.
fn only_activates(triggers: &str) -> bool {
    triggers
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .all(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some("activate-noawait")
                && words.next().is_some()
                && words.next().is_none()
        })
}

fn journal_pending(tree: &TreeDir, updates: &Path) -> std::io::Result<bool> {
    let dir = match tree.open_dir(updates) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if !matches!(name.as_slice(), b"." | b".." | b"tmp.i") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A tar member name (`./`, `./usr/`, `./usr/bin/x`) as dpkg lists it (`/.`, `/usr`, `/usr/bin/x`).
fn dpkg_path(name: &str) -> String {
    let trimmed = name.trim_start_matches('.').trim_end_matches('/');
    if trimmed.is_empty() {
        "/.".to_string()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

/// The relative path a dpkg path really lives at in a merged-/usr tree (`/bin/sh` -> `usr/bin/sh`).
fn canonical(path: &str, links: &[&str]) -> String {
    let rel = path.trim_start_matches('/');
    let rel = if rel == "." { "" } else { rel };
    let first = rel.split('/').next().unwrap_or("");
    if links.contains(&first) {
        format!("usr/{rel}")
    } else {
        rel.to_string()
    }
}

fn parse_listing(text: &str) -> Vec<Member> {
    text.lines()
        .filter_map(|line| {
            let (kind, path) = line.split_once(' ')?;
            Some(Member {
                path: path.to_string(),
                dir: kind == "d",
            })
        })
        .collect()
}

/// The soundness checks of the module documentation that depend on the tree.
fn placeable(
    tree: &TreeDir,
    members: &[Member],
    links: &[&str],
    diversions: &str,
    file_interests: &str,
) -> bool {
    // `diversions` holds triples of lines: diverted path, where it goes, by which package.
    let diverted: HashSet<String> = diversions
        .lines()
        .step_by(3)
        .map(|p| canonical(p, links))
        .collect();
    let interests: Vec<String> = file_interests
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|p| canonical(p, links))
        .collect();
    members.iter().all(|m| {
        let path = canonical(&m.path, links);
        if diverted.contains(&path) {
            return false;
        }
        let triggered = interests
            .iter()
            .any(|i| path == *i || path.starts_with(&format!("{i}/")));
        if triggered {
            return false;
        }
        // Every directory the checkout passes through must be a real one: libostree would
        // follow a link there.
        let ancestors_are_dirs = Path::new(&path)
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .all(|a| matches!(tree.kind(a), Ok(Some(Kind::Dir)) | Ok(None)));
        if !ancestors_are_dirs {
            return false;
        }
        match tree.kind(Path::new(&path)) {
            Ok(None) => true,
            // A real directory may be shared; anything else (a file, or a symlink such as
            // /var/run -> /run that a checkout could replace) is left to dpkg.
            Ok(Some(kind)) => m.dir && kind == Kind::Dir,
            Err(_) => false,
        }
    })
}

/// The name of a package's files in `var/lib/dpkg/info`: `NAME`, or `NAME:ARCH` for
/// `Multi-Arch: same` packages.
fn info_name(control: &str, name: &str) -> String {
    let field = |key: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
    };
    match (field("Multi-Arch"), field("Architecture")) {
        (Some("same"), Some(arch)) => format!("{name}:{arch}"),
        _ => name.to_string(),
    }
}

/// The status stanza dpkg writes for an unpacked, not yet configured package.
fn status_stanza(control: &str) -> String {
    let mut out = String::new();
    for line in control.lines().filter(|l| !l.trim().is_empty()) {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("Package:") {
            out.push_str("Status: install ok unpacked\n");
        }
    }
    out
}

/// Appends a stanza to dpkg's status file, replacing the file by rename.
fn append_status(tree: &TreeDir, status: &Path, control: &str) -> std::io::Result<()> {
    let mut text = String::from_utf8_lossy(&tree.read_or_empty(status)?).into_owned();
    if !text.is_empty() {
        while text.ends_with("\n\n") {
            text.pop();
        }
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push('\n');
    }
    text.push_str(&status_stanza(control));
    tree.write_replace(status, text.as_bytes(), 0o644)
}

#[cfg(test)]
#[path = "pkgcache_tests.rs"]
mod tests;
