//! The `dir` storage engine: the state directory's own files
//! (README, "State directory"). Each key is one file
//! ([`StateLayout::key_path`]), so a state directory written before there
//! was a storage interface needs no migration, and several instances on
//! one machine (or a shared filesystem) share what is in it.
//!
//! - A write is a temporary file renamed over the key's file (whole or
//!   absent); a create-only write ([`Condition::Absent`]) is a hard link,
//!   which never replaces a file.
//! - A value's revision is its file's modification time in nanoseconds.
//!   Compare-and-swap ([`Condition::ModifiedAt`]) and fenced writes
//!   ([`Condition::HeldLock`]) check and then write: between two processes
//!   that is not one step, which is why several machines should share
//!   etcd rather than a folder (README, "Running several instances").
//! - A lock is a lock file with a lease ([`super::dir_lock`]); its fence is
//!   the holding's start in nanoseconds, kept in the file. A task renews the
//!   lease every third of it, raises [`HeldLock::lost`] when the file no
//!   longer names this holding, and on release deletes the file and what
//!   was put while it was held.
//! - A watch is a file-system watch of the state directory (`notify`); it
//!   starts with [`Change::Resync`] when a file changed after the listing's
//!   revision and before the watch began. A file deleted in that moment,
//!   or written within one tick of the file system's clock, is not seen
//!   that way: the follower's re-list every 5 minutes is the backstop
//!   (this engine is for one machine; several use etcd).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use notify::Watcher as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::api::{
    Change, Condition, HeldLock, Listing, Revision, Storage, StorageError, Stored, WATCH_BUFFER,
    check_key,
};
use super::dir_lock::{self, Attempt, Holder, LockRecord, Seen};
use crate::fsio;
use crate::state_layout::StateLayout;

/// Largest value read from a file: a certificate chain with its key is a
/// few kilobytes; anything near this is not something sniwalk wrote.
pub const MAX_VALUE_BYTES: u64 = 1 << 20;

/// Keys written while a lock was held, by lock name and fence: deleted
/// when that holding ends.
type Attached = Arc<Mutex<HashMap<(String, u64), Vec<String>>>>;

/// [`Storage`] in the state directory.
#[derive(Debug, Clone)]
pub struct DirStorage {
    state: StateLayout,
    attached: Attached,
}

impl DirStorage {
    /// The storage in the state directory `state` (created owner-only at
    /// the first write).
    pub fn new(state: StateLayout) -> Self {
        DirStorage {
            state,
            attached: Attached::default(),
        }
    }

    /// Checks `key` (also: no segment starting with `.`, the temporary
    /// files' names) and gives its file.
    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        if key.split('/').any(|segment| segment.starts_with('.')) {
            return Err(StorageError::Key {
                key: key.to_string(),
                reason: "a segment starting with `.` (the state directory's temporary files)",
            });
        }
        Ok(self.state.key_path(key))
    }

    /// The file of the lock `name`.
    fn lock_path(&self, name: &str) -> Result<PathBuf, StorageError> {
        self.path(&format!("locks/{name}"))
    }

    /// `condition` as the file work checks it.
    fn check(&self, condition: Condition<'_>) -> Result<Check, StorageError> {
        Ok(match condition {
            Condition::Always => Check::Always,
            Condition::Absent => Check::Absent,
            Condition::ModifiedAt(revision) => Check::ModifiedAt(revision),
            Condition::HeldLock(lock) => Check::Held {
                lock_file: self.lock_path(&lock.name)?,
                fence: lock.fence,
            },
        })
    }

    fn endpoint(&self) -> String {
        self.state.root().display().to_string()
    }
}

/// Whether a key's file holds a secret (mode 0600): everything but the
/// HTTP-01 answers, which the CA fetches over plain HTTP anyway.
fn is_private(key: &str) -> bool {
    !key.starts_with("http-01/")
}

/// A file's modification time in nanoseconds since the epoch.
fn modified_nanos(metadata: &std::fs::Metadata) -> Revision {
    Revision(
        metadata
            .modified()
            .ok()
            .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
    )
}

/// Now in nanoseconds: the revision of a listing.
fn now_nanos() -> Revision {
    Revision(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
    )
}

/// Reads the value at `path` (`None` when there is no file).
fn read_value(path: &Path) -> io::Result<Option<Stored>> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if metadata.len() > MAX_VALUE_BYTES {
        return Err(io::Error::other(format!(
            "{} bytes, more than the {MAX_VALUE_BYTES} a value may have",
            metadata.len()
        )));
    }
    let mut value = Vec::new();
    file.take(MAX_VALUE_BYTES + 1).read_to_end(&mut value)?;
    Ok(Some(Stored {
        value,
        modified: modified_nanos(&metadata),
    }))
}

/// A [`Condition`] the file work can own (it runs on a blocking thread).
#[derive(Debug, Clone)]
enum Check {
    Always,
    Absent,
    ModifiedAt(Revision),
    /// The lock file still names the holding with this fence.
    Held {
        lock_file: PathBuf,
        fence: u64,
    },
}

/// Whether the lock file at `path` still names the holding `fence` with a
/// lease that has not ended.
fn still_held(path: &Path, fence: u64) -> io::Result<bool> {
    Ok(match dir_lock::read(path)? {
        Some((_, Seen::Record(record))) => {
            record.fence == fence && crate::clock::unix_now() < record.expires
        }
        _ => false,
    })
}

/// The text naming a lock's holder for the logs of the others.
fn describe(record: &LockRecord) -> String {
    let who = if record.holder.is_empty() {
        format!("pid {} on {}", record.pid, record.host)
    } else {
        record.holder.clone()
    };
    format!(
        "{who} (lease until {})",
        crate::clock::rfc3339(record.expires)
    )
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    key: &str,
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Io {
            key: key.to_string(),
            detail: e.to_string(),
        })?
}

/// The error for a failed file operation on `key`.
fn io_error(key: &str, path: &Path, error: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        key: key.to_string(),
        detail: format!("{}: {error}", path.display()),
    }
}

/// Deletes the file of `key` at `path`: whether there was one.
fn remove(key: &str, path: &Path) -> Result<bool, StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(key, path, e)),
    }
}

/// Writes `value` at `path` under `condition` (checked first; see the
/// module's note on the gap between check and write).
fn write(
    key: &str,
    path: &Path,
    value: &[u8],
    check: &Check,
) -> Result<Option<Revision>, StorageError> {
    let fail = |e: &dyn std::fmt::Display| io_error(key, path, e);
    if let Some(dir) = path.parent() {
        fsio::create_private_dir(dir).map_err(|e| fail(&e))?;
    }
    let private = is_private(key);
    match check {
        Check::Always => {}
        Check::Absent => {
            if !fsio::create_atomic(path, value, private).map_err(|e| fail(&e))? {
                return Ok(None);
            }
            return revision_of(key, path).map(Some);
        }
        Check::ModifiedAt(expected) => {
            let current = read_value(path).map_err(|e| fail(&e))?;
            if current.map(|c| c.modified) != Some(*expected) {
                return Ok(None);
            }
        }
        Check::Held { lock_file, fence } => {
            if !still_held(lock_file, *fence).map_err(|e| io_error(key, lock_file, e))? {
                return Ok(None);
            }
        }
    }
    fsio::write_atomic(path, value, private).map_err(|e| fail(&e))?;
    revision_of(key, path).map(Some)
}

fn revision_of(key: &str, path: &Path) -> Result<Revision, StorageError> {
    std::fs::metadata(path)
        .map(|m| modified_nanos(&m))
        .map_err(|e| io_error(key, path, e))
}

/// Every key under `prefix` with its value, read from the files.
fn list_files(state: &StateLayout, prefix: &str) -> Result<Vec<(String, Stored)>, StorageError> {
    let mut entries = Vec::new();
    for folder in state.key_folders(prefix) {
        let mut pending = vec![folder.dir.clone()];
        while let Some(dir) = pending.pop() {
            let listing = match std::fs::read_dir(&dir) {
                Ok(listing) => listing,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(prefix, &dir, e)),
            };
            for entry in listing.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    // Only `shared/` nests keys in folders.
                    if folder.nested {
                        pending.push(path);
                    }
                    continue;
                }
                let Some(key) = state.key_of(&path) else {
                    continue;
                };
                if !key.starts_with(prefix) {
                    continue;
                }
                // Gone since the folder was read: not listed.
                if let Some(stored) = read_value(&path).map_err(|e| io_error(&key, &path, e))? {
                    entries.push((key, stored));
                }
            }
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|a, b| a.0 == b.0);
    Ok(entries)
}

/// Keeps `record`'s lease on `path` renewed every third of it until the
/// holding is released or dropped (`done`), then deletes the lock file
/// (if still ours) and the keys attached to the holding; raises `lost`
/// when the file no longer names it.
#[allow(clippy::too_many_arguments)]
async fn keep_alive(
    path: PathBuf,
    record: LockRecord,
    lease: Duration,
    done: CancellationToken,
    lost: CancellationToken,
    state: StateLayout,
    attached: Attached,
    name: String,
) {
    let every = lease / 3;
    // The end of the lease as last written: past it without a renewal
    // (the disk full, the folder unwritable), the lock is as good as lost.
    let mut expires = record.expires;
    loop {
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tokio::time::sleep(every), if !lost.is_cancelled() => {}
        }
        let (p, r) = (path.clone(), record.clone());
        let renewed = tokio::task::spawn_blocking(move || {
            dir_lock::renew(&p, &r, crate::clock::unix_now(), lease)
        })
        .await;
        match renewed {
            Ok(Ok(Some(end))) => expires = end,
            Ok(Ok(None)) => {
                tracing::error!(
                    lock = %name,
                    file = %path.display(),
                    "lost the lock: another instance took it over (was this one stalled for \
                     longer than its lease?); what it protects stops"
                );
                lost.cancel();
            }
            Ok(Err(e)) if crate::clock::unix_now() >= expires => {
                tracing::error!(
                    lock = %name,
                    file = %path.display(),
                    "lost the lock: it could not be renewed before its lease ended ({e}); what \
                     it protects stops"
                );
                lost.cancel();
            }
            Ok(Err(e)) => {
                tracing::warn!(lock = %name, file = %path.display(), "cannot renew the lock: {e}")
            }
            Err(_) => break,
        }
    }
    let keys = take_attached(&attached, &name, record.fence);
    let _ = tokio::task::spawn_blocking(move || release_files(&state, &path, &record, &keys)).await;
}

/// The keys attached to the holding `(name, fence)`, forgotten.
fn take_attached(attached: &Attached, name: &str, fence: u64) -> Vec<String> {
    attached
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&(name.to_string(), fence))
        .unwrap_or_default()
}

/// Deletes `keys` and the lock file at `path` if it is still `record`'s.
fn release_files(state: &StateLayout, path: &Path, record: &LockRecord, keys: &[String]) {
    if let Err(e) = release_holding(state, path, record.fence, keys) {
        tracing::warn!(file = %path.display(), "cannot release the lock: {e}");
    }
}

/// Releases the holding `fence` of the lock file at `path` and deletes the
/// keys put while it was held, if the file still names that holding: a
/// holding taken over meanwhile leaves both alone (the new holder may
/// have written the same keys).
fn release_holding(
    state: &StateLayout,
    path: &Path,
    fence: u64,
    keys: &[String],
) -> io::Result<()> {
    let owner = match dir_lock::read(path)? {
        Some((_, Seen::Record(record))) if record.fence == fence => record.owner,
        _ => return Ok(()),
    };
    for key in keys {
        let file = state.key_path(key);
        if let Err(e) = std::fs::remove_file(&file)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(key, "cannot delete a value of a released lock: {e}");
        }
    }
    dir_lock::release(path, &owner).map(|_| ())
}

#[async_trait::async_trait]
impl Storage for DirStorage {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StorageError> {
        let path = self.path(key)?;
        let owned = key.to_string();
        blocking(key, move || {
            read_value(&path).map_err(|e| io_error(&owned, &path, e))
        })
        .await
    }

    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        condition: Condition<'_>,
    ) -> Result<Option<Revision>, StorageError> {
        let path = self.path(key)?;
        let check = self.check(condition)?;
        let owned = key.to_string();
        blocking(key, move || write(&owned, &path, &value, &check)).await
    }

    async fn put_while_held(
        &self,
        key: &str,
        value: Vec<u8>,
        lock: &HeldLock,
    ) -> Result<Option<Revision>, StorageError> {
        let path = self.path(key)?;
        let check = self.check(Condition::HeldLock(lock))?;
        // Attached first: a release racing with this write deletes it.
        self.attached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((lock.name.clone(), lock.fence))
            .or_default()
            .push(key.to_string());
        let owned = key.to_string();
        blocking(key, move || write(&owned, &path, &value, &check)).await
    }

    async fn delete(&self, key: &str, condition: Condition<'_>) -> Result<bool, StorageError> {
        let path = self.path(key)?;
        let check = self.check(condition)?;
        let key = key.to_string();
        blocking(&key.clone(), move || {
            let allowed = match &check {
                Check::Always => true,
                Check::Absent => false,
                Check::ModifiedAt(expected) => {
                    read_value(&path)
                        .map_err(|e| io_error(&key, &path, e))?
                        .map(|c| c.modified)
                        == Some(*expected)
                }
                Check::Held { lock_file, fence } => {
                    still_held(lock_file, *fence).map_err(|e| io_error(&key, lock_file, e))?
                }
            };
            if !allowed {
                return Ok(false);
            }
            remove(&key, &path)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StorageError> {
        if !prefix.is_empty() {
            match prefix.strip_suffix('/') {
                Some(path) => check_key(path)?,
                None => {
                    return Err(StorageError::Key {
                        key: prefix.to_string(),
                        reason: "a prefix ends with `/`",
                    });
                }
            }
        }
        let state = self.state.clone();
        let owned = prefix.to_string();
        let revision = now_nanos();
        let entries = blocking(prefix, move || list_files(&state, &owned)).await?;
        Ok(Listing { entries, revision })
    }

    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<HeldLock>, StorageError> {
        let path = self.lock_path(name)?;
        let who = Holder::this_process(holder);
        let (p, w) = (path.clone(), who.clone());
        let key = format!("locks/{name}");
        let attempt = blocking(&key, {
            let key = key.clone();
            move || {
                dir_lock::try_acquire(&p, &w, crate::clock::unix_now(), lease).map_err(|e| {
                    StorageError::Io {
                        key,
                        detail: e.to_string(),
                    }
                })
            }
        })
        .await?;
        let (record, replaced) = match attempt {
            Attempt::Acquired(record, replaced) => (record, replaced),
            Attempt::Held(_) => return Ok(None),
        };
        if let Some(stale) = replaced {
            tracing::info!(
                lock = name,
                previous = %stale.record().map_or_else(|| "an unreadable lock file".into(), describe),
                "took over a stale lock (its holder stopped renewing it)"
            );
        }
        let lock = HeldLock::new(name.to_string(), record.fence, 0);
        let (done, lost) = lock.tokens();
        tokio::spawn(keep_alive(
            path,
            record,
            lease,
            done,
            lost,
            self.state.clone(),
            self.attached.clone(),
            name.to_string(),
        ));
        Ok(Some(lock))
    }

    async fn lock_holder(&self, name: &str) -> Result<Option<String>, StorageError> {
        let path = self.lock_path(name)?;
        let key = format!("locks/{name}");
        let seen = blocking(&key, {
            let key = key.clone();
            move || dir_lock::read(&path).map_err(|e| io_error(&key, &path, e))
        })
        .await?;
        Ok(match seen {
            Some((_, Seen::Record(record))) if crate::clock::unix_now() < record.expires => {
                Some(describe(&record))
            }
            _ => None,
        })
    }

    async fn unlock(&self, lock: HeldLock) -> Result<(), StorageError> {
        let path = self.lock_path(&lock.name)?;
        let keys = take_attached(&self.attached, &lock.name, lock.fence);
        let state = self.state.clone();
        let fence = lock.fence;
        let key = format!("locks/{}", lock.name);
        blocking(&key, {
            let key = key.clone();
            move || {
                release_holding(&state, &path, fence, &keys).map_err(|e| io_error(&key, &path, e))
            }
        })
        .await?;
        // Ends the keep-alive (which finds nothing left to release).
        drop(lock);
        Ok(())
    }

    fn watch(&self, prefix: &str, after: Revision) -> mpsc::Receiver<Change> {
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(watch_files(
            self.state.clone(),
            prefix.to_string(),
            after,
            sender,
        ));
        receiver
    }

    fn describe(&self) -> String {
        format!("state directory {}", self.endpoint())
    }
}

/// The file-system watch behind [`DirStorage::watch`]: sends a change for
/// every key under `prefix` whose file changed, until the receiver goes.
async fn watch_files(
    state: StateLayout,
    prefix: String,
    after: Revision,
    sender: mpsc::Sender<Change>,
) {
    let (events, mut incoming) = mpsc::unbounded_channel::<PathBuf>();
    let root = state.root().to_path_buf();
    let watcher = (|| {
        fsio::create_private_dir(&root).map_err(|e| e.to_string())?;
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    for path in event.paths {
                        let _ = events.send(path);
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        watcher
            .watch(&root, notify::RecursiveMode::Recursive)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(watcher)
    })();
    let _watcher = match watcher {
        Ok(watcher) => watcher,
        Err(e) => {
            tracing::warn!(folder = %root.display(), "cannot watch the state directory: {e}");
            let _ = sender.send(Change::Resync).await;
            return;
        }
    };
    // What each key held when the watch began: a change is a difference.
    let mut known: HashMap<String, Vec<u8>> = HashMap::new();
    let listed = {
        let (state, prefix) = (state.clone(), prefix.clone());
        tokio::task::spawn_blocking(move || list_files(&state, &prefix)).await
    };
    match listed {
        Ok(Ok(entries)) => {
            let missed = entries.iter().any(|(_, stored)| stored.modified > after);
            known.extend(entries.into_iter().map(|(key, stored)| (key, stored.value)));
            if missed && sender.send(Change::Resync).await.is_err() {
                return;
            }
        }
        _ => {
            let _ = sender.send(Change::Resync).await;
            return;
        }
    }
    loop {
        let path = tokio::select! {
            _ = sender.closed() => return,
            path = incoming.recv() => match path {
                Some(path) => path,
                None => return,
            },
        };
        let Some(key) = state.key_of(&path) else {
            continue;
        };
        if !key.starts_with(&prefix) {
            continue;
        }
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_value(&path)).await
        };
        let change = match read {
            Ok(Ok(Some(stored))) => {
                if known.get(&key) == Some(&stored.value) {
                    continue;
                }
                known.insert(key.clone(), stored.value.clone());
                Change::Put {
                    key,
                    value: stored.value,
                    modified: stored.modified,
                }
            }
            Ok(Ok(None)) => {
                if known.remove(&key).is_none() {
                    continue;
                }
                Change::Deleted {
                    key,
                    revision: now_nanos(),
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(key, file = %path.display(), "cannot read a changed value: {e}");
                continue;
            }
            Err(_) => return,
        };
        if sender.send(change).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
