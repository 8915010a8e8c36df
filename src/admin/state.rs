//! What every admin handler works with: the shared [`AdminState`], the
//! bearer token it checks, and the domain store's read-modify-write that
//! both `POST /certificates` and imports do (README, "Admin API").

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::job_list::Jobs;
use crate::acme::manager::ManagerHandle;
use crate::config::{Config, StoredDomain};
use crate::metrics::Metrics;
use crate::reload::ReloadHandle;
use crate::snapshot::SnapshotReader;
use crate::storage::Shared;

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
pub(super) use crate::storage::document::DocumentError as StoreError;
pub(super) use crate::storage::document::update_document as update_stored;

impl StoreError {
    /// The answer's status: 503 while the storage cannot be reached.
    pub(super) fn status(&self) -> hyper::StatusCode {
        if self.is_unreachable() {
            hyper::StatusCode::SERVICE_UNAVAILABLE
        } else {
            hyper::StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// Adds `names` to the domain store (ACME-managed when `acme`). Names
/// already there keep their entry; nothing is written when all are.
pub(super) async fn add_to_store(
    storage: &Shared,
    names: &[String],
    acme: bool,
) -> Result<(), StoreError> {
    let entry = StoredDomain {
        acme,
        on_demand: false,
    };
    crate::storage::document::add_domains(storage, names, entry).await
}
