//! `proxy.yaml`: raw serde structures, then validated types.
//!
//! Every YAML call of the crate lives here. Values that can be checked on
//! their own (domain names, binds, status codes) are checked while
//! deserialising, so the YAML parser's error carries the line and column of
//! the bad value. Checks across fields (the master domain among the domains,
//! unknown `alias://` names, duplicate listeners) run afterwards and find
//! their position by looking the offending text up in the file.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

/// Where `state_dir` is when the configuration does not say.
pub const DEFAULT_STATE_DIR: &str = "state";

/// The prefix of a path alias (seed 003: `alias://paths/default_certdir`).
pub const ALIAS_PREFIX: &str = "alias://paths/";

/// Let's Encrypt production, the default ACME directory.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Why a configuration could not be used. `run` refuses to start on these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read the configuration: {source}")]
    Read {
        /// The configuration file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or a value is invalid; the message names the
    /// field and carries line and column.
    #[error("{file}: {message}")]
    Invalid {
        /// The configuration file.
        file: PathBuf,
        /// What is wrong, where, and what to do.
        message: String,
    },
}

impl ConfigError {
    /// The message without the file name, for errors raised in helpers that
    /// the caller wraps again.
    fn message(self) -> String {
        match self {
            ConfigError::Invalid { message, .. } => message,
            other => other.to_string(),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// The master domain: root of every chain in the domain tree.
    pub master_domain: String,
    /// Where ACME results, the account and the generated default live.
    pub state_dir: PathBuf,
    /// A `certificate_pem` file to serve when nothing else applies.
    pub default_certificate: Option<PathBuf>,
    /// The configured domains, in file order; the master is among them.
    pub domains: Vec<DomainConfig>,
    /// The listeners, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// Global ACME settings.
    pub acme: AcmeConfig,
    /// Async worker threads (default: one per CPU).
    pub worker_threads: Option<usize>,
    /// How long connections in flight may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// How often every source is re-read even without file events.
    pub rescan_interval: Duration,
    /// The admin listener, if configured.
    pub admin: Option<AdminConfig>,
    /// File of TLS session ticket keys shared by several instances
    /// (`tls.ticket_keys_file`).
    pub ticket_keys_file: Option<PathBuf>,
}

/// The admin API listener (`admin:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where it listens (plain HTTP).
    pub bind: SocketAddr,
    /// File holding the bearer token; without one the API is open, which
    /// is only allowed on a loopback address.
    pub token_file: Option<PathBuf>,
}

/// The domain store: domains added at run time by the admin API, kept in
/// `state_dir` and merged into the configuration's domains on every load.
pub const DOMAIN_STORE_FILE: &str = "domains.json";

/// What `state_dir/domains.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct DomainStore {
    /// Added domains by name.
    #[serde(default)]
    pub domains: BTreeMap<String, StoredDomain>,
}

/// One domain added through the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct StoredDomain {
    /// Whether ACME manages its certificate.
    #[serde(default)]
    pub acme: bool,
}

impl DomainStore {
    /// The store's file for `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(DOMAIN_STORE_FILE)
    }

    /// Reads the store (missing file: empty).
    pub fn read(state_dir: &Path) -> Result<Self, ConfigError> {
        let path = Self::path(state_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(ConfigError::Read { file: path, source }),
        };
        let store: DomainStore = serde_json::from_str(&text).map_err(|e| ConfigError::Invalid {
            file: path.clone(),
            message: format!(
                "{e}; fix or remove the file (it lists domains added through the admin API)"
            ),
        })?;
        for name in store.domains.keys() {
            normalize_domain_name(name).map_err(|e| ConfigError::Invalid {
                file: path.clone(),
                message: format!("domain `{name}`: {e}"),
            })?;
        }
        Ok(store)
    }

    /// Writes the store atomically, mode 0600 like every state file. A
    /// read-modify-write needs one writer at a time (the admin API
    /// serializes its own).
    pub fn write(&self, state_dir: &Path) -> Result<(), crate::fsio::FsError> {
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        crate::fsio::create_private_dir(state_dir)?;
        crate::fsio::write_atomic(&Self::path(state_dir), &json, true)
    }

    /// Adds the store's domains that the file does not configure.
    fn merge_into(&self, domains: &mut Vec<DomainConfig>) {
        for (name, stored) in &self.domains {
            if domains.iter().any(|d| &d.name == name) {
                continue;
            }
            domains.push(DomainConfig {
                name: name.clone(),
                certificate: CertificateSource::None,
                acme: stored.acme.then_some(DomainAcme {
                    enabled: true,
                    account_email: None,
                }),
            });
        }
    }
}

/// How often every source is re-read by default: file events do not reach
/// sniwalk on every file system (NFS, some overlay mounts).
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(60);

/// How long connections in flight may finish after SIGTERM by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// One configured domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainConfig {
    /// Lower-case name without a trailing dot.
    pub name: String,
    /// Where its certificate comes from, if it has one.
    pub certificate: CertificateSource,
    /// Per-domain ACME settings.
    pub acme: Option<DomainAcme>,
}

/// Where a domain's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// No certificate set by hand (ACME may provide one).
    None,
    /// `certificate_pem` given inline in the configuration.
    Inline(String),
    /// `certificate_file`: a file in the `certificate_pem` format.
    File(PathBuf),
}

/// Per-domain ACME switch (seed 003: `acme_enabled`, `acme_account_email`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainAcme {
    /// Whether sniwalk should obtain and renew this domain's certificate.
    #[serde(default)]
    pub enabled: bool,
    /// Contact address for the ACME account (checked like
    /// `acme.account_email`).
    #[serde(default, deserialize_with = "account_email_field")]
    pub account_email: Option<String>,
}

/// Let's Encrypt staging, what `acme.directory: staging` stands for.
pub const STAGING_ACME_DIRECTORY: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Global ACME settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeConfig {
    /// The ACME directory URL (`staging` and `production` are expanded).
    pub directory: String,
    /// Extra trust roots (PEM files) for the CA's own HTTPS; empty means
    /// the system's roots.
    pub ca_roots: Vec<PathBuf>,
    /// Contact for domains that name none.
    pub account_email: Option<String>,
    /// How domain control is proven.
    pub challenge: ChallengeKind,
    /// Fraction of a certificate's lifetime after which it is renewed.
    pub renew_at: f64,
    /// Days before expiry at which monitoring warns.
    pub warn_days: u32,
    /// Addresses the domain names must resolve to before an order is
    /// placed (pre-flight); empty means no pre-flight check.
    pub expected_addresses: Vec<IpAddr>,
    /// Lease of the order lock shared by instances on one `state_dir`:
    /// renewed every third of it while an order runs, taken over by
    /// another instance once it has run out.
    pub lock_lease: Duration,
}

/// Default `acme.lock_lease`.
pub const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(60);

/// Shortest `acme.lock_lease`: renewed every third of it, so a shorter one
/// would be lost to one slow write on a shared filesystem.
pub const MIN_LOCK_LEASE: Duration = Duration::from_secs(2);

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            directory: DEFAULT_ACME_DIRECTORY.to_string(),
            ca_roots: Vec::new(),
            account_email: None,
            challenge: ChallengeKind::Http01,
            renew_at: crate::acme::schedule::DEFAULT_RENEW_AT,
            warn_days: crate::acme::schedule::DEFAULT_WARN_DAYS,
            expected_addresses: Vec::new(),
            lock_lease: DEFAULT_LOCK_LEASE,
        }
    }
}

/// The ACME challenge type sniwalk answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// HTTP-01: a file under `/.well-known/acme-challenge/` on an `http`
    /// listener (port 80).
    Http01,
    /// TLS-ALPN-01: a special certificate for ALPN `acme-tls/1` on an
    /// `https` listener (port 443).
    TlsAlpn01,
}

impl ChallengeKind {
    /// The name ACME and the configuration use.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }

    /// The kind of listener the CA's validation request arrives on, which
    /// must therefore exist when a domain has ACME enabled.
    pub fn listener_kind(self) -> ListenerKind {
        match self {
            ChallengeKind::Http01 => ListenerKind::Http,
            ChallengeKind::TlsAlpn01 => ListenerKind::Https,
        }
    }

    /// Parses the configuration name (`http-01`, `tls-alpn-01`).
    pub fn parse(input: &str) -> Result<Self, String> {
        match input.trim().to_ascii_lowercase().as_str() {
            "http-01" => Ok(ChallengeKind::Http01),
            "tls-alpn-01" => Ok(ChallengeKind::TlsAlpn01),
            _ => Err(format!(
                "`{input}` is not a challenge sniwalk answers; use `http-01` (answered on a `kind: http` \
                 listener, port 80) or `tls-alpn-01` (answered on a `kind: https` listener, port 443)"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for ChallengeKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(ChallengeKind::parse))
    }
}

/// The kinds of listener (DESIGN.md, "Traffic").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// TLS, then HTTP/1.1 or HTTP/2 routed by host.
    Https,
    /// TLS, then raw TCP to one backend (SIP over TLS).
    Tls,
    /// Plain HTTP: ACME HTTP-01 answers and redirects to HTTPS.
    Http,
}

impl ListenerKind {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Https => "https",
            ListenerKind::Tls => "tls",
            ListenerKind::Http => "http",
        }
    }

    /// Whether connections on this kind start with a TLS handshake.
    pub fn terminates_tls(self) -> bool {
        matches!(self, ListenerKind::Https | ListenerKind::Tls)
    }
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Unique name, used by `resolve --listener` and in logs.
    pub name: String,
    /// What it serves.
    pub kind: ListenerKind,
    /// Address to bind.
    pub bind: SocketAddr,
    /// Directory holding `server.key` and `server.crt`, the fallback after
    /// the domain tree.
    pub certdir: Option<PathBuf>,
    /// Routes of an `https` listener, first match wins.
    pub routes: Vec<Route>,
    /// Whether each request is logged.
    pub access_log: bool,
    /// The one backend of a `tls` listener.
    pub backend: Option<TcpBackend>,
    /// Whether a `tls` listener sends a PROXY protocol v2 header first.
    pub proxy_protocol: bool,
    /// Port put into the redirects of an `http` listener (default: none,
    /// i.e. 443).
    pub https_port: Option<u16>,
    /// Timeouts and limits.
    pub limits: Limits,
    /// Client certificates asked of callers (`https` and `tls` only).
    pub client_auth: Option<ClientAuthConfig>,
}

/// `client_auth:` of a TLS listener (seed 004).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuthConfig {
    /// `required` or `optional` (`off` is represented by no config).
    pub required: bool,
    /// The CA(s) client certificates must chain to (PEM file).
    pub ca_file: PathBuf,
    /// Allowed SHA-256 fingerprints, lowercase hex without separators;
    /// empty: any certificate from the CA.
    pub pinned_sha256: Vec<String>,
    /// Allowed SHA-1 fingerprints (legacy thumbprints), same form.
    pub pinned_sha1: Vec<String>,
}

impl ClientAuthConfig {
    /// Whether a verified certificate with these fingerprints may pass.
    pub fn pinned(&self, sha256: &str, sha1: &str) -> bool {
        (self.pinned_sha256.is_empty() && self.pinned_sha1.is_empty())
            || self.pinned_sha256.iter().any(|p| p == sha256)
            || self.pinned_sha1.iter().any(|p| p == sha1)
    }
}

/// A fingerprint pin as written (any case, with or without `:`) in the
/// canonical form: lowercase hex without separators, of `hex_len` digits.
pub fn normalize_pin(pin: &str, hex_len: usize) -> Result<String, String> {
    let canonical: String = pin
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if canonical.len() != hex_len || !canonical.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "`{pin}` is not a fingerprint of {hex_len} hex digits (colons allowed)"
        ));
    }
    Ok(canonical)
}

/// A `HOST:PORT` backend of a `tls` listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpBackend {
    /// `HOST:PORT` as configured; resolved at connect time.
    pub address: String,
    /// TLS towards the backend (`backend_tls:` on the listener), if any.
    pub tls: Option<BackendTls>,
}

/// `backend_tls:` — how sniwalk speaks TLS to a backend: an `https://`
/// route backend, or the backend of a `tls` listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendTls {
    /// The backend as configured (`https://HOST:PORT` or `HOST:PORT`):
    /// names the backend in reports, logs and metrics.
    pub backend: String,
    /// CA certificates (PEM) the backend's certificate must chain to;
    /// `None`: the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// A `certificate_pem` file (key and chain) presented to the backend.
    pub client_certificate: Option<PathBuf>,
    /// The name sent as SNI and looked for in the backend's certificate:
    /// `server_name:` if set, else the backend's host.
    pub server_name: String,
    /// Accept any certificate from the backend (a warning at every start).
    pub insecure_skip_verify: bool,
}

/// Timeouts and limits of a listener, each with a default chosen for
/// long-lived softphone traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// Once a request's first byte arrives, its headers must be complete
    /// within this (slowloris).
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after
    /// this long without traffic.
    pub idle_timeout: Duration,
    /// A WebSocket or `tls` tunnel is closed after this long with no byte
    /// in either direction.
    pub tunnel_idle_timeout: Duration,
    /// Connecting to a backend must succeed within this (else 504).
    pub backend_connect_timeout: Duration,
    /// A backend must send its response headers within this (else 504).
    pub backend_timeout: Duration,
    /// Largest request head (request line and headers) accepted.
    pub max_header_bytes: usize,
    /// Connections served at once; further ones wait in the kernel's
    /// accept queue until one closes.
    pub max_connections: usize,
    /// HTTP/2 streams one client connection may have open at once
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`; nginx's
    /// `http2_max_concurrent_streams` is 128 too).
    pub max_concurrent_streams: u32,
    /// Requests and WebSocket tunnels of one `https` listener that may hold
    /// a backend connection at once; beyond it a request gets 503 at once
    /// instead of one more backend connection (README: Limits).
    pub max_backend_connections: usize,
    /// A client that takes no response byte for this long, while one is
    /// ready for it (full socket buffer, or an HTTP/2 flow-control window
    /// left shut), is cut (nginx's `send_timeout`).
    pub send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            // Above the 60 s most load balancers and browsers use, so the
            // proxy is not the side that closes first.
            idle_timeout: Duration::from_secs(75),
            // SIP and WebSocket signalling sit silent between calls; their
            // keep-alives usually come every 30-120 s.
            tunnel_idle_timeout: Duration::from_secs(600),
            backend_connect_timeout: Duration::from_secs(5),
            backend_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            max_concurrent_streams: 128,
            // One backend connection per client connection on average: a
            // WebSocket phone holds exactly one. HTTP/2 lets one client ask
            // for more, which is what this bounds.
            max_backend_connections: 10_000,
            send_timeout: Duration::from_secs(60),
        }
    }
}

/// One route of an `https` listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Which Host header values it matches.
    pub host: HostPattern,
    /// Optional path prefix it is limited to.
    pub path_prefix: Option<String>,
    /// What it does.
    pub action: RouteAction,
    /// The `Upgrade` protocols passed to its backend, lower case
    /// (`websocket` unless the route says otherwise); every other
    /// `Upgrade` token is stripped (README: Upgrades).
    pub upgrades: Vec<String>,
}

/// Which hosts a route matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: every host.
    Any,
    /// `*.example.com`: any name below `example.com` (not the name itself).
    Suffix(String),
    /// One exact name.
    Exact(String),
}

impl HostPattern {
    /// Whether a lower-case host name (no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(name) => name == host,
            HostPattern::Suffix(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

/// What a route does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Answer with a fixed status and body.
    Respond {
        /// HTTP status code (100-599).
        status: u16,
        /// Body text.
        body: String,
    },
    /// Answer with a small HTML page about the proxy and the certificate
    /// served on this connection.
    StatusPage,
    /// Forward to an HTTP backend.
    Backend(HttpBackend),
    /// Redirect elsewhere.
    Redirect {
        /// Target; when it has no path, the request's path and query are
        /// appended.
        to: String,
        /// 301, 302, 303, 307 or 308.
        status: u16,
    },
}

/// An `http://HOST:PORT` or `https://HOST:PORT` backend of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpBackend {
    /// `HOST:PORT`.
    pub authority: String,
    /// TLS towards it (`https://`), with the route's `backend_tls:`.
    pub tls: Option<BackendTls>,
}

impl HttpBackend {
    /// Parses `http://HOST:PORT` or `https://HOST:PORT` (a trailing `/` is
    /// allowed, nothing more). An `https://` backend gets the default
    /// [`BackendTls`] (system trust store, the host as server name); the
    /// route's `backend_tls:` replaces it.
    pub fn parse(input: &str) -> Result<Self, String> {
        let (rest, tls) = match (
            input.strip_prefix("http://"),
            input.strip_prefix("https://"),
        ) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => {
                return Err(format!(
                    "`{input}` is not an http://HOST:PORT or https://HOST:PORT URL"
                ));
            }
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains('/') || authority.contains('@') {
            return Err(format!(
                "`{input}`: a backend is http(s)://HOST:PORT without a path (the request's path is kept)"
            ));
        }
        let parsed = authority
            .parse::<hyper::http::uri::Authority>()
            .map_err(|e| format!("`{input}`: {e}"))?;
        let tls = tls.then(|| BackendTls {
            backend: format!("https://{authority}"),
            ca_file: None,
            client_certificate: None,
            server_name: host_of(parsed.host()).to_string(),
            insecure_skip_verify: false,
        });
        Ok(HttpBackend {
            authority: authority.to_string(),
            tls,
        })
    }
}

/// A host as rustls wants it for a server name: IPv6 without brackets.
fn host_of(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Validates a `backend_tls:` block for `backend` (whose host is the
/// default server name).
fn backend_tls_from_raw(
    raw: RawBackendTls,
    backend: &str,
    default_server_name: &str,
    field: &str,
    paths: &PathResolver<'_>,
) -> Result<BackendTls, String> {
    if raw.insecure_skip_verify && raw.ca_file.is_some() {
        return Err(format!(
            "{field}: `insecure_skip_verify: true` ignores `ca_file`; keep one of them \
             (a CA file is the safe choice)"
        ));
    }
    let server_name = match raw.server_name {
        Some(name) => {
            let trimmed = name.trim().trim_end_matches('.').to_ascii_lowercase();
            rustls_pki_types::ServerName::try_from(trimmed.clone()).map_err(|_| {
                format!("{field}.server_name: `{name}` is neither a DNS name nor an IP address")
            })?;
            trimmed
        }
        None => default_server_name.to_string(),
    };
    let resolve = |value: &Option<String>, what: &str| -> Result<Option<PathBuf>, String> {
        value
            .as_deref()
            .map(|v| {
                paths
                    .resolve(v, &format!("{field}.{what}"))
                    .map_err(|e| e.message())
            })
            .transpose()
    };
    Ok(BackendTls {
        backend: backend.to_string(),
        ca_file: resolve(&raw.ca_file, "ca_file")?,
        client_certificate: resolve(&raw.client_certificate, "client_certificate")?,
        server_name,
        insecure_skip_verify: raw.insecure_skip_verify,
    })
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        // Absolute, so paths compare equal to what the file watcher reports.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let path = absolute.as_path();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        DomainStore::read(&config.state_dir)?.merge_into(&mut config.domains);
        Ok(config)
    }

    /// Validates configuration text; `path` names the file in errors and
    /// anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: path.to_path_buf(),
            message,
        };
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let paths = PathResolver {
            file: path,
            base: &base,
            aliases: &raw.paths.0,
            text,
        };

        let master = raw.master_domain.0;
        if !raw.domains.0.iter().any(|(name, _)| name.0 == master) {
            return Err(invalid(format!(
                "master_domain: `{master}` is not among `domains`; add `{master}: {{}}` under `domains`{}",
                locate(text, "master_domain:")
            )));
        }

        let mut domains = Vec::with_capacity(raw.domains.0.len());
        for (name, raw_domain) in raw.domains.0 {
            let raw_domain = raw_domain.unwrap_or_default();
            let field = format!("domains.{}", name.0);
            let certificate = match (raw_domain.certificate_pem, raw_domain.certificate_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "{field}: set either `certificate_pem` or `certificate_file`, not both{}",
                        locate_entry(text, &name.0, "", 0)
                    )));
                }
                (Some(pem), None) => CertificateSource::Inline(pem),
                (None, Some(file)) => CertificateSource::File(
                    paths.resolve(&file, &format!("{field}.certificate_file"))?,
                ),
                (None, None) => CertificateSource::None,
            };
            domains.push(DomainConfig {
                name: name.0,
                certificate,
                acme: raw_domain.acme,
            });
        }

        let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(raw.listeners.len());
        let mut raw_binds: Vec<String> = Vec::with_capacity(raw.listeners.len());
        for raw_listener in raw.listeners {
            let field = format!("listeners.{}", raw_listener.name);
            if raw_listener.name.is_empty() {
                return Err(invalid(
                    "listeners: every listener needs a non-empty `name`".into(),
                ));
            }
            if listeners.iter().any(|l| l.name == raw_listener.name) {
                return Err(invalid(format!(
                    "{field}: the listener name `{}` is used twice; names must be unique{}",
                    raw_listener.name,
                    locate_entry(text, "name", &raw_listener.name, 1)
                )));
            }
            let bind = raw_listener.bind.0;
            if let Some(other) = listeners.iter().find(|l| l.bind == bind) {
                let raw_bind = &raw_listener.bind.1;
                let earlier = raw_binds.iter().filter(|b| *b == raw_bind).count();
                return Err(invalid(format!(
                    "{field}.bind: `{bind}` is already bound by listener `{}`{}",
                    other.name,
                    locate_entry(text, "bind", raw_bind, earlier)
                )));
            }
            raw_binds.push(raw_listener.bind.1.clone());
            listeners.push(listener_from_raw(raw_listener, &field, &paths).map_err(invalid)?);
        }
        check_backend_tls(&listeners).map_err(invalid)?;

        let state_dir = paths.resolve(
            raw.state_dir.as_deref().unwrap_or(DEFAULT_STATE_DIR),
            "state_dir",
        )?;
        let default_certificate = match raw.default_certificate {
            Some(file) => Some(paths.resolve(&file, "default_certificate")?),
            None => None,
        };
        let acme = acme_from_raw(raw.acme.unwrap_or_default(), &paths)?;
        if acme.lock_lease < MIN_LOCK_LEASE {
            return Err(invalid(format!(
                "acme.lock_lease: at least {}s (the order lock's lease is renewed every third of it){}",
                MIN_LOCK_LEASE.as_secs(),
                locate(text, "lock_lease:")
            )));
        }
        check_acme_listeners(&domains, &listeners, acme.challenge, text).map_err(invalid)?;
        let rescan_interval = raw.rescan_interval.map_or(DEFAULT_RESCAN_INTERVAL, |d| d.0);
        if rescan_interval < Duration::from_secs(1) {
            return Err(invalid(format!(
                "rescan_interval: at least 1s{}",
                locate(text, "rescan_interval:")
            )));
        }
        if raw.worker_threads == Some(0) {
            return Err(invalid(format!(
                "worker_threads: must be at least 1 (or remove it for one per CPU){}",
                locate(text, "worker_threads:")
            )));
        }
        let ticket_keys_file = match raw.tls.and_then(|t| t.ticket_keys_file) {
            Some(file) => Some(paths.resolve(&file, "tls.ticket_keys_file")?),
            None => None,
        };
        let admin = match raw.admin {
            None => None,
            Some(raw_admin) => {
                let token_file = match raw_admin.token_file {
                    Some(file) => Some(paths.resolve(&file, "admin.token_file")?),
                    None => None,
                };
                if token_file.is_none() && !raw_admin.bind.0.ip().is_loopback() {
                    return Err(invalid(format!(
                        "admin.bind: `{}` is reachable from other machines, so the admin API needs \
                         a token: set `admin.token_file` (a file holding a long random string), or \
                         bind to 127.0.0.1{}",
                        raw_admin.bind.1,
                        locate(text, "admin:")
                    )));
                }
                Some(AdminConfig {
                    bind: raw_admin.bind.0,
                    token_file,
                })
            }
        };
        Ok(Config {
            file: path.to_path_buf(),
            master_domain: master,
            state_dir,
            default_certificate,
            domains,
            listeners,
            acme,
            worker_threads: raw.worker_threads,
            shutdown_timeout: raw
                .shutdown_timeout
                .map_or(DEFAULT_SHUTDOWN_TIMEOUT, |d| d.0),
            rescan_interval,
            admin,
            ticket_keys_file,
        })
    }

    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerConfig> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

impl ListenerConfig {
    /// Every backend this listener speaks TLS to, in configuration order.
    pub fn backend_tls(&self) -> impl Iterator<Item = &BackendTls> {
        let routes = self.routes.iter().filter_map(|r| match &r.action {
            RouteAction::Backend(backend) => backend.tls.as_ref(),
            _ => None,
        });
        self.backend
            .as_ref()
            .and_then(|b| b.tls.as_ref())
            .into_iter()
            .chain(routes)
    }
}

impl Config {
    /// Every distinct backend TLS setting of every listener, once each.
    pub fn backend_tls(&self) -> Vec<&BackendTls> {
        let mut out: Vec<&BackendTls> = Vec::new();
        for tls in self.listeners.iter().flat_map(ListenerConfig::backend_tls) {
            if !out.contains(&tls) {
                out.push(tls);
            }
        }
        out
    }
}

/// A backend is one place in reports and metrics: the same backend
/// written twice must say the same about TLS.
fn check_backend_tls(listeners: &[ListenerConfig]) -> Result<(), String> {
    let mut seen: Vec<&BackendTls> = Vec::new();
    for tls in listeners.iter().flat_map(ListenerConfig::backend_tls) {
        match seen.iter().find(|s| s.backend == tls.backend) {
            Some(earlier) if *earlier != tls => {
                return Err(format!(
                    "backend `{}` appears twice with different `backend_tls` settings; give every \
                     use of one backend the same `backend_tls`",
                    tls.backend
                ));
            }
            Some(_) => {}
            None => seen.push(tls),
        }
    }
    Ok(())
}

/// Validates one listener; errors are messages naming the field.
fn listener_from_raw(
    raw: RawListener,
    field: &str,
    paths: &PathResolver<'_>,
) -> Result<ListenerConfig, String> {
    let kind = raw.kind;
    let only = |what: &str, kinds: &str| {
        format!(
            "{field}.{what}: only {kinds} listeners have `{what}` (this one is `{}`)",
            kind.as_str()
        )
    };
    if kind != ListenerKind::Https && !raw.routes.is_empty() {
        return Err(only("routes", "`https`"));
    }
    if kind != ListenerKind::Tls && raw.backend.is_some() {
        return Err(format!(
            "{field}.backend: only `tls` listeners have one `backend`; `https` listeners route with \
             `routes: [{{ host: \"*\", backend: http://HOST:PORT }}]`"
        ));
    }
    if kind != ListenerKind::Tls && raw.proxy_protocol.is_some() {
        return Err(only("proxy_protocol", "`tls`"));
    }
    if kind != ListenerKind::Tls && raw.backend_tls.is_some() {
        return Err(format!(
            "{field}.backend_tls: only `tls` listeners have a listener-wide `backend_tls`; on `https` \
             listeners put it on the route, beside `backend: https://HOST:PORT`"
        ));
    }
    if kind != ListenerKind::Http && raw.https_port.is_some() {
        return Err(only("https_port", "`http`"));
    }
    if kind == ListenerKind::Http && raw.certdir.is_some() {
        return Err(format!(
            "{field}.certdir: an `http` listener serves no certificate; remove `certdir`"
        ));
    }
    let backend = match (kind, raw.backend) {
        (ListenerKind::Tls, None) => {
            return Err(format!(
                "{field}.backend: a `tls` listener needs `backend: HOST:PORT` (where the decrypted bytes go)"
            ));
        }
        (_, Some(address)) => {
            let address =
                parse_tcp_backend(&address).map_err(|e| format!("{field}.backend: {e}"))?;
            let tls = match raw.backend_tls {
                Some(raw_tls) => {
                    let host = address
                        .rsplit_once(':')
                        .map_or(address.as_str(), |(host, _)| host_of(host));
                    Some(backend_tls_from_raw(
                        raw_tls,
                        &address,
                        host,
                        &format!("{field}.backend_tls"),
                        paths,
                    )?)
                }
                None => None,
            };
            Some(TcpBackend { address, tls })
        }
        (_, None) => None,
    };
    let proxy_protocol = match raw.proxy_protocol.as_deref() {
        None | Some("off") | Some("none") => false,
        Some("v2") => true,
        Some(other) => {
            return Err(format!(
                "{field}.proxy_protocol: `{other}` is not supported; use `v2` or leave it out"
            ));
        }
    };
    let client_auth = match raw.client_auth {
        None => None,
        Some(raw_auth) => {
            let sub = format!("{field}.client_auth");
            if kind == ListenerKind::Http {
                return Err(format!(
                    "{sub}: an `http` listener has no TLS; remove `client_auth`"
                ));
            }
            let mut pinned_sha256 = Vec::new();
            for pin in &raw_auth.pinned_sha256 {
                pinned_sha256
                    .push(normalize_pin(pin, 64).map_err(|e| format!("{sub}.pinned_sha256: {e}"))?);
            }
            let mut pinned_sha1 = Vec::new();
            for pin in &raw_auth.pinned_sha1 {
                pinned_sha1
                    .push(normalize_pin(pin, 40).map_err(|e| format!("{sub}.pinned_sha1: {e}"))?);
            }
            match raw_auth.mode.as_str() {
                "off" => {
                    if raw_auth.ca_file.is_some()
                        || !pinned_sha256.is_empty()
                        || !pinned_sha1.is_empty()
                    {
                        return Err(format!(
                            "{sub}: `mode: off` with a `ca_file` or pins would check nothing; set \
                             `mode: required` (or `optional`), or remove them"
                        ));
                    }
                    None
                }
                mode @ ("required" | "optional") => {
                    let Some(ca_file) = raw_auth.ca_file else {
                        return Err(format!(
                            "{sub}.ca_file: `mode: {mode}` needs the CA client certificates must chain to"
                        ));
                    };
                    Some(ClientAuthConfig {
                        required: mode == "required",
                        ca_file: paths
                            .resolve(&ca_file, &format!("{sub}.ca_file"))
                            .map_err(|e| e.message())?,
                        pinned_sha256,
                        pinned_sha1,
                    })
                }
                other => {
                    return Err(format!(
                        "{sub}.mode: `{other}` is not a mode; use off, optional or required"
                    ));
                }
            }
        }
    };
    let certdir = match raw.certdir {
        Some(dir) => Some(
            paths
                .resolve(&dir, &format!("{field}.certdir"))
                .map_err(|e| e.message())?,
        ),
        None => None,
    };
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.into_iter().enumerate() {
        let route_field = format!("{field}.routes[{i}]");
        let mut actions = Vec::new();
        if let Some(respond) = r.respond {
            actions.push(RouteAction::Respond {
                status: respond.status.0,
                body: respond.body,
            });
        }
        if r.status_page {
            actions.push(RouteAction::StatusPage);
        }
        if let Some(backend) = r.backend {
            let mut parsed =
                HttpBackend::parse(&backend).map_err(|e| format!("{route_field}.backend: {e}"))?;
            if let Some(raw_tls) = r.backend_tls {
                let Some(default) = &parsed.tls else {
                    return Err(format!(
                        "{route_field}.backend_tls: the backend `{backend}` is plain HTTP; write \
                         `backend: https://{}` to speak TLS to it",
                        parsed.authority
                    ));
                };
                let default_name = default.server_name.clone();
                let backend_name = default.backend.clone();
                parsed.tls = Some(backend_tls_from_raw(
                    raw_tls,
                    &backend_name,
                    &default_name,
                    &format!("{route_field}.backend_tls"),
                    paths,
                )?);
            }
            actions.push(RouteAction::Backend(parsed));
        } else if r.backend_tls.is_some() {
            return Err(format!(
                "{route_field}.backend_tls: only a route with `backend: https://HOST:PORT` uses it"
            ));
        }
        if let Some(redirect) = r.redirect {
            if !matches!(redirect.status, 301 | 302 | 303 | 307 | 308) {
                return Err(format!(
                    "{route_field}.redirect.status: `{}` is not a redirect; use 301, 302, 303, 307 or 308",
                    redirect.status
                ));
            }
            if !(redirect.to.starts_with("https://") || redirect.to.starts_with("http://")) {
                return Err(format!(
                    "{route_field}.redirect.to: `{}` must be an absolute http:// or https:// URL",
                    redirect.to
                ));
            }
            actions.push(RouteAction::Redirect {
                to: redirect.to,
                status: redirect.status,
            });
        }
        let action = match actions.len() {
            1 => actions.remove(0),
            0 => {
                return Err(format!(
                    "{route_field}: says nothing to do; add one of `backend: http://HOST:PORT`, \
                     `respond: {{ status: 200, body: ... }}`, `redirect: {{ to: URL }}` or `status_page: true`"
                ));
            }
            _ => {
                return Err(format!(
                    "{route_field}: set one of `backend`, `respond`, `redirect` or `status_page`, not several"
                ));
            }
        };
        if let Some(prefix) = &r.path
            && !prefix.starts_with('/')
        {
            return Err(format!(
                "{route_field}.path: `{prefix}` must start with `/`"
            ));
        }
        let upgrades = route_upgrades(r.upgrades, &action, &route_field)?;
        routes.push(Route {
            host: r.host.0,
            path_prefix: r.path,
            action,
            upgrades,
        });
    }
    let defaults = Limits::default();
    let limits = Limits {
        handshake_timeout: raw
            .handshake_timeout
            .map_or(defaults.handshake_timeout, |d| d.0),
        header_timeout: raw.header_timeout.map_or(defaults.header_timeout, |d| d.0),
        idle_timeout: raw.idle_timeout.map_or(defaults.idle_timeout, |d| d.0),
        tunnel_idle_timeout: raw
            .tunnel_idle_timeout
            .map_or(defaults.tunnel_idle_timeout, |d| d.0),
        backend_connect_timeout: raw
            .backend_connect_timeout
            .map_or(defaults.backend_connect_timeout, |d| d.0),
        backend_timeout: raw
            .backend_timeout
            .map_or(defaults.backend_timeout, |d| d.0),
        max_header_bytes: raw.max_header_bytes.unwrap_or(defaults.max_header_bytes),
        max_connections: raw.max_connections.unwrap_or(defaults.max_connections),
        max_concurrent_streams: raw
            .max_concurrent_streams
            .unwrap_or(defaults.max_concurrent_streams),
        max_backend_connections: raw
            .max_backend_connections
            .unwrap_or(defaults.max_backend_connections),
        send_timeout: raw.send_timeout.map_or(defaults.send_timeout, |d| d.0),
    };
    if limits.max_header_bytes < 8192 {
        return Err(format!(
            "{field}.max_header_bytes: at least 8192 (browsers send several KiB of cookies)"
        ));
    }
    if limits.max_connections == 0 {
        return Err(format!("{field}.max_connections: at least 1"));
    }
    if limits.max_concurrent_streams == 0 {
        return Err(format!(
            "{field}.max_concurrent_streams: at least 1 (128 is nginx's default)"
        ));
    }
    if limits.max_backend_connections == 0 {
        return Err(format!("{field}.max_backend_connections: at least 1"));
    }
    if limits.send_timeout.is_zero() {
        return Err(format!(
            "{field}.send_timeout: must be more than 0 (60s is nginx's default)"
        ));
    }
    Ok(ListenerConfig {
        name: raw.name,
        kind,
        bind: raw.bind.0,
        certdir,
        routes,
        access_log: raw.access_log.unwrap_or(true),
        backend,
        proxy_protocol,
        https_port: raw.https_port,
        limits,
        client_auth,
    })
}

/// The `Upgrade` protocols a route passes on: `websocket` by default.
/// `h2c` is refused: it is HTTP/2 over cleartext TCP, never negotiated
/// over TLS (RFC 9113 §3.1), and a backend that accepted it would get a
/// raw tunnel past the routes and the 421 check.
fn route_upgrades(
    raw: Option<Vec<String>>,
    action: &RouteAction,
    route_field: &str,
) -> Result<Vec<String>, String> {
    let Some(raw) = raw else {
        return Ok(match action {
            RouteAction::Backend(_) => vec![DEFAULT_UPGRADE.to_string()],
            _ => Vec::new(),
        });
    };
    if !matches!(action, RouteAction::Backend(_)) && !raw.is_empty() {
        return Err(format!(
            "{route_field}.upgrades: only a route with a `backend` passes upgrades on; remove it"
        ));
    }
    let mut upgrades = Vec::with_capacity(raw.len());
    for token in raw {
        let name = token.trim().to_ascii_lowercase();
        if name == "h2c" {
            return Err(format!(
                "{route_field}.upgrades: `h2c` is HTTP/2 over cleartext TCP and is never \
                 upgraded to over TLS (RFC 9113 §3.1); clients get HTTP/2 through ALPN `h2` \
                 on this listener already. Remove it"
            ));
        }
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b));
        if !valid {
            return Err(format!(
                "{route_field}.upgrades: `{token}` is not a protocol name (RFC 9110 §7.8), \
                 e.g. `websocket`"
            ));
        }
        if !upgrades.contains(&name) {
            upgrades.push(name);
        }
    }
    Ok(upgrades)
}

/// The upgrade a backend route passes on when it names none.
pub const DEFAULT_UPGRADE: &str = "websocket";

/// Validates the global `acme:` block; the values were checked while being
/// read, what is left is defaults and paths.
fn acme_from_raw(raw: RawAcme, paths: &PathResolver<'_>) -> Result<AcmeConfig, ConfigError> {
    let defaults = AcmeConfig::default();
    let ca_roots = match raw.ca_roots {
        None => Vec::new(),
        Some(PathList::One(path)) => vec![paths.resolve(&path, "acme.ca_roots")?],
        Some(PathList::Many(list)) => list
            .iter()
            .enumerate()
            .map(|(i, path)| paths.resolve(path, &format!("acme.ca_roots[{i}]")))
            .collect::<Result<_, _>>()?,
    };
    Ok(AcmeConfig {
        directory: raw.directory.map_or(defaults.directory, |d| d.0),
        ca_roots,
        account_email: raw.account_email,
        challenge: raw.challenge.unwrap_or(defaults.challenge),
        renew_at: raw.renew_at.map_or(defaults.renew_at, |r| r.0),
        warn_days: raw.warn_days.map_or(defaults.warn_days, |w| w.0),
        expected_addresses: raw
            .expected_addresses
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.0)
            .collect(),
        lock_lease: raw.lock_lease.map_or(defaults.lock_lease, |d| d.0),
    })
}

/// How many domain names a message lists before "and N more".
const NAMES_SHOWN: usize = 3;

/// The CA validates a domain by connecting to a listener of the challenge's
/// kind. Without one every order would fail at validation, long after the
/// start and far from the cause, so it is refused here.
fn check_acme_listeners(
    domains: &[DomainConfig],
    listeners: &[ListenerConfig],
    challenge: ChallengeKind,
    text: &str,
) -> Result<(), String> {
    let needed = challenge.listener_kind();
    if listeners.iter().any(|l| l.kind == needed) {
        return Ok(());
    }
    let enabled: Vec<&str> = domains
        .iter()
        .filter(|d| d.acme.as_ref().is_some_and(|a| a.enabled))
        .map(|d| d.name.as_str())
        .collect();
    let Some(first) = enabled.first() else {
        return Ok(());
    };
    let mut names = enabled
        .iter()
        .take(NAMES_SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if enabled.len() > NAMES_SHOWN {
        names.push_str(&format!(" and {} more", enabled.len() - NAMES_SHOWN));
    }
    let fix = match challenge {
        ChallengeKind::Http01 => {
            "add a listener with `kind: http` on port 80, or set `acme.challenge: tls-alpn-01`"
        }
        ChallengeKind::TlsAlpn01 => {
            "add a listener with `kind: https` on port 443, or set `acme.challenge: http-01`"
        }
    };
    Err(format!(
        "domains.{first}.acme: ACME is enabled for {}, and the `{}` challenge is answered on a \
         listener with `kind: {}`, but there is none; {fix}{}",
        names,
        challenge.as_str(),
        needed.as_str(),
        locate_entry(text, first, "", 0)
    ))
}

/// Checks an ACME account contact address and returns it as written.
///
/// The CA turns it into a `mailto:` URL and rejects anything that is not one
/// address, but only when the account is created, which may be long after
/// the start; hence the shape is checked here.
pub fn parse_account_email(input: &str) -> Result<String, String> {
    let hint = "expected one address such as `ops@example.com`";
    if input
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("mailto:"))
    {
        return Err(format!(
            "`{input}`: write the address without `mailto:` (sniwalk adds it)"
        ));
    }
    if let Some(bad) = input
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>'))
    {
        let bad = if bad.is_whitespace() {
            "a space".to_string()
        } else {
            format!("`{bad}`")
        };
        return Err(format!("`{input}` contains {bad}; {hint}"));
    }
    match input.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
                return Err(format!("`{input}`: `{domain}` is not a domain; {hint}"));
            }
            Ok(input.to_string())
        }
        _ => Err(format!("`{input}` is not an email address; {hint}")),
    }
}

/// Expands the `staging` and `production` shorthands of `acme.directory`
/// and checks that anything else is an `https://` URL (RFC 8555 requires
/// HTTPS for every ACME resource).
pub fn parse_acme_directory(input: &str) -> Result<String, String> {
    let text = input.trim();
    if text.eq_ignore_ascii_case("production") {
        return Ok(DEFAULT_ACME_DIRECTORY.to_string());
    }
    if text.eq_ignore_ascii_case("staging") {
        return Ok(STAGING_ACME_DIRECTORY.to_string());
    }
    let shorthands =
        "or the shorthand `production` (Let's Encrypt) or `staging` (Let's Encrypt staging)";
    match text.strip_prefix("https://") {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !rest.contains(char::is_whitespace) =>
        {
            Ok(text.to_string())
        }
        Some(_) => Err(format!(
            "`{input}` has no host; use the CA's full directory URL, {shorthands}"
        )),
        None => Err(format!(
            "`{input}` is not an https:// URL; ACME directories are served over HTTPS only: \
             use the CA's https:// directory URL, {shorthands}"
        )),
    }
}

/// Parses `acme.renew_at`: a fraction strictly between 0 and 1, written as
/// a number (`0.66`) or as `A/B` (`2/3`).
pub fn parse_renew_at(input: &str) -> Result<f64, String> {
    let text = input.trim();
    let value = match text.split_once('/') {
        Some((a, b)) => {
            let a: f64 = a.trim().parse().map_err(|_| renew_at_message(input))?;
            let b: f64 = b.trim().parse().map_err(|_| renew_at_message(input))?;
            a / b
        }
        None => text.parse().map_err(|_| renew_at_message(input))?,
    };
    check_renew_at(value).map_err(|()| renew_at_message(input))
}

fn check_renew_at(value: f64) -> Result<f64, ()> {
    // NaN and infinities fail this test too.
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(())
    }
}

fn renew_at_message(input: impl fmt::Display) -> String {
    format!(
        "invalid renew_at `{input}`: the fraction of the certificate's lifetime after which it is \
         renewed, strictly between 0 and 1, e.g. 0.66 (day 60 of 90) or \"2/3\""
    )
}

/// Longest `acme.warn_days`. Public certificates last at most 398 days
/// (fewer from 2026 on), so a longer period would warn for about a
/// certificate's whole life, which is no warning at all.
pub const MAX_WARN_DAYS: u32 = 365;

/// Checks a `HOST:PORT` TCP backend.
fn parse_tcp_backend(input: &str) -> Result<String, String> {
    if input.parse::<SocketAddr>().is_ok() {
        return Ok(input.to_string());
    }
    let (host, port) = input.rsplit_once(':').ok_or_else(|| {
        format!("`{input}` has no port; expected HOST:PORT such as `127.0.0.1:5060`")
    })?;
    port.parse::<u16>()
        .map_err(|_| format!("`{input}` has an invalid port `{port}`"))?;
    normalize_domain_name(host).map_err(|e| format!("`{input}`: {e}"))?;
    Ok(input.to_string())
}

/// Parses a duration: `250ms`, `10s`, `5m`, `1h`, or a number of seconds.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let text = input.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{input}` is not a duration; use e.g. `500ms`, `10s`, `5m`, `1h`"))?;
    let unit_ms = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(format!(
                "`{input}`: unknown unit `{other}`; use ms, s, m or h"
            ));
        }
    };
    Ok(Duration::from_millis(value.saturating_mul(unit_ms)))
}

/// Turns configured path strings into paths: aliases first, then relative
/// paths against the configuration file's folder.
struct PathResolver<'a> {
    file: &'a Path,
    base: &'a Path,
    aliases: &'a BTreeMap<String, String>,
    text: &'a str,
}

impl PathResolver<'_> {
    fn resolve(&self, value: &str, field: &str) -> Result<PathBuf, ConfigError> {
        let expanded = match value.strip_prefix(ALIAS_PREFIX) {
            Some(rest) => {
                let (alias, tail) = rest.split_once('/').unwrap_or((rest, ""));
                let Some(target) = self.aliases.get(alias) else {
                    let known: Vec<&str> = self.aliases.keys().map(String::as_str).collect();
                    return Err(ConfigError::Invalid {
                        file: self.file.to_path_buf(),
                        message: format!(
                            "{field}: unknown alias `{alias}` in `{value}`; define it under `paths:` \
                             (known: {}){}",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            },
                            locate(self.text, value)
                        ),
                    });
                };
                if tail.is_empty() {
                    PathBuf::from(target)
                } else {
                    Path::new(target).join(tail)
                }
            }
            None => PathBuf::from(value),
        };
        if expanded.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                file: self.file.to_path_buf(),
                message: format!("{field}: the path is empty{}", locate(self.text, field)),
            });
        }
        Ok(if expanded.is_absolute() {
            expanded
        } else {
            self.base.join(expanded)
        })
    }
}

/// ` at line L column C` for the first occurrence of `needle`, or nothing.
fn locate(text: &str, needle: &str) -> String {
    locate_nth(text, needle, 0)
}

/// Like [`locate`], for the occurrence after `skip` earlier ones.
fn locate_nth(text: &str, needle: &str, skip: usize) -> String {
    text.match_indices(needle)
        .nth(skip)
        .map_or_else(String::new, |(offset, _)| position(text, offset))
}

/// Like [`locate_nth`], for the entry `key: value` (value plain or quoted;
/// an empty `value` finds the key whatever follows it). Unlike a bare
/// substring search, `name: ws` does not find `name: ws2` nor `hostname: ws`,
/// and `example.com:` does not find `www.example.com:`.
fn locate_entry(text: &str, key: &str, value: &str, skip: usize) -> String {
    let needles: Vec<String> = if value.is_empty() {
        vec![format!("{key}:")]
    } else {
        ["", "\"", "'"]
            .iter()
            .map(|q| format!("{key}: {q}{value}{q}"))
            .collect()
    };
    let mut offsets: Vec<usize> = needles
        .iter()
        .flat_map(|needle| text.match_indices(needle.as_str()))
        .filter(|&(offset, needle)| {
            let before = text[..offset].chars().next_back();
            let after = text[offset + needle.len()..].chars().next();
            before.is_none_or(|c| c.is_whitespace() || c == '{' || c == ',')
                && after.is_none_or(|c| c.is_whitespace() || c == ',' || c == '}' || c == '#')
        })
        .map(|(offset, _)| offset)
        .collect();
    offsets.sort_unstable();
    offsets
        .get(skip)
        .map_or_else(String::new, |&offset| position(text, offset))
}

/// ` at line L column C` for a byte offset into `text`.
fn position(text: &str, offset: usize) -> String {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map_or(0, |nl| nl + 1) + 1;
    format!(" at line {line} column {column}")
}

/// Validates a DNS name used as a domain or master domain and returns its
/// canonical form (lower-case, no trailing dot).
pub fn normalize_domain_name(input: &str) -> Result<String, String> {
    let name = input.trim();
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() {
        return Err("an empty name is not a domain".into());
    }
    if name.len() > 253 {
        return Err(format!("`{input}` is longer than 253 characters"));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "`{input}` is an IP address; domains are DNS names (clients connecting by IP get the certdir)"
        ));
    }
    if let Some(parent) = name.strip_prefix("*.") {
        return Err(format!(
            "`{input}` is a wildcard; configure `{parent}` instead: names below a domain already resolve to it"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("`{input}` has an empty label (two dots in a row?)"));
        }
        if label.len() > 63 {
            return Err(format!("`{input}` has a label longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("`{input}` has a label starting or ending with `-`"));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "`{input}` contains `{bad}`; use letters, digits and `-` (IDNs in their xn-- form)"
            ));
        }
    }
    Ok(name)
}

/// Parses a listener bind: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or
/// `*:PORT` (all IPv4 addresses).
pub fn parse_bind(input: &str) -> Result<SocketAddr, String> {
    let hint = "expected IP:PORT such as `127.0.0.1:8443`, `[::1]:8443` or `0.0.0.0:443`";
    if let Ok(addr) = input.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = input
        .rsplit_once(':')
        .ok_or_else(|| format!("`{input}` has no port; {hint}"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{input}` has an invalid port `{port}`; {hint}"))?;
    let ip = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "*" | "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => return Err(format!("`{input}`: `{host}` is not an IP address; {hint}")),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Parses a route's host pattern.
fn parse_host_pattern(input: &str) -> Result<HostPattern, String> {
    let trimmed = input.trim();
    if trimmed == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some(suffix) = trimmed.strip_prefix("*.") {
        return normalize_domain_name(suffix).map(HostPattern::Suffix);
    }
    let name = trimmed
        .strip_suffix('.')
        .unwrap_or(trimmed)
        .to_ascii_lowercase();
    if name.parse::<IpAddr>().is_ok() || name == "localhost" {
        return Ok(HostPattern::Exact(name));
    }
    normalize_domain_name(&name).map(HostPattern::Exact)
}

// ---- raw serde structures -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    master_domain: DomainName,
    #[serde(default)]
    state_dir: Option<String>,
    #[serde(default)]
    paths: UniqueMap<String>,
    #[serde(default)]
    default_certificate: Option<String>,
    domains: DomainMap,
    #[serde(default)]
    listeners: Vec<RawListener>,
    #[serde(default)]
    acme: Option<RawAcme>,
    #[serde(default)]
    worker_threads: Option<usize>,
    #[serde(default)]
    shutdown_timeout: Option<DurationField>,
    #[serde(default)]
    rescan_interval: Option<DurationField>,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    ticket_keys_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    bind: Bind,
    #[serde(default)]
    token_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    #[serde(default)]
    certificate_pem: Option<String>,
    #[serde(default)]
    certificate_file: Option<String>,
    #[serde(default)]
    acme: Option<DomainAcme>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    #[serde(default)]
    directory: Option<DirectoryField>,
    #[serde(default)]
    ca_roots: Option<PathList>,
    #[serde(default, deserialize_with = "account_email_field")]
    account_email: Option<String>,
    #[serde(default)]
    challenge: Option<ChallengeKind>,
    #[serde(default)]
    renew_at: Option<RenewAtField>,
    #[serde(default)]
    warn_days: Option<WarnDaysField>,
    #[serde(default)]
    expected_addresses: Option<Vec<AddressField>>,
    #[serde(default)]
    lock_lease: Option<DurationField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    name: String,
    kind: ListenerKind,
    bind: Bind,
    #[serde(default)]
    certdir: Option<String>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    access_log: Option<bool>,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    proxy_protocol: Option<String>,
    #[serde(default)]
    https_port: Option<u16>,
    #[serde(default)]
    handshake_timeout: Option<DurationField>,
    #[serde(default)]
    header_timeout: Option<DurationField>,
    #[serde(default)]
    idle_timeout: Option<DurationField>,
    #[serde(default)]
    tunnel_idle_timeout: Option<DurationField>,
    #[serde(default)]
    backend_connect_timeout: Option<DurationField>,
    #[serde(default)]
    backend_timeout: Option<DurationField>,
    #[serde(default)]
    max_header_bytes: Option<usize>,
    #[serde(default)]
    max_connections: Option<usize>,
    #[serde(default)]
    max_concurrent_streams: Option<u32>,
    #[serde(default)]
    max_backend_connections: Option<usize>,
    #[serde(default)]
    send_timeout: Option<DurationField>,
    #[serde(default)]
    client_auth: Option<RawClientAuth>,
    #[serde(default)]
    backend_tls: Option<RawBackendTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackendTls {
    #[serde(default)]
    ca_file: Option<String>,
    #[serde(default)]
    client_certificate: Option<String>,
    #[serde(default)]
    server_name: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientAuth {
    mode: String,
    #[serde(default)]
    ca_file: Option<String>,
    #[serde(default)]
    pinned_sha256: Vec<String>,
    #[serde(default)]
    pinned_sha1: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    host: HostPatternField,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    respond: Option<RawRespond>,
    #[serde(default)]
    status_page: bool,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    backend_tls: Option<RawBackendTls>,
    #[serde(default)]
    redirect: Option<RawRedirect>,
    #[serde(default)]
    upgrades: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedirect {
    to: String,
    #[serde(default = "default_redirect_status")]
    status: u16,
}

fn default_redirect_status() -> u16 {
    308
}

/// A duration written as `10s`, `500ms`, `5m`, `1h` or a number of seconds.
struct DurationField(Duration);

impl<'de> Deserialize<'de> for DurationField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = DurationField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `10s`, `500ms`, `5m` or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<DurationField, E> {
                Ok(DurationField(Duration::from_secs(secs)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<DurationField, E> {
                parse_duration(text).map(DurationField).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// `acme.directory`, with the shorthands expanded.
struct DirectoryField(String);

impl<'de> Deserialize<'de> for DirectoryField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(|raw: &str| {
            parse_acme_directory(raw)
                .map(DirectoryField)
                .map_err(|e| format!("invalid directory: {e}"))
        }))
    }
}

/// An optional account email, checked while it is read (for the position).
fn account_email_field<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    struct EmailVisitor;
    impl<'de> Visitor<'de> for EmailVisitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an email address")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(CheckedStr(|raw: &str| {
                parse_account_email(raw)
                    .map(Some)
                    .map_err(|e| format!("invalid account_email: {e}"))
            }))
        }
    }
    deserializer.deserialize_option(EmailVisitor)
}

/// One path or a list of paths (`acme.ca_roots`).
enum PathList {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for PathList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PathListVisitor;
        impl<'de> Visitor<'de> for PathListVisitor {
            type Value = PathList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path or a list of paths")
            }
            fn visit_str<E: de::Error>(self, path: &str) -> Result<PathList, E> {
                non_empty_path(path).map(PathList::One).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<PathList, A::Error> {
                let mut paths = Vec::new();
                // Each entry is checked while it is read, for its position.
                while let Some(path) = seq.next_element_seed(CheckedStr(non_empty_path))? {
                    paths.push(path);
                }
                Ok(PathList::Many(paths))
            }
        }
        deserializer.deserialize_any(PathListVisitor)
    }
}

fn non_empty_path(path: &str) -> Result<String, String> {
    if path.trim().is_empty() {
        Err("the path is empty; give a PEM file of CA certificates".into())
    } else {
        Ok(path.to_string())
    }
}

/// `acme.renew_at`: a number or an `A/B` fraction, strictly between 0 and 1.
struct RenewAtField(f64);

impl<'de> Deserialize<'de> for RenewAtField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Checked inside the visitor, for the position (see `CheckedStr`).
        struct RenewAtVisitor;
        impl Visitor<'_> for RenewAtVisitor {
            type Value = RenewAtField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fraction between 0 and 1 such as 0.66 or \"2/3\"")
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<RenewAtField, E> {
                check_renew_at(value)
                    .map(RenewAtField)
                    .map_err(|()| E::custom(renew_at_message(value)))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<RenewAtField, E> {
                Err(E::custom(renew_at_message(value)))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<RenewAtField, E> {
                Err(E::custom(renew_at_message(value)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RenewAtField, E> {
                parse_renew_at(text).map(RenewAtField).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(RenewAtVisitor)
    }
}

/// `acme.warn_days`: whole days, 1 to [`MAX_WARN_DAYS`].
struct WarnDaysField(u32);

impl<'de> Deserialize<'de> for WarnDaysField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Checked inside the visitor, for the position (see `CheckedStr`).
        struct WarnDaysVisitor;
        impl Visitor<'_> for WarnDaysVisitor {
            type Value = WarnDaysField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a whole number of days between 1 and {MAX_WARN_DAYS}")
            }
            fn visit_u64<E: de::Error>(self, days: u64) -> Result<WarnDaysField, E> {
                u32::try_from(days)
                    .ok()
                    .filter(|days| (1..=MAX_WARN_DAYS).contains(days))
                    .map(WarnDaysField)
                    .ok_or_else(|| E::custom(warn_days_message(days)))
            }
            fn visit_i64<E: de::Error>(self, days: i64) -> Result<WarnDaysField, E> {
                match u64::try_from(days) {
                    Ok(days) => self.visit_u64(days),
                    Err(_) => Err(E::custom(warn_days_message(days))),
                }
            }
        }
        deserializer.deserialize_any(WarnDaysVisitor)
    }
}

fn warn_days_message(days: impl fmt::Display) -> String {
    format!(
        "invalid warn_days `{days}`: the number of days before expiry at which a certificate is \
         reported, between 1 and {MAX_WARN_DAYS} (default {})",
        crate::acme::schedule::DEFAULT_WARN_DAYS
    )
}

/// One of `acme.expected_addresses`.
struct AddressField(IpAddr);

impl<'de> Deserialize<'de> for AddressField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(|raw: &str| {
            raw.trim().parse::<IpAddr>().map(AddressField).map_err(|_| {
                format!(
                    "invalid address `{raw}`: expected an IPv4 or IPv6 address such as \
                     `203.0.113.7` or `2001:db8::7` (no port, no name)"
                )
            })
        }))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRespond {
    #[serde(default = "default_respond_status")]
    status: StatusCodeField,
    #[serde(default)]
    body: String,
}

fn default_respond_status() -> StatusCodeField {
    StatusCodeField(200)
}

/// A domain name, validated while deserialising so errors carry a position.
struct DomainName(String);

impl<'de> Deserialize<'de> for DomainName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(|raw: &str| {
            normalize_domain_name(raw)
                .map(DomainName)
                .map_err(|e| format!("invalid domain name: {e}"))
        }))
    }
}

/// Reads a string and checks it inside the visitor: the YAML parser adds the
/// line and column of a value only to errors raised while it is being read,
/// not to errors raised after `String::deserialize` has returned (those get
/// the position of the enclosing map).
struct CheckedStr<F>(F);

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for CheckedStr<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> DeserializeSeed<'de> for CheckedStr<F> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_str(self)
    }
}

/// A bind address and the text it was written as.
struct Bind(SocketAddr, String);

impl<'de> Deserialize<'de> for Bind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(|raw: &str| {
            parse_bind(raw)
                .map(|addr| Bind(addr, raw.to_string()))
                .map_err(|e| format!("invalid bind: {e}"))
        }))
    }
}

struct HostPatternField(HostPattern);

impl<'de> Deserialize<'de> for HostPatternField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(|raw: &str| {
            parse_host_pattern(raw)
                .map(HostPatternField)
                .map_err(|e| format!("invalid route host: {e}"))
        }))
    }
}

struct StatusCodeField(u16);

impl<'de> Deserialize<'de> for StatusCodeField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Checked inside the visitor, for the position (see `CheckedStr`).
        struct StatusVisitor;
        impl Visitor<'_> for StatusVisitor {
            type Value = StatusCodeField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HTTP status between 100 and 599")
            }
            fn visit_u64<E: de::Error>(self, code: u64) -> Result<StatusCodeField, E> {
                u16::try_from(code)
                    .ok()
                    .filter(|code| (100..=599).contains(code))
                    .map(StatusCodeField)
                    .ok_or_else(|| {
                        E::custom(format!(
                            "invalid status `{code}`: an HTTP status is between 100 and 599"
                        ))
                    })
            }
        }
        deserializer.deserialize_u16(StatusVisitor)
    }
}

/// `domains:` in file order, refusing names that are equal once normalised.
struct DomainMap(Vec<(DomainName, Option<RawDomain>)>);

impl<'de> Deserialize<'de> for DomainMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DomainMapVisitor;
        impl<'de> Visitor<'de> for DomainMapVisitor {
            type Value = DomainMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from domain name to its settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DomainMap, A::Error> {
                let mut entries: Vec<(DomainName, Option<RawDomain>)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                // The key is checked while it is read, so errors carry its
                // position rather than that of the `domains:` map.
                while let Some(name) = map.next_key_seed(CheckedStr(|raw: &str| {
                    let name = normalize_domain_name(raw).map_err(|e| format!("invalid domain name: {e}"))?;
                    if seen.contains(&name) {
                        return Err(format!(
                            "duplicate domain `{name}` (names are compared lower-case, without a trailing dot); \
                             keep one entry"
                        ));
                    }
                    Ok(name)
                }))? {
                    seen.insert(name.clone());
                    let value = map.next_value::<Option<RawDomain>>()?;
                    entries.push((DomainName(name), value));
                }
                Ok(DomainMap(entries))
            }
        }
        deserializer.deserialize_map(DomainMapVisitor)
    }
}

/// A string map that refuses duplicate keys (YAML allows them silently).
#[derive(Default)]
struct UniqueMap<V>(BTreeMap<String, V>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueVisitor<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueMap<V>, A::Error> {
                let mut out = BTreeMap::new();
                // Checked while the key is read, for its position.
                while let Some(key) = map.next_key_seed(CheckedStr(|key: &str| {
                    if out.contains_key(key) {
                        Err(format!("duplicate key `{key}`"))
                    } else {
                        Ok(key.to_string())
                    }
                }))? {
                    let value = map.next_value()?;
                    out.insert(key, value);
                }
                Ok(UniqueMap(out))
            }
        }
        deserializer.deserialize_map(UniqueVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests;
