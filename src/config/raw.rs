//! `proxy.yaml` as written: serde structures that refuse unknown fields.
//! Single values are checked while they are read (see `fields`).

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::acme_settings::RawEab;
use super::backend_raw::{RawBackendEntry, RawBackendTls, RawHealth};
use super::fields::{
    AddressField, Bind, CheckedStr, DirectoryField, DomainName, DurationField, PathList,
    RenewAtField, StatusCodeField, UniqueMap, ValueError, WarnDaysField, account_email_field,
    normalize_domain_name,
};
use super::logs::{RawAccessLog, RawLog};
use super::names::NameField;
use super::rfc2136::RawRfc2136;
use super::types::{ChallengeKind, DomainAcme, HostPattern, ListenerKind, parse_host_pattern};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Config")]
pub(super) struct RawConfig {
    /// Root of the domain tree: names that match no configured domain end here.
    pub(super) master_domain: DomainName,
    /// Where sniwalk keeps its state (ACME certificates and accounts, the generated default certificate, the domain store); created 0700. Relative to this file.
    #[serde(default)]
    pub(super) state_dir: Option<String>,
    /// Aliases usable as `alias://paths/NAME` wherever a path is expected.
    #[serde(default)]
    pub(super) paths: UniqueMap<String>,
    /// A certificate_pem file served when nothing else applies; when unset, one is generated in state_dir.
    #[serde(default)]
    pub(super) default_certificate: Option<String>,
    /// The domain tree: each domain with its certificate (`certificate_pem`, `certificate_file`) or `acme: { enabled: true }`; `{}` for none.
    pub(super) domains: DomainMap,
    /// The sockets sniwalk serves: `https` (TLS, then HTTP routed by host), `tls` (TLS, then TCP to a backend: SIP over TLS) and `http` (ACME HTTP-01 and redirects to https).
    #[serde(default)]
    pub(super) listeners: Vec<RawListener>,
    /// ACME settings shared by every domain with `acme: { enabled: true }`.
    #[serde(default)]
    pub(super) acme: Option<RawAcme>,
    /// Threads serving connections (default: one per CPU; 1 runs the single-threaded scheduler).
    #[serde(default)]
    pub(super) worker_threads: Option<usize>,
    /// On SIGTERM, how long connections in flight may finish before they are cut (default 30s).
    #[serde(default)]
    pub(super) shutdown_timeout: Option<DurationField>,
    /// How often every source is re-read even without file events (default 60s).
    #[serde(default)]
    pub(super) rescan_interval: Option<DurationField>,
    /// The admin API (status, metrics, imports, ACME jobs, drains); off when absent.
    #[serde(default)]
    pub(super) admin: Option<RawAdmin>,
    /// Session ticket keys shared by several instances.
    #[serde(default)]
    pub(super) tls: Option<RawTls>,
    /// Where instances share certificates, accounts and locks: `kind: dir` (state_dir, the default) or `kind: etcd`.
    #[serde(default)]
    pub(super) storage: Option<RawStorage>,
    /// sniwalk's own log lines: `format: text | json`, `level` (a RUST_LOG-style filter; RUST_LOG wins).
    #[serde(default)]
    pub(super) log: Option<RawLog>,
    /// Every listener's access log unless it sets its own: `true`, `false`, or `{ format: text | combined | json, file: PATH }`.
    #[serde(default)]
    pub(super) access_log: Option<RawAccessLog>,
}

#[derive(Deserialize, schemars::JsonSchema, Default)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tls")]
pub(super) struct RawTls {
    /// A file of session ticket keys shared by instances (`sniwalk ticket-keys rotate`).
    #[serde(default)]
    pub(super) ticket_keys_file: Option<String>,
    /// How often ticket keys kept in the storage are rotated (default 6h).
    #[serde(default)]
    pub(super) ticket_rotation: Option<DurationField>,
}

/// `storage:` as written: every field of every kind, checked against
/// `kind` in `storage`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Storage")]
pub(super) struct RawStorage {
    /// `dir` (the state directory, default) or `etcd`.
    #[serde(default)]
    pub(super) kind: Option<String>,
    /// etcd endpoints, `https://host:2379` or `http://...`.
    #[serde(default)]
    pub(super) endpoints: Option<Vec<String>>,
    /// The etcd key prefix shared by the instances of one cluster (default `sniwalk/`).
    #[serde(default)]
    pub(super) prefix: Option<String>,
    /// TLS towards etcd: `ca_file`, `client_certificate`, `client_key`.
    #[serde(default)]
    pub(super) tls: Option<RawStorageTls>,
    /// etcd user (with `password_file`).
    #[serde(default)]
    pub(super) username: Option<String>,
    /// A file holding the etcd user's password.
    #[serde(default)]
    pub(super) password_file: Option<String>,
    /// The lease of locks and of this instance's liveness key.
    #[serde(default)]
    pub(super) lease: Option<DurationField>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "StorageTls")]
pub(super) struct RawStorageTls {
    /// PEM file of the CA(s) etcd's certificate must chain to.
    #[serde(default)]
    pub(super) ca_file: Option<String>,
    /// PEM client certificate presented to etcd.
    #[serde(default)]
    pub(super) client_certificate: Option<String>,
    /// The client certificate's private key.
    #[serde(default)]
    pub(super) client_key: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Admin")]
pub(super) struct RawAdmin {
    /// Address and port of the admin API, e.g. `127.0.0.1:9901`.
    pub(super) bind: Bind,
    /// A file holding the bearer token every endpoint but /healthz and /metrics requires (`openssl rand -hex 32`).
    #[serde(default)]
    pub(super) token_file: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema, Default)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Domain")]
pub(super) struct RawDomain {
    /// Key, certificate and chain in one PEM text (see the certificate_pem format).
    #[serde(default)]
    pub(super) certificate_pem: Option<String>,
    /// A file holding a certificate_pem text; watched, reloaded on change.
    #[serde(default)]
    pub(super) certificate_file: Option<String>,
    /// `{ enabled: true }`: sniwalk obtains and renews this domain's certificate.
    #[serde(default)]
    pub(super) acme: Option<DomainAcme>,
    /// The names this domain's certificate covers, e.g. `[tenant.example, "*.tenant.example"]`: each is answered with it, and one ACME order covers them all (wildcards need dns-01).
    #[serde(default)]
    pub(super) names: Option<Vec<NameField>>,
}

#[derive(Deserialize, schemars::JsonSchema, Default)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Acme")]
pub(super) struct RawAcme {
    /// The CA's ACME directory: `production` (Let's Encrypt, default), `staging`, or an https:// URL.
    #[serde(default)]
    pub(super) directory: Option<DirectoryField>,
    /// Extra CA certificates to trust for the ACME directory's HTTPS (a private CA, Pebble).
    #[serde(default)]
    pub(super) ca_roots: Option<PathList>,
    /// Contact address for the ACME account.
    #[serde(default, deserialize_with = "account_email_field")]
    #[schemars(with = "Option<String>", extend("format" = "email"))]
    pub(super) account_email: Option<String>,
    /// `http-01` (a `kind: http` listener on port 80, default), `tls-alpn-01` (a `kind: https` listener on 443) or `dns-01` (TXT records through `rfc2136`; needed for wildcards).
    #[serde(default)]
    pub(super) challenge: Option<ChallengeKind>,
    /// When to renew, as the share of the lifetime passed (default 2/3).
    #[serde(default)]
    pub(super) renew_at: Option<RenewAtField>,
    /// Warn this many days before a certificate expires (default 14).
    #[serde(default)]
    pub(super) warn_days: Option<WarnDaysField>,
    /// Pre-flight: refuse to order for a name that does not resolve to one of these addresses.
    #[serde(default)]
    pub(super) expected_addresses: Option<Vec<AddressField>>,
    /// The lease of an order lock (several instances).
    #[serde(default)]
    pub(super) lock_lease: Option<DurationField>,
    /// dns-01: the DNS server that takes RFC 2136 dynamic updates signed with TSIG.
    #[serde(default)]
    pub(super) rfc2136: Option<RawRfc2136>,
    /// External Account Binding, for CAs that require it (ZeroSSL, Google Trust Services, Sectigo): `{ kid, hmac_key_file }` from the CA's dashboard.
    #[serde(default)]
    pub(super) eab: Option<RawEab>,
    /// After 3 failed orders in a row, run one check order against the staging directory (never stored, never served) to see whether the set-up works (default false).
    #[serde(default)]
    pub(super) fallback_to_staging: Option<bool>,
    /// The staging directory of `fallback_to_staging`: `staging` or an https:// URL (default: Let's Encrypt staging when the directory is Let's Encrypt production; required otherwise).
    #[serde(default)]
    pub(super) staging_directory: Option<DirectoryField>,
    /// On-demand certificates: a handshake for a name no domain answers orders one when the `ask` endpoint allows it, at most `rate` (README, "On-demand certificates").
    #[serde(default)]
    pub(super) on_demand: Option<super::on_demand::RawOnDemand>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Listener")]
pub(super) struct RawListener {
    /// A name for logs, metrics and the admin API.
    pub(super) name: String,
    /// `https`, `tls` or `http`.
    pub(super) kind: ListenerKind,
    /// Address and port to listen on, e.g. `0.0.0.0:443` or `[::]:443`.
    pub(super) bind: Bind,
    /// A folder with server.key and server.crt: served when no domain on the chain has a certificate, and to clients without SNI.
    #[serde(default)]
    pub(super) certdir: Option<String>,
    /// `https`: the first route matching host and path answers.
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    /// This listener's access log: `true`, `false` or `{ format, file }`.
    #[serde(default)]
    pub(super) access_log: Option<RawAccessLog>,
    /// `tls`: the backend address (`host:port`).
    #[serde(default)]
    pub(super) backend: Option<String>,
    /// `tls`: several interchangeable backends (addresses, or `{ address, weight, drain }`).
    #[serde(default)]
    pub(super) backends: Option<Vec<RawBackendEntry>>,
    /// How a group picks a backend: `round_robin` (default), `least_conn`, `client_ip`.
    #[serde(default)]
    pub(super) balance: Option<String>,
    /// Active health checks of the backends.
    #[serde(default)]
    pub(super) health: Option<RawHealth>,
    /// `tls`: `v2` sends a PROXY protocol v2 header to the backend.
    #[serde(default)]
    pub(super) proxy_protocol: Option<String>,
    /// Read the PROXY protocol header a load balancer sends: `{ versions: [v1, v2], from: [CIDR, ...] }`.
    #[serde(default)]
    pub(super) accept_proxy_protocol: Option<RawAcceptProxy>,
    /// `http`: the port in redirects to https (none when 443).
    #[serde(default)]
    pub(super) https_port: Option<u16>,
    /// Limit for the TLS handshake (and a PROXY header).
    #[serde(default)]
    pub(super) handshake_timeout: Option<DurationField>,
    /// Limit for a request's headers.
    #[serde(default)]
    pub(super) header_timeout: Option<DurationField>,
    /// Close a connection idle this long between requests.
    #[serde(default)]
    pub(super) idle_timeout: Option<DurationField>,
    /// Close a WebSocket or tls tunnel idle this long.
    #[serde(default)]
    pub(super) tunnel_idle_timeout: Option<DurationField>,
    /// Limit for connecting to a backend.
    #[serde(default)]
    pub(super) backend_connect_timeout: Option<DurationField>,
    /// Limit for a backend's response headers.
    #[serde(default)]
    pub(super) backend_timeout: Option<DurationField>,
    /// Largest request head accepted.
    #[serde(default)]
    pub(super) max_header_bytes: Option<usize>,
    /// Client connections open at once; more wait in the kernel's accept queue.
    #[serde(default)]
    pub(super) max_connections: Option<usize>,
    /// HTTP/2 streams per connection.
    #[serde(default)]
    pub(super) max_concurrent_streams: Option<u32>,
    /// `https`: requests and tunnels holding a backend connection at once; more get 503.
    #[serde(default)]
    pub(super) max_backend_connections: Option<usize>,
    /// Cut a client that takes no response byte for this long.
    #[serde(default)]
    pub(super) send_timeout: Option<DurationField>,
    /// Client certificates: `{ mode: off | optional | required, ca_file, pinned_sha256, pinned_sha1 }`.
    #[serde(default)]
    pub(super) client_auth: Option<RawClientAuth>,
    /// `tls`: speak TLS to the backend.
    #[serde(default)]
    pub(super) backend_tls: Option<RawBackendTls>,
}

/// `accept_proxy_protocol:` as written; checked in `accept_proxy.rs`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AcceptProxyProtocol")]
pub(super) struct RawAcceptProxy {
    /// The PROXY protocol versions accepted: `[v1]`, `[v2]` or both (default).
    #[serde(default)]
    pub(super) versions: Option<Vec<String>>,
    /// The load balancers (CIDR ranges or addresses) that must send a header; nobody else may.
    #[serde(default)]
    pub(super) from: Option<Vec<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ClientAuth")]
pub(super) struct RawClientAuth {
    /// `off`, `optional` or `required`.
    pub(super) mode: String,
    /// PEM file of the CA(s) client certificates must chain to.
    #[serde(default)]
    pub(super) ca_file: Option<String>,
    /// Only these certificates (SHA-256 fingerprints).
    #[serde(default)]
    pub(super) pinned_sha256: Vec<String>,
    /// Only these certificates (SHA-1 thumbprints, legacy).
    #[serde(default)]
    pub(super) pinned_sha1: Vec<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Route")]
pub(super) struct RawRoute {
    /// The host this route answers: `app.example.com`, `*.example.com`, or `*`.
    pub(super) host: HostPatternField,
    /// A path prefix the route answers (default: every path).
    #[serde(default)]
    pub(super) path: Option<String>,
    /// Answer directly: `{ status, body }`.
    #[serde(default)]
    pub(super) respond: Option<RawRespond>,
    /// Answer with the status page (which certificate this connection got and why).
    #[serde(default)]
    pub(super) status_page: bool,
    /// Forward to this backend URL (`http://host:port` or `https://...`).
    #[serde(default)]
    pub(super) backend: Option<String>,
    /// Forward to a group of backends (URLs, or `{ url, weight, drain }`).
    #[serde(default)]
    pub(super) backends: Option<Vec<RawBackendEntry>>,
    /// How the group picks a backend: `round_robin` (default), `least_conn`, `client_ip`.
    #[serde(default)]
    pub(super) balance: Option<String>,
    /// Active health checks of the backends.
    #[serde(default)]
    pub(super) health: Option<RawHealth>,
    /// TLS towards an `https://` backend: `ca_file`, `client_certificate`, `server_name`, `insecure_skip_verify`.
    #[serde(default)]
    pub(super) backend_tls: Option<RawBackendTls>,
    /// Answer with a redirect: `{ to, status }`.
    #[serde(default)]
    pub(super) redirect: Option<RawRedirect>,
    /// Protocol upgrades passed to the backend (default `[websocket]`).
    #[serde(default)]
    pub(super) upgrades: Option<Vec<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Redirect")]
pub(super) struct RawRedirect {
    /// Where to: a URL; when it has no path, the request's path and query are appended.
    pub(super) to: String,
    /// 301, 302, 303, 307 or 308 (default 308).
    #[serde(default = "default_redirect_status")]
    pub(super) status: u16,
}

fn default_redirect_status() -> u16 {
    308
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Respond")]
pub(super) struct RawRespond {
    /// The status code (default 200).
    #[serde(default = "default_respond_status")]
    pub(super) status: StatusCodeField,
    /// The body text.
    #[serde(default)]
    pub(super) body: String,
}

fn default_respond_status() -> StatusCodeField {
    StatusCodeField(200)
}

pub(super) struct HostPatternField(pub(super) HostPattern);

impl<'de> Deserialize<'de> for HostPatternField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(|raw: &str| {
            parse_host_pattern(raw)
                .map(HostPatternField)
                .map_err(ValueError::invalid("route host"))
        }))
    }
}

/// `domains:` in file order, refusing names that are equal once normalised.
pub(super) struct DomainMap(pub(super) Vec<(DomainName, Option<RawDomain>)>);

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
                    let name =
                        normalize_domain_name(raw).map_err(ValueError::invalid("domain name"))?;
                    if seen.contains(&name) {
                        return Err(ValueError::DuplicateDomain { name });
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
