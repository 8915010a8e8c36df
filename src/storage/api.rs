//! The storage interface: what sniwalk instances share (README, "Running
//! several instances"). Keys are `/`-separated paths relative to the
//! storage's prefix (`certificates/shop.example.com`); values are bytes.
//!
//! Every engine gives the same guarantees:
//! - a write is whole or absent (one atomic put per key);
//! - a conditional write ([`Condition`]) is checked and done in one step;
//! - a lock is held on a lease that its holder keeps alive; its fence
//!   ([`HeldLock::fence`]) makes a write with [`Condition::HeldLock`] fail
//!   once the lock was lost, so a holder paused past its lease cannot
//!   overwrite a newer result;
//! - a watch delivers every change after a listing's revision, in order,
//!   or says [`Change::Resync`] when it cannot (then list again).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// A revision of the whole store: it grows with every change, and each
/// stored value carries the revision of its last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision(pub u64);

/// A value and the revision of its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The bytes as written.
    pub value: Vec<u8>,
    /// When it was last written.
    pub modified: Revision,
}

/// Everything under a prefix as of one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Keys (relative to the storage's prefix) and their values, by key.
    pub entries: Vec<(String, Stored)>,
    /// The store's revision the listing was read at: watch from here.
    pub revision: Revision,
}

/// What must hold for a write or a delete to happen.
#[derive(Debug, Clone, Copy)]
pub enum Condition<'a> {
    /// Nothing: always.
    Always,
    /// The key does not exist (create only).
    Absent,
    /// The key was last written at this revision (compare and swap).
    ModifiedAt(Revision),
    /// The lock is still held by this holding (fencing).
    HeldLock(&'a HeldLock),
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `key` now holds `value`.
    Put {
        /// The key, relative to the storage's prefix.
        key: String,
        /// The new value.
        value: Vec<u8>,
        /// The revision of this write.
        modified: Revision,
    },
    /// `key` was deleted (or its lease ended).
    Deleted {
        /// The key, relative to the storage's prefix.
        key: String,
        /// The revision of the delete.
        revision: Revision,
    },
    /// Changes may have been missed (a compaction, a reconnect): list the
    /// prefix again and watch from the new listing's revision.
    Resync,
}

/// A lock this instance holds on a lease that is kept alive until the lock
/// is released or dropped.
#[derive(Debug)]
pub struct HeldLock {
    /// The lock's name (`orders/shop.example.com`).
    pub name: String,
    /// This holding's fencing token: larger for every new holding of the
    /// same lock.
    pub fence: u64,
    /// The engine's lease id (etcd), 0 where there is none.
    pub lease: i64,
    /// Raised when the lease could not be kept alive: the lock may belong
    /// to another instance now, and whatever it protects must stop.
    lost: CancellationToken,
    /// Raised on release or drop: stops keeping the lease alive.
    done: CancellationToken,
}

impl HeldLock {
    /// A holding of `name` with `fence`; the engine keeps it alive until
    /// it is released or dropped (the first token of [`HeldLock::tokens`])
    /// and calls [`HeldLock::lose`] when it cannot.
    pub fn new(name: String, fence: u64, lease: i64) -> Self {
        HeldLock {
            name,
            fence,
            lease,
            lost: CancellationToken::new(),
            done: CancellationToken::new(),
        }
    }

    /// Whether the lease was lost.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Completes when the lease is lost.
    pub fn lost(&self) -> WaitForCancellationFuture<'_> {
        self.lost.cancelled()
    }

    /// For the engine's keep-alive task: says the lease is lost.
    pub fn lose(&self) {
        self.lost.cancel();
    }

    /// For the engine's keep-alive task: the token raised on release or
    /// drop, and the one to raise when the lease is lost.
    pub fn tokens(&self) -> (CancellationToken, CancellationToken) {
        (self.done.clone(), self.lost.clone())
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        self.done.cancel();
    }
}

/// Why a storage operation failed. Each message names the engine's
/// address or the key, and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The engine cannot be reached (down, partitioned, wrong address).
    #[error("storage {endpoint} unreachable: {detail}; sniwalk keeps serving what it has")]
    Unreachable {
        /// The engine's address (an etcd endpoint, the state directory).
        endpoint: String,
        /// What the connection said.
        detail: String,
    },
    /// The engine refused the credentials or the permission.
    #[error(
        "storage {endpoint} refused access: {detail}; check storage.username and the password file, and the user's role"
    )]
    Denied {
        /// The engine's address.
        endpoint: String,
        /// What the engine said.
        detail: String,
    },
    /// A key sniwalk would never write (empty segment, `..`, not ASCII).
    #[error("storage key `{key}` is not valid: {reason}")]
    Key {
        /// The key as given.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The configuration's storage settings cannot be used (a file that
    /// cannot be read, an engine this build lacks).
    #[error("{field}: {detail}")]
    Setup {
        /// The configuration field.
        field: &'static str,
        /// What is wrong and what to do.
        detail: String,
    },
    /// Reading or writing one key failed.
    #[error("storage key `{key}`: {detail}")]
    Io {
        /// The key.
        key: String,
        /// What failed.
        detail: String,
    },
}

/// Checks that `key` is a relative `/`-separated path of printable ASCII
/// without empty or `.`/`..` segments: every engine can hold it, and the
/// state directory maps it to a file inside it.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    let bad = |reason| StorageError::Key {
        key: key.to_string(),
        reason,
    };
    if key.is_empty() {
        return Err(bad("empty"));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("only printable ASCII without spaces"));
    }
    if key
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(bad("an empty, `.` or `..` segment"));
    }
    Ok(())
}

/// A store every instance shares: the state directory (one machine, or a
/// shared filesystem) or etcd. Another engine is one more implementation.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The value at `key`, or `None`.
    async fn get(&self, key: &str) -> Result<Option<Stored>, StorageError>;

    /// Writes `value` at `key` when `condition` holds: the revision of the
    /// write, or `None` when the condition did not hold (nothing written).
    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        condition: Condition<'_>,
    ) -> Result<Option<Revision>, StorageError>;

    /// Writes `value` at `key` for as long as `lock` is held: it goes when
    /// the lock is released or its lease ends (challenge answers of an
    /// order). `None` when the lock is already lost.
    async fn put_while_held(
        &self,
        key: &str,
        value: Vec<u8>,
        lock: &HeldLock,
    ) -> Result<Option<Revision>, StorageError>;

    /// Deletes `key` when `condition` holds; `false` when it did not (or
    /// there was nothing to delete).
    async fn delete(&self, key: &str, condition: Condition<'_>) -> Result<bool, StorageError>;

    /// Every key under `prefix` (which ends with `/`) with its value.
    async fn list(&self, prefix: &str) -> Result<Listing, StorageError>;

    /// Takes the lock `name` for `holder` (a text naming this instance, for
    /// the logs of the others) on a lease of `lease`, kept alive until the
    /// returned lock is released or dropped. `None` when another holds it.
    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<HeldLock>, StorageError>;

    /// Who holds the lock `name` (the `holder` text), if anyone.
    async fn lock_holder(&self, name: &str) -> Result<Option<String>, StorageError>;

    /// Releases `lock` (its lease ends, what was put while it was held
    /// goes).
    async fn unlock(&self, lock: HeldLock) -> Result<(), StorageError>;

    /// The changes under `prefix` after `after` (a listing's revision), in
    /// order, until the receiver is dropped; [`Change::Resync`] when some
    /// may have been missed.
    fn watch(&self, prefix: &str, after: Revision) -> mpsc::Receiver<Change>;

    /// Where the engine is, for logs and `check` (an endpoint list, a
    /// folder).
    fn describe(&self) -> String;
}

/// How long a watch channel buffers changes before the engine waits for
/// its reader.
pub const WATCH_BUFFER: usize = 256;

/// The lease of a lock when nothing else is configured (`storage.lease`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_relative_paths_of_printable_ascii() {
        for good in [
            "certificates/shop.example.com",
            "locks/orders/a.test",
            "ticket-keys",
            "http-01/abc_DEF-123",
        ] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/certificates/a",
            "certificates/",
            "a//b",
            "a/../b",
            "./a",
            "a b",
            "ä",
        ] {
            let error = check_key(bad).expect_err(bad);
            assert!(error.to_string().contains("is not valid"), "{error}");
        }
    }

    #[test]
    fn a_dropped_lock_stops_its_keep_alive_and_loss_is_seen() {
        let lock = HeldLock::new("orders/a.test".into(), 7, 0);
        let (done, lost) = lock.tokens();
        assert!(!lock.is_lost());
        lost.cancel();
        assert!(lock.is_lost());
        assert!(!done.is_cancelled());
        drop(lock);
        assert!(done.is_cancelled());
    }
}
