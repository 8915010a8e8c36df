//! This instance's handle on what it shares with the others: the engine,
//! the name it goes by in their logs, and (with a remote engine) the
//! local cache of certificates under `state_dir` that the snapshot loads
//! (README, "Running several instances").

use std::sync::Arc;
use std::time::Duration;

use super::api::{Condition, HeldLock, Storage, StorageError};
use super::health::StorageHealth;
use super::keys;
use crate::state_layout::StateLayout;

/// The engine and how this instance uses it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shared {
    engine: Arc<dyn Storage>,
    instance: String,
    instance_id: String,
    lease: Option<Duration>,
    cache: Option<StateLayout>,
    health: Arc<StorageHealth>,
    /// This instance's latest status (JSON), for its `status/<id>` key.
    status: Arc<tokio::sync::watch::Sender<Option<Vec<u8>>>>,
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
    /// The storage could not be reached and the certificate could not be
    /// kept locally for later either: it is stored nowhere.
    #[error(
        "the storage is unreachable and the certificate could not be kept in {path} for later \
         either ({problem}); check that state_dir is writable"
    )]
    Pending {
        /// The pending file.
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
        let health = StorageHealth::new(engine.describe());
        Shared {
            engine,
            instance: instance.into(),
            instance_id: format!("{}-{}", std::process::id(), crate::ids::random_hex16()),
            lease,
            cache,
            health,
            status: Arc::new(tokio::sync::watch::channel(None).0),
        }
    }

    /// Publishes this instance's status (JSON: its ACME state), which the
    /// liveness task keeps at `status/<instance id>` in a remote storage
    /// while the instance lives.
    pub fn publish_status(&self, json: Vec<u8>) {
        self.status.send_replace(Some(json));
    }

    /// The statuses published, newest first.
    pub fn subscribe_status(&self) -> tokio::sync::watch::Receiver<Option<Vec<u8>>> {
        self.status.subscribe()
    }

    /// Whether the storage can be reached, as last seen.
    pub fn health(&self) -> &Arc<StorageHealth> {
        &self.health
    }

    /// This process's own id among the instances (its liveness key).
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The engine's own lock lease (`storage.lease`); `None` for the
    /// state directory.
    pub fn lease(&self) -> Option<Duration> {
        self.lease
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
    ///
    /// A remote storage that cannot be reached does not lose the
    /// certificate: it goes to the cache (served here) and to
    /// `state_dir/pending/`, and is stored once the storage is back
    /// ([`Shared::store_pending`]).
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
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => return Err(StoreError::Fenced),
            Err(e @ StorageError::Unreachable { .. }) => {
                let Some(cache) = &self.cache else {
                    return Err(e.into());
                };
                self.health.set_down(&e.to_string());
                write_pending(cache, domain, lock.fence, pem.as_bytes()).await?;
                write_cache(cache, domain, pem.as_bytes()).await?;
                tracing::warn!(
                    domain,
                    key,
                    "the storage is unreachable: the issued certificate is served by this \
                     instance and stored once the storage is back ({e})"
                );
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(cache) = &self.cache {
            write_cache(cache, domain, pem.as_bytes()).await?;
        }
        Ok(())
    }

    /// Stores the certificates issued while the storage was unreachable
    /// (`state_dir/pending/<domain>@<fence>.pem`), each unless something
    /// was stored for its domain after its order lock was taken (fencing:
    /// the revision of the stored value is newer than the lock's) or the
    /// storage holds one valid for as long or longer; the pending file goes
    /// once decided. How many were stored.
    pub async fn store_pending(&self) -> usize {
        let Some(cache) = &self.cache else {
            return 0;
        };
        let dir = cache.pending_dir();
        let files = tokio::task::spawn_blocking(move || {
            std::fs::read_dir(dir)
                .map(|entries| entries.flatten().map(|e| e.path()).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default();
        let mut stored = 0;
        for path in files {
            let Some((domain, fence)) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".pem"))
                .filter(|d| !d.starts_with('.'))
                .and_then(|n| n.rsplit_once('@'))
                .and_then(|(domain, fence)| Some((domain.to_string(), fence.parse::<u64>().ok()?)))
            else {
                continue;
            };
            match self.store_one_pending(&domain, fence, &path).await {
                Ok(true) => stored += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(domain, file = %path.display(), "cannot store the pending certificate yet: {e}");
                    continue;
                }
            }
            let _ = std::fs::remove_file(&path);
        }
        stored
    }

    /// One pending certificate: `true` when stored, `false` when the
    /// storage's own is as good (or the file is not a certificate).
    async fn store_one_pending(
        &self,
        domain: &str,
        fence: u64,
        path: &std::path::Path,
    ) -> Result<bool, StorageError> {
        let key = keys::certificate(domain);
        let Some(pending) = std::fs::read_to_string(path).ok().and_then(|text| {
            crate::pem::parse_certificate_pem(&text)
                .ok()
                .map(|p| (text, p.leaf.not_after))
        }) else {
            tracing::warn!(domain, file = %path.display(), "a pending certificate that does not load; removed");
            return Ok(false);
        };
        let current = self.engine.get(&key).await?;
        let condition = match &current {
            None => Condition::Absent,
            Some(stored) if stored.modified.0 > fence => {
                tracing::info!(
                    domain,
                    key,
                    fence,
                    stored_revision = stored.modified.0,
                    "a certificate was stored after this instance's order lock was taken \
                     (fencing); the pending one is dropped"
                );
                return Ok(false);
            }
            Some(stored) => {
                let stored_not_after = std::str::from_utf8(&stored.value)
                    .ok()
                    .and_then(|t| crate::pem::parse_certificate_pem(t).ok())
                    .map(|p| p.leaf.not_after);
                if stored_not_after.is_some_and(|n| n >= pending.1) {
                    tracing::info!(
                        domain,
                        key,
                        "the storage already has a certificate valid as long; the pending one is dropped"
                    );
                    return Ok(false);
                }
                Condition::ModifiedAt(stored.modified)
            }
        };
        let written = self
            .engine
            .put(&key, pending.0.into_bytes(), condition)
            .await?;
        match written {
            Some(_) => {
                tracing::info!(
                    domain,
                    key,
                    "certificate issued while the storage was unreachable now stored"
                );
                Ok(true)
            }
            // Changed meanwhile: looked at again next time.
            None => Err(StorageError::Io {
                key,
                detail: "changed while being stored; tried again".into(),
            }),
        }
    }

    /// Writes `value` at `key` when `condition` holds; with a remote
    /// engine the local copy too, so this instance serves it at once. The
    /// revision, or `None` when the condition did not hold.
    pub async fn put_cached(
        &self,
        key: &str,
        value: Vec<u8>,
        condition: Condition<'_>,
    ) -> Result<Option<super::api::Revision>, StoreError> {
        let written = self.engine.put(key, value.clone(), condition).await;
        if let Err(StorageError::Unreachable { detail, .. }) = &written {
            self.health.set_down(detail);
        }
        let revision = written?;
        if revision.is_some()
            && let Some(cache) = &self.cache
        {
            write_cache_key(cache, key, &value).await?;
        }
        Ok(revision)
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
    write_private(state.stored_certificate(domain), pem).await
}

/// Writes the local copy of `key` (its file in the state directory:
/// [`StateLayout::key_path`]).
pub async fn write_cache_key(
    state: &StateLayout,
    key: &str,
    value: &[u8],
) -> Result<(), StoreError> {
    write_private(state.key_path(key), value).await
}

/// Keeps `pem` as `domain`'s certificate, issued under the order lock
/// `fence`, to store once a remote storage is back.
async fn write_pending(
    state: &StateLayout,
    domain: &str,
    fence: u64,
    pem: &[u8],
) -> Result<(), StoreError> {
    write_private(state.pending_certificate(domain, fence), pem)
        .await
        .map_err(|e| match e {
            StoreError::Cache { path, problem } => StoreError::Pending { path, problem },
            other => other,
        })
}

/// Writes `bytes` at `path` atomically, mode 0600, its folder created
/// owner-only.
async fn write_private(path: std::path::PathBuf, bytes: &[u8]) -> Result<(), StoreError> {
    let (target, bytes) = (path.clone(), bytes.to_vec());
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
