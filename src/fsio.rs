//! File I/O with the path in every error, and atomic writes.
//!
//! Everything sniwalk writes (the generated default certificate, later ACME
//! results and imports) goes through [`write_atomic`]: a reader, including
//! another sniwalk sharing the directory, sees the old file or the new one,
//! never half of one. Private keys are written with mode 0600.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest certificate or key file we read. A chain of a dozen RSA-4096
/// certificates is under 30 KiB; anything near this is not a certificate,
/// and reading it whole could exhaust memory.
pub const MAX_CERT_FILE_BYTES: u64 = 1024 * 1024;

/// An I/O error with the file it happened on.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// Reading failed (missing, permissions, a directory...).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is larger than [`MAX_CERT_FILE_BYTES`].
    #[error(
        "{path} is {size} bytes, too large for a certificate file (limit {limit}); is it the right file?"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file is not UTF-8 text (binary garbage, a DER file).
    #[error(
        "{path} is not text; certificate files must be PEM (convert DER with `openssl x509 -inform der`)"
    )]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

impl FsError {
    /// Whether the error says the file is not there (deletion is intent,
    /// unlike a damaged file).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// The one writer of the state files several tasks change: the domain
/// store (`domains.json`) and the stored certificates. The admin API holds
/// it around each read-modify-write and each import (until the import is
/// served), the ACME issuer around storing what it got, so no request
/// loses another's write or waits for a certificate a concurrent writer
/// has already replaced. Clones share the one lock.
#[derive(Debug, Clone, Default)]
pub struct StateWriter(std::sync::Arc<tokio::sync::Mutex<()>>);

impl StateWriter {
    /// Waits for the turn to write; the turn lasts until the guard drops.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.lock().await
    }
}

/// Reads a certificate or key file as text, refusing huge or binary files.
pub fn read_cert_text(path: &Path) -> Result<String, FsError> {
    let read_err = |source| FsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_CERT_FILE_BYTES {
        return Err(FsError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_CERT_FILE_BYTES,
        });
    }
    let bytes = fs::read(path).map_err(read_err)?;
    String::from_utf8(bytes).map_err(|_| FsError::NotText {
        path: path.to_path_buf(),
    })
}

/// Creates a directory and its parents (owner-only for new ones, since it
/// holds keys).
pub fn create_private_dir(path: &Path) -> Result<(), FsError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).map_err(|source| FsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `contents` to `path` atomically: a temporary file in the same
/// directory, fsync, rename over the target, fsync the directory.
/// `private` files (anything holding a key) get mode 0600.
pub fn write_atomic(path: &Path, contents: &[u8], private: bool) -> Result<(), FsError> {
    with_temporary(path, contents, private, |tmp| fs::rename(tmp, path))
}

/// Writes `contents` to `path` only if there is no file there yet, whole
/// or not at all: a temporary file is written and synced, then hard-linked
/// to `path` (a link, unlike a rename, never replaces an existing file).
/// `false` when `path` already existed (nothing changed).
pub fn create_atomic(path: &Path, contents: &[u8], private: bool) -> Result<bool, FsError> {
    with_temporary(path, contents, private, |tmp| {
        match fs::hard_link(tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })
}

/// Writes `contents` (synced) to a new temporary file beside `path`, hands
/// it to `publish` (which puts it in place), syncs the directory (the
/// entry is durable only then) and removes whatever of the temporary file
/// is left.
fn with_temporary<T>(
    path: &Path,
    contents: &[u8],
    private: bool,
    publish: impl FnOnce(&Path) -> io::Result<T>,
) -> Result<T, FsError> {
    let write_err = |source| FsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| write_err(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?;
    let (tmp, mut file) =
        create_temporary(dir, &file_name.to_string_lossy(), private).map_err(write_err)?;
    let result = (|| {
        file.write_all(contents)?;
        file.sync_all()?;
        let published = publish(&tmp)?;
        fs::File::open(dir)?.sync_all()?;
        Ok(published)
    })();
    // After a rename there is nothing left; after a link, or a failure,
    // the temporary name goes.
    let _ = fs::remove_file(&tmp);
    result.map_err(write_err)
}

/// Temporary files made by this process so far: with the process id,
/// the name of each one is unique, even among writers sharing the
/// directory.
static TEMPORARY_FILES: AtomicU64 = AtomicU64::new(0);

/// Creates a new temporary file for `file_name` in `dir`. Its name is
/// unique (process id and a counter) and it is created only if it does not
/// exist, so concurrent writers of the same file never write into, or
/// rename away, each other's temporary file; a leftover of a killed
/// process with the same id is skipped, and gets the requested mode.
fn create_temporary(dir: &Path, file_name: &str, private: bool) -> io::Result<(PathBuf, fs::File)> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut last = None;
    // Bounded: only leftovers of earlier processes can collide.
    for _ in 0..100 {
        let count = TEMPORARY_FILES.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{file_name}.tmp.{}.{count}", std::process::id()));
        match options.open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_private_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"one", true).expect("first write");
        write_atomic(&path, b"two", true).expect("second write");
        assert_eq!(fs::read(&path).expect("read back"), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left behind");
    }

    /// Writers of one file at the same time (the admin API's requests, two
    /// instances on one state_dir) all succeed and leave one whole file.
    #[test]
    fn concurrent_writers_of_one_file_all_succeed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("domains.json");
        let writers: Vec<_> = (0..16)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for round in 0..20 {
                        let text = format!("writer {i} round {round}");
                        write_atomic(&path, text.as_bytes(), true)?;
                    }
                    Ok::<_, FsError>(())
                })
            })
            .collect();
        for writer in writers {
            writer
                .join()
                .expect("no panic")
                .expect("every write succeeds");
        }
        let text = fs::read_to_string(&path).expect("read back");
        assert!(
            text.starts_with("writer ") && text.contains(" round 19"),
            "{text}"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["domains.json"], "temporary files left behind");
    }

    #[test]
    fn read_refuses_binary_and_huge_files_and_names_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let binary = dir.path().join("garbage.pem");
        fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).expect("write");
        let err = read_cert_text(&binary).expect_err("binary refused");
        assert!(err.to_string().contains("garbage.pem"), "{err}");
        let huge = dir.path().join("huge.pem");
        fs::write(&huge, vec![b'a'; (MAX_CERT_FILE_BYTES + 1) as usize]).expect("write");
        assert!(matches!(
            read_cert_text(&huge),
            Err(FsError::TooLarge { .. })
        ));
        let missing = read_cert_text(&dir.path().join("nope.pem")).expect_err("missing");
        assert!(missing.is_not_found());
    }
}
