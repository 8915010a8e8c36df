//! The drain store: backends an operator drains through the admin API
//! (README: Redundant backends), the storage key `config/drains`, which is
//! `state_dir/shared/config/drains` (with a remote storage, its local
//! copy). Read with the configuration, so a drain outlives a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state_layout::{DRAINS_KEY, StateLayout};

/// Why the drain store does not read.
#[derive(Debug, thiserror::Error)]
pub enum DrainStoreError {
    /// The file exists but cannot be read.
    #[error("{}: cannot read the drain store: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// It is no JSON map of listeners to backends.
    #[error(
        "{}: {error}; fix or remove it (it lists backends drained through the admin API, \
         as {{\"drains\": {{\"LISTENER\": [\"HOST:PORT\"]}}}})",
        origin.display()
    )]
    Json {
        /// The file, or the storage key.
        origin: PathBuf,
        /// What serde_json said.
        error: serde_json::Error,
    },
}

/// Backends drained by the admin API, by listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStore {
    /// `HOST:PORT` of each drained backend, by listener name.
    #[serde(default)]
    pub drains: BTreeMap<String, BTreeSet<String>>,
}

impl DrainStore {
    /// The file of the local copy.
    pub fn path(state: &StateLayout) -> PathBuf {
        state.key_path(DRAINS_KEY)
    }

    /// Reads the store (missing file: empty).
    pub fn read(state: &StateLayout) -> Result<Self, DrainStoreError> {
        let path = Self::path(state);
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&bytes, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(DrainStoreError::Read { file: path, source }),
        }
    }

    /// The store in `bytes` (JSON); errors name `origin` (the file, or the
    /// storage key).
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<Self, DrainStoreError> {
        serde_json::from_slice(bytes).map_err(|error| DrainStoreError::Json {
            origin: origin.to_path_buf(),
            error,
        })
    }

    /// The store as written (pretty JSON).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Whether the admin API drains `address` of `listener`.
    pub fn drains(&self, listener: &str, address: &str) -> bool {
        self.drains
            .get(listener)
            .is_some_and(|set| set.contains(address))
    }

    /// Drains (`drain`) or undrains `address` of `listener`; whether that
    /// changed anything.
    pub fn set(&mut self, listener: &str, address: &str, drain: bool) -> bool {
        if drain {
            self.drains
                .entry(listener.to_string())
                .or_default()
                .insert(address.to_string())
        } else {
            let Some(set) = self.drains.get_mut(listener) else {
                return false;
            };
            let removed = set.remove(address);
            if set.is_empty() {
                self.drains.remove(listener);
            }
            removed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_reports_changes_and_round_trips() {
        let mut store = DrainStore::default();
        assert!(store.set("web", "10.0.0.1:80", true));
        assert!(!store.set("web", "10.0.0.1:80", true), "already drained");
        assert!(store.drains("web", "10.0.0.1:80"));
        assert!(!store.drains("sip", "10.0.0.1:80"));
        let back = DrainStore::parse(&store.to_json(), Path::new("x")).expect("parse");
        assert_eq!(back, store);
        assert!(store.set("web", "10.0.0.1:80", false));
        assert!(store.drains.is_empty(), "an empty listener goes");
        assert!(!store.set("web", "10.0.0.1:80", false));
        let error = DrainStore::parse(b"{\"drains\": [1]}", Path::new("/s/drains"))
            .expect_err("not a map")
            .to_string();
        assert!(error.contains("/s/drains"), "{error}");
        assert!(error.contains("admin API"), "{error}");
    }
}
