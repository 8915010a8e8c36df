//! What every admin handler works with: the shared [`AdminState`], the
//! bearer token it checks, and the domain store's read-modify-write that
//! both `POST /certificates` and imports do (README, "Admin API").

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::job_list::Jobs;
use crate::acme::manager::ManagerHandle;
use crate::config::{Config, DomainStore, StoredDomain};
use crate::metrics::Metrics;
use crate::reload::ReloadHandle;
use crate::snapshot::SnapshotReader;
use crate::storage::{Condition, Shared};

/// How long an import or a new domain may take to be served.
pub(super) const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The token file could not be read or is empty.
    #[error("admin.token_file {}: {problem}", file.display())]
    Token {
        /// The file.
        file: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The admin address could not be bound.
    #[error("admin.bind {bind}: {source}; is another process using it?")]
    Bind {
        /// The address.
        bind: std::net::SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// Reads the bearer token from `file`: its content, whitespace trimmed.
pub fn read_token(file: &Path) -> Result<String, AdminError> {
    let fail = |problem: String| AdminError::Token {
        file: file.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(file).map_err(|e| fail(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(fail(
            "the file is empty; put a long random string in it (e.g. `openssl rand -hex 32`)"
                .into(),
        ));
    }
    Ok(token.to_string())
}

/// What the admin API works with.
pub struct AdminState {
    /// The configuration at start (listeners, state_dir, acme settings).
    pub config: Config,
    /// The certificate state.
    pub store: SnapshotReader,
    /// Counters to render.
    pub metrics: Arc<Metrics>,
    /// To apply imports and new domains.
    pub reloads: ReloadHandle,
    /// To start orders.
    pub acme: ManagerHandle,
    /// The bearer token, if one is required.
    pub token: Option<String>,
    /// The issuance jobs, shared with the tasks that follow their orders.
    pub(super) jobs: Arc<Mutex<Jobs>>,
    /// The one writer of the domain store and of stored certificates:
    /// every read-modify-write of `domains.json` and every import happens
    /// while holding it, so concurrent requests neither lose each other's
    /// names nor see each other's half-done work.
    pub(super) writer: crate::fsio::StateWriter,
    /// Cancelled once shutdown has begun: `/healthz` answers 503 from then
    /// on, while connections drain, so load balancers stop sending.
    pub(super) draining: CancellationToken,
    /// Where imports and added domains are stored (shared with the other
    /// instances), and whether it can be reached (`/status`).
    pub(super) storage: Shared,
}

impl AdminState {
    /// State for the admin API.
    pub fn new(
        config: Config,
        store: SnapshotReader,
        metrics: Arc<Metrics>,
        reloads: ReloadHandle,
        acme: ManagerHandle,
        token: Option<String>,
    ) -> Self {
        let storage = Shared::in_state_dir(&config.state_layout());
        AdminState {
            config,
            store,
            metrics,
            reloads,
            acme,
            token,
            jobs: Arc::new(Mutex::new(Jobs::default())),
            writer: crate::fsio::StateWriter::default(),
            draining: CancellationToken::new(),
            storage,
        }
    }

    /// Makes `/healthz` answer 503 once `draining` is cancelled (when
    /// shutdown begins).
    pub fn with_draining(mut self, draining: CancellationToken) -> Self {
        self.draining = draining;
        self
    }

    /// Stores imports and added domains in `storage` (the configured one;
    /// the state directory otherwise) and shows in `/status` whether it can
    /// be reached.
    pub fn with_storage(mut self, storage: Shared) -> Self {
        self.storage = storage;
        self
    }

    /// Shares the state writer with the ACME issuer (see
    /// [`crate::fsio::StateWriter`]).
    pub fn with_writer(mut self, writer: crate::fsio::StateWriter) -> Self {
        self.writer = writer;
        self
    }
}

/// Why the domain store could not be updated (a 500 answer, or 503 while
/// the storage cannot be reached).
#[derive(Debug, thiserror::Error)]
pub(super) enum StoreError {
    /// The stored domain or drain store is not one sniwalk can read.
    #[error("{0}")]
    Read(crate::config::ConfigError),
    /// The storage failed.
    #[error("writing to the storage: {0}")]
    Write(crate::storage::StoreError),
    /// Others kept changing it.
    #[error("the stored value kept changing while being written (other instances); try again")]
    Busy,
}

impl StoreError {
    /// The answer's status: 503 while the storage cannot be reached.
    pub(super) fn status(&self) -> hyper::StatusCode {
        match self {
            StoreError::Write(crate::storage::StoreError::Storage(
                crate::storage::StorageError::Unreachable { .. },
            )) => hyper::StatusCode::SERVICE_UNAVAILABLE,
            _ => hyper::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// How often a read-modify-write of a stored JSON document is tried when
/// other instances change it meanwhile.
const STORE_ATTEMPTS: usize = 5;

/// Adds `names` to the domain store (ACME-managed when `acme`). Names
/// already there keep their entry; nothing is written when all are.
pub(super) async fn add_to_store(
    storage: &Shared,
    names: &[String],
    acme: bool,
) -> Result<(), StoreError> {
    update_stored(
        storage,
        crate::storage::keys::DOMAINS,
        DomainStore::parse,
        |store: &mut DomainStore| {
            let before = store.domains.len();
            for name in names {
                store
                    .domains
                    .entry(name.clone())
                    .or_insert(StoredDomain { acme });
            }
            store.domains.len() != before
        },
        DomainStore::to_json,
    )
    .await
}

/// A read-modify-write of the JSON document at `key` (the domain store,
/// the drain store): `modify` changes what was read (or the default) and
/// says whether it did; it is written only if the stored value is still
/// the one read (compare and swap), so instances never lose each other's
/// changes; within this instance the caller holds [`AdminState::writer`].
/// When the storage took the value and only the local copy failed, the
/// change is durable: logged, and the caller's reload tells whether it
/// applies here.
pub(super) async fn update_stored<T: Default>(
    storage: &Shared,
    key: &str,
    parse: impl Fn(&[u8], &Path) -> Result<T, crate::config::ConfigError>,
    mut modify: impl FnMut(&mut T) -> bool,
    to_json: impl Fn(&T) -> Vec<u8>,
) -> Result<(), StoreError> {
    let origin = std::path::PathBuf::from(format!("{} key {key}", storage.engine().describe()));
    for _ in 0..STORE_ATTEMPTS {
        let current = storage
            .engine()
            .get(key)
            .await
            .map_err(|e| StoreError::Write(e.into()))?;
        let mut value = match &current {
            Some(stored) => parse(&stored.value, &origin).map_err(StoreError::Read)?,
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
            Err(e @ crate::storage::StoreError::Cache { .. }) => {
                tracing::warn!(key, "admin: {e}");
                return Ok(());
            }
            Err(e) => return Err(StoreError::Write(e)),
        }
    }
    Err(StoreError::Busy)
}
