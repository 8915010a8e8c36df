//! Whether the storage can be reached (README, "Running several
//! instances"): while it cannot, the instance serves what it has and
//! places no orders. The state changes are logged once each, counted in
//! `sniwalk_storage_up` and shown in `/status`.
//!
//! With a remote engine the liveness key (`liveness.rs`) and the
//! follower's listings report here. The state directory is always up.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Told each change of state (the metric).
pub type OnChange = Box<dyn Fn(bool) + Send + Sync>;

/// The storage's reachability as last seen. Shared (`Arc`).
pub struct StorageHealth {
    engine: String,
    state: Mutex<HealthState>,
    on_change: OnceLock<OnChange>,
}

impl std::fmt::Debug for StorageHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageHealth")
            .field("engine", &self.engine)
            .field("state", &self.view())
            .finish()
    }
}

/// What `/status` and `check` show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthView {
    /// The engine (`etcd http://…`, `state directory /var/lib/sniwalk`).
    pub engine: String,
    /// Whether it can be reached.
    pub up: bool,
    /// Since when (RFC 3339).
    pub since: String,
    /// Why not, while it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
struct HealthState {
    up: bool,
    since: i64,
    error: Option<String>,
}

impl StorageHealth {
    /// Up, for `engine` (its description).
    pub fn new(engine: String) -> Arc<Self> {
        Arc::new(StorageHealth {
            engine,
            state: Mutex::new(HealthState {
                up: true,
                since: crate::clock::unix_now(),
                error: None,
            }),
            on_change: OnceLock::new(),
        })
    }

    /// Calls `on_change` with the state now and with each new one (one
    /// observer: the metric).
    pub fn observe(&self, on_change: OnChange) {
        on_change(self.is_up());
        let _ = self.on_change.set(on_change);
    }

    /// Whether the storage was reachable at the last look.
    pub fn is_up(&self) -> bool {
        self.lock().up
    }

    /// The state for `/status`.
    pub fn view(&self) -> HealthView {
        let state = self.lock().clone();
        HealthView {
            engine: self.engine.clone(),
            up: state.up,
            since: crate::clock::rfc3339(state.since),
            error: state.error,
        }
    }

    /// The storage answered.
    pub fn set_up(&self) {
        let changed = {
            let mut state = self.lock();
            let changed = !state.up;
            if changed {
                *state = HealthState {
                    up: true,
                    since: crate::clock::unix_now(),
                    error: None,
                };
            }
            changed
        };
        if changed {
            tracing::info!(
                storage = %self.engine,
                "storage reachable again: orders and renewals resume"
            );
            if let Some(tell) = self.on_change.get() {
                tell(true);
            }
        }
    }

    /// The storage did not answer (`error` says how).
    pub fn set_down(&self, error: &str) {
        let changed = {
            let mut state = self.lock();
            let changed = state.up;
            if changed {
                *state = HealthState {
                    up: false,
                    since: crate::clock::unix_now(),
                    error: Some(error.to_string()),
                };
            } else {
                state.error = Some(error.to_string());
            }
            changed
        };
        if changed {
            tracing::error!(
                storage = %self.engine,
                "storage unreachable ({error}): serving the certificates this instance has, \
                 placing no orders until it is back"
            );
            if let Some(tell) = self.on_change.get() {
                tell(false);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn each_change_of_state_is_told_once() {
        let told = Arc::new(AtomicUsize::new(0));
        let downs = Arc::new(AtomicUsize::new(0));
        let (t, d) = (told.clone(), downs.clone());
        let health = StorageHealth::new("etcd http://127.0.0.1:1".into());
        health.observe(Box::new(move |up| {
            t.fetch_add(1, Ordering::SeqCst);
            if !up {
                d.fetch_add(1, Ordering::SeqCst);
            }
        }));
        assert_eq!(told.load(Ordering::SeqCst), 1, "the first state");
        health.set_up();
        assert_eq!(told.load(Ordering::SeqCst), 1);
        health.set_down("connection refused");
        health.set_down("still refused");
        assert_eq!(downs.load(Ordering::SeqCst), 1);
        let view = health.view();
        assert!(!view.up);
        assert_eq!(view.error.as_deref(), Some("still refused"));
        health.set_up();
        assert!(health.is_up());
        assert_eq!(told.load(Ordering::SeqCst), 3);
        assert_eq!(health.view().error, None);
    }
}
