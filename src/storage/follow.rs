//! Follows the storage: lists a prefix, then watches it from the listing's
//! revision, and applies each change to this instance (README, "Running
//! several instances"):
//!
//! - `certificates/<domain>` (remote engines only): written to the local
//!   cache under `state_dir`, from which the snapshot loads it, once it
//!   loads as a `certificate_pem`; a value that does not is logged with
//!   its key and the last good one stays. A deleted key removes the
//!   cached file.
//! - `config/domains` (remote engines only): the domain store, copied to
//!   `state_dir/domains.json` once it reads as one, then everything is
//!   reloaded (the list of domains changed).
//! - `http-01/<token>` (remote engines; the state directory's answers are
//!   files the `http` listeners read) and `tls-alpn-01/<domain>`: another
//!   instance's pending challenge, answered here too, so the CA may reach
//!   any instance.
//!
//! After a [`Change::Resync`] (a compaction, a lost connection) or an
//! error it lists again; every [`RELIST_EVERY`] it lists again anyway (the
//! backstop for anything a watch missed).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::api::{Change, Storage, StorageError};
use super::health::StorageHealth;
use super::keys;
use super::shared::{Shared, write_cache_key};
use crate::challenge::{self, ChallengeStore};

/// How often a prefix is listed again even when its watch is healthy.
pub const RELIST_EVERY: Duration = Duration::from_secs(300);

/// The first wait before listing again after a failure; doubled up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);

/// The longest wait between two attempts to list.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Told the domain whose cached certificate changed (the reload task
/// re-reads it at once instead of waiting for its file watch).
pub type OnCertificate = Arc<dyn Fn(&str) + Send + Sync>;

/// Told that the cached domain store changed (the reload task reloads
/// everything: the list of domains changed).
pub type OnDomains = Arc<dyn Fn() + Send + Sync>;

/// Follows `shared`'s engine until `stop`: challenge answers into
/// `challenges`, and (with a remote engine) certificates into the cache,
/// calling `changed` for each domain whose cached file changed.
pub async fn follow(
    shared: Shared,
    challenges: Arc<ChallengeStore>,
    changed: OnCertificate,
    domains_changed: OnDomains,
    stop: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let mut appliers: Vec<Box<dyn Applier>> = vec![Box::new(TlsAlpn01 {
        challenges: challenges.clone(),
        known: HashMap::new(),
    })];
    // The state directory's HTTP-01 answers and certificates are files the
    // listeners and the reload task read themselves.
    if let Some(cache) = shared.cache() {
        appliers.push(Box::new(Http01 {
            challenges,
            known: HashSet::new(),
        }));
        appliers.push(Box::new(Certificates {
            cache: cache.clone(),
            changed,
            known: HashMap::new(),
        }));
        appliers.push(Box::new(ConfigCopy {
            cache: cache.clone(),
            changed: domains_changed,
            known: HashMap::new(),
        }));
    }
    for applier in appliers {
        tasks.spawn(follow_prefix(
            shared.engine_arc(),
            shared.health().clone(),
            applier,
            stop.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// What a followed prefix does with its values.
#[async_trait::async_trait]
pub(super) trait Applier: Send {
    /// The prefix (ends with `/`).
    fn prefix(&self) -> &'static str;
    /// `key` (under the prefix) holds `value`.
    async fn put(&mut self, key: &str, value: &[u8]);
    /// `key` is gone.
    async fn delete(&mut self, key: &str);
    /// The keys a full listing did not have: gone, unless the applier
    /// keeps them (the cache keeps certificates: only a seen delete
    /// removes one).
    async fn forget_except(&mut self, listed: &HashSet<String>);
}

/// Lists and watches one prefix until `stop`.
pub(super) async fn follow_prefix(
    engine: Arc<dyn Storage>,
    health: Arc<StorageHealth>,
    mut applier: Box<dyn Applier>,
    stop: CancellationToken,
) {
    let prefix = applier.prefix();
    let mut retry = RETRY_FIRST;
    let mut failing = false;
    loop {
        let listing = tokio::select! {
            () = stop.cancelled() => return,
            listing = engine.list(prefix) => listing,
        };
        let listing = match listing {
            Ok(listing) => listing,
            Err(e) => {
                // Only an outage is the storage's state; a refused prefix
                // or an unreadable entry is this listing's problem.
                if matches!(e, StorageError::Unreachable { .. }) {
                    health.set_down(&e.to_string());
                }
                log_failure(&mut failing, prefix, &e);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        health.set_up();
        if failing {
            tracing::info!(prefix, storage = %engine.describe(), "following the storage again");
            failing = false;
        }
        let mut listed = HashSet::new();
        for (key, stored) in &listing.entries {
            applier.put(key, &stored.value).await;
            listed.insert(key.clone());
        }
        applier.forget_except(&listed).await;
        let mut changes = engine.watch(prefix, listing.revision);
        let watched = tokio::time::Instant::now();
        if !watch(&mut changes, &mut *applier, &stop).await {
            return;
        }
        // A watch that ends at once (its watcher cannot start, a clock
        // stepped back) must not become a busy list-watch loop: wait as
        // after a failure.
        if watched.elapsed() >= RETRY_MAX {
            retry = RETRY_FIRST;
        } else {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(RETRY_MAX);
        }
    }
}

/// Applies changes until the watch asks for a new listing (`true`) or
/// `stop` (`false`).
async fn watch(
    changes: &mut mpsc::Receiver<Change>,
    applier: &mut dyn Applier,
    stop: &CancellationToken,
) -> bool {
    let relist = tokio::time::sleep(RELIST_EVERY);
    tokio::pin!(relist);
    loop {
        let change = tokio::select! {
            () = stop.cancelled() => return false,
            () = &mut relist => return true,
            change = changes.recv() => change,
        };
        match change {
            Some(Change::Put { key, value, .. }) => applier.put(&key, &value).await,
            Some(Change::Deleted { key, .. }) => applier.delete(&key).await,
            // Missed changes, or the watch ended: list again.
            Some(Change::Resync) | None => return true,
        }
    }
}

/// Logs a failure to list once, when following starts failing.
fn log_failure(failing: &mut bool, prefix: &str, error: &StorageError) {
    if !*failing {
        tracing::debug!(
            prefix,
            "cannot follow the storage ({error}); serving what this instance has, trying again"
        );
        *failing = true;
    }
}

/// HTTP-01 answers of other instances.
struct Http01 {
    challenges: Arc<ChallengeStore>,
    known: HashSet<String>,
}

#[async_trait::async_trait]
impl Applier for Http01 {
    fn prefix(&self) -> &'static str {
        keys::HTTP01
    }

    async fn put(&mut self, key: &str, value: &[u8]) {
        let Some(token) = key.strip_prefix(keys::HTTP01) else {
            return;
        };
        let answer = std::str::from_utf8(value).ok().filter(|a| {
            a.len() as u64 <= challenge::MAX_SHARED_ANSWER_BYTES
                && a.bytes().all(|b| b.is_ascii_graphic())
        });
        match answer {
            Some(answer) if challenge::is_token(token) => {
                self.challenges.set_http01(token, answer);
                self.known.insert(token.to_string());
            }
            _ => tracing::warn!(
                key,
                "not an HTTP-01 answer sniwalk writes (a token and a key authorization); ignored"
            ),
        }
    }

    async fn delete(&mut self, key: &str) {
        if let Some(token) = key.strip_prefix(keys::HTTP01)
            && self.known.remove(token)
        {
            self.challenges.remove_http01(token);
        }
    }

    async fn forget_except(&mut self, listed: &HashSet<String>) {
        let gone: Vec<String> = self
            .known
            .iter()
            .filter(|token| !listed.contains(&keys::http01(token)))
            .cloned()
            .collect();
        for token in gone {
            self.known.remove(&token);
            self.challenges.remove_http01(&token);
        }
    }
}

/// TLS-ALPN-01 challenges of other instances: the digest, from which the
/// validation certificate is made here.
struct TlsAlpn01 {
    challenges: Arc<ChallengeStore>,
    /// Digest and the certificate made from it, by domain: an unchanged
    /// digest is not made again, and only the answer this follower set is
    /// withdrawn (a late delete of an earlier order must not withdraw the
    /// answer of this instance's own new one).
    known: HashMap<String, (Vec<u8>, Arc<rustls::sign::CertifiedKey>)>,
}

#[async_trait::async_trait]
impl Applier for TlsAlpn01 {
    fn prefix(&self) -> &'static str {
        keys::TLS_ALPN01
    }

    async fn put(&mut self, key: &str, value: &[u8]) {
        let Some(domain) = key.strip_prefix(keys::TLS_ALPN01) else {
            return;
        };
        let digest = std::str::from_utf8(value)
            .ok()
            .and_then(crate::ids::unhex)
            .filter(|d| d.len() == 32);
        let Some(digest) = digest else {
            tracing::warn!(
                key,
                "not a TLS-ALPN-01 digest sniwalk writes (64 hex digits); ignored"
            );
            return;
        };
        if self
            .known
            .get(domain)
            .is_some_and(|(known, _)| *known == digest)
        {
            return;
        }
        match challenge::tls_alpn01_certificate(domain, &digest) {
            Ok(certificate) => {
                let certificate = Arc::new(certificate);
                self.challenges.set_tls_alpn01(domain, certificate.clone());
                self.known.insert(domain.to_string(), (digest, certificate));
            }
            Err(e) => tracing::warn!(key, "cannot answer another instance's TLS-ALPN-01: {e}"),
        }
    }

    async fn delete(&mut self, key: &str) {
        if let Some(domain) = key.strip_prefix(keys::TLS_ALPN01)
            && let Some((_, certificate)) = self.known.remove(domain)
        {
            self.challenges.remove_tls_alpn01_if(domain, &certificate);
        }
    }

    async fn forget_except(&mut self, listed: &HashSet<String>) {
        let gone: Vec<String> = self
            .known
            .keys()
            .filter(|domain| !listed.contains(&keys::tls_alpn01(domain)))
            .cloned()
            .collect();
        for domain in gone {
            if let Some((_, certificate)) = self.known.remove(&domain) {
                self.challenges.remove_tls_alpn01_if(&domain, &certificate);
            }
        }
    }
}

/// Makes the local copy of `key` (its file: `StateLayout::key_path`) hold
/// `value`: `true` when it was written, `false` when it already did.
async fn refresh_copy(
    cache: &crate::state_layout::StateLayout,
    key: &str,
    value: &[u8],
) -> Result<bool, super::shared::StoreError> {
    let path = cache.key_path(key);
    let cached = tokio::task::spawn_blocking(move || std::fs::read(path).ok())
        .await
        .ok()
        .flatten();
    if cached.as_deref() == Some(value) {
        return Ok(false);
    }
    write_cache_key(cache, key, value).await?;
    Ok(true)
}

/// Certificates of a remote engine, written to the local cache.
struct Certificates {
    cache: crate::state_layout::StateLayout,
    changed: OnCertificate,
    /// What the cache holds by domain (written or found equal).
    known: HashMap<String, Vec<u8>>,
}

impl Certificates {
    /// The domain of a certificate key, if it names one file of the cache.
    fn domain(key: &str) -> Option<&str> {
        key.strip_prefix(keys::CERTIFICATES)
            .filter(|d| !d.is_empty() && !d.contains('/') && !d.starts_with('.'))
    }
}

#[async_trait::async_trait]
impl Applier for Certificates {
    fn prefix(&self) -> &'static str {
        keys::CERTIFICATES
    }

    async fn put(&mut self, key: &str, value: &[u8]) {
        let Some(domain) = Self::domain(key) else {
            tracing::warn!(key, "not a certificate key sniwalk writes; ignored");
            return;
        };
        if self.known.get(domain).is_some_and(|known| known == value) {
            return;
        }
        let loads = std::str::from_utf8(value)
            .map_err(|_| "not UTF-8 text".to_string())
            .and_then(|text| {
                crate::pem::parse_certificate_pem(text)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
        if let Err(problem) = loads {
            tracing::error!(
                key,
                domain,
                "the stored certificate does not load ({problem}); the last good one stays \
                 served. Store a whole certificate_pem there (sniwalk writes key, chain and \
                 markers in one put)"
            );
            return;
        }
        match refresh_copy(&self.cache, key, value).await {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(key, domain, "stored certificate cached");
                (self.changed)(domain);
            }
            Err(e) => {
                tracing::error!(key, domain, "{e}");
                return;
            }
        }
        self.known.insert(domain.to_string(), value.to_vec());
    }

    async fn delete(&mut self, key: &str) {
        let Some(domain) = Self::domain(key) else {
            return;
        };
        self.known.remove(domain);
        let path = self.cache.stored_certificate(domain);
        let removed = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await
        };
        match removed {
            Ok(Ok(())) => {
                tracing::info!(key, domain, file = %path.display(), "stored certificate deleted; cache removed");
                (self.changed)(domain);
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Ok(Err(e)) => {
                tracing::warn!(key, file = %path.display(), "cannot remove the cached certificate: {e}")
            }
            Err(_) => {}
        }
    }

    async fn forget_except(&mut self, _listed: &HashSet<String>) {
        // A cached certificate is removed only by a delete seen in the
        // watch: a listing without it may come from a storage that was
        // never filled (`sniwalk storage migrate`), and nothing served is
        // dropped on a guess.
    }
}

/// The domain store and the drain store of a remote engine, copied to
/// the local cache; either change reloads the configuration.
struct ConfigCopy {
    cache: crate::state_layout::StateLayout,
    changed: OnDomains,
    /// What the cache holds, by key (written or found equal).
    known: HashMap<String, Vec<u8>>,
}

impl ConfigCopy {
    /// Whether `value` reads as the store `key` names (an error says why).
    fn check(key: &str, value: &[u8]) -> Result<(), String> {
        let origin = std::path::PathBuf::from(format!("storage key {key}"));
        if key == keys::DOMAINS {
            crate::config::DomainStore::parse(value, &origin)
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            crate::config::DrainStore::parse(value, &origin)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
}

#[async_trait::async_trait]
impl Applier for ConfigCopy {
    fn prefix(&self) -> &'static str {
        keys::CONFIG
    }

    async fn put(&mut self, key: &str, value: &[u8]) {
        if !(key == keys::DOMAINS || key == keys::DRAINS)
            || self.known.get(key).map(Vec::as_slice) == Some(value)
        {
            return;
        }
        if let Err(e) = Self::check(key, value) {
            tracing::error!(
                key,
                "the stored value does not read ({e}); the last good copy stays"
            );
            return;
        }
        match refresh_copy(&self.cache, key, value).await {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(key, "stored configuration store cached");
                (self.changed)();
            }
            Err(e) => {
                tracing::error!(key, "{e}");
                return;
            }
        }
        self.known.insert(key.to_string(), value.to_vec());
    }

    async fn delete(&mut self, key: &str) {
        if !(key == keys::DOMAINS || key == keys::DRAINS) {
            return;
        }
        self.known.remove(key);
        let path = self.cache.key_path(key);
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
        if matches!(removed, Ok(Ok(()))) {
            tracing::info!(
                key,
                "stored configuration store deleted; local copy removed"
            );
            (self.changed)();
        }
    }

    async fn forget_except(&mut self, _listed: &HashSet<String>) {
        // As with certificates: only a seen delete removes the copy.
    }
}
