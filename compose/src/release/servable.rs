//! A published repository is served by a web server that runs as another user (nginx as
//! `www-data`): every file it may be asked for must be readable by others, every directory
//! searchable, whatever the umask of the compose was. A file left 0600 (`summary.sig` was)
//! makes the server answer 403, and every host's upgrade fails.
//!
//! After publishing, the repository's files are set to 0644 and its directories to 0755.
//! `tmp/` (libostree's staging and caches, never served) is left alone; symlinks are not
//! followed.

use super::RepoError;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Mode of every published file.
pub const FILE_MODE: u32 = 0o644;
/// Mode of every published directory.
pub const DIR_MODE: u32 = 0o755;

/// Gives every file under `repo_dir` mode 0644 and every directory 0755 (but `tmp/`).
pub fn make_servable(repo_dir: &Path) -> Result<(), RepoError> {
    set_mode(repo_dir, DIR_MODE)?;
    walk(repo_dir, true)
}

fn walk(dir: &Path, top: bool) -> Result<(), RepoError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RepoError::Io { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        if top && entry.file_name() == "tmp" {
            continue;
        }
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            set_mode(&path, DIR_MODE)?;
            walk(&path, false)?;
        } else if kind.is_file() {
            set_mode(&path, FILE_MODE)?;
        }
    }
    Ok(())
}

/// Sets `mode` on `path` (not a symlink) unless it already has it.
fn set_mode(path: &Path, mode: u32) -> Result<(), RepoError> {
    let io = |source| RepoError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    if meta.permissions().mode() & 0o7777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn files_become_0644_and_dirs_0755_but_tmp_and_symlink_targets_stay() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "x").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
        for sub in ["objects/ab", "tmp/staging", "refs/heads"] {
            std::fs::create_dir_all(repo.join(sub)).unwrap();
        }
        for file in [
            "summary.sig",
            "objects/ab/cd.filez",
            "tmp/staging/x",
            "refs/heads/r",
        ] {
            std::fs::write(repo.join(file), "x").unwrap();
            std::fs::set_permissions(repo.join(file), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        std::fs::set_permissions(
            repo.join("objects/ab"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::os::unix::fs::symlink(&outside, repo.join("link")).unwrap();
        make_servable(&repo).unwrap();
        assert_eq!(mode(&repo.join("summary.sig")), 0o644);
        assert_eq!(mode(&repo.join("objects/ab/cd.filez")), 0o644);
        assert_eq!(mode(&repo.join("refs/heads/r")), 0o644);
        assert_eq!(mode(&repo.join("objects/ab")), 0o755);
        assert_eq!(
            mode(&repo.join("tmp/staging/x")),
            0o600,
            "tmp is not served"
        );
        assert_eq!(mode(&outside), 0o600, "a symlink is not followed");
    }
}
