//! Where the semaphores live: a small key-value interface with compare-and-swap on a key's
//! modification revision, which etcd v3 provides ([`crate::etcd::EtcdStore`]). The lock logic
//! ([`crate::lock`]) only sees this trait, so its tests run on [`MemoryStore`].

/// A value and the revision at which it was last written (etcd's `mod_revision`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// What a compare-and-swap found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cas {
    /// The key was still at the expected revision; the value (if any) is written and the key
    /// is now at `mod_revision`.
    Done { mod_revision: i64 },
    /// Someone wrote first: here is what the key holds now (`None`: it does not exist).
    Conflict { current: Option<Versioned> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No endpoint answered (etcd down, or unreachable).
    #[error("etcd is unreachable ({0}); check that it runs and that --etcd names its client URLs")]
    Unavailable(String),
    /// An endpoint answered with an error or with something that is not etcd's JSON.
    #[error("etcd refused the request: {0}")]
    Failed(String),
}

pub trait Store: Send + Sync {
    /// The key's value and revision, or `None` if it does not exist.
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Writes `value` if the key's mod revision is still `expected` (0: the key does not
    /// exist). With `value: None` nothing is written: the call only checks that the key is
    /// unchanged, which makes a read-and-decide step linearizable.
    fn compare_and_swap(
        &self,
        key: &str,
        expected: i64,
        value: Option<&[u8]>,
    ) -> Result<Cas, StoreError>;

    /// Every key under `prefix`, in key order.
    fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError>;
}

/// A store in memory, for the lock logic's unit tests; it can be told to fail.
#[cfg(test)]
#[derive(Default)]
pub struct MemoryStore {
    state: std::sync::Mutex<MemoryState>,
}

#[cfg(test)]
#[derive(Default)]
struct MemoryState {
    revision: i64,
    keys: std::collections::BTreeMap<String, Versioned>,
    down: bool,
    /// Writes done by "another replica" just before the next compare-and-swap.
    interleave: Vec<(String, Vec<u8>)>,
}

#[cfg(test)]
impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Makes `value` land on `key` right before the next compare-and-swap, as a racing
    /// replica's write would.
    pub fn race_next_write(&self, key: &str, value: &[u8]) {
        self.lock()
            .interleave
            .push((key.to_string(), value.to_vec()));
    }

    pub fn put(&self, key: &str, value: &[u8]) {
        let mut state = self.lock();
        state.revision += 1;
        let revision = state.revision;
        state.keys.insert(
            key.to_string(),
            Versioned {
                value: value.to_vec(),
                mod_revision: revision,
            },
        );
    }

    pub fn writes(&self) -> i64 {
        self.lock().revision
    }
}

#[cfg(test)]
impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let state = self.lock();
        if state.down {
            return Err(StoreError::Unavailable("memory store is down".into()));
        }
        Ok(state.keys.get(key).cloned())
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: i64,
        value: Option<&[u8]>,
    ) -> Result<Cas, StoreError> {
        if self.lock().down {
            return Err(StoreError::Unavailable("memory store is down".into()));
        }
        let racing: Vec<_> = std::mem::take(&mut self.lock().interleave);
        for (k, v) in racing {
            self.put(&k, &v);
        }
        let current = self.lock().keys.get(key).cloned();
        let revision = current.as_ref().map_or(0, |v| v.mod_revision);
        if revision != expected {
            return Ok(Cas::Conflict { current });
        }
        match value {
            None => Ok(Cas::Done {
                mod_revision: revision,
            }),
            Some(value) => {
                self.put(key, value);
                Ok(Cas::Done {
                    mod_revision: self.lock().revision,
                })
            }
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        let state = self.lock();
        Ok(state
            .keys
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
