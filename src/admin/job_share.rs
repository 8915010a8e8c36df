//! Issuance jobs shared through the storage (README, "Running several
//! instances"): each job's state is written to `jobs/<id>` as it changes,
//! so `GET /certificates/jobs/{id}` answers on any instance, not only on
//! the one whose `POST /certificates` started it. Jobs older than
//! [`JOB_KEEP`] are deleted when a new one starts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::storage::{Condition, Shared};

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

/// Starts the writer of job `id`'s copy in `storage`.
pub(super) fn start_copy(storage: Shared, id: String, first: Vec<u8>) -> JobCopy {
    let (sender, mut receiver) = watch::channel(first);
    tokio::spawn(async move {
        let key = job_key(&id);
        loop {
            let state = receiver.borrow_and_update().clone();
            if let Err(e) = storage.engine().put(&key, state, Condition::Always).await {
                tracing::warn!(job = %id, key, "cannot share the job's state: {e}");
            }
            if receiver.changed().await.is_err() {
                return;
            }
        }
    });
    Arc::new(sender)
}

/// The job `id` as another instance stored it, if any.
pub(super) async fn stored_job(
    storage: &Shared,
    id: &str,
) -> Result<Option<serde_json::Value>, String> {
    let key = job_key(id);
    match storage.engine().get(&key).await {
        Ok(Some(stored)) => serde_json::from_slice(&stored.value)
            .map(Some)
            .map_err(|e| format!("the stored job {key} is not JSON ({e})")),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
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
