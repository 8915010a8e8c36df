//! `POST` and `DELETE /backends/{listener}/{address}/drain`: an operator
//! drains a backend (no new requests or tunnels; those open run to their
//! end) or ends the drain (README: Redundant backends). The drain is
//! stored (`config/drains`, shared with the other instances) before the
//! answer, then applied through a configuration reload.

use std::sync::Arc;

use hyper::StatusCode;
use percent_encoding::percent_decode_str;

use super::reply::{Reply, error, json};
use super::state::{APPLY_TIMEOUT, AdminState, StoreError, update_stored};
use crate::balance::{BackendState, BackendView};
use crate::config::DrainStore;
use crate::reload::Reload;
use crate::snapshot::Snapshot;
use crate::storage::{Shared, keys};

/// Drains (`drain`) or undrains `address` of `listener`.
pub(super) async fn drain(state: &AdminState, listener: &str, address: &str, drain: bool) -> Reply {
    let address = percent_decode_str(address).decode_utf8_lossy().into_owned();
    let snapshot = state.store.load_full();
    let Some(index) = snapshot.listener_index(listener) else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no listener `{listener}`; listeners: {}",
                snapshot.listener_names().join(", ")
            ),
        );
    };
    let states = matching(&snapshot, index, &address);
    if states.is_empty() {
        let known: Vec<&str> = snapshot
            .backends(index)
            .map(|b| b.states.iter().map(|s| s.address()).collect())
            .unwrap_or_default();
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "listener `{listener}` has no backend `{address}`; its backends: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        );
    }
    if !drain && drained_by_config(&snapshot, index, &address) {
        return error(
            StatusCode::CONFLICT,
            format!(
                "`{address}` of listener `{listener}` is drained by `drain: true` in {}; \
                 remove it there and reload",
                state.config.file.display()
            ),
        );
    }
    {
        let _writer = state.writer.lock().await;
        if let Err(e) = store(&state.storage, listener, &address, drain).await {
            tracing::error!(%listener, backend = %address, "admin: drain not stored: {e}");
            return error(
                e.status(),
                format!("the drain of {address} was not stored, nothing changed: {e}"),
            );
        }
    }
    tracing::info!(
        %listener, backend = %address, drain,
        "admin: {}",
        if drain { "backend drained: no new requests or tunnels" } else { "backend drain ended" }
    );
    state.reloads.send(Reload::All);
    let applied = state
        .store
        .wait_for(APPLY_TIMEOUT, |snapshot| {
            let states = matching(snapshot, index, &address);
            !states.is_empty() && states.iter().all(|s| s.admin_drained() == drain)
        })
        .await;
    let Ok(snapshot) = applied else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the drain of {address} is stored, but the configuration did not reload within \
                 {}s; see the log and `sniwalk check`",
                APPLY_TIMEOUT.as_secs()
            ),
        );
    };
    let states = matching(&snapshot, index, &address);
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        listener: &'a str,
        backend: &'a str,
        drain: bool,
        open_sessions: usize,
    }
    json(
        StatusCode::OK,
        &Answer {
            listener,
            backend: &address,
            drain,
            open_sessions: states.iter().map(|s| s.in_flight()).sum(),
        },
    )
}

/// The states of `address` in listener number `index` (one per distinct
/// check setting: usually one).
fn matching(snapshot: &Snapshot, index: usize, address: &str) -> Vec<Arc<BackendState>> {
    snapshot
        .backends(index)
        .map(|b| {
            b.states
                .iter()
                .filter(|s| s.address() == address)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `drain: true` in the configuration drains `address`.
fn drained_by_config(snapshot: &Snapshot, index: usize, address: &str) -> bool {
    snapshot.backends(index).is_some_and(|groups| {
        groups
            .states
            .iter()
            .any(|s| s.address() == address && groups.drained_by_config(s))
    })
}

/// Every backend of every listener, as `/status` shows them.
pub(super) fn views(snapshot: &Snapshot) -> Vec<BackendView> {
    snapshot
        .listener_names()
        .iter()
        .zip(snapshot.all_backends())
        .flat_map(|(name, groups)| groups.views(name))
        .collect()
}

/// Sets the drain in the drain store (see [`update_stored`]).
async fn store(
    storage: &Shared,
    listener: &str,
    address: &str,
    drain: bool,
) -> Result<(), StoreError> {
    update_stored(
        storage,
        keys::DRAINS,
        |bytes, origin| DrainStore::parse(bytes, origin).map_err(Into::into),
        |store: &mut DrainStore| store.set(listener, address, drain),
        DrainStore::to_json,
    )
    .await
}
