//! This instance's handle on what it shares with the others: the engine,
//! the name it goes by in their logs, and (with a remote engine) the
//! local cache of certificates under `state_dir` that the snapshot loads
//! (README, "Running several instances").

use std::sync::Arc;
use std::time::Duration;

use super::api::{Condition, HeldLock, Storage, StorageError};
use super::keys;
use crate::state_layout::StateLayout;

/// The engine and how this instance uses it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shared {
    engine: Arc<dyn Storage>,
    instance: String,
    lease: Option<Duration>,
    cache: Option<StateLayout>,
}

/// Why an issued certificate was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The order lock was lost before the write (its lease ended: this
    /// instance was paused or cut off from the storage), and another
    /// instance may have stored a newer certificate: the write was refused
    /// so it cannot replace that one (fencing).
    #[error(
        "the order lock was lost before the certificate could be stored (fencing refused the late \
         write, so a newer certificate of another instance stays)"
    )]
    Fenced,
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The local cache could not be written (the certificate is stored).
    #[error("stored, but the local cache {path} could not be written: {problem}")]
    Cache {
        /// The cache file.
        path: String,
        /// What failed.
        problem: String,
    },
}

impl Shared {
    /// `engine` as used by the instance called `instance`. `lease`: the
    /// lock lease the engine's configuration sets (`storage.lease`), if it
    /// sets one. `cache`: the state directory that caches a remote engine's
    /// certificates; `None` when the engine is the state directory itself.
    pub fn new(
        engine: Arc<dyn Storage>,
        instance: impl Into<String>,
        lease: Option<Duration>,
        cache: Option<StateLayout>,
    ) -> Self {
        Shared {
            engine,
            instance: instance.into(),
            lease,
            cache,
        }
    }

    /// The `dir` engine on `state` for an instance named after this process.
    pub fn in_state_dir(state: &StateLayout) -> Self {
        Shared::new(
            Arc::new(super::dir::DirStorage::new(state.clone())),
            instance_name(),
            None,
            None,
        )
    }

    /// The engine.
    pub fn engine(&self) -> &dyn Storage {
        &*self.engine
    }

    /// The engine, shared.
    pub fn engine_arc(&self) -> Arc<dyn Storage> {
        self.engine.clone()
    }

    /// How this instance names itself to the others (lock holders in
    /// their logs).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The lease of a lock: the storage's own (`storage.lease`) or else
    /// `otherwise` (`acme.lock_lease`).
    pub fn lease_or(&self, otherwise: Duration) -> Duration {
        self.lease.unwrap_or(otherwise)
    }

    /// The state directory caching a remote engine's certificates.
    pub fn cache(&self) -> Option<&StateLayout> {
        self.cache.as_ref()
    }

    /// Stores `domain`'s issued certificate while `lock` (its order lock)
    /// is held, in one put; then writes it to the local cache, if any.
    pub async fn store_certificate(
        &self,
        domain: &str,
        pem: &str,
        lock: &HeldLock,
    ) -> Result<(), StoreError> {
        let key = keys::certificate(domain);
        match self
            .engine
            .put(&key, pem.as_bytes().to_vec(), Condition::HeldLock(lock))
            .await?
        {
            Some(_) => {}
            None => return Err(StoreError::Fenced),
        }
        if let Some(cache) = &self.cache {
            write_cache(cache, domain, pem.as_bytes()).await?;
        }
        Ok(())
    }

    /// Where `domain`'s certificate is stored, for messages.
    pub fn describe_certificate(&self, domain: &str) -> String {
        format!(
            "{} key {}",
            self.engine.describe(),
            keys::certificate(domain)
        )
    }
}

/// Writes `pem` as `domain`'s cached certificate (0600, atomically), where
/// the snapshot loads stored certificates from.
pub async fn write_cache(state: &StateLayout, domain: &str, pem: &[u8]) -> Result<(), StoreError> {
    let path = state.stored_certificate(domain);
    let (target, bytes) = (path.clone(), pem.to_vec());
    let written = tokio::task::spawn_blocking(move || {
        if let Some(parent) = target.parent() {
            crate::fsio::create_private_dir(parent)?;
        }
        crate::fsio::write_atomic(&target, &bytes, true)
    })
    .await;
    let problem = match written {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    Err(StoreError::Cache {
        path: path.display().to_string(),
        problem,
    })
}

/// This instance's name for the others: host name and process id.
pub fn instance_name() -> String {
    format!(
        "{} pid {}",
        super::dir_lock::host_name(),
        std::process::id()
    )
}
