//! The etcd engine of [`Storage`] (cargo feature `etcd`): every key lives
//! under one prefix of an etcd v3 cluster (3.4 or newer).
//!
//! - Conditions are etcd transactions comparing the key's `create_revision`
//!   ([`Condition::Absent`]) or `mod_revision` ([`Condition::ModifiedAt`]),
//!   or the lock key's `create_revision` against the fence
//!   ([`Condition::HeldLock`]).
//! - A lock is the key `locks/<name>` put on a lease of its own only when
//!   it does not exist; its fence is the key's `create_revision`, which
//!   grows with every new holding. A task renews the lease every third of
//!   its TTL and raises [`HeldLock::lost`] as soon as a renewal fails or
//!   does not come back before the lease would have run out.
//! - A watch is one etcd watch of the prefix from the listing's revision;
//!   a compaction, an error or a lost connection ends it with
//!   [`Change::Resync`].

use std::fmt;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KvClient,
    LeaseClient, PutOptions, ResponseHeader, TlsOptions, Txn, TxnOp, WatchClient,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::api::{
    Change, Condition, DEFAULT_LEASE, HeldLock, Listing, Revision, Storage, StorageError, Stored,
    WATCH_BUFFER, check_key,
};
use super::etcd_tasks::{
    KeepAlive, Watch, classify, is_not_found, keep_alive, lease_ttl, relative_key, revision,
    revoke_quietly,
};

/// How often an idle connection is checked with an HTTP/2 PING. etcd
/// refuses pings more often than every 5 s (`--grpc-keepalive-min-time`).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// The largest answer read from etcd (a listing, a watch message): well
/// above etcd's own 1.5 MiB limit per value, so that a listing of many
/// certificates fits in one read.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Where etcd is and how to talk to it.
#[derive(Clone)]
pub struct EtcdOptions {
    /// The cluster's client URLs: `http://host:port`, `https://host:port`
    /// or `host:port` (HTTPS when a CA or client certificate is set).
    pub endpoints: Vec<String>,
    /// Where sniwalk's keys live in etcd; ends with `/` (`sniwalk/`).
    pub prefix: String,
    /// The CA that signed etcd's server certificates (PEM text).
    pub ca_pem: Option<String>,
    /// A client certificate and its key for etcd's client-certificate
    /// authentication (PEM text).
    pub client_identity: Option<ClientIdentity>,
    /// The etcd user; authenticates at connect, and again when the token
    /// expires.
    pub username: Option<String>,
    /// The user's password.
    pub password: Option<String>,
    /// The lease of a lock when nothing else is configured
    /// (`storage.lease`); see [`EtcdStorage::lease`].
    pub lease: Duration,
    /// How long opening a TCP connection may take.
    pub connect_timeout: Duration,
    /// How long one request may take; also how long an HTTP/2 PING may go
    /// unanswered before the connection is dropped.
    pub request_timeout: Duration,
}

impl EtcdOptions {
    /// Options for `endpoints` and `prefix` without TLS or a user, with the
    /// default lease and 5 s timeouts.
    pub fn new(endpoints: Vec<String>, prefix: impl Into<String>) -> EtcdOptions {
        EtcdOptions {
            endpoints,
            prefix: prefix.into(),
            ca_pem: None,
            client_identity: None,
            username: None,
            password: None,
            lease: DEFAULT_LEASE,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "…"))
            .field("client_identity", &self.client_identity)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("lease", &self.lease)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// A client certificate and its private key, as PEM text.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate (chain), PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &"…")
            .field("key_pem", &"<hidden>")
            .finish()
    }
}

/// [`Storage`] on an etcd cluster. Cheap to share: every call clones a
/// handle to one balanced connection.
#[derive(Clone)]
pub struct EtcdStorage {
    kv: KvClient,
    lease: LeaseClient,
    watch: WatchClient,
    /// Ends with `/`.
    prefix: String,
    /// The endpoints joined with `,` (errors, [`Storage::describe`]).
    endpoints: String,
    lock_lease: Duration,
}

impl fmt::Debug for EtcdStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStorage")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl EtcdStorage {
    /// A client for `options.endpoints`. Without a user nothing is sent
    /// yet (the first request connects); with one, the user authenticates
    /// here, so a wrong password is [`StorageError::Denied`] now.
    pub async fn connect(options: EtcdOptions) -> Result<EtcdStorage, StorageError> {
        let endpoints = options.endpoints.join(",");
        check_prefix(&options.prefix)?;
        if options.endpoints.is_empty() {
            return Err(StorageError::Unreachable {
                endpoint: "etcd".into(),
                detail: "no endpoint configured".into(),
            });
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_timeout(options.request_timeout)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, options.request_timeout)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some(user) = &options.username {
            connect = connect
                .with_user(user.clone(), options.password.clone().unwrap_or_default())
                .with_auto_token_refresh(true);
        }
        if options.ca_pem.is_some() || options.client_identity.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &options.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some(identity) = &options.client_identity {
                tls = tls.identity(Identity::from_pem(&identity.cert_pem, &identity.key_pem));
            }
            connect = connect.with_tls(tls);
        }
        let client = Client::connect(&options.endpoints, Some(connect))
            .await
            .map_err(|e| classify_request(&endpoints, &options.prefix, e))?;
        Ok(EtcdStorage {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_ANSWER_BYTES),
            lease: client.lease_client(),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_ANSWER_BYTES),
            prefix: options.prefix,
            endpoints,
            lock_lease: options.lease,
        })
    }

    /// The configured lease of a lock (`storage.lease`), for callers of
    /// [`Storage::try_lock`].
    pub fn lease(&self) -> Duration {
        self.lock_lease
    }

    /// `key` in etcd: the prefix and the key.
    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The error for a failed request about `key`.
    fn error(&self, key: &str, error: etcd_client::Error) -> StorageError {
        classify_request(&self.endpoints, key, error)
    }

    /// What must hold in etcd for `condition`; `None` for none.
    fn compare(
        &self,
        key: &str,
        condition: Condition<'_>,
    ) -> Result<Option<Compare>, StorageError> {
        Ok(match condition {
            Condition::Always => None,
            Condition::Absent => Some(Compare::create_revision(
                self.full(key),
                CompareOp::Equal,
                0,
            )),
            Condition::ModifiedAt(revision) => Some(Compare::mod_revision(
                self.full(key),
                CompareOp::Equal,
                to_etcd(revision.0),
            )),
            Condition::HeldLock(lock) => Some(self.fence_compare(lock)?),
        })
    }

    /// Runs `txn` (a compare, then a write of `key`): the revision of the
    /// write, or `None` when the compare did not hold.
    async fn conditional_write(
        &self,
        key: &str,
        txn: Txn,
    ) -> Result<Option<Revision>, StorageError> {
        let answer = self
            .kv
            .clone()
            .txn(txn)
            .await
            .map_err(|e| self.error(key, e))?;
        if !answer.succeeded() {
            return Ok(None);
        }
        header_revision(answer.header(), key).map(Some)
    }

    /// Holds while `lock`'s holding is the lock key's current one.
    fn fence_compare(&self, lock: &HeldLock) -> Result<Compare, StorageError> {
        let lock_key = lock_key(&lock.name)?;
        Ok(Compare::create_revision(
            self.full(&lock_key),
            CompareOp::Equal,
            to_etcd(lock.fence),
        ))
    }

    /// Revokes `lease` once, giving up after a few seconds.
    async fn revoke_quietly(&self, lease: i64, lock: &str) {
        revoke_quietly(self.lease.clone(), lease, lock).await;
    }
}

#[async_trait::async_trait]
impl Storage for EtcdStorage {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StorageError> {
        check_key(key)?;
        let answer = self
            .kv
            .clone()
            .get(self.full(key), None)
            .await
            .map_err(|e| self.error(key, e))?;
        Ok(answer.kvs().first().map(|kv| Stored {
            value: kv.value().to_vec(),
            modified: revision(kv.mod_revision()),
        }))
    }

    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        condition: Condition<'_>,
    ) -> Result<Option<Revision>, StorageError> {
        check_key(key)?;
        let Some(compare) = self.compare(key, condition)? else {
            let answer = self
                .kv
                .clone()
                .put(self.full(key), value, None)
                .await
                .map_err(|e| self.error(key, e))?;
            return header_revision(answer.header(), key).map(Some);
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(self.full(key), value, None)]);
        self.conditional_write(key, txn).await
    }

    async fn put_while_held(
        &self,
        key: &str,
        value: Vec<u8>,
        lock: &HeldLock,
    ) -> Result<Option<Revision>, StorageError> {
        check_key(key)?;
        let txn = Txn::new()
            .when([self.fence_compare(lock)?])
            .and_then([TxnOp::put(
                self.full(key),
                value,
                Some(PutOptions::new().with_lease(lock.lease)),
            )]);
        self.conditional_write(key, txn).await
    }

    async fn delete(&self, key: &str, condition: Condition<'_>) -> Result<bool, StorageError> {
        check_key(key)?;
        let Some(compare) = self.compare(key, condition)? else {
            let answer = self
                .kv
                .clone()
                .delete(self.full(key), None)
                .await
                .map_err(|e| self.error(key, e))?;
            return Ok(answer.deleted() > 0);
        };
        // The key must also exist, so that success means a delete (the
        // crate's op_responses() would panic on an empty answer).
        let exists = Compare::version(self.full(key), CompareOp::Greater, 0);
        let txn = Txn::new()
            .when([compare, exists])
            .and_then([TxnOp::delete(self.full(key), None)]);
        let answer = self
            .kv
            .clone()
            .txn(txn)
            .await
            .map_err(|e| self.error(key, e))?;
        Ok(answer.succeeded())
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StorageError> {
        check_prefix(prefix)?;
        let answer = self
            .kv
            .clone()
            .get(self.full(prefix), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.error(prefix, e))?;
        let mut entries: Vec<(String, Stored)> = answer
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = relative_key(&self.prefix, kv.key())?;
                let stored = Stored {
                    value: kv.value().to_vec(),
                    modified: revision(kv.mod_revision()),
                };
                Some((key, stored))
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Listing {
            entries,
            revision: header_revision(answer.header(), prefix)?,
        })
    }

    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<HeldLock>, StorageError> {
        let key = lock_key(name)?;
        let full = self.full(&key);
        // The lease runs from when etcd got the grant, which is after now:
        // counting from here the local deadline is never late.
        let granted_at = Instant::now();
        let grant = self
            .lease
            .clone()
            .grant(lease_seconds(lease), None)
            .await
            .map_err(|e| self.error(&key, e))?;
        let lease_id = grant.id();
        let ttl = lease_ttl(grant.ttl());
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                full,
                holder,
                Some(PutOptions::new().with_lease(lease_id)),
            )]);
        let answer = match self.kv.clone().txn(txn).await {
            Ok(answer) => answer,
            Err(e) => {
                self.revoke_quietly(lease_id, name).await;
                return Err(self.error(&key, e));
            }
        };
        if !answer.succeeded() {
            // Held by another (`lock_holder` says who).
            self.revoke_quietly(lease_id, name).await;
            return Ok(None);
        }
        let fence = header_revision(answer.header(), &key)?;
        let lock = HeldLock::new(name.to_string(), fence.0, lease_id);
        let (done, lost) = lock.tokens();
        tokio::spawn(keep_alive(KeepAlive {
            lease: self.lease.clone(),
            id: lease_id,
            ttl,
            granted_at,
            done,
            lost,
            name: name.to_string(),
        }));
        Ok(Some(lock))
    }

    async fn lock_holder(&self, name: &str) -> Result<Option<String>, StorageError> {
        let key = lock_key(name)?;
        let answer = self
            .kv
            .clone()
            .get(self.full(&key), None)
            .await
            .map_err(|e| self.error(&key, e))?;
        Ok(answer
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    async fn unlock(&self, lock: HeldLock) -> Result<(), StorageError> {
        match self.lease.clone().revoke(lock.lease).await {
            Ok(_) => {}
            // Already gone (run out, revoked): released all the same.
            Err(e) if is_not_found(&e) => {}
            // Dropping `lock` below stops the keep-alive, which tries the
            // revoke once more; otherwise the lease runs out by itself.
            Err(e) => return Err(self.error(&lock_key(&lock.name)?, e)),
        }
        // The lease is gone: this ends the keep-alive task without a second
        // revoke (nobody else can wait on `lost` of a lock given up here).
        lock.lose();
        Ok(())
    }

    fn watch(&self, prefix: &str, after: Revision) -> mpsc::Receiver<Change> {
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        if let Err(e) = check_prefix(prefix) {
            // The receiver ends at once: a caller's mistake, not etcd's.
            tracing::error!("storage watch not started: {e}");
            return receiver;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(prefix, "storage watch not started: not on a tokio runtime");
            return receiver;
        };
        let watch = Watch {
            client: self.watch.clone(),
            storage_prefix: self.prefix.clone(),
            prefix: self.full(prefix),
            start: to_etcd(after.0.saturating_add(1)),
            sender,
        };
        runtime.spawn(watch.run());
        receiver
    }

    fn describe(&self) -> String {
        format!("etcd {} prefix {}", self.endpoints, self.prefix)
    }
}

/// [`classify`], saying what went wrong when the TLS handshake failed
/// because etcd's server certificate did not verify: a wrong
/// `storage.tls.ca_file` would otherwise read like an outage. It stays
/// [`StorageError::Unreachable`] (no request reaches etcd, the instance
/// keeps serving what it has and connects once the CA is right), with the
/// setting named.
fn classify_request(endpoints: &str, key: &str, error: etcd_client::Error) -> StorageError {
    let untrusted = server_certificate_rejected(&error);
    match classify(endpoints, key, error) {
        StorageError::Unreachable { endpoint, detail } if untrusted => StorageError::Unreachable {
            endpoint,
            detail: format!(
                "the TLS handshake failed: etcd's server certificate does not verify ({detail}); \
                 storage.tls.ca_file must be the CA that signed it, for the host names in \
                 storage.endpoints"
            ),
        },
        other => other,
    }
}

/// Whether `error` is, or wraps, this client's refusal of etcd's server
/// certificate (rustls' `InvalidCertificate`: unknown issuer, wrong name,
/// expired). A client certificate refused by etcd is not one.
fn server_certificate_rejected(error: &etcd_client::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if matches!(
            e.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        ) {
            return true;
        }
        // The gRPC layer passes the TLS error on as text
        // (`Status::unavailable("invalid peer certificate: UnknownIssuer")`):
        // rustls' own wording of `InvalidCertificate`.
        if e.to_string().contains("invalid peer certificate") {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The key of the lock `name`.
fn lock_key(name: &str) -> Result<String, StorageError> {
    let key = format!("locks/{name}");
    check_key(&key)?;
    Ok(key)
}

/// Checks a prefix: empty (everything), or a valid key followed by `/`,
/// with an optional leading `/` (etcd's own convention).
fn check_prefix(prefix: &str) -> Result<(), StorageError> {
    if prefix.is_empty() {
        return Ok(());
    }
    // A leading `/` is common in etcd (`/sniwalk/`, the README's example).
    let prefix_without_root = prefix.strip_prefix('/').unwrap_or(prefix);
    match prefix_without_root.strip_suffix('/') {
        Some(path) => check_key(path).map_err(|_| StorageError::Key {
            key: prefix.to_string(),
            reason: "a prefix is a valid key followed by `/`",
        }),
        None => Err(StorageError::Key {
            key: prefix.to_string(),
            reason: "a prefix ends with `/`",
        }),
    }
}

/// A lease's TTL in whole seconds, rounded up (etcd raises it to its own
/// minimum, 2 s with the default election timeout).
fn lease_seconds(lease: Duration) -> i64 {
    let seconds = lease
        .as_secs()
        .saturating_add(u64::from(lease.subsec_nanos() > 0));
    to_etcd(seconds.max(1))
}

/// A revision or count as etcd's signed number (past `i64::MAX`, which
/// etcd never reaches, it matches nothing).
fn to_etcd(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The store's revision in an answer's header.
fn header_revision(header: Option<&ResponseHeader>, key: &str) -> Result<Revision, StorageError> {
    header
        .map(|h| revision(h.revision()))
        .ok_or_else(|| StorageError::Io {
            key: key.to_string(),
            detail: "etcd answered without a header (no revision)".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_seconds_round_up_to_at_least_one() {
        assert_eq!(lease_seconds(Duration::from_secs(15)), 15);
        assert_eq!(lease_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(lease_seconds(Duration::from_millis(1)), 1);
        assert_eq!(lease_seconds(Duration::ZERO), 1);
        assert_eq!(lease_seconds(Duration::MAX), i64::MAX);
    }

    #[test]
    fn prefixes_end_with_a_slash_after_a_valid_key() {
        for good in ["", "certificates/", "acme/http-01/", "/sniwalk/"] {
            assert!(check_prefix(good).is_ok(), "{good}");
        }
        for bad in ["certificates", "/", "//a/", "a//", "../", "a b/"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_refused_server_certificate_names_the_ca_file() {
        let endpoint = "https://127.0.0.1:2379";
        let cases: &[(tonic::Status, bool)] = &[
            (
                tonic::Status::unavailable("invalid peer certificate: UnknownIssuer"),
                true,
            ),
            (
                tonic::Status::unavailable("invalid peer certificate: NotValidForName"),
                true,
            ),
            (tonic::Status::unavailable("operation was canceled"), false),
            (
                tonic::Status::unavailable("received fatal alert: CertificateRequired"),
                false,
            ),
        ];
        for (status, untrusted) in cases {
            let error = classify_request(
                endpoint,
                "certificates/a",
                etcd_client::Error::GRpcStatus(status.clone()),
            );
            let StorageError::Unreachable {
                endpoint: named, ..
            } = &error
            else {
                panic!("{status:?}: {error:?}");
            };
            assert_eq!(named, endpoint);
            assert_eq!(
                error.to_string().contains("storage.tls.ca_file"),
                *untrusted,
                "{status:?}: {error}"
            );
        }
    }

    #[test]
    fn revisions_never_wrap() {
        assert_eq!(to_etcd(u64::MAX), i64::MAX);
    }

    #[tokio::test]
    async fn a_storage_prefix_must_end_with_a_slash() {
        let options = EtcdOptions::new(vec!["127.0.0.1:1".into()], "sniwalk");
        let error = EtcdStorage::connect(options).await.map(|_| ());
        assert!(matches!(error, Err(StorageError::Key { .. })), "{error:?}");
    }
}
