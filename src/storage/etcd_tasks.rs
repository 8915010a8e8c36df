//! What runs beside the etcd engine's requests (`etcd.rs`): the task that
//! keeps a held lock's lease alive, the task behind a watch, and what they
//! share with the engine (errors, keys and revisions read from etcd).

use std::time::Duration;

use etcd_client::{LeaseClient, WatchClient, WatchOptions};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::{Change, Revision, StorageError};

/// How long a best-effort lease revoke (a refused lock, a dropped or lost
/// lock) may take before it is given up: the lease then runs out by itself.
const REVOKE_LIMIT: Duration = Duration::from_secs(5);

/// etcd's revision as a [`Revision`] (a negative one, which etcd never
/// sends, reads as 0).
pub(super) fn revision(value: i64) -> Revision {
    Revision(u64::try_from(value).unwrap_or(0))
}

/// etcd's longest lease (`MaxLeaseTTL`, about 285 years).
const MAX_LEASE_SECONDS: u64 = 9_000_000_000;

/// A lease's TTL as etcd gave it, between 1 s and etcd's longest lease (so
/// that deadlines computed from it never overflow).
pub(super) fn lease_ttl(seconds: i64) -> Duration {
    Duration::from_secs(
        u64::try_from(seconds)
            .unwrap_or(1)
            .clamp(1, MAX_LEASE_SECONDS),
    )
}

/// `key` (as stored in etcd) relative to `prefix`; `None`, with a warning,
/// for a key that is not UTF-8 or not under the prefix.
pub(super) fn relative_key(prefix: &str, key: &[u8]) -> Option<String> {
    let Ok(text) = std::str::from_utf8(key) else {
        tracing::warn!(key = %String::from_utf8_lossy(key), "etcd key is not UTF-8: skipped");
        return None;
    };
    match text.strip_prefix(prefix) {
        Some(relative) if !relative.is_empty() => Some(relative.to_string()),
        _ => {
            tracing::warn!(
                key = text,
                prefix,
                "etcd key is not under the prefix: skipped"
            );
            None
        }
    }
}

/// Whether etcd said the lease (or key) does not exist.
pub(super) fn is_not_found(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::NotFound)
}

/// A failed request about `key` as a [`StorageError`]: no connection or no
/// answer in time is [`StorageError::Unreachable`], a refused user or
/// permission [`StorageError::Denied`], anything else
/// [`StorageError::Io`].
pub(super) fn classify(endpoints: &str, key: &str, error: etcd_client::Error) -> StorageError {
    use tonic::Code;
    if let etcd_client::Error::GRpcStatus(status) = &error {
        let detail = status.message().to_string();
        match status.code() {
            // Unknown: an HTTP/2 error under a stream (etcd went away).
            Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Unknown => {
                return StorageError::Unreachable {
                    endpoint: endpoints.to_string(),
                    detail,
                };
            }
            Code::PermissionDenied | Code::Unauthenticated => {
                return StorageError::Denied {
                    endpoint: endpoints.to_string(),
                    detail,
                };
            }
            // etcd 3.4 refuses a wrong password and a missing user as an
            // invalid argument.
            Code::InvalidArgument
                if detail.contains("authentication") || detail.contains("user name is empty") =>
            {
                return StorageError::Denied {
                    endpoint: endpoints.to_string(),
                    detail,
                };
            }
            _ => {}
        }
    }
    StorageError::Io {
        key: key.to_string(),
        detail: format!("etcd {endpoints}: {error}"),
    }
}

/// Revokes `lease` once, giving up after [`REVOKE_LIMIT`]; a failure is
/// logged (the lease then runs out by itself).
pub(super) async fn revoke_quietly(mut client: LeaseClient, lease: i64, lock: &str) {
    match tokio::time::timeout(REVOKE_LIMIT, client.revoke(lease)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if is_not_found(&e) => {}
        Ok(Err(e)) => tracing::debug!(lock, "cannot revoke the lock's lease: {e}"),
        Err(_) => tracing::debug!(lock, "cannot revoke the lock's lease: no answer in time"),
    }
}

/// How long a lost lock's lease is still revoked once etcd answers again.
const REVOKE_RETRY_FOR: Duration = Duration::from_secs(60);

/// Revokes the lease of a lock lost because etcd did not answer (a
/// restart, a network cut), trying again until etcd answers or
/// [`REVOKE_RETRY_FOR`] is over. etcd gives every lease its whole TTL again
/// when it comes back, so a single try during the outage would leave the
/// lost lock's keys (the liveness key, the status on it) in place for a TTL
/// after the outage, where this instance could neither retake them nor
/// remove them on stop.
async fn revoke_once_answered(mut client: LeaseClient, lease: i64, lock: &str) {
    let started = Instant::now();
    loop {
        match tokio::time::timeout(REVOKE_LIMIT, client.revoke(lease)).await {
            Ok(Ok(_)) => return,
            Ok(Err(e)) if is_not_found(&e) => return,
            Ok(Err(e)) if started.elapsed() >= REVOKE_RETRY_FOR => {
                tracing::debug!(lock, "cannot revoke the lost lock's lease: {e}");
                return;
            }
            Err(_) if started.elapsed() >= REVOKE_RETRY_FOR => {
                tracing::debug!(
                    lock,
                    "cannot revoke the lost lock's lease: no answer in time"
                );
                return;
            }
            Ok(Err(_)) | Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// What the keep-alive task of one lock needs.
pub(super) struct KeepAlive {
    pub(super) lease: LeaseClient,
    pub(super) id: i64,
    /// The lease's TTL as granted.
    pub(super) ttl: Duration,
    /// Just before the grant was sent.
    pub(super) granted_at: Instant,
    /// Raised when the lock is released or dropped.
    pub(super) done: CancellationToken,
    /// Raised here when the lease could not be kept.
    pub(super) lost: CancellationToken,
    pub(super) name: String,
}

/// Renews the lease every third of its TTL until `done`; raises `lost`
/// when a renewal fails or does not come back before the lease would have
/// run out (counted from when the last good renewal was sent). Revokes the
/// lease on the way out unless it is known to be gone.
pub(super) async fn keep_alive(task: KeepAlive) {
    let KeepAlive {
        mut lease,
        id,
        ttl,
        granted_at,
        done,
        lost,
        name,
    } = task;
    let renewing = async {
        let mut ttl = ttl;
        let mut last_good = granted_at;
        // Opening the stream sends the first renewal.
        let opened_at = Instant::now();
        let (mut keeper, mut answers) =
            match tokio::time::timeout_at(last_good + ttl, lease.keep_alive(id)).await {
                Ok(Ok(opened)) => opened,
                Ok(Err(e)) => return format!("cannot open the keep-alive stream: {e}"),
                Err(_) => return "no answer from etcd before the lease ran out".to_string(),
            };
        last_good = opened_at;
        loop {
            tokio::time::sleep_until(last_good + ttl / 3).await;
            let sent_at = Instant::now();
            let renewal = async {
                keeper.keep_alive().await?;
                answers.message().await
            };
            match tokio::time::timeout_at(last_good + ttl, renewal).await {
                Err(_) => return "no answer from etcd before the lease ran out".to_string(),
                Ok(Err(e)) => return format!("keep-alive failed: {e}"),
                Ok(Ok(None)) => return "etcd ended the keep-alive stream".to_string(),
                Ok(Ok(Some(answer))) if answer.ttl() <= 0 => {
                    return "the lease ran out or was revoked".to_string();
                }
                Ok(Ok(Some(answer))) => {
                    last_good = sent_at;
                    ttl = lease_ttl(answer.ttl());
                }
            }
        }
    };
    tokio::select! {
        _ = done.cancelled() => {
            if !lost.is_cancelled() {
                revoke_quietly(lease, id, &name).await;
            }
        }
        reason = renewing => {
            tracing::warn!(lock = name, "lost the lock: {reason}");
            lost.cancel();
            revoke_once_answered(lease, id, &name).await;
        }
    }
}

/// One watch: its etcd stream and the channel to the reader.
pub(super) struct Watch {
    pub(super) client: WatchClient,
    /// The storage's prefix (stripped from keys).
    pub(super) storage_prefix: String,
    /// What is watched, in etcd.
    pub(super) prefix: String,
    /// The first revision to deliver.
    pub(super) start: i64,
    pub(super) sender: mpsc::Sender<Change>,
}

impl Watch {
    /// Forwards changes until the reader goes; on any end from etcd's side
    /// sends [`Change::Resync`] once.
    pub(super) async fn run(self) {
        let sender = self.sender.clone();
        let prefix = self.prefix.clone();
        tokio::select! {
            _ = sender.closed() => {}
            reason = self.forward() => {
                if let Some(reason) = reason {
                    tracing::warn!(prefix, "storage watch ended, the reader lists again: {reason}");
                    let _ = sender.send(Change::Resync).await;
                }
            }
        }
    }

    /// Forwards every change; why it stopped, or `None` when the reader
    /// went.
    async fn forward(&self) -> Option<String> {
        let stop = Some;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.start);
        let mut stream = match self
            .client
            .clone()
            .watch(self.prefix.clone(), Some(options))
            .await
        {
            Ok(stream) => stream,
            Err(e) => return stop(format!("cannot start: {e}")),
        };
        loop {
            let answer = match stream.message().await {
                Ok(Some(answer)) => answer,
                Ok(None) => return stop("etcd ended the stream".into()),
                Err(e) => return stop(e.to_string()),
            };
            if answer.canceled() {
                let reason = if answer.compact_revision() > 0 {
                    format!(
                        "revision {} was compacted (up to {})",
                        self.start,
                        answer.compact_revision()
                    )
                } else {
                    format!("canceled by etcd: {}", answer.cancel_reason())
                };
                return stop(reason);
            }
            for event in answer.events() {
                let Some(kv) = event.kv() else {
                    continue;
                };
                let Some(key) = relative_key(&self.storage_prefix, kv.key()) else {
                    continue;
                };
                // A delete's key-value is a tombstone (version 0); a put's
                // version is 1 or more. Read that way because the crate's
                // event_type() panics on a type it does not know.
                let change = if kv.version() == 0 {
                    Change::Deleted {
                        key,
                        revision: revision(kv.mod_revision()),
                    }
                } else {
                    Change::Put {
                        key,
                        value: kv.value().to_vec(),
                        modified: revision(kv.mod_revision()),
                    }
                };
                if self.sender.send(change).await.is_err() {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_outside_the_prefix_or_not_utf8_are_skipped() {
        assert_eq!(
            relative_key("sniwalk/", b"sniwalk/certificates/a").as_deref(),
            Some("certificates/a")
        );
        assert_eq!(relative_key("sniwalk/", b"other/a"), None);
        assert_eq!(relative_key("sniwalk/", b"sniwalk/"), None);
        assert_eq!(relative_key("sniwalk/", b"sniwalk/\xff"), None);
    }

    #[test]
    fn lease_ttls_stay_between_one_second_and_etcds_longest() {
        assert_eq!(lease_ttl(15), Duration::from_secs(15));
        assert_eq!(lease_ttl(0), Duration::from_secs(1));
        assert_eq!(lease_ttl(-1), Duration::from_secs(1));
        assert_eq!(lease_ttl(i64::MAX), Duration::from_secs(MAX_LEASE_SECONDS));
        let _ = Instant::now() + lease_ttl(i64::MAX);
    }

    #[test]
    fn negative_revisions_read_as_zero() {
        assert_eq!(revision(-1), Revision(0));
        assert_eq!(revision(42), Revision(42));
    }
}
