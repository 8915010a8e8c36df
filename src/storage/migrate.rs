//! `sniwalk storage ls` and `sniwalk storage migrate` (README, "Command
//! line"): what a storage holds, described without ever showing a value
//! (private keys, account credentials and ticket keys are secrets), and a
//! copy of one storage into another (a state directory into etcd) that
//! never overwrites what is newer, or merely different, in the target.
//!
//! Each key of the source gets one [`Decision`] from [`decide`], a pure
//! function of the key and the two values:
//!
//! - a transient key (locks, challenge answers, jobs, status) is skipped;
//! - absent from the target: copied, create-only ([`Condition::Absent`]);
//! - the same bytes: nothing to do, so a second run only says `same`;
//! - a certificate that differs: copied over the target's only when the
//!   source's leaf is valid until later, or the target's does not load
//!   (compare-and-swap on the target's revision, so a certificate stored
//!   meanwhile is not lost); else the target's is kept;
//! - anything else that differs is left as it is, and reported.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::api::{Condition, Listing, Revision, Storage, StorageError, Stored};
use super::keys::{CERTIFICATES, HTTP01, TLS_ALPN01};
use crate::clock::rfc3339;
use crate::config::{Config, StorageConfig};

/// Key namespaces that only mean something while an instance runs (locks
/// and their leases, challenge answers of an order, jobs, status): never
/// migrated.
pub const TRANSIENT: [&str; 5] = ["locks/", HTTP01, TLS_ALPN01, "jobs/", "status/"];

/// Whether `key` is in a [`TRANSIENT`] namespace.
pub fn is_transient(key: &str) -> bool {
    TRANSIENT.iter().any(|prefix| key.starts_with(prefix))
}

/// Why `storage ls` or `storage migrate` could not run.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Both configurations name one storage: a copy onto itself.
    #[error(
        "--config and --to name the same storage ({storage}); give --to a configuration with \
         another storage (e.g. `storage: {{ kind: etcd, ... }}`)"
    )]
    SameStorage {
        /// The storage, as its engine describes itself.
        storage: String,
    },
    /// The storage a configuration names could not be opened (a file it
    /// names cannot be read, a refused user, an engine this build lacks).
    #[error("{file}: {detail}")]
    Open {
        /// The configuration file.
        file: String,
        /// What failed.
        detail: String,
    },
    /// A storage could not be listed (unreachable, refused, unreadable).
    #[error("cannot list the {role} {storage}: {detail}")]
    List {
        /// `storage`, `source storage` or `target storage`.
        role: &'static str,
        /// The storage, as its engine describes itself.
        storage: String,
        /// What failed.
        detail: String,
    },
}

/// What a storage error says, for a command line (without the running
/// proxy's advice that it keeps serving).
fn explain(error: &StorageError) -> String {
    match error {
        StorageError::Unreachable { detail, .. } => format!("unreachable: {detail}"),
        other => other.to_string(),
    }
}

/// Opens the storage `config` names.
async fn open_storage(config: &Config) -> Result<super::shared::Shared, MigrateError> {
    super::open::open(config)
        .await
        .map_err(|e| MigrateError::Open {
            file: config.file.display().to_string(),
            detail: explain(&e),
        })
}

/// Lists everything in `storage`, or says which storage failed.
async fn list_all(storage: &dyn Storage, role: &'static str) -> Result<Listing, MigrateError> {
    storage.list("").await.map_err(|e| MigrateError::List {
        role,
        storage: storage.describe(),
        detail: explain(&e),
    })
}

/// Why a certificate was copied over the target's, or the target's kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Both load: the leaves' ends of validity (Unix seconds).
    Expiry {
        /// The source leaf's `not_after`.
        source: i64,
        /// The target leaf's `not_after`.
        target: i64,
    },
    /// The target's certificate does not load (what the parser said).
    TargetUnloadable(String),
    /// The source's certificate does not load (what the parser said).
    SourceUnloadable(String),
}

/// What `storage migrate` does with one key of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A transient key: not copied.
    Skip,
    /// Absent from the target: written there, create-only.
    Copy,
    /// The target holds the same bytes.
    Same,
    /// A certificate that replaces the target's, written only while the
    /// target's is still the one last written at `expected`.
    Replace {
        /// The revision of the target's value that was compared.
        expected: Revision,
        /// Why the source's is better.
        reason: Reason,
    },
    /// A certificate in the target as new or newer (or the only one that
    /// loads): never overwritten.
    Keep {
        /// Why the target's stays.
        reason: Reason,
    },
    /// Another key that holds something else in the target: not
    /// overwritten.
    Differs,
}

/// The leaf's end of validity of the certificate text `value`, or why it
/// does not load.
fn expiry(value: &[u8]) -> Result<i64, String> {
    let text = std::str::from_utf8(value).map_err(|_| "not UTF-8 text".to_string())?;
    crate::pem::parse_certificate_pem(text)
        .map(|parsed| parsed.leaf.not_after)
        .map_err(|e| e.to_string())
}

/// The decision for `key`, holding `source` in the source storage and
/// `target` (if anything) in the target storage. Pure: no storage is
/// touched.
pub fn decide(key: &str, source: &[u8], target: Option<&Stored>) -> Decision {
    if is_transient(key) {
        return Decision::Skip;
    }
    let Some(target) = target else {
        return Decision::Copy;
    };
    if target.value == source {
        return Decision::Same;
    }
    if !key.starts_with(CERTIFICATES) {
        return Decision::Differs;
    }
    let expected = target.modified;
    match (expiry(source), expiry(&target.value)) {
        (Ok(source), Ok(target)) if source > target => Decision::Replace {
            expected,
            reason: Reason::Expiry { source, target },
        },
        (Ok(source), Ok(target)) => Decision::Keep {
            reason: Reason::Expiry { source, target },
        },
        (Ok(_), Err(problem)) => Decision::Replace {
            expected,
            reason: Reason::TargetUnloadable(problem),
        },
        (Err(problem), Ok(_)) => Decision::Keep {
            reason: Reason::SourceUnloadable(problem),
        },
        // Neither loads: nothing tells which one to keep.
        (Err(_), Err(_)) => Decision::Differs,
    }
}

impl Decision {
    /// The words `storage migrate` prints for it; `dry_run`: nothing is
    /// written.
    pub fn describe(&self, dry_run: bool) -> String {
        let copied = if dry_run { "would be copied" } else { "copied" };
        match self {
            Decision::Skip => "skipped (transient)".into(),
            Decision::Copy => copied.into(),
            Decision::Same => "same".into(),
            Decision::Replace { reason, .. } => match reason {
                Reason::Expiry { source, target } => format!(
                    "{copied} (not after {}; the target's, not after {}, is older)",
                    rfc3339(*source),
                    rfc3339(*target)
                ),
                Reason::TargetUnloadable(problem) | Reason::SourceUnloadable(problem) => {
                    format!("{copied} (the target's does not load: {problem})")
                }
            },
            Decision::Keep {
                reason: Reason::Expiry { source, target },
            } if source == target => format!(
                "kept newer in target (as new: both not after {})",
                rfc3339(*target)
            ),
            Decision::Keep {
                reason: Reason::Expiry { source, target },
            } => format!(
                "kept newer in target (not after {}; the source's: {})",
                rfc3339(*target),
                rfc3339(*source)
            ),
            Decision::Keep {
                reason: Reason::SourceUnloadable(problem) | Reason::TargetUnloadable(problem),
            } => format!("kept in target (the source's does not load: {problem})"),
            Decision::Differs => "differs: not overwritten".into(),
        }
    }

    /// Whether it writes to the target.
    pub fn writes(&self) -> bool {
        matches!(self, Decision::Copy | Decision::Replace { .. })
    }
}

/// One key of a migration: its decision, and what went wrong carrying it
/// out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    /// The key (relative to both storages' prefixes).
    pub key: String,
    /// What was decided.
    pub decision: Decision,
    /// Why the write failed (nothing was written); `None` when it was
    /// done or there was nothing to write.
    pub failure: Option<String>,
}

impl KeyReport {
    /// The output line: `<key>: <what happened>`.
    pub fn line(&self, dry_run: bool) -> String {
        match &self.failure {
            Some(problem) => format!("{}: failed: {problem}", self.key),
            None => format!("{}: {}", self.key, self.decision.describe(dry_run)),
        }
    }
}

/// Every key of a migration.
#[derive(Debug, Clone)]
pub struct MigrationReport {
    /// The source storage, as its engine describes itself.
    pub source: String,
    /// The target storage, as its engine describes itself.
    pub target: String,
    /// Nothing was written.
    pub dry_run: bool,
    /// One entry per key of the source, by key.
    pub keys: Vec<KeyReport>,
}

impl MigrationReport {
    /// How many keys failed.
    pub fn failed(&self) -> usize {
        self.keys.iter().filter(|k| k.failure.is_some()).count()
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        let count = |wanted: fn(&Decision) -> bool| {
            self.keys
                .iter()
                .filter(|k| k.failure.is_none() && wanted(&k.decision))
                .count()
        };
        let copied = count(Decision::writes);
        let same = count(|d| matches!(d, Decision::Same));
        let kept = count(|d| matches!(d, Decision::Keep { .. }));
        let differ = count(|d| matches!(d, Decision::Differs));
        let skipped = count(|d| matches!(d, Decision::Skip));
        let copied_word = if self.dry_run {
            "would be copied"
        } else {
            "copied"
        };
        let mut line = format!(
            "{} keys from {} to {}: {copied} {copied_word}, {same} same, {kept} kept, \
             {differ} differ (not overwritten), {skipped} skipped (transient), {} failed",
            self.keys.len(),
            self.source,
            self.target,
            self.failed()
        );
        if self.dry_run {
            line.push_str("; dry run: nothing written");
        }
        line
    }
}

/// Copies what `source` holds into `target` as [`decide`] says (nothing
/// written when `dry_run`), calling `each` with every key's report as it
/// is done. Fails only when a storage cannot be listed; a key that cannot
/// be written is a failure in its report.
pub async fn migrate(
    source: &dyn Storage,
    target: &dyn Storage,
    dry_run: bool,
    mut each: impl FnMut(&KeyReport),
) -> Result<MigrationReport, MigrateError> {
    let from = list_all(source, "source storage").await?;
    let existing: HashMap<String, Stored> = list_all(target, "target storage")
        .await?
        .entries
        .into_iter()
        .collect();
    let mut report = MigrationReport {
        source: source.describe(),
        target: target.describe(),
        dry_run,
        keys: Vec::with_capacity(from.entries.len()),
    };
    for (key, stored) in from.entries {
        let decision = decide(&key, &stored.value, existing.get(&key));
        let failure = if dry_run {
            None
        } else {
            write(target, &key, stored.value, &decision).await
        };
        if let Some(problem) = &failure {
            tracing::warn!(key, "not migrated: {problem}");
        }
        let done = KeyReport {
            key,
            decision,
            failure,
        };
        each(&done);
        report.keys.push(done);
    }
    Ok(report)
}

/// `storage migrate`: [`migrate`] from the storage `from` names into the
/// one `to` names, refused when they are one ([`check_distinct`]).
pub async fn migrate_configs(
    from: &Config,
    to: &Config,
    dry_run: bool,
    each: impl FnMut(&KeyReport),
) -> Result<MigrationReport, MigrateError> {
    check_distinct(from, to)?;
    let source = open_storage(from).await?;
    let target = open_storage(to).await?;
    migrate(source.engine(), target.engine(), dry_run, each).await
}

/// Carries `decision` out for `key`: why it failed, if it did.
async fn write(
    target: &dyn Storage,
    key: &str,
    value: Vec<u8>,
    decision: &Decision,
) -> Option<String> {
    let condition = match decision {
        Decision::Copy => Condition::Absent,
        Decision::Replace { expected, .. } => Condition::ModifiedAt(*expected),
        _ => return None,
    };
    match target.put(key, value, condition).await {
        Ok(Some(_)) => None,
        Ok(None) => Some(
            "the target's value changed while migrating (another instance wrote it); run \
             the migration again to decide on the new value"
                .into(),
        ),
        Err(e) => Some(explain(&e)),
    }
}

/// Refuses a migration from `a`'s storage into `b`'s when they are one
/// storage: both `dir` on one state directory, or both `etcd` with the
/// same prefix on a shared endpoint.
pub fn check_distinct(a: &Config, b: &Config) -> Result<(), MigrateError> {
    let same = match (&a.storage, &b.storage) {
        (StorageConfig::Dir, StorageConfig::Dir) => (comparable_dir(&a.state_dir)
            == comparable_dir(&b.state_dir))
        .then(|| format!("state directory {}", a.state_dir.display())),
        (StorageConfig::Etcd(x), StorageConfig::Etcd(y)) => {
            let shared = x.endpoints.iter().find(|e| {
                y.endpoints
                    .iter()
                    .any(|f| comparable_endpoint(e) == comparable_endpoint(f))
            });
            shared
                .filter(|_| x.prefix == y.prefix)
                .map(|endpoint| format!("etcd {endpoint} prefix {}", x.prefix))
        }
        _ => None,
    };
    match same {
        Some(storage) => Err(MigrateError::SameStorage { storage }),
        None => Ok(()),
    }
}

/// A state directory with links resolved, when it exists.
fn comparable_dir(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// An endpoint without its scheme, trailing `/` and letter case.
fn comparable_endpoint(endpoint: &str) -> String {
    let lower = endpoint.trim().to_ascii_lowercase();
    let bare = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    bare.trim_end_matches('/').to_string()
}

/// What `storage ls` shows of a storage: never a value.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The storage, as its engine describes itself.
    pub storage: String,
    /// The store's revision the listing was read at.
    pub revision: u64,
    /// Every key, by key.
    pub keys: Vec<KeyInfo>,
}

/// One key of an [`Inventory`].
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// The key, relative to the storage's prefix.
    pub key: String,
    /// The value's size in bytes.
    pub size: usize,
    /// The revision of its last change (with `kind: dir`, the file's
    /// modification time in nanoseconds).
    pub revision: u64,
    /// For a `certificates/` key, what its leaf says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateInfo>,
}

/// The public facts of a stored certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateInfo {
    /// Whether it loads (key, certificate and chain parse and match).
    pub loads: bool,
    /// The leaf's DNS names.
    pub names: Vec<String>,
    /// The leaf's end of validity, RFC 3339.
    pub not_after: Option<String>,
    /// The leaf's SHA-256 fingerprint.
    pub sha256: Option<String>,
    /// Why it does not load.
    pub error: Option<String>,
}

impl CertificateInfo {
    /// The facts of the certificate text `value`.
    pub fn of(value: &[u8]) -> CertificateInfo {
        let parsed = std::str::from_utf8(value)
            .map_err(|_| "not UTF-8 text".to_string())
            .and_then(|text| crate::pem::parse_certificate_pem(text).map_err(|e| e.to_string()));
        match parsed {
            Ok(parsed) => CertificateInfo {
                loads: true,
                names: parsed.leaf.dns_names,
                not_after: Some(rfc3339(parsed.leaf.not_after)),
                sha256: Some(parsed.leaf.sha256),
                error: None,
            },
            Err(problem) => CertificateInfo {
                loads: false,
                names: Vec::new(),
                not_after: None,
                sha256: None,
                error: Some(problem),
            },
        }
    }
}

impl Inventory {
    /// The inventory of `listing`, read from the storage described as
    /// `storage`. Pure.
    pub fn of(storage: String, listing: &Listing) -> Inventory {
        let keys = listing
            .entries
            .iter()
            .map(|(key, stored)| KeyInfo {
                key: key.clone(),
                size: stored.value.len(),
                revision: stored.modified.0,
                certificate: key
                    .starts_with(CERTIFICATES)
                    .then(|| CertificateInfo::of(&stored.value)),
            })
            .collect();
        Inventory {
            storage,
            revision: listing.revision.0,
            keys,
        }
    }

    /// A table for people: key, size, revision, and a certificate's
    /// not-after, names and fingerprint; then the certificates that do not
    /// load, and a summary line.
    pub fn render_text(&self) -> String {
        let mut rows = vec![
            ["KEY", "SIZE", "REVISION", "NOT AFTER", "NAMES", "SHA256"]
                .map(String::from)
                .to_vec(),
        ];
        let mut problems = Vec::new();
        for info in &self.keys {
            let mut row = vec![
                info.key.clone(),
                info.size.to_string(),
                info.revision.to_string(),
            ];
            if let Some(certificate) = &info.certificate {
                let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                row.push(or_dash(&certificate.not_after));
                row.push(if certificate.names.is_empty() {
                    "-".into()
                } else {
                    certificate.names.join(",")
                });
                row.push(or_dash(&certificate.sha256));
                if let Some(problem) = &certificate.error {
                    problems.push(format!("  {}: does not load: {problem}", info.key));
                }
            }
            rows.push(row);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().filter_map(|r| r.get(c)).map(String::len).max())
            .map(|w| w.unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(column, (cell, width))| match column {
                    1 | 2 => format!("{cell:>width$}"),
                    _ => format!("{cell:width$}"),
                })
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        for problem in &problems {
            let _ = writeln!(out, "{problem}");
        }
        let certificates = self.keys.iter().filter(|k| k.certificate.is_some()).count();
        let _ = writeln!(
            out,
            "\n{} keys ({certificates} certificates, {} not loading) in {} at revision {}",
            self.keys.len(),
            problems.len(),
            self.storage,
            self.revision
        );
        out
    }
}

/// Lists `storage` for `storage ls`.
pub async fn inventory(storage: &dyn Storage) -> Result<Inventory, MigrateError> {
    let listing = list_all(storage, "storage").await?;
    Ok(Inventory::of(storage.describe(), &listing))
}

/// `storage ls`: the [`inventory`] of the storage `config` names.
pub async fn inventory_of(config: &Config) -> Result<Inventory, MigrateError> {
    inventory(open_storage(config).await?.engine()).await
}

#[cfg(test)]
mod tests;
