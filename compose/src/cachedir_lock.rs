//! One compose at a time per cache directory: composes sharing a cachedir share its package
//! cache, whose base layers are stored and pruned, and whose staged trees are pruned, while a
//! compose runs. A second compose waits for the first, saying so.

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// The lock file inside the cache directory.
pub const LOCK_FILE: &str = ".keel-compose.lock";

#[derive(Debug, thiserror::Error)]
#[error("locking the cache directory through {}: {source}", path.display())]
pub struct LockError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Held for the length of a compose; the lock goes with the file when this is dropped (or
/// when the process dies).
#[derive(Debug)]
pub struct CachedirLock {
    _file: File,
}

/// Takes the cache directory's lock, waiting (after saying so on stderr) while another
/// compose holds it.
pub fn lock(cachedir: &Path) -> Result<CachedirLock, LockError> {
    let path = cachedir.join(LOCK_FILE);
    let err = |source: std::io::Error| LockError {
        path: path.clone(),
        source,
    };
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        eprintln!(
            "keel-compose: waiting for another compose using the cache directory {}",
            cachedir.display()
        );
        flock(&file, FlockOperation::LockExclusive).map_err(|e| err(e.into()))?;
    }
    Ok(CachedirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_second_compose_waits_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        let (tx, rx) = mpsc::channel();
        let path = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let second = lock(&path).unwrap();
            tx.send(()).unwrap();
            drop(second);
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "the second lock was taken while the first was held"
        );
        drop(first);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the second compose got the lock once the first let go");
        waiter.join().unwrap();
    }
}
