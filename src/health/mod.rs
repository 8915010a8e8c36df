//! Active health checks of backend groups (README: Redundant backends).
//!
//! One supervisor follows the snapshots: every backend with `health:`
//! gets a task that checks it every `interval` ([`probe`]) and writes the
//! outcome into its [`BackendState`]; a backend that leaves the
//! configuration has its task stopped. Requests see the result lock-free,
//! on their next choice of a backend.

pub mod probe;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::balance::{BackendState, log_transition};
use crate::config::HealthCheck;
use crate::snapshot::SnapshotReader;

/// How often the supervisor looks for backends added or removed by a
/// reload: a new backend waits at most this long for its first check.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// Runs the checks of every checked backend of the current snapshot until
/// `stop`.
pub async fn supervise(store: SnapshotReader, stop: CancellationToken) {
    // Few enough (one per checked backend) for a list: each backend, the
    // checks its task runs, and how to stop it.
    let mut running: Vec<(Arc<BackendState>, Arc<HealthCheck>, CancellationToken)> = Vec::new();
    let mut seen: Vec<Arc<crate::balance::ListenerBackends>> = Vec::new();
    loop {
        let snapshot = store.load_full();
        let current = snapshot.all_backends();
        let changed = current.len() != seen.len()
            || current.iter().zip(&seen).any(|(a, b)| !Arc::ptr_eq(a, b));
        if changed {
            seen = current.to_vec();
            let wanted: Vec<(&Arc<BackendState>, Arc<HealthCheck>)> = current
                .iter()
                .flat_map(|l| l.states.iter())
                .filter_map(|s| Some((s, s.check()?)))
                .collect();
            // A task whose backend left, or whose checks a reload changed,
            // stops; the changed ones start again below.
            running.retain(|(state, check, cancel)| {
                let keep = wanted
                    .iter()
                    .any(|(s, c)| Arc::ptr_eq(s, state) && c == check);
                if !keep {
                    cancel.cancel();
                }
                keep
            });
            for (state, check) in wanted {
                if running.iter().any(|(s, ..)| Arc::ptr_eq(s, state)) {
                    continue;
                }
                let cancel = stop.child_token();
                tokio::spawn(check_forever(
                    state.clone(),
                    check.clone(),
                    store.clone(),
                    cancel.clone(),
                ));
                running.push((state.clone(), check, cancel));
            }
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
    }
    for (_, _, cancel) in running {
        cancel.cancel();
    }
}

/// Checks one backend every `interval`, the first time at once, until
/// `stop`.
async fn check_forever(
    state: Arc<BackendState>,
    check: Arc<HealthCheck>,
    store: SnapshotReader,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(check.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = probe::run(&state, &check, &store) => outcome,
        };
        let why = match &outcome {
            Ok(()) => "health check passed".to_string(),
            Err(failure) => format!("health check failed: {failure}"),
        };
        if let Err(failure) = &outcome {
            tracing::debug!(
                listener = %state.listener, backend = %state.address(), %failure,
                "health check failed"
            );
        }
        if let Some(transition) = state.checked(outcome.is_ok()) {
            log_transition(&state, transition, &why);
        }
    }
}
