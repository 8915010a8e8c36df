//! Issuance jobs shared through the storage (README, "Running several
//! instances"): each job's state is written to `jobs/<id>` as it changes,
//! so `GET /certificates/jobs/{id}` answers on any instance, not only on
//! the one whose `POST /certificates` started it. Jobs older than
//! [`JOB_KEEP`] are deleted when a new one starts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::storage::{Condition, Shared, StorageError};

/// How long a finished job stays in the storage.
pub const JOB_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// The storage key of the job `id`.
pub(super) fn job_key(id: &str) -> String {
    format!("jobs/{id}")
}

/// Whether `id` is a job id sniwalk makes (16 lower-case hex digits), so
/// nothing else is looked up in the storage.
pub(super) fn is_job_id(id: &str) -> bool {
    id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where a job's states go: each one sent is written to the storage, in
/// order, the newest winning when they come faster than writes; the
/// writer ends once the sender is dropped and the last state is written.
pub(super) type JobCopy = Arc<watch::Sender<Vec<u8>>>;

/// The longest wait between two tries to write a state that failed.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// How long a state that cannot be written is tried again (a final state
/// included) before the writer gives up with an error line.
const RETRY_FOR: Duration = Duration::from_secs(3600);

/// Writes job `id`'s first state to `storage` (so the `202` that names
/// the job is only sent once any instance can answer for it), then starts
/// the writer of its later states.
pub(super) async fn start_copy(
    storage: Shared,
    id: String,
    first: Vec<u8>,
) -> Result<JobCopy, StorageError> {
    let key = job_key(&id);
    storage
        .engine()
        .put(&key, first.clone(), Condition::Always)
        .await?;
    let (sender, mut receiver) = watch::channel(first.clone());
    tokio::spawn(async move {
        let mut written = first;
        let mut closed = false;
        // A newer state arrived while an older one was being tried again.
        let mut fresh = false;
        loop {
            if !fresh && !closed && receiver.changed().await.is_err() {
                closed = true;
            }
            fresh = false;
            let state = receiver.borrow_and_update().clone();
            if state != written {
                // Tried again until written or replaced by a newer state;
                // the last one (Completed or Failed) until written, or for
                // RETRY_FOR: other instances would show the job running
                // for days otherwise.
                let mut wait = Duration::from_secs(1);
                let started = tokio::time::Instant::now();
                loop {
                    match storage
                        .engine()
                        .put(&key, state.clone(), Condition::Always)
                        .await
                    {
                        Ok(_) => {
                            written = state;
                            break;
                        }
                        Err(e) if started.elapsed() >= RETRY_FOR => {
                            tracing::error!(job = %id, key, "cannot share the job's state; given up: {e}");
                            written = state;
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(job = %id, key, "cannot share the job's state yet: {e}");
                        }
                    }
                    if closed {
                        tokio::time::sleep(wait).await;
                    } else {
                        tokio::select! {
                            changed = receiver.changed() => match changed {
                                Ok(()) => {
                                    fresh = true;
                                    break;
                                }
                                Err(_) => closed = true,
                            },
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                    wait = (wait * 2).min(RETRY_MAX);
                }
            }
            if closed && !fresh {
                return;
            }
        }
    });
    Ok(Arc::new(sender))
}

/// Why a stored job could not be shown.
#[derive(Debug, thiserror::Error)]
pub(super) enum StoredJobError {
    /// The storage failed (unreachable, refused).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored value is not a job sniwalk wrote.
    #[error("the stored job {key} is not JSON ({problem}); delete the key")]
    NotJson {
        /// The key.
        key: String,
        /// What the parser said.
        problem: String,
    },
}

/// The job `id` as another instance stored it, if any.
pub(super) async fn stored_job(
    storage: &Shared,
    id: &str,
) -> Result<Option<serde_json::Value>, StoredJobError> {
    let key = job_key(id);
    match storage.engine().get(&key).await? {
        Some(stored) => serde_json::from_slice(&stored.value)
            .map(Some)
            .map_err(|e| StoredJobError::NotJson {
                key,
                problem: e.to_string(),
            }),
        None => Ok(None),
    }
}

/// Deletes stored jobs last updated more than [`JOB_KEEP`] ago (best
/// effort: a failure is logged).
pub(super) async fn sweep(storage: Shared) {
    let listing = match storage.engine().list("jobs/").await {
        Ok(listing) => listing,
        Err(e) => {
            tracing::debug!("cannot list the stored jobs: {e}");
            return;
        }
    };
    let keep = i64::try_from(JOB_KEEP.as_secs()).unwrap_or(i64::MAX);
    let oldest = crate::clock::unix_now().saturating_sub(keep);
    for (key, stored) in listing.entries {
        let updated = serde_json::from_slice::<serde_json::Value>(&stored.value)
            .ok()
            .and_then(|job| job["lastUpdatedTime"].as_str().map(str::to_string))
            .and_then(|time| {
                time::OffsetDateTime::parse(&time, &time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .map(|time| time.unix_timestamp());
        // Unreadable ones go too: nothing can show them.
        if updated.is_none_or(|updated| updated < oldest)
            && let Err(e) = storage
                .engine()
                .delete(&key, Condition::ModifiedAt(stored.modified))
                .await
        {
            tracing::debug!(key, "cannot delete an old job: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_sniwalk_makes_are_looked_up() {
        assert!(is_job_id("0123456789abcdef"));
        assert!(is_job_id(&crate::ids::random_hex16()));
        for bad in [
            "",
            "0123456789ABCDEF",
            "0123456789abcde",
            "../../locks/x1234",
            "0123456789abcdeg",
        ] {
            assert!(!is_job_id(bad), "{bad}");
        }
    }
}
