//! TLS session tickets shared by several sniwalk instances.
//!
//! rustls's own ticketer keeps random, private keys, so a ticket issued by
//! one process cannot be opened by the next one behind a load balancer
//! (README, "Running several instances"). Here the keys come from a file (`tls.ticket_keys_file`), one
//! per line, `<name: 32 hex digits> <AES-256 key: 64 hex digits>`: the first
//! key encrypts, every key decrypts, so rotating means adding a key in front
//! and dropping the oldest later (`sniwalk ticket-keys rotate FILE`).
//!
//! A ticket is `name (16) || nonce (12) || AES-256-GCM(plaintext) || tag`,
//! with the name as associated data. The keys sit in an `ArcSwap`: a
//! handshake loads them without a lock, and a re-read file swaps them in.

use std::fmt;
use std::path::Path;

use arc_swap::ArcSwap;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::server::ProducesTickets;

use crate::fsio::{self, FsError};
use crate::ids::{hex, unhex};

/// How long clients may keep a ticket (a hint; real expiry is rotation).
pub const TICKET_LIFETIME_SECS: u32 = 12 * 3600;

/// How many keys `rotate` keeps by default.
pub const DEFAULT_KEEP: usize = 3;

const NAME_LEN: usize = 16;
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a ticket keys file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TicketKeysError {
    /// It could not be read or written.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A line is not `<32 hex> <64 hex>`.
    #[error(
        "{file}, line {line}: {problem}; each line is `<32 hex digits name> <64 hex digits key>` (make one with `sniwalk ticket-keys rotate {file}`)"
    )]
    Format {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// No key in it.
    #[error("{0}: no key in it; run `sniwalk ticket-keys rotate {0}`")]
    Empty(String),
}

/// One key: its name (carried in every ticket) and its raw bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyLine {
    /// Name, sent in tickets to find the key again.
    pub name: [u8; NAME_LEN],
    /// AES-256 key.
    pub key: [u8; KEY_LEN],
}

impl fmt::Debug for KeyLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        write!(f, "KeyLine({})", hex(&self.name))
    }
}

/// Parses a keys file's text; `file` names it in errors.
pub fn parse_keys(text: &str, file: &str) -> Result<Vec<KeyLine>, TicketKeysError> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let format = |problem: String| TicketKeysError::Format {
            file: file.to_string(),
            line: index + 1,
            problem,
        };
        let mut words = line.split_whitespace();
        let (Some(name), Some(key), None) = (words.next(), words.next(), words.next()) else {
            return Err(format("expected two words".into()));
        };
        let name: [u8; NAME_LEN] = unhex(name)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format("the name is not 32 hex digits".into()))?;
        let key: [u8; KEY_LEN] = unhex(key)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format("the key is not 64 hex digits".into()))?;
        if keys.iter().any(|k: &KeyLine| k.name == name) {
            return Err(format("this name is used twice".into()));
        }
        keys.push(KeyLine { name, key });
    }
    if keys.is_empty() {
        return Err(TicketKeysError::Empty(file.to_string()));
    }
    Ok(keys)
}

/// The text of a keys file.
pub fn render_keys(keys: &[KeyLine]) -> String {
    let mut out = String::from(
        "# sniwalk TLS session ticket keys: the first encrypts, all decrypt.\n\
         # Rotate with `sniwalk ticket-keys rotate FILE`; keep this file secret (0600).\n",
    );
    for key in keys {
        out.push_str(&format!("{} {}\n", hex(&key.name), hex(&key.key)));
    }
    out
}

/// Reads `path`.
pub fn read_keys(path: &Path) -> Result<Vec<KeyLine>, TicketKeysError> {
    let text = fsio::read_cert_text(path)?;
    parse_keys(&text, &path.display().to_string())
}

/// A new random key.
pub fn fresh_key() -> Result<KeyLine, TicketKeysError> {
    let mut fresh = KeyLine {
        name: [0; NAME_LEN],
        key: [0; KEY_LEN],
    };
    aws_lc_rs::rand::fill(&mut fresh.name).map_err(|_| TicketKeysError::Empty("rng".into()))?;
    aws_lc_rs::rand::fill(&mut fresh.key).map_err(|_| TicketKeysError::Empty("rng".into()))?;
    Ok(fresh)
}

/// Adds a fresh random key in front of `path`'s keys (creating the file),
/// keeps at most `keep` keys, writes atomically with mode 0600, and
/// returns the keys now in the file.
pub fn rotate(path: &Path, keep: usize) -> Result<Vec<KeyLine>, TicketKeysError> {
    let mut keys = match read_keys(path) {
        Ok(keys) => keys,
        Err(TicketKeysError::Fs(e)) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e),
    };
    keys.insert(0, fresh_key()?);
    keys.truncate(keep.max(1));
    fsio::write_atomic(path, render_keys(&keys).as_bytes(), true)?;
    Ok(keys)
}

struct LoadedKey {
    name: [u8; NAME_LEN],
    key: LessSafeKey,
}

/// A [`ProducesTickets`] over keys shared through a file or the storage.
pub struct SharedTicketer {
    keys: ArcSwap<Vec<LoadedKey>>,
    /// How long clients may keep a ticket (seconds).
    lifetime: u32,
    /// What was loaded, to tell a changed file from a re-read one (only
    /// the reload path locks it).
    lines: std::sync::Mutex<Vec<KeyLine>>,
}

impl fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedTicketer")
            .field("keys", &self.keys.load().len())
            .finish()
    }
}

fn load(keys: &[KeyLine]) -> Vec<LoadedKey> {
    keys.iter()
        .filter_map(|k| {
            Some(LoadedKey {
                name: k.name,
                key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k.key).ok()?),
            })
        })
        .collect()
}

impl SharedTicketer {
    /// A ticketer with `keys` (the first encrypts).
    pub fn new(keys: &[KeyLine]) -> Self {
        Self::with_lifetime(keys, TICKET_LIFETIME_SECS)
    }

    /// A ticketer with `keys` whose tickets clients keep `lifetime`
    /// seconds (as long as the keys kept can open them).
    pub fn with_lifetime(keys: &[KeyLine], lifetime: u32) -> Self {
        SharedTicketer {
            keys: ArcSwap::from_pointee(load(keys)),
            lifetime,
            lines: std::sync::Mutex::new(keys.to_vec()),
        }
    }

    /// Uses `keys` from now on: `true` when they differ from the running
    /// ones.
    pub fn replace(&self, keys: &[KeyLine]) -> bool {
        let Ok(mut lines) = self.lines.lock() else {
            return false;
        };
        if lines.as_slice() == keys {
            return false;
        }
        self.keys.store(std::sync::Arc::new(load(keys)));
        *lines = keys.to_vec();
        true
    }

    /// Reads `path` into a ticketer.
    pub fn from_file(path: &Path) -> Result<Self, TicketKeysError> {
        Ok(Self::new(&read_keys(path)?))
    }

    /// Re-reads `path`: `Some(number of keys)` when they changed, `None`
    /// when they are the same; on error the running keys stay (and the
    /// error is returned for the log).
    pub fn reload(&self, path: &Path) -> Result<Option<usize>, TicketKeysError> {
        let keys = read_keys(path)?;
        let Ok(mut lines) = self.lines.lock() else {
            return Ok(None);
        };
        if *lines == keys {
            return Ok(None);
        }
        self.keys.store(std::sync::Arc::new(load(&keys)));
        *lines = keys;
        Ok(Some(lines.len()))
    }
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.load();
        let current = keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&current.name);
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&current.name),
                &mut sealed,
            )
            .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < NAME_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (name, rest) = cipher.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let keys = self.keys.load();
        let key = keys.iter().find(|k| k.name[..] == *name)?;
        let mut buffer = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(
                Nonce::try_assume_unique_for_key(nonce).ok()?,
                Aad::from(&key.name),
                &mut buffer,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip_and_rotation_keeps_old_ones_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        let first = rotate(&path, 2).expect("creates");
        assert_eq!(first.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let a = SharedTicketer::from_file(&path).expect("loads");
        let b = SharedTicketer::from_file(&path).expect("loads");
        let ticket = a.encrypt(b"session state").expect("encrypts");
        assert_eq!(
            b.decrypt(&ticket).as_deref(),
            Some(&b"session state"[..]),
            "another instance opens it"
        );

        rotate(&path, 2).expect("rotates");
        b.reload(&path).expect("reloads");
        assert_eq!(
            b.decrypt(&ticket).as_deref(),
            Some(&b"session state"[..]),
            "old key still decrypts"
        );
        let newer = b.encrypt(b"x").expect("encrypts");
        assert_ne!(newer[..16], ticket[..16], "the new key encrypts");

        rotate(&path, 2).expect("rotates again");
        b.reload(&path).expect("reloads");
        assert_eq!(b.decrypt(&ticket), None, "dropped out after two rotations");

        // Tampering and garbage are refused, never a panic.
        let mut bad = newer.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(b.decrypt(&bad), None);
        assert_eq!(b.decrypt(b"short"), None);
        assert_eq!(b.decrypt(&[0u8; 64]), None);
    }

    #[test]
    fn bad_files_name_the_line() {
        let e = parse_keys("# c\nzz 00\n", "k")
            .expect_err("bad")
            .to_string();
        assert!(e.contains("k, line 2"), "{e}");
        let e = parse_keys("\n", "k").expect_err("empty").to_string();
        assert!(e.contains("no key"), "{e}");
        let line = format!("{} {}\n", "ab".repeat(16), "cd".repeat(32));
        assert_eq!(parse_keys(&line, "k").expect("ok").len(), 1);
        let e = parse_keys(&format!("{line}{line}"), "k")
            .expect_err("dup")
            .to_string();
        assert!(e.contains("twice"), "{e}");
    }
}
