//! Who may read the current snapshot and who may publish the next one.
//!
//! Everything that looks at certificates (the rustls resolver, connection
//! tasks, ACME, the admin API, metrics, expiry monitoring) holds a
//! [`SnapshotReader`]. The one [`SnapshotWriter`] is made once by
//! `run_with` and moved into the reload task; it is not `Clone`, and a
//! reader cannot publish, so "one writer of the snapshot" (README: Layout)
//! is the compiler's rule rather than a comment.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};

use super::model::Snapshot;

/// Read access to the current snapshot: cheap to clone, lock-free to load
/// (an `ArcSwap` load, the handshake path's only cost here).
#[derive(Debug, Clone)]
pub struct SnapshotReader(Arc<ArcSwap<Snapshot>>);

impl SnapshotReader {
    /// The current snapshot, for a short look (a handshake, a request).
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.0.load()
    }

    /// The current snapshot, to keep across an `.await`.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.0.load_full()
    }

    /// Waits, at most `timeout`, until the current snapshot `shows` what
    /// the caller waits for (a certificate served, a domain loaded): `Ok`
    /// with the snapshot that showed it, `Err` with the last one looked at.
    /// The reload task publishes within milliseconds of a change, so a
    /// short poll is cheaper than a notification channel nobody else needs.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut shows: impl FnMut(&Snapshot) -> bool,
    ) -> Result<Arc<Snapshot>, Arc<Snapshot>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let snapshot = self.load_full();
            if shows(&snapshot) {
                return Ok(snapshot);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(snapshot);
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }
}

/// How often [`SnapshotReader::wait_for`] looks again.
const WAIT_POLL: Duration = Duration::from_millis(20);

/// The one publisher of snapshots (see the module documentation).
#[derive(Debug)]
pub struct SnapshotWriter(Arc<ArcSwap<Snapshot>>);

impl SnapshotWriter {
    /// Starts with `first` as the current snapshot.
    pub fn new(first: Snapshot) -> Self {
        SnapshotWriter(Arc::new(ArcSwap::from_pointee(first)))
    }

    /// A reader of what this writer publishes.
    pub fn reader(&self) -> SnapshotReader {
        SnapshotReader(self.0.clone())
    }

    /// The current snapshot (the one the next build starts from).
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.0.load()
    }

    /// Makes `next` the current snapshot: handshakes from now on use it,
    /// those in flight keep the one they loaded.
    pub fn publish(&self, next: Arc<Snapshot>) {
        self.0.store(next);
    }
}
