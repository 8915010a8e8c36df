//! Read-modify-write of the JSON documents instances share (the domain
//! store `config/domains`, the drain store): a compare-and-swap, tried
//! again when another instance changed the document meanwhile, so none
//! loses another's change. Used by the admin API and by on-demand
//! certificates; within one instance the caller holds the
//! [`crate::fsio::StateWriter`].

use std::path::Path;

use super::{Condition, Shared, StorageError, StoreError};
use crate::config::{DomainStore, StoredDomain};

/// Why a stored document could not be updated.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The stored document is not one sniwalk can read.
    #[error("{0}")]
    Read(crate::config::ConfigError),
    /// The storage failed.
    #[error("writing to the storage: {0}")]
    Write(StoreError),
    /// Others kept changing it.
    #[error("the stored value kept changing while being written (other instances); try again")]
    Busy,
}

impl DocumentError {
    /// Whether the storage could not be reached (try again later).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            DocumentError::Write(StoreError::Storage(StorageError::Unreachable { .. }))
        )
    }
}

/// How often a read-modify-write is tried when other instances change the
/// document meanwhile.
const ATTEMPTS: usize = 5;

/// A read-modify-write of the JSON document at `key`: `modify` changes
/// what was read (or the default) and says whether it did; it is written
/// only if the stored value is still the one read. When the storage took
/// the value and only the local copy failed, the change is durable: it is
/// logged, and the caller's reload tells whether it applies here.
pub async fn update_document<T: Default>(
    storage: &Shared,
    key: &str,
    parse: impl Fn(&[u8], &Path) -> Result<T, crate::config::ConfigError>,
    mut modify: impl FnMut(&mut T) -> bool,
    to_json: impl Fn(&T) -> Vec<u8>,
) -> Result<(), DocumentError> {
    let origin = std::path::PathBuf::from(format!("{} key {key}", storage.engine().describe()));
    for _ in 0..ATTEMPTS {
        let current = storage
            .engine()
            .get(key)
            .await
            .map_err(|e| DocumentError::Write(e.into()))?;
        let mut value = match &current {
            Some(stored) => parse(&stored.value, &origin).map_err(DocumentError::Read)?,
            None => T::default(),
        };
        if !modify(&mut value) {
            return Ok(());
        }
        let condition = match &current {
            Some(stored) => Condition::ModifiedAt(stored.modified),
            None => Condition::Absent,
        };
        match storage.put_cached(key, to_json(&value), condition).await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(e @ StoreError::Cache { .. }) => {
                tracing::warn!(key, "{e}");
                return Ok(());
            }
            Err(e) => return Err(DocumentError::Write(e)),
        }
    }
    Err(DocumentError::Busy)
}

/// Adds `names` to the domain store as `entry` (ACME-managed or not, on
/// demand or not). Names already there keep their entry; nothing is
/// written when all are.
pub async fn add_domains(
    storage: &Shared,
    names: &[String],
    entry: StoredDomain,
) -> Result<(), DocumentError> {
    update_document(
        storage,
        super::keys::DOMAINS,
        DomainStore::parse,
        |store: &mut DomainStore| {
            let before = store.domains.len();
            for name in names {
                store
                    .domains
                    .entry(name.clone())
                    .or_insert_with(|| entry.clone());
            }
            store.domains.len() != before
        },
        DomainStore::to_json,
    )
    .await
}

/// Removes `name` from the domain store when `which` says so of its entry;
/// whether it was removed.
pub async fn remove_domain(
    storage: &Shared,
    name: &str,
    which: impl Fn(&StoredDomain) -> bool,
) -> Result<bool, DocumentError> {
    let mut removed = false;
    update_document(
        storage,
        super::keys::DOMAINS,
        DomainStore::parse,
        |store: &mut DomainStore| {
            removed = store.domains.get(name).is_some_and(&which);
            if removed {
                store.domains.remove(name);
            }
            removed
        },
        DomainStore::to_json,
    )
    .await?;
    Ok(removed)
}
