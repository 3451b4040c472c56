//! The treefile's changes to an installed tree, in the order the pipeline applies them:
//! `add-files`, `remove-files`, `units` and `default-target`, then `postprocess` scripts.
//!
//! Files are written through a directory handle on the tree, so an absolute symlink in the tree
//! can never redirect a write onto the composing machine. Units are enabled with
//! `systemctl --root=/ enable` inside the [`Sandbox`] (the same symlinks `systemctl enable`
//! makes on a running system); postprocess scripts run in the sandbox too, without network,
//! each failure naming its script.

use std::io;
use std::path::{Component, Path, PathBuf};

use cap_std::fs::{Dir, Permissions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::sandbox::{Sandbox, SandboxError};
use crate::treefile::{AddFile, Postprocess};

#[derive(Debug, thiserror::Error)]
pub enum CustomizeError {
    #[error("add-files: reading the source {}: {source}", path.display())]
    ReadSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("add-files: writing {dest} into the tree: {source}")]
    WriteDest {
        dest: String,
        #[source]
        source: io::Error,
    },
    #[error("{key}: {path:?} must be a path inside the tree without `..`")]
    BadPath { key: &'static str, path: String },
    #[error(
        "remove-files: /{0} does not exist in the tree; drop it from the treefile or fix the path"
    )]
    RemoveMissing(String),
    #[error("remove-files: removing /{path}: {source}")]
    Remove {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("enabling units {units}; check that each is installed by a package or add-files")]
    Units {
        units: String,
        #[source]
        source: SandboxError,
    },
    #[error("setting the default target {target}")]
    DefaultTarget {
        target: String,
        #[source]
        source: SandboxError,
    },
    #[error("postprocess script `{name}` failed; fix the script in the treefile")]
    Script {
        name: String,
        #[source]
        source: SandboxError,
    },
    #[error("postprocess script `{name}`: preparing it: {source}")]
    ScriptIo {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// A path in the tree, absolute or not, as a relative path with no `..`, `.` or empty parts.
pub fn tree_relative(key: &'static str, path: &str) -> Result<PathBuf, CustomizeError> {
    let bad = || CustomizeError::BadPath {
        key,
        path: path.to_owned(),
    };
    let mut out = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir | Component::Prefix(_) => return Err(bad()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Copies each `add-files` source to its destination (parents created, mode applied; the
/// default mode is the source's).
pub fn add_files(root: &Dir, files: &[AddFile]) -> Result<(), CustomizeError> {
    for file in files {
        let dest = tree_relative("add-files", &file.dest)?;
        let write_err = |source| CustomizeError::WriteDest {
            dest: file.dest.clone(),
            source,
        };
        let read_err = |source| CustomizeError::ReadSource {
            path: file.source.clone(),
            source,
        };
        let content = std::fs::read(&file.source).map_err(read_err)?;
        let mode = match file.mode {
            Some(mode) => mode,
            None => std::fs::metadata(&file.source).map_err(read_err)?.mode() & 0o7777,
        };
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            root.create_dir_all(parent).map_err(write_err)?;
        }
        if root.symlink_metadata(&dest).is_ok() {
            root.remove_file(&dest).map_err(write_err)?;
        }
        root.write(&dest, &content).map_err(write_err)?;
        root.set_permissions(
            &dest,
            Permissions::from_std(std::fs::Permissions::from_mode(mode)),
        )
        .map_err(write_err)?;
    }
    Ok(())
}

/// Removes each `remove-files` path (a file, symlink or whole directory).
pub fn remove_files(root: &Dir, paths: &[String]) -> Result<(), CustomizeError> {
    for path in paths {
        let rel = tree_relative("remove-files", path)?;
        let shown = rel.display().to_string();
        let meta = match root.symlink_metadata(&rel) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CustomizeError::RemoveMissing(shown))
            }
            Err(source) => {
                return Err(CustomizeError::Remove {
                    path: shown,
                    source,
                })
            }
        };
        let removed = if meta.is_dir() {
            root.remove_dir_all(&rel)
        } else {
            root.remove_file(&rel)
        };
        removed.map_err(|source| CustomizeError::Remove {
            path: shown,
            source,
        })?;
    }
    Ok(())
}

/// Enables `units` and sets the default target, as `systemctl enable` / `set-default` would.
pub fn enable_units(
    sandbox: &Sandbox,
    units: &[String],
    default_target: Option<&str>,
) -> Result<(), CustomizeError> {
    if !units.is_empty() {
        let mut argv = vec!["systemctl", "--root=/", "--no-reload", "enable"];
        argv.extend(units.iter().map(String::as_str));
        sandbox
            .run(&argv, "systemctl enable")
            .map_err(|source| CustomizeError::Units {
                units: units.join(" "),
                source,
            })?;
    }
    if let Some(target) = default_target {
        sandbox
            .run(
                &["systemctl", "--root=/", "set-default", target],
                "systemctl set-default",
            )
            .map_err(|source| CustomizeError::DefaultTarget {
                target: target.to_owned(),
                source,
            })?;
    }
    Ok(())
}

/// Where a postprocess script appears inside the sandbox.
const SCRIPT_INSIDE: &str = "/run/keel-postprocess";

/// Runs each postprocess script in the tree, in order. A script with a `#!` line runs with
/// that interpreter; any other runs with `/bin/sh -e`. `scratch` is a host directory for the
/// script files (outside the tree, so they never end up in the commit).
pub fn run_postprocess(
    sandbox: &Sandbox,
    scripts: &[Postprocess],
    scratch: &Path,
) -> Result<(), CustomizeError> {
    for (i, script) in scripts.iter().enumerate() {
        let io_err = |source| CustomizeError::ScriptIo {
            name: script.name.clone(),
            source,
        };
        let host = scratch.join(format!("postprocess-{i}"));
        std::fs::write(&host, &script.script).map_err(io_err)?;
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755)).map_err(io_err)?;
        let argv: Vec<&str> = if script.script.starts_with("#!") {
            vec![SCRIPT_INSIDE]
        } else {
            vec!["/bin/sh", "-e", SCRIPT_INSIDE]
        };
        let what = format!("postprocess script `{}`", script.name);
        sandbox
            .clone()
            .bind_ro(&host, SCRIPT_INSIDE)
            .run(&argv, &what)
            .map_err(|source| CustomizeError::Script {
                name: script.name.clone(),
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree() -> (tempfile::TempDir, Dir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        (tmp, dir)
    }

    #[test]
    fn tree_relative_paths() {
        for (input, want) in [
            ("/etc/x", Some("etc/x")),
            ("etc/x", Some("etc/x")),
            ("/usr//lib/./y", Some("usr/lib/y")),
            ("/etc/../../host", None),
            ("/", None),
            ("", None),
        ] {
            let got = tree_relative("add-files", input).ok();
            assert_eq!(got.as_deref(), want.map(Path::new), "{input:?}");
        }
    }

    #[test]
    fn add_files_creates_parents_and_applies_mode() {
        let (tmp, dir) = tree();
        let src = tempfile::tempdir().unwrap();
        let source = src.path().join("a.network");
        fs::write(&source, "[Match]\n").unwrap();
        let files = vec![AddFile {
            source: source.clone(),
            dest: "/usr/lib/systemd/network/80-a.network".into(),
            mode: Some(0o600),
        }];
        add_files(&dir, &files).unwrap();
        let dest = tmp.path().join("usr/lib/systemd/network/80-a.network");
        assert_eq!(fs::read_to_string(&dest).unwrap(), "[Match]\n");
        assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o7777, 0o600);
    }

    #[test]
    fn add_files_never_follows_an_absolute_symlink_out_of_the_tree() {
        let (tmp, dir) = tree();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("escape")).unwrap();
        let src = tempfile::tempdir().unwrap();
        let source = src.path().join("f");
        fs::write(&source, "x").unwrap();
        let files = vec![AddFile {
            source,
            dest: "/escape/f".into(),
            mode: None,
        }];
        assert!(add_files(&dir, &files).is_err());
        assert!(!outside.path().join("f").exists());
    }

    #[test]
    fn add_files_missing_source_names_it() {
        let (_tmp, dir) = tree();
        let files = vec![AddFile {
            source: "/nonexistent/keel-src".into(),
            dest: "/etc/x".into(),
            mode: None,
        }];
        let err = add_files(&dir, &files).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/keel-src"), "{err}");
    }

    #[test]
    fn remove_files_removes_files_and_dirs_and_names_missing_ones() {
        let (tmp, dir) = tree();
        fs::create_dir_all(tmp.path().join("usr/share/doc/x")).unwrap();
        fs::write(tmp.path().join("usr/share/doc/x/README"), "r").unwrap();
        fs::write(tmp.path().join("etc-file"), "e").unwrap();
        remove_files(&dir, &["/usr/share/doc".into(), "etc-file".into()]).unwrap();
        assert!(!tmp.path().join("usr/share/doc").exists());
        assert!(!tmp.path().join("etc-file").exists());
        let err = remove_files(&dir, &["/usr/share/man".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/usr/share/man does not exist"), "{err}");
    }
}
