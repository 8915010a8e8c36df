//! The validated configuration: what the rest of the crate reads once
//! `proxy.yaml` has been checked.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::address_range::AddressRange;
use super::backends::{Backends, Member};
use super::drain_store::DrainStore;
use super::eab::EabConfig;
use super::field_error::{DomainNameError, FieldError};
use super::fields::{
    CheckedStr, DEFAULT_ACME_DIRECTORY, DEFAULT_RENEW_AT, account_email_field,
    normalize_domain_name,
};
use super::log_settings::{AccessLogConfig, LogConfig};

/// Where `state_dir` is when the configuration does not say.
pub const DEFAULT_STATE_DIR: &str = "state";

/// The prefix of a path alias (`alias://paths/default_certdir`; README:
/// Configuration, `paths`).
pub const ALIAS_PREFIX: &str = "alias://paths/";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// The master domain: root of every chain in the domain tree.
    pub master_domain: String,
    /// Where ACME results, the account and the generated default live
    /// (every path under it: [`Config::state_layout`]).
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
    /// How often session ticket keys kept in the storage are rotated
    /// (`tls.ticket_rotation`).
    pub ticket_rotation: Duration,
    /// Where instances keep what they share (`storage:`).
    pub storage: StorageConfig,
    /// Backends drained through the admin API (`config/drains`), read with
    /// the file by [`Config::load`].
    pub drains: DrainStore,
    /// How sniwalk's own events are logged (`log:`).
    pub log: LogConfig,
}

/// Default `tls.ticket_rotation`.
pub const DEFAULT_TICKET_ROTATION: Duration = Duration::from_secs(6 * 3600);

/// Shortest `tls.ticket_rotation`.
pub const MIN_TICKET_ROTATION: Duration = Duration::from_secs(60);

/// Longest `tls.ticket_rotation`: forward secrecy of resumed sessions
/// rests on replacing the keys.
pub const MAX_TICKET_ROTATION: Duration = Duration::from_secs(24 * 3600);

/// Where instances keep what they share (`storage:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StorageConfig {
    /// `kind: dir`, the default: the files under `state_dir`.
    #[default]
    Dir,
    /// `kind: etcd`: an etcd cluster (needs the cargo feature `etcd`).
    Etcd(EtcdStorageConfig),
}

/// `storage:` with `kind: etcd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdStorageConfig {
    /// The cluster's client URLs as written (trimmed): `http://HOST:PORT`,
    /// `https://HOST:PORT` or `HOST:PORT`, all with one scheme.
    pub endpoints: Vec<String>,
    /// Where sniwalk's keys live in etcd; ends with `/`.
    pub prefix: String,
    /// PEM file of the CA that signed etcd's server certificates
    /// (`storage.tls.ca_file`).
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (`storage.tls.client_certificate`);
    /// set together with `client_key`.
    pub client_certificate: Option<PathBuf>,
    /// PEM file of the client certificate's key (`storage.tls.client_key`).
    pub client_key: Option<PathBuf>,
    /// The etcd user; set together with `password_file`.
    pub username: Option<String>,
    /// File holding the user's password alone.
    pub password_file: Option<PathBuf>,
    /// Lease of locks and of each instance's liveness key.
    pub lease: Duration,
}

/// Default `storage.prefix`.
pub const DEFAULT_STORAGE_PREFIX: &str = "sniwalk/";

/// Default `storage.lease` (the storage engine's own default too).
pub const DEFAULT_STORAGE_LEASE: Duration = Duration::from_secs(15);

/// Shortest `storage.lease`: renewed every third of it, and etcd's own
/// minimum TTL is 2 s with its default election timeout.
pub const MIN_STORAGE_LEASE: Duration = Duration::from_secs(2);

/// Longest `storage.lease`: an instance that dies holds its locks this
/// long.
pub const MAX_STORAGE_LEASE: Duration = Duration::from_secs(600);

/// The admin API listener (`admin:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where it listens (plain HTTP).
    pub bind: SocketAddr,
    /// File holding the bearer token; without one the API is open, which
    /// is only allowed on a loopback address.
    pub token_file: Option<PathBuf>,
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
    /// The names its certificate covers (`names`, wildcards `*.x`
    /// included), lower case; empty when only its own name (and every name
    /// below it) is meant. An ACME order covers them all.
    pub names: Vec<String>,
    /// Added by on-demand certificates (the domain store's `on_demand`
    /// marker), not by the operator.
    pub on_demand: bool,
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

/// Per-domain ACME switch (`domains.NAME.acme`; README: Configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainAcme {
    /// Whether sniwalk should obtain and renew this domain's certificate.
    #[serde(default)]
    pub enabled: bool,
    /// Contact address for the ACME account (checked like
    /// `acme.account_email`).
    #[serde(default, deserialize_with = "account_email_field")]
    #[schemars(with = "Option<String>", extend("format" = "email"))]
    pub account_email: Option<String>,
    /// This domain's challenge, instead of `acme.challenge`: `http-01`, `tls-alpn-01` or `dns-01`.
    #[serde(default)]
    pub challenge: Option<ChallengeKind>,
}

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
    /// The DNS server DNS-01 answers are published in (`acme.rfc2136`).
    pub rfc2136: Option<Rfc2136Config>,
    /// External Account Binding for new accounts (`acme.eab`), its key
    /// read when the configuration loads.
    pub eab: Option<EabConfig>,
    /// Where the staging check runs (`acme.fallback_to_staging`, with
    /// `acme.staging_directory` or its default); `None`: no staging check.
    pub staging_check_directory: Option<String>,
    /// On-demand certificates (`acme.on_demand`); `None`: off.
    pub on_demand: Option<super::on_demand::OnDemandConfig>,
}

/// The validated `acme.rfc2136` block. The secret file is read when an
/// order needs it (like `acme.ca_roots`), so a rotated secret is picked up
/// and a missing one fails that order with the file's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rfc2136Config {
    /// `HOST:PORT` (port 53 added when absent); resolved when used.
    pub server: String,
    /// The TSIG key's name, lower case, without a trailing dot.
    pub tsig_key_name: String,
    /// The key's HMAC.
    pub tsig_algorithm: crate::acme::rfc2136::TsigAlgorithm,
    /// The file holding the key's secret.
    pub tsig_secret_file: PathBuf,
    /// The zone to update, if given (else found by an SOA query).
    pub zone: Option<String>,
    /// Longest wait for a published record to be visible on the server.
    pub propagation_timeout: Duration,
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
            renew_at: DEFAULT_RENEW_AT,
            warn_days: crate::expiry::DEFAULT_WARN_DAYS,
            expected_addresses: Vec::new(),
            lock_lease: DEFAULT_LOCK_LEASE,
            rfc2136: None,
            eab: None,
            staging_check_directory: None,
            on_demand: None,
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
    /// DNS-01: a TXT record `_acme-challenge.NAME` published through
    /// `acme.rfc2136`; the only one that proves a wildcard.
    Dns01,
}

impl ChallengeKind {
    /// The name ACME and the configuration use.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
            ChallengeKind::Dns01 => "dns-01",
        }
    }

    /// The kind of listener the CA's validation request arrives on, which
    /// must therefore exist when a domain has ACME enabled; none for
    /// dns-01, which the CA checks in the DNS.
    pub fn listener_kind(self) -> Option<ListenerKind> {
        match self {
            ChallengeKind::Http01 => Some(ListenerKind::Http),
            ChallengeKind::TlsAlpn01 => Some(ListenerKind::Https),
            ChallengeKind::Dns01 => None,
        }
    }

    /// Parses the configuration name (`http-01`, `tls-alpn-01`, `dns-01`).
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        match input.trim().to_ascii_lowercase().as_str() {
            "http-01" => Ok(ChallengeKind::Http01),
            "tls-alpn-01" => Ok(ChallengeKind::TlsAlpn01),
            "dns-01" => Ok(ChallengeKind::Dns01),
            _ => Err(FieldError::Challenge {
                input: input.to_string(),
            }),
        }
    }
}

impl<'de> Deserialize<'de> for ChallengeKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(ChallengeKind::parse))
    }
}

/// The kinds of listener (README: Traffic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
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
    /// Where and how each request and tunnel is logged (`access_log:`, or
    /// the top-level one); `None`: not at all.
    pub access_log: Option<AccessLogConfig>,
    /// The backends of a `tls` listener (`backend:` or `backends:`).
    pub backends: Option<Backends<TcpBackend>>,
    /// Whether a `tls` listener sends a PROXY protocol v2 header first
    /// (to its backends).
    pub proxy_protocol: bool,
    /// PROXY protocol headers expected from load balancers in front
    /// (`accept_proxy_protocol:`); shared, since each connection of such a
    /// listener takes a reference.
    pub accept_proxy_protocol: Option<Arc<AcceptProxyProtocol>>,
    /// Port put into the redirects of an `http` listener (default: none,
    /// i.e. 443).
    pub https_port: Option<u16>,
    /// Timeouts and limits.
    pub limits: Limits,
    /// Client certificates asked of callers (`https` and `tls` only).
    pub client_auth: Option<ClientAuthConfig>,
}

/// `accept_proxy_protocol:` of a listener (README: Behind a load balancer):
/// which PROXY protocol versions are read, and from which peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptProxyProtocol {
    /// Whether the text header (v1, `PROXY TCP4 ...\r\n`) is accepted.
    pub v1: bool,
    /// Whether the binary header (v2) is accepted.
    pub v2: bool,
    /// The load balancers: a peer in one of these ranges must start with
    /// a header, and one outside them must not send any.
    pub from: Vec<AddressRange>,
}

impl AcceptProxyProtocol {
    /// Whether `peer` is one of the load balancers (`from`).
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.from.iter().any(|range| range.contains(peer))
    }
}

/// `client_auth:` of a TLS listener (README: Client certificates).
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

/// A `HOST:PORT` backend of a `tls` listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpBackend {
    /// `HOST:PORT` as configured; resolved at connect time.
    pub address: String,
    /// TLS towards the backend (`backend_tls:` on the listener), if any.
    pub tls: Option<BackendTls>,
    /// Its share of new tunnels in its group (1 to 256).
    pub weight: u32,
    /// `drain: true`: no new tunnels.
    pub drain: bool,
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
    /// Forward to one of a group of HTTP backends.
    Backend(Backends<HttpBackend>),
    /// Redirect elsewhere.
    Redirect {
        /// Target; when it has no path, the request's path and query are
        /// appended.
        to: String,
        /// 301, 302, 303, 307 or 308.
        status: u16,
    },
}

/// Why a route's `backend:` is not an `http(s)://HOST:PORT` URL
/// ([`HttpBackend::parse`]).
#[derive(Debug, thiserror::Error)]
pub enum HttpBackendError {
    /// Neither `http://` nor `https://`.
    #[error("`{input}` is not an http://HOST:PORT or https://HOST:PORT URL")]
    Scheme {
        /// The backend as written.
        input: String,
    },
    /// A path, user info or no authority at all after the scheme.
    #[error(
        "`{input}`: a backend is http(s)://HOST:PORT without a path (the request's path is kept)"
    )]
    Path {
        /// The backend as written.
        input: String,
    },
    /// `HOST:PORT` that is no URI authority.
    #[error("`{input}`: {error}")]
    Authority {
        /// The backend as written.
        input: String,
        /// What the URI parser said.
        error: hyper::http::uri::InvalidUri,
    },
}

/// An `http://HOST:PORT` or `https://HOST:PORT` backend of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpBackend {
    /// `HOST:PORT`, parsed once: each forwarded request's URI takes it as
    /// it is (a shared slice, no copy).
    pub authority: hyper::http::uri::Authority,
    /// TLS towards it (`https://`), with the route's `backend_tls:`.
    pub tls: Option<BackendTls>,
    /// Its share of new requests in its group (1 to 256).
    pub weight: u32,
    /// `drain: true`: no new requests or tunnels.
    pub drain: bool,
}

impl HttpBackend {
    /// Parses `http://HOST:PORT` or `https://HOST:PORT` (a trailing `/` is
    /// allowed, nothing more). An `https://` backend gets the default
    /// [`BackendTls`] (system trust store, the host as server name); the
    /// route's `backend_tls:` replaces it.
    pub fn parse(input: &str) -> Result<Self, HttpBackendError> {
        let (rest, tls) = match (
            input.strip_prefix("http://"),
            input.strip_prefix("https://"),
        ) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => {
                return Err(HttpBackendError::Scheme {
                    input: input.to_string(),
                });
            }
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains('/') || authority.contains('@') {
            return Err(HttpBackendError::Path {
                input: input.to_string(),
            });
        }
        let parsed = authority
            .parse::<hyper::http::uri::Authority>()
            .map_err(|error| HttpBackendError::Authority {
                input: input.to_string(),
                error,
            })?;
        let tls = tls.then(|| BackendTls {
            backend: format!("https://{authority}"),
            ca_file: None,
            client_certificate: None,
            server_name: host_of(parsed.host()).to_string(),
            insecure_skip_verify: false,
        });
        Ok(HttpBackend {
            authority: parsed,
            tls,
            weight: 1,
            drain: false,
        })
    }
}

impl Member for HttpBackend {
    fn address(&self) -> &str {
        self.authority.as_str()
    }
    fn weight(&self) -> u32 {
        self.weight
    }
    fn drain(&self) -> bool {
        self.drain
    }
}

impl Member for TcpBackend {
    fn address(&self) -> &str {
        &self.address
    }
    fn weight(&self) -> u32 {
        self.weight
    }
    fn drain(&self) -> bool {
        self.drain
    }
}

/// A host as rustls wants it for a server name: IPv6 without brackets.
pub(super) fn host_of(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

impl ListenerConfig {
    /// Every backend this listener speaks TLS to, in configuration order.
    pub fn backend_tls(&self) -> impl Iterator<Item = &BackendTls> {
        let routes = self.routes.iter().flat_map(|r| match &r.action {
            RouteAction::Backend(group) => group.members.as_slice(),
            _ => &[],
        });
        let tcp = self.backends.iter().flat_map(|g| g.members.iter());
        tcp.filter_map(|b| b.tls.as_ref())
            .chain(routes.filter_map(|b| b.tls.as_ref()))
    }
}

impl Config {
    /// The paths under `state_dir`.
    pub fn state_layout(&self) -> crate::state_layout::StateLayout {
        crate::state_layout::StateLayout::new(&self.state_dir)
    }

    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerConfig> {
        self.listeners.iter().find(|l| l.name == name)
    }

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

/// The upgrade a backend route passes on when it names none.
pub const DEFAULT_UPGRADE: &str = "websocket";

/// Parses a route's host pattern.
pub(super) fn parse_host_pattern(input: &str) -> Result<HostPattern, DomainNameError> {
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
