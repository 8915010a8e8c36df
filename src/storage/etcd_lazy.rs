//! An etcd engine that connects on first use: an instance started while
//! etcd is unreachable starts anyway and serves its local cache (README,
//! "Running several instances"); every call until the connection is made
//! tries again and says [`StorageError::Unreachable`] meanwhile.

use std::fmt;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};

use super::api::{
    Change, Condition, HeldLock, Listing, Revision, Storage, StorageError, Stored, WATCH_BUFFER,
};
use super::etcd::{EtcdOptions, EtcdStorage};

/// [`EtcdStorage`] made at the first call that can reach etcd.
pub struct LazyEtcd {
    options: EtcdOptions,
    connected: Mutex<Option<EtcdStorage>>,
    endpoints: String,
}

impl fmt::Debug for LazyEtcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyEtcd")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl LazyEtcd {
    /// An engine that connects with `options` when first used.
    pub fn new(options: EtcdOptions) -> Self {
        let endpoints = options.endpoints.join(",");
        LazyEtcd {
            options,
            connected: Mutex::new(None),
            endpoints,
        }
    }

    /// The connected engine, connecting now if need be.
    async fn engine(&self) -> Result<EtcdStorage, StorageError> {
        let mut connected = self.connected.lock().await;
        if let Some(engine) = connected.as_ref() {
            return Ok(engine.clone());
        }
        let engine = EtcdStorage::connect(self.options.clone()).await?;
        tracing::info!(storage = %engine.describe(), "connected to etcd");
        *connected = Some(engine.clone());
        Ok(engine)
    }
}

#[async_trait::async_trait]
impl Storage for LazyEtcd {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StorageError> {
        self.engine().await?.get(key).await
    }

    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        condition: Condition<'_>,
    ) -> Result<Option<Revision>, StorageError> {
        self.engine().await?.put(key, value, condition).await
    }

    async fn put_while_held(
        &self,
        key: &str,
        value: Vec<u8>,
        lock: &HeldLock,
    ) -> Result<Option<Revision>, StorageError> {
        self.engine().await?.put_while_held(key, value, lock).await
    }

    async fn delete(&self, key: &str, condition: Condition<'_>) -> Result<bool, StorageError> {
        self.engine().await?.delete(key, condition).await
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StorageError> {
        self.engine().await?.list(prefix).await
    }

    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<HeldLock>, StorageError> {
        self.engine().await?.try_lock(name, holder, lease).await
    }

    async fn lock_holder(&self, name: &str) -> Result<Option<String>, StorageError> {
        self.engine().await?.lock_holder(name).await
    }

    async fn unlock(&self, lock: HeldLock) -> Result<(), StorageError> {
        self.engine().await?.unlock(lock).await
    }

    fn watch(&self, prefix: &str, after: Revision) -> mpsc::Receiver<Change> {
        // Only a listing connects: before one worked, there is nothing to
        // watch from, so the watcher is told to list again.
        match self.connected.try_lock().ok().and_then(|c| c.clone()) {
            Some(engine) => engine.watch(prefix, after),
            None => {
                let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
                let _ = sender.try_send(Change::Resync);
                receiver
            }
        }
    }

    fn describe(&self) -> String {
        format!("etcd {} prefix {}", self.endpoints, self.options.prefix)
    }
}
