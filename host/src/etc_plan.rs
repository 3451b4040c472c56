//! What libostree's 3-way /etc merge does to a new deployment, computed before it runs.
//!
//! O = the merge deployment's `/usr/etc` (the defaults it shipped), L = its `/etc` (what the
//! admin has), N = the new deployment's `/usr/etc`. libostree diffs O against L (identity:
//! type, uid, gid, mode, symlink target, content), deletes locally removed paths from N and
//! copies locally modified or added paths from L over N. So an untouched file follows the new
//! default (deletion included) and a touched one wins. A locally modified file that becomes a
//! directory in N (or the reverse) cannot be merged: libostree 2022.7 fails midway, so
//! [`Host::deploy`](crate::host::Host::deploy) refuses first when [`EtcPlan::conflicts`] is
//! not empty.
//!
//! [`plan`] is pure over [`Tree`] maps; at the edge, [`read_dir_tree`] walks a directory handle
//! and [`read_tree`] a commit's tree.

use anyhow::{Context, Result};
use cap_std::fs::Dir;
use cap_std::fs::MetadataExt;
use ostree::gio::{self, prelude::*};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What a path is, for the merge's identity check (mtime and xattrs are not compared).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Kind {
    File {
        sha256: String,
    },
    Dir,
    Symlink {
        target: String,
    },
    /// Sockets, FIFOs, devices: the merge skips them.
    Special,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub kind: Kind,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits only (`0o7777`).
    pub mode: u32,
}

impl Entry {
    fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

/// Paths relative to the etc directory (`"ssh/sshd_config"`) and what they are.
pub type Tree = BTreeMap<String, Entry>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultChange {
    Added,
    Changed,
    Removed,
}

/// A path the admin never touched whose default differs in the new version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewDefault {
    pub path: String,
    pub change: DefaultChange,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub path: String,
    pub reason: String,
}

/// The merge's outcome, path by path (paths under a reported directory are folded into it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EtcPlan {
    /// Modified locally: the local version is kept over the new default.
    pub local_edits_kept: Vec<String>,
    /// Added locally: kept.
    pub local_additions_kept: Vec<String>,
    /// Removed locally: stays removed even if the new version ships it.
    pub local_removals_kept: Vec<String>,
    /// Untouched locally and changed in the new version: the new default is taken.
    pub new_defaults_taken: Vec<NewDefault>,
    /// Paths the merge cannot handle; the deploy is refused while any exist.
    pub conflicts: Vec<Conflict>,
}

impl EtcPlan {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.char_indices()
        .filter(|(_, c)| *c == '/')
        .map(move |(i, _)| &path[..i])
}

/// Computes what merging `local` (L, diffed against `old_defaults`, O) into `new_defaults`
/// (N) does.
pub fn plan(old_defaults: &Tree, local: &Tree, new_defaults: &Tree) -> EtcPlan {
    let mut out = EtcPlan::default();
    let removed = |p: &str| old_defaults.contains_key(p) && !local.contains_key(p);
    let added = |p: &str| local.contains_key(p) && !old_defaults.contains_key(p);
    let mut paths: Vec<&String> = old_defaults.keys().chain(local.keys()).collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        let (o, l) = (old_defaults.get(path), local.get(path));
        if [o, l].iter().flatten().any(|e| e.kind == Kind::Special) {
            continue;
        }
        match (o, l) {
            (Some(_), None) => {
                if !ancestors(path).any(removed) {
                    out.local_removals_kept.push(path.clone());
                }
            }
            (None, Some(l)) => {
                if !ancestors(path).any(added) {
                    out.local_additions_kept.push(path.clone());
                }
                check_copy(path, l, new_defaults, &mut out.conflicts);
            }
            (Some(o), Some(l)) if o != l => {
                out.local_edits_kept.push(path.clone());
                check_copy(path, l, new_defaults, &mut out.conflicts);
            }
            (Some(o), Some(_)) => {
                let change = match new_defaults.get(path) {
                    None => DefaultChange::Removed,
                    Some(n) if n != o => DefaultChange::Changed,
                    Some(_) => continue,
                };
                let parent_removed_too = ancestors(path).any(|a| {
                    old_defaults.contains_key(a)
                        && local.contains_key(a)
                        && !new_defaults.contains_key(a)
                });
                if !(change == DefaultChange::Removed && parent_removed_too) {
                    out.new_defaults_taken.push(NewDefault {
                        path: path.clone(),
                        change,
                    });
                }
            }
            (None, None) => {}
        }
    }
    for (path, entry) in new_defaults {
        let known = |p: &str| old_defaults.contains_key(p) || local.contains_key(p);
        if known(path) || entry.kind == Kind::Special {
            continue;
        }
        // A new default inside a locally removed directory is removed with it; one inside a
        // new directory is reported with that directory.
        if ancestors(path).any(|a| removed(a) || !known(a) && new_defaults.contains_key(a)) {
            continue;
        }
        out.new_defaults_taken.push(NewDefault {
            path: path.clone(),
            change: DefaultChange::Added,
        });
    }
    out.new_defaults_taken.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Copying local `entry` to `path` over the new defaults must not meet a type change.
fn check_copy(path: &str, entry: &Entry, new_defaults: &Tree, conflicts: &mut Vec<Conflict>) {
    let reason = match new_defaults.get(path) {
        Some(n) if n.is_dir() && !entry.is_dir() => Some(format!(
            "modified locally, and the new version makes it a directory: move your /etc/{path} \
             aside (e.g. into the new directory) and retry"
        )),
        Some(n) if !n.is_dir() && entry.is_dir() => Some(format!(
            "a directory with local changes, and the new version makes it a file: remove or \
             rename /etc/{path} and retry"
        )),
        _ => ancestors(path)
            .find(|a| new_defaults.get(*a).is_some_and(|n| !n.is_dir()))
            .map(|a| {
                format!(
                    "changed locally inside /etc/{a}, which the new version makes a file: \
                     remove or move /etc/{a} and retry"
                )
            }),
    };
    if let Some(reason) = reason {
        conflicts.push(Conflict {
            path: path.into(),
            reason,
        });
    }
}

/// Reads the tree under the directory `dir` on disk (an /etc or /usr/etc of a deployment).
pub fn read_dir_tree(dir: &Dir) -> Result<Tree> {
    let mut tree = Tree::new();
    walk_dir(dir, "", &mut tree)?;
    Ok(tree)
}

fn walk_dir(dir: &Dir, prefix: &str, tree: &mut Tree) -> Result<()> {
    let listing = || format!("listing {}", if prefix.is_empty() { "." } else { prefix });
    for entry in dir.entries().with_context(listing)? {
        let name = entry.with_context(listing)?.file_name();
        let path = format!("{prefix}{}", name.to_string_lossy());
        let meta = dir
            .symlink_metadata(&name)
            .with_context(|| format!("reading {path}"))?;
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_symlink() {
            let target = dir
                .read_link_contents(&name)
                .with_context(|| format!("reading link {path}"))?;
            Kind::Symlink {
                target: target.to_string_lossy().into_owned(),
            }
        } else if file_type.is_file() {
            let content = dir.read(&name).with_context(|| format!("reading {path}"))?;
            Kind::File {
                sha256: hex::encode(Sha256::digest(&content)),
            }
        } else {
            Kind::Special
        };
        let is_dir = kind == Kind::Dir;
        tree.insert(
            path.clone(),
            Entry {
                kind,
                uid: meta.uid(),
                gid: meta.gid(),
                mode: meta.mode() & 0o7777,
            },
        );
        if is_dir {
            let sub = dir
                .open_dir(&name)
                .with_context(|| format!("opening {path}"))?;
            walk_dir(&sub, &format!("{path}/"), tree)?;
        }
    }
    Ok(())
}

const ATTRIBUTES: &str =
    "standard::name,standard::type,standard::symlink-target,unix::uid,unix::gid,unix::mode";

/// Reads the tree under `dir`, a directory of a commit (`repo.read_commit` then
/// `resolve_relative_path`; a local `gio::File::for_path` works too). A missing `dir` is empty.
pub fn read_tree(dir: &gio::File) -> Result<Tree> {
    let mut tree = Tree::new();
    if !dir.query_exists(gio::Cancellable::NONE) {
        return Ok(tree);
    }
    walk(dir, "", &mut tree).with_context(|| {
        format!(
            "reading {}",
            dir.path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| dir.uri().into())
        )
    })?;
    Ok(tree)
}

fn walk(dir: &gio::File, prefix: &str, tree: &mut Tree) -> Result<()> {
    let children = dir.enumerate_children(
        ATTRIBUTES,
        gio::FileQueryInfoFlags::NOFOLLOW_SYMLINKS,
        gio::Cancellable::NONE,
    )?;
    while let Some(info) = children.next_file(gio::Cancellable::NONE)? {
        let name = info.name();
        let name = name.to_string_lossy();
        let path = format!("{prefix}{name}");
        let child = dir.child(&*name);
        let kind = match info.file_type() {
            gio::FileType::Directory => Kind::Dir,
            gio::FileType::SymbolicLink => Kind::Symlink {
                target: info
                    .symlink_target()
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            },
            gio::FileType::Regular => Kind::File {
                sha256: hash_content(&child).with_context(|| format!("reading {path}"))?,
            },
            _ => Kind::Special,
        };
        let entry = Entry {
            kind,
            uid: info.attribute_uint32("unix::uid"),
            gid: info.attribute_uint32("unix::gid"),
            mode: info.attribute_uint32("unix::mode") & 0o7777,
        };
        let is_dir = entry.is_dir();
        tree.insert(path.clone(), entry);
        if is_dir {
            walk(&child, &format!("{path}/"), tree)?;
        }
    }
    Ok(())
}

fn hash_content(file: &gio::File) -> Result<String> {
    let mut hasher = Sha256::new();
    if let Some(repo_file) = file.downcast_ref::<ostree::RepoFile>() {
        // A commit's file: read its content object (gio's read() on it would hand back a
        // stream that is not a GFileInputStream).
        repo_file.ensure_resolved()?;
        let (stream, _, _) = repo_file
            .repo()
            .load_file(&repo_file.checksum(), gio::Cancellable::NONE)?;
        if let Some(stream) = stream {
            loop {
                let chunk = stream.read_bytes(64 * 1024, gio::Cancellable::NONE)?;
                if chunk.is_empty() {
                    break;
                }
                hasher.update(&chunk);
            }
        }
    } else if let Some(path) = file.path() {
        hasher.update(std::fs::read(&path)?);
    } else {
        let (content, _) = file.load_contents(gio::Cancellable::NONE)?;
        hasher.update(&content);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str) -> Entry {
        Entry {
            kind: Kind::File {
                sha256: content.into(),
            },
            uid: 0,
            gid: 0,
            mode: 0o644,
        }
    }

    fn dir() -> Entry {
        Entry {
            kind: Kind::Dir,
            uid: 0,
            gid: 0,
            mode: 0o755,
        }
    }

    fn tree(entries: &[(&str, Entry)]) -> Tree {
        entries
            .iter()
            .map(|(p, e)| (p.to_string(), e.clone()))
            .collect()
    }

    fn changed(path: &str, change: DefaultChange) -> NewDefault {
        NewDefault {
            path: path.into(),
            change,
        }
    }

    #[test]
    fn untouched_files_follow_new_defaults_including_deletion() {
        let o = tree(&[("a", file("1")), ("b", file("1")), ("c", file("1"))]);
        let n = tree(&[("a", file("2")), ("c", file("1")), ("d", file("1"))]);
        let p = plan(&o, &o, &n);
        assert_eq!(
            p.new_defaults_taken,
            vec![
                changed("a", DefaultChange::Changed),
                changed("b", DefaultChange::Removed),
                changed("d", DefaultChange::Added)
            ]
        );
        assert!(p.local_edits_kept.is_empty() && p.conflicts.is_empty());
    }

    #[test]
    fn local_edits_additions_and_removals_are_kept() {
        let o = tree(&[
            ("a", file("1")),
            ("b", file("1")),
            ("s", dir()),
            ("s/x", file("1")),
        ]);
        let mut chmod = file("1");
        chmod.mode = 0o600;
        let l = tree(&[
            ("a", file("mine")),
            ("b", chmod),
            ("new", dir()),
            ("new/y", file("1")),
        ]);
        let n = tree(&[
            ("a", file("2")),
            ("b", file("1")),
            ("s", dir()),
            ("s/x", file("2")),
        ]);
        let p = plan(&o, &l, &n);
        assert_eq!(p.local_edits_kept, vec!["a", "b"]);
        assert_eq!(p.local_additions_kept, vec!["new"]);
        assert_eq!(p.local_removals_kept, vec!["s"]);
        assert!(p.new_defaults_taken.is_empty(), "{p:?}");
        assert!(p.conflicts.is_empty());
    }

    #[test]
    fn file_becoming_directory_conflicts_both_ways() {
        let o = tree(&[
            ("f", file("1")),
            ("d", dir()),
            ("d/x", file("1")),
            ("p", file("1")),
        ]);
        let l = tree(&[
            ("f", file("mine")),
            ("d", dir()),
            ("d/x", file("mine")),
            ("p", dir()),
        ]);
        let n = tree(&[("f", dir()), ("d", file("now a file")), ("p", file("1"))]);
        let p = plan(&o, &l, &n);
        let paths: Vec<&str> = p.conflicts.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, vec!["d/x", "f", "p"]);
        assert!(p.conflicts[1].reason.contains("makes it a directory"));
    }

    #[test]
    fn untouched_file_may_become_a_directory() {
        let o = tree(&[("f", file("1"))]);
        let n = tree(&[("f", dir()), ("f/x", file("1"))]);
        let p = plan(&o, &o, &n);
        assert!(p.conflicts.is_empty());
        assert_eq!(
            p.new_defaults_taken,
            vec![
                changed("f", DefaultChange::Changed),
                changed("f/x", DefaultChange::Added)
            ]
        );
    }

    #[test]
    fn special_files_are_skipped() {
        let fifo = Entry {
            kind: Kind::Special,
            ..file("")
        };
        let p = plan(
            &Tree::new(),
            &tree(&[("fifo", fifo.clone())]),
            &tree(&[("f2", fifo)]),
        );
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn read_tree_sees_types_modes_and_content() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), "x").unwrap();
        std::fs::set_permissions(
            d.path().join("sub/f"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::os::unix::fs::symlink("sub/f", d.path().join("l")).unwrap();
        let t = read_tree(&gio::File::for_path(d.path())).unwrap();
        assert_eq!(t.keys().collect::<Vec<_>>(), vec!["l", "sub", "sub/f"]);
        assert_eq!(
            t["l"].kind,
            Kind::Symlink {
                target: "sub/f".into()
            }
        );
        assert_eq!(t["sub/f"].mode, 0o600);
        assert_eq!(
            t["sub/f"].kind,
            Kind::File {
                sha256: hex::encode(Sha256::digest(b"x"))
            }
        );
        assert!(read_tree(&gio::File::for_path(d.path().join("missing")))
            .unwrap()
            .is_empty());
        let handle = Dir::open_ambient_dir(d.path(), cap_std::ambient_authority()).unwrap();
        assert_eq!(read_dir_tree(&handle).unwrap(), t);
    }
}
