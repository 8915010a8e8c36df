//! Locks of the `dir` storage engine: with several sniwalk instances
//! sharing one `state_dir`, exactly one of them holds a lock (orders a
//! domain's certificate, rotates ticket keys) at a time.
//!
//! A lock is a file (an order lock is `state_dir/acme/locks/<domain>.lock`:
//! [`crate::state_layout::StateLayout::key_path`]), JSON
//! `{owner, pid, host, acquired, expires, fence, holder}` (Unix seconds;
//! `fence` is the holding's fencing token, its nanosecond start). It is created
//! with `O_EXCL` (`create_new`), which shared filesystems honour, and holds
//! a lease: the holder rewrites `expires` every third of the lease while it
//! works ([`renew`], from the dir engine's keep-alive task), so a process that dies (killed, machine lost)
//! leaves a lock the others take over once `expires` has passed.
//!
//! Taking over a stale lock must not steal a live one that replaced it in
//! the meantime: takers go one at a time (`<domain>.lock.takeover`, also
//! `O_EXCL`), look at the lock again, rename it to a name of their own and
//! read it once more; if it is not the one judged stale (its holder renewed
//! it after all), it goes back with `hard_link`, which, unlike `rename`,
//! never replaces a newer lock.
//!
//! The decisions (is it stale at `now`, what to write) are pure functions;
//! the file work is synchronous and meant for `spawn_blocking`.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fsio;

/// Largest lock file read; a real one is about 150 bytes.
const MAX_LOCK_BYTES: u64 = 4096;

/// What a lock file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// Random id of the holder (per process and acquisition), compared to
    /// know whether the file is still ours.
    pub owner: String,
    /// The holder's process id, for people and logs.
    pub pid: u32,
    /// The holder's host name, for people and logs.
    pub host: String,
    /// When it was taken (Unix seconds).
    pub acquired: i64,
    /// When the lease ends unless renewed (Unix seconds).
    pub expires: i64,
    /// The holding's fencing token (nanoseconds since the epoch when it
    /// was taken); 0 in locks written before there was one.
    #[serde(default)]
    pub fence: u64,
    /// What the holder says about itself, for the logs of the others.
    #[serde(default)]
    pub holder: String,
}

impl LockRecord {
    /// A fresh lock for `who`, taken at `now` for `lease`.
    pub fn new(who: &Holder, now: i64, lease: Duration) -> Self {
        LockRecord {
            owner: who.owner.clone(),
            pid: who.pid,
            host: who.host.clone(),
            acquired: now,
            expires: lease_end(now, lease),
            fence: who.fence,
            holder: who.label.clone(),
        }
    }

    /// The same lock with its lease renewed at `now`.
    pub fn renewed(&self, now: i64, lease: Duration) -> Self {
        LockRecord {
            expires: lease_end(now, lease),
            ..self.clone()
        }
    }
}

/// When a lease taken at `now` ends: whole seconds, rounded up, so the
/// lease written is never shorter than configured.
fn lease_end(now: i64, lease: Duration) -> i64 {
    let secs = lease.as_secs() + u64::from(lease.subsec_nanos() > 0);
    now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// A lock file as read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A readable lock.
    Record(LockRecord),
    /// Not a lock we can read (being written right now, or garbage); only
    /// its modification time (Unix seconds) is known.
    Unreadable {
        /// Its mtime, if the filesystem gave one.
        modified: Option<i64>,
    },
}

impl Seen {
    /// Reads `bytes` as a lock record.
    pub fn parse(bytes: &[u8], modified: Option<i64>) -> Seen {
        match serde_json::from_slice::<LockRecord>(bytes) {
            Ok(record) => Seen::Record(record),
            Err(_) => Seen::Unreadable { modified },
        }
    }

    /// The holder, when the file names one.
    pub fn record(&self) -> Option<&LockRecord> {
        match self {
            Seen::Record(record) => Some(record),
            Seen::Unreadable { .. } => None,
        }
    }
}

/// Whether the lock `seen` may be taken over at `now`: its lease has
/// ended, or it is unreadable and older than one `lease` (a file being
/// created is empty for a moment; that one is young, so it is left alone).
pub fn is_stale(seen: &Seen, now: i64, lease: Duration) -> bool {
    match seen {
        Seen::Record(record) => now >= record.expires,
        Seen::Unreadable {
            modified: Some(modified),
        } => now >= lease_end(*modified, lease),
        // No time at all: only age can tell, and there is none.
        Seen::Unreadable { modified: None } => false,
    }
}

/// Who takes locks: the owner id, the pid and the host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Random id, unique per acquisition.
    pub owner: String,
    /// This process.
    pub pid: u32,
    /// This host.
    pub host: String,
    /// The fencing token of this acquisition.
    pub fence: u64,
    /// What the holder says about itself.
    pub label: String,
}

impl Holder {
    /// A holder for this process with a new owner id: a random id for the
    /// process and a counter, so two managers in one process (tests run
    /// several proxies in-process) never take each other's lock for theirs.
    /// The fence is the time of the call in nanoseconds, so a later
    /// holding has a larger one (clocks of machines sharing a folder are
    /// assumed to agree within a lease).
    pub fn this_process(label: &str) -> Holder {
        static PROCESS: OnceLock<String> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let process = PROCESS.get_or_init(crate::ids::random_hex16);
        let fence = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Holder {
            owner: format!("{process}-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            pid: std::process::id(),
            host: host_name(),
            fence,
            label: label.to_string(),
        }
    }
}

/// This machine's name, for the lock file (information only).
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            fs::read_to_string(path)
                .ok()
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// A lock file operation failed (not: the lock is held by another).
#[derive(Debug, thiserror::Error)]
#[error("lock file {}: {what}: {source}", path.display())]
pub struct LockError {
    /// The lock file.
    pub path: PathBuf,
    /// What was being done.
    pub what: &'static str,
    /// The I/O error.
    pub source: io::Error,
}

/// The outcome of one [`try_acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The lock is ours; the second field is the stale lock it replaced,
    /// if it took one over (for the log).
    Acquired(LockRecord, Option<Seen>),
    /// Someone holds it (or is just writing it).
    Held(Seen),
}

/// Tries once to take the lock at `path` for `who` at `now`: creates it if
/// there is none, takes it over if it is stale, else says who holds it.
pub fn try_acquire(
    path: &Path,
    who: &Holder,
    now: i64,
    lease: Duration,
) -> Result<Attempt, LockError> {
    let fail = |what: &'static str| {
        let path = path.to_path_buf();
        move |source| LockError { path, what, source }
    };
    if let Some(dir) = path.parent() {
        fsio::create_private_dir(dir).map_err(|e| LockError {
            path: path.to_path_buf(),
            what: "creating the folder",
            source: io::Error::other(e.to_string()),
        })?;
    }
    // A few rounds: each one either wins, finds a live holder, or lost a
    // race that changed the file and looks again.
    let mut replaced = None;
    for _ in 0..8 {
        let record = LockRecord::new(who, now, lease);
        if create_new(path, &record).map_err(fail("creating"))? {
            return Ok(Attempt::Acquired(record, replaced));
        }
        let Some((bytes, seen)) = read(path).map_err(fail("reading"))? else {
            continue; // Released meanwhile: try to create it again.
        };
        if !is_stale(&seen, now, lease) {
            return Ok(Attempt::Held(seen));
        }
        if take_over_alone(path, &bytes, who, now, lease)
            .map_err(fail("taking over the stale lock"))?
        {
            replaced = Some(seen);
        }
    }
    // Still racing after that many rounds: someone else is busy with it.
    match read(path).map_err(fail("reading"))? {
        Some((_, seen)) => Ok(Attempt::Held(seen)),
        None => Ok(Attempt::Held(Seen::Unreadable { modified: None })),
    }
}

/// Creates the lock file with `record` if there is none: `false` if one
/// exists.
fn create_new(path: &Path, record: &LockRecord) -> io::Result<bool> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    let written = serde_json::to_vec(record)
        .map_err(io::Error::other)
        .and_then(|json| file.write_all(&json))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // A half-written lock would block everyone for a lease.
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(true)
}

/// The lock file's bytes and what they say; `None` when there is none.
pub fn read(path: &Path) -> io::Result<Option<(Vec<u8>, Seen)>> {
    use std::io::Read as _;
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let modified = file.metadata().ok().and_then(|m| modified_secs(&m));
    let mut bytes = Vec::new();
    file.take(MAX_LOCK_BYTES).read_to_end(&mut bytes)?;
    let seen = Seen::parse(&bytes, modified);
    Ok(Some((bytes, seen)))
}

/// Takes over the stale lock whose content was `stale`, one instance at a
/// time: whoever creates `<domain>.lock.takeover` (`O_EXCL`) does it, the
/// others look again. Without it, a second instance that judged the same
/// lock stale would move the first one's new lock aside, and a third could
/// create its own in that moment: two holders. The takeover file lives for
/// milliseconds; one older than a lease was left by a process that died
/// while taking over, and is removed. Whether the stale lock was removed.
fn take_over_alone(
    path: &Path,
    stale: &[u8],
    who: &Holder,
    now: i64,
    lease: Duration,
) -> io::Result<bool> {
    let mutex = path.with_extension("lock.takeover");
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(&mutex) {
        Ok(mut file) => {
            let _ = file.write_all(who.owner.as_bytes());
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Its content is an owner id, not a record: judged by age.
            let modified = fs::metadata(&mutex).ok().and_then(|m| modified_secs(&m));
            if is_stale(&Seen::Unreadable { modified }, now, lease) {
                let _ = fs::remove_file(&mutex);
            }
            return Ok(false);
        }
        Err(e) => return Err(e),
    }
    // Looked at again now that we are alone: another taker may have
    // replaced the stale lock with its own since we read it.
    let result = match read(path) {
        Ok(Some((current, _))) if current == stale => take_over(path, stale, who),
        Ok(_) => Ok(false),
        Err(e) => Err(e),
    };
    let _ = fs::remove_file(&mutex);
    result
}

/// A file's modification time in Unix seconds, if known.
fn modified_secs(metadata: &fs::Metadata) -> Option<i64> {
    let since_epoch = metadata
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX))
}

/// Moves the stale lock whose content was `stale` out of the way. If what
/// was moved is not that lock (it was renewed or replaced meanwhile), it is
/// put back, unless a newer lock already took its place. Whether the
/// stale lock was removed.
fn take_over(path: &Path, stale: &[u8], who: &Holder) -> io::Result<bool> {
    let aside = path.with_extension(format!("lock.stale.{}", who.owner));
    match fs::rename(path, &aside) {
        Ok(()) => {}
        // Someone else moved or released it first.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    let live = fs::read(&aside).is_ok_and(|moved| moved != stale);
    if live {
        match fs::hard_link(&aside, path) {
            Ok(()) => tracing::debug!(
                lock = %path.display(),
                "the lock was renewed after it was judged stale; put back"
            ),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                let _ = fs::remove_file(&aside);
                return Err(e);
            }
        }
    }
    fs::remove_file(&aside)?;
    Ok(!live)
}

/// Renews `record`'s lease at `now` if the file still names its owner and
/// its lease has not ended; the new end of the lease, or `None` when the
/// lock was lost.
///
/// The file is rewritten in place, through the handle its content was
/// checked through, never renamed over: a holder paused between the check
/// and the write (beyond its lease) whose lock was taken over meanwhile
/// writes into the file the taker moved aside, never over the taker's new
/// lock (which a rename would replace, handing the lock back to the late
/// holder and letting its fenced writes through). The new content is
/// padded with spaces to the old length (JSON allows them), so a reader
/// never sees a shorter file with the old tail.
pub fn renew(
    path: &Path,
    record: &LockRecord,
    now: i64,
    lease: Duration,
) -> io::Result<Option<i64>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = match fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    (&mut file).take(MAX_LOCK_BYTES).read_to_end(&mut bytes)?;
    match Seen::parse(&bytes, None) {
        Seen::Record(current) if current.owner == record.owner && now < current.expires => {}
        _ => return Ok(None),
    }
    let renewed = record.renewed(now, lease);
    let mut json = serde_json::to_vec(&renewed).map_err(io::Error::other)?;
    if json.len() < bytes.len() {
        json.resize(bytes.len(), b' ');
    }
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&json)?;
    file.sync_data()?;
    Ok(Some(renewed.expires))
}

/// Deletes the lock if it still names `owner`; whether it did.
pub fn release(path: &Path, owner: &str) -> io::Result<bool> {
    match read(path)? {
        Some((_, Seen::Record(current))) if current.owner == owner => {}
        _ => return Ok(false),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
