//! This instance's liveness key in a remote storage
//! (`locks/instances/<id>`), on a lease of `storage.lease`, kept alive and
//! taken again whenever its lease ends: each answer or failure of the
//! storage tells [`super::health::StorageHealth`] whether it can be
//! reached; the others see which instances are alive by listing
//! `locks/instances/`. While it is held, the instance's status (its ACME
//! state, published by the ACME task) is kept at `status/<id>` on the same
//! lease, so it goes with the instance.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::api::{HeldLock, Storage};
use super::keys;
use super::shared::Shared;

/// The first wait before trying again after a failure.
const RETRY_FIRST: Duration = Duration::from_millis(500);

/// The longest wait between two tries.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Keeps this instance's liveness key alive in a remote storage until
/// `stop`, telling `health` whether that works. Does nothing for the
/// state directory.
pub async fn keep_alive(shared: Shared, stop: CancellationToken) {
    let health = shared.health().clone();
    let Some(lease) = shared.lease() else {
        return;
    };
    let name = format!("instances/{}", shared.instance_id());
    let engine = shared.engine_arc();
    let mut retry = RETRY_FIRST;
    loop {
        let taken = tokio::select! {
            () = stop.cancelled() => return,
            taken = engine.try_lock(&name, shared.instance(), lease) => taken,
        };
        match taken {
            Ok(Some(lock)) => {
                health.set_up();
                shared.store_pending().await;
                let mut status = shared.subscribe_status();
                let key = format!("{}{}", keys::STATUS, shared.instance_id());
                status.mark_changed();
                let mut look = tokio::time::interval(RETRY_MAX);
                look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => {
                            let _ = engine.unlock(lock).await;
                            return;
                        }
                        // Another call may have found the storage
                        // unreachable while this lease lived on (a
                        // timeout): whether it answers now decides, so one
                        // slow answer does not stop orders until the lease
                        // ends. Certificates kept while it was down are
                        // stored as soon as it answers.
                        _ = look.tick() => {
                            if !health.is_up() {
                                match engine.lock_holder(&name).await {
                                    Ok(_) => health.set_up(),
                                    Err(e) => health.set_down(&e.to_string()),
                                }
                            }
                            if health.is_up() {
                                shared.store_pending().await;
                            }
                        }
                        // Taken again below: whether that works says
                        // whether the storage can be reached (a lease can
                        // also end while it can: etcd restarted, a long
                        // pause).
                        () = lock.lost() => break,
                        changed = status.changed() => {
                            if changed.is_err() {
                                break;
                            }
                            let json = status.borrow_and_update().clone();
                            if let Some(json) = json {
                                put_status(&*engine, &lock, &key, shared.instance(), json).await;
                            }
                        }
                    }
                }
            }
            // Ours from before a reconnect, until its lease ends: the
            // storage answered.
            Ok(None) => health.set_up(),
            Err(e) => health.set_down(&e.to_string()),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// Writes this instance's status at `key` for as long as its liveness
/// lock is held: `{instance, updated, acme}`.
async fn put_status(
    engine: &dyn Storage,
    lock: &HeldLock,
    key: &str,
    instance: &str,
    acme: Vec<u8>,
) {
    let acme: serde_json::Value = serde_json::from_slice(&acme).unwrap_or_default();
    let value = serde_json::json!({
        "instance": instance,
        "updated": crate::clock::rfc3339(crate::clock::unix_now()),
        "acme": acme,
    });
    let Ok(bytes) = serde_json::to_vec(&value) else {
        return;
    };
    if let Err(e) = engine.put_while_held(key, bytes, lock).await {
        tracing::debug!(key, "cannot share this instance's status: {e}");
    }
}
