//! Session ticket keys kept in a remote storage (README, "Shared session
//! tickets"): one instance at a time rotates them under a lock, every
//! `tls.ticket_rotation`, with a fenced write; every instance (the rotating
//! one too) takes them from its watch of `tickets/`. The newest key
//! encrypts, all decrypt; as many keys are kept as a ticket's lifetime
//! needs, so a rotation never breaks a ticket already out. A local copy
//! (`state_dir/shared/tickets/keys`, 0600) lets a restart while the storage
//! is down resume the sessions of before.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::api::Condition;
use super::follow::{Applier, follow_prefix};
use super::keys;
use super::shared::{Shared, write_cache_key};
use crate::state_layout::StateLayout;
use crate::tickets::{KeyLine, SharedTicketer, TICKET_LIFETIME_SECS, parse_keys, render_keys};

/// The most keys kept (a rotation every minute would otherwise keep 721).
pub const MAX_KEYS: usize = 50;

/// What the storage holds at [`keys::TICKET_KEYS`].
#[derive(Debug, Serialize, Deserialize)]
struct StoredKeys {
    /// When the newest key was made (Unix seconds).
    rotated_at: i64,
    /// The keys, newest first, as a `tls.ticket_keys_file` holds them.
    keys: String,
}

/// How many keys to keep when rotating every `rotation`: enough for a
/// ticket to be opened for its whole lifetime, at most [`MAX_KEYS`].
pub fn keys_to_keep(rotation: Duration) -> usize {
    let rotation = rotation.as_secs().max(1);
    let needed = u64::from(TICKET_LIFETIME_SECS).div_ceil(rotation) + 1;
    usize::try_from(needed)
        .unwrap_or(MAX_KEYS)
        .clamp(2, MAX_KEYS)
}

/// How long clients may keep a ticket: 12 hours, or less when
/// [`MAX_KEYS`] keys do not cover that.
pub fn ticket_lifetime(rotation: Duration) -> u32 {
    let covered = rotation
        .as_secs()
        .saturating_mul(keys_to_keep(rotation) as u64 - 1);
    u32::try_from(covered.min(u64::from(TICKET_LIFETIME_SECS))).unwrap_or(TICKET_LIFETIME_SECS)
}

/// The value for `keys` made at `rotated_at`.
fn encode(rotated_at: i64, keys: &[KeyLine]) -> Vec<u8> {
    serde_json::to_vec(&StoredKeys {
        rotated_at,
        keys: render_keys(keys),
    })
    .unwrap_or_default()
}

/// The rotation time and keys in `value`; the message says what is wrong.
fn decode(value: &[u8]) -> Result<(i64, Vec<KeyLine>), String> {
    let stored: StoredKeys =
        serde_json::from_slice(value).map_err(|e| format!("not JSON {{rotated_at, keys}}: {e}"))?;
    let keys = parse_keys(&stored.keys, keys::TICKET_KEYS).map_err(|e| e.to_string())?;
    Ok((stored.rotated_at, keys))
}

/// Whether keys made at `rotated_at` are due for rotation at `now`. A
/// time more than a minute ahead of `now` (a clock stepped back, a value
/// sniwalk did not write) is due too: rotation would wait for it forever.
fn due(rotated_at: i64, now: i64, rotation: Duration) -> bool {
    rotated_at > now.saturating_add(60)
        || now.saturating_sub(rotated_at) >= i64::try_from(rotation.as_secs()).unwrap_or(i64::MAX)
}

/// The ticketer to start with: the local copy of the stored keys, or one
/// fresh key of this instance's own until the storage gives the shared
/// ones.
pub fn initial_ticketer(
    cache: &StateLayout,
    rotation: Duration,
) -> Result<Arc<SharedTicketer>, crate::tickets::TicketKeysError> {
    let path = cache.key_path(keys::TICKET_KEYS);
    let keys = match std::fs::read(&path).ok().map(|bytes| decode(&bytes)) {
        Some(Ok((_, keys))) => keys,
        Some(Err(e)) => {
            tracing::warn!(file = %path.display(), "the local copy of the ticket keys does not read ({e}); a fresh key until the storage answers");
            vec![crate::tickets::fresh_key()?]
        }
        None => vec![crate::tickets::fresh_key()?],
    };
    Ok(Arc::new(SharedTicketer::with_lifetime(
        &keys,
        ticket_lifetime(rotation),
    )))
}

/// Follows the stored keys into `ticketer` and rotates them when due,
/// until `stop`.
pub async fn run(
    shared: Shared,
    ticketer: Arc<SharedTicketer>,
    rotation: Duration,
    stop: CancellationToken,
) {
    let Some(cache) = shared.cache().cloned() else {
        return;
    };
    let follower = tokio::spawn(follow_prefix(
        shared.engine_arc(),
        shared.health().clone(),
        Box::new(TicketKeys {
            ticketer: ticketer.clone(),
            cache,
        }),
        stop.clone(),
    ));
    let every = (rotation / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        if shared.health().is_up() {
            rotate_if_due(&shared, rotation).await;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    let _ = follower.await;
}

/// Rotates the stored keys if they are due (or missing, or unreadable),
/// under the rotation lock; the others see it through their watch.
async fn rotate_if_due(shared: &Shared, rotation: Duration) {
    let engine = shared.engine();
    let now = crate::clock::unix_now();
    let is_due = |stored: &Option<super::api::Stored>| match stored {
        None => true,
        Some(stored) => match decode(&stored.value) {
            Ok((rotated_at, _)) => due(rotated_at, now, rotation),
            Err(_) => true,
        },
    };
    let Ok(current) = engine.get(keys::TICKET_KEYS).await else {
        return;
    };
    if !is_due(&current) {
        return;
    }
    let lease = shared.lease_or(super::api::DEFAULT_LEASE);
    let lock = match engine
        .try_lock(keys::TICKET_ROTATION_LOCK, shared.instance(), lease)
        .await
    {
        Ok(Some(lock)) => lock,
        // Another instance is rotating them.
        Ok(None) | Err(_) => return,
    };
    // Looked at again under the lock: another may just have rotated.
    if let Ok(current) = engine.get(keys::TICKET_KEYS).await
        && is_due(&current)
    {
        let mut keys = match current.as_ref().map(|stored| decode(&stored.value)) {
            Some(Ok((_, keys))) => keys,
            Some(Err(e)) => {
                tracing::error!(
                    key = keys::TICKET_KEYS,
                    "the stored ticket keys do not read ({e}); replaced by a fresh key (sessions \
                     resume again from now on)"
                );
                Vec::new()
            }
            None => Vec::new(),
        };
        match crate::tickets::fresh_key() {
            Ok(fresh) => keys.insert(0, fresh),
            Err(e) => {
                tracing::error!("cannot make a ticket key: {e}");
                let _ = engine.unlock(lock).await;
                return;
            }
        }
        keys.truncate(keys_to_keep(rotation));
        let value = encode(now, &keys);
        match engine
            .put(keys::TICKET_KEYS, value, Condition::HeldLock(&lock))
            .await
        {
            Ok(Some(_)) => tracing::info!(
                key = keys::TICKET_KEYS,
                keys = keys.len(),
                every_secs = rotation.as_secs(),
                "TLS session ticket keys rotated"
            ),
            Ok(None) => tracing::warn!(
                key = keys::TICKET_KEYS,
                "the rotation lock was lost before the ticket keys were written; not written"
            ),
            Err(e) => tracing::warn!(
                key = keys::TICKET_KEYS,
                "cannot rotate the ticket keys: {e}"
            ),
        }
    }
    let _ = engine.unlock(lock).await;
}

/// The stored keys, into the ticketer and the local copy.
struct TicketKeys {
    ticketer: Arc<SharedTicketer>,
    cache: StateLayout,
}

#[async_trait::async_trait]
impl Applier for TicketKeys {
    fn prefix(&self) -> &'static str {
        keys::TICKETS
    }

    async fn put(&mut self, key: &str, value: &[u8]) {
        if key != keys::TICKET_KEYS {
            return;
        }
        match decode(value) {
            Ok((_, keys)) => {
                if self.ticketer.replace(&keys) {
                    tracing::info!(
                        key,
                        keys = keys.len(),
                        "TLS session ticket keys from the storage"
                    );
                    if let Err(e) = write_cache_key(&self.cache, key, value).await {
                        tracing::warn!(key, "{e}");
                    }
                }
            }
            Err(e) => tracing::error!(
                key,
                "the stored ticket keys do not read ({e}); the running keys stay"
            ),
        }
    }

    async fn delete(&mut self, _key: &str) {
        // The running keys stay; the next rotation writes new ones.
    }

    async fn forget_except(&mut self, _listed: &HashSet<String>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_keys_are_kept_for_a_tickets_lifetime() {
        let hour = Duration::from_secs(3600);
        assert_eq!(keys_to_keep(6 * hour), 3);
        assert_eq!(ticket_lifetime(6 * hour), TICKET_LIFETIME_SECS);
        assert_eq!(keys_to_keep(24 * hour), 2);
        assert_eq!(keys_to_keep(5 * hour), 4);
        // Rotating every minute would need 721: capped, and the lifetime
        // told to clients shrinks to what the kept keys cover.
        assert_eq!(keys_to_keep(Duration::from_secs(60)), MAX_KEYS);
        assert_eq!(ticket_lifetime(Duration::from_secs(60)), 49 * 60);
    }

    #[test]
    fn stored_keys_round_trip_and_bad_values_are_named() {
        let keys = vec![
            crate::tickets::fresh_key().expect("key"),
            crate::tickets::fresh_key().expect("key"),
        ];
        let (rotated_at, back) = decode(&encode(1000, &keys)).expect("decodes");
        assert_eq!(rotated_at, 1000);
        assert_eq!(back, keys);
        assert!(decode(b"garbage").is_err());
        let empty =
            serde_json::to_vec(&serde_json::json!({"rotated_at": 1, "keys": ""})).expect("json");
        assert!(decode(&empty).expect_err("no key").contains("no key"));
    }

    #[test]
    fn rotation_is_due_after_its_interval() {
        let six_hours = Duration::from_secs(6 * 3600);
        assert!(!due(1000, 1000, six_hours));
        assert!(!due(1000, 1000 + 6 * 3600 - 1, six_hours));
        assert!(due(1000, 1000 + 6 * 3600, six_hours));
        assert!(
            !due(1030, 1000, six_hours),
            "seconds of skew between instances"
        );
        assert!(due(1000 + 3600, 1000, six_hours), "from the future: due");
    }
}
