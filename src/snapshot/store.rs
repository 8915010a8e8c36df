//! Who may read the current snapshot and who may publish the next one.
//!
//! Everything that looks at certificates (the rustls resolver, connection
//! tasks, ACME, the admin API, metrics, expiry monitoring) holds a
//! [`SnapshotReader`]. The one [`SnapshotWriter`] is made once by
//! `run_with` and moved into the reload task; it is not `Clone`, and a
//! reader cannot publish, so "one writer of the snapshot" (README: Layout)
//! is the compiler's rule rather than a comment.

use std::sync::Arc;

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
}

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
