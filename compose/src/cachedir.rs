//! The compose cache directory itself: private to the user who composes. It holds the
//! package cache, whose trees carry setuid binaries and files only root may read; another
//! user who could walk into it could run them or read them.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// The mode of the cache directory.
pub const MODE: u32 = 0o700;

/// Creates the cache directory `path` (and missing parents) with mode 0700, or gives an
/// existing one that mode if it is looser or stricter.
pub fn create(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(MODE)
        .create(path)?;
    let meta = std::fs::metadata(path)?;
    if meta.permissions().mode() & 0o7777 != MODE {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(MODE))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_cache_dir_is_private_and_a_loose_one_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("a/cache");
        create(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        let loose = dir.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(loose.join("kept"), "x").unwrap();
        create(&loose).unwrap();
        assert_eq!(mode(&loose), 0o700);
        assert!(loose.join("kept").exists(), "the content stays");
    }
}
