//! How many backend connections one `https` listener's requests and
//! tunnels hold (README: Limits).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::log_limit::LogLimit;
use crate::balance::Session;
use crate::metrics::{HeldBackendConnection, ListenerMetrics};

/// The backend connections one `https` listener's requests and tunnels
/// hold now, bounded by `max_backend_connections` (README: Limits). A
/// plain counter rather than a semaphore: the limit comes from the current
/// snapshot, so a reload changes it without rebuilding anything.
#[derive(Debug, Default)]
pub struct BackendSlots {
    in_use: Arc<AtomicUsize>,
    /// One log line per 10 s at most, so that a flood of refusals does
    /// not become a flood of log lines.
    refusals: LogLimit,
}

/// One backend connection held by a request (until its response body is
/// done) or a tunnel (until it ends).
#[derive(Debug)]
pub struct BackendSlot {
    in_use: Arc<AtomicUsize>,
    _counted: HeldBackendConnection,
    /// The session on the chosen backend, counted in its open sessions
    /// (`least_conn`, `/status`) for as long as the slot is held.
    session: Option<Session>,
}

impl BackendSlot {
    /// Holds `session` (the backend the request went to) until the slot is
    /// released.
    pub fn hold(&mut self, session: Session) {
        self.session = Some(session);
    }
}

impl BackendSlots {
    /// A slot, unless `limit` are in use (the refusal is counted).
    pub fn try_take(&self, limit: usize, metrics: &ListenerMetrics) -> Option<BackendSlot> {
        if self.in_use.fetch_add(1, Ordering::AcqRel) >= limit {
            self.in_use.fetch_sub(1, Ordering::AcqRel);
            metrics.backend_limit_rejected();
            return None;
        }
        Some(BackendSlot {
            in_use: self.in_use.clone(),
            _counted: metrics.backend_connection_taken(),
            session: None,
        })
    }

    /// Logs a refusal: the first at once, then one line per 10 s with the
    /// number refused meanwhile.
    pub fn log_refusal(&self, listener: &str, limit: usize) {
        let Some(refused) = self.refusals.admit() else {
            return;
        };
        tracing::warn!(
            %listener,
            max_backend_connections = limit,
            refused,
            "backend connection limit reached: requests answered 503 (raise max_backend_connections, \
             or lower max_concurrent_streams / send_timeout if slow clients hold them)"
        );
    }
}

impl Drop for BackendSlot {
    fn drop(&mut self) {
        self.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}
