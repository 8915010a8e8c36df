//! `proxy.yaml` as written: serde structures that refuse unknown fields.
//! Single values are checked while they are read (see `fields`).

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::backend_raw::{RawBackendEntry, RawBackendTls, RawHealth};
use super::fields::{
    AddressField, Bind, CheckedStr, DirectoryField, DomainName, DurationField, PathList,
    RenewAtField, StatusCodeField, UniqueMap, ValueError, WarnDaysField, account_email_field,
    normalize_domain_name,
};
use super::logs::{RawAccessLog, RawLog};
use super::types::{ChallengeKind, DomainAcme, HostPattern, ListenerKind, parse_host_pattern};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Config")]
pub(super) struct RawConfig {
    pub(super) master_domain: DomainName,
    #[serde(default)]
    pub(super) state_dir: Option<String>,
    #[serde(default)]
    pub(super) paths: UniqueMap<String>,
    #[serde(default)]
    pub(super) default_certificate: Option<String>,
    pub(super) domains: DomainMap,
    #[serde(default)]
    pub(super) listeners: Vec<RawListener>,
    #[serde(default)]
    pub(super) acme: Option<RawAcme>,
    #[serde(default)]
    pub(super) worker_threads: Option<usize>,
    #[serde(default)]
    pub(super) shutdown_timeout: Option<DurationField>,
    #[serde(default)]
    pub(super) rescan_interval: Option<DurationField>,
    #[serde(default)]
    pub(super) admin: Option<RawAdmin>,
    #[serde(default)]
    pub(super) tls: Option<RawTls>,
    #[serde(default)]
    pub(super) storage: Option<RawStorage>,
    #[serde(default)]
    pub(super) log: Option<RawLog>,
    #[serde(default)]
    pub(super) access_log: Option<RawAccessLog>,
}

#[derive(Deserialize, schemars::JsonSchema, Default)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tls")]
pub(super) struct RawTls {
    #[serde(default)]
    pub(super) ticket_keys_file: Option<String>,
    #[serde(default)]
    pub(super) ticket_rotation: Option<DurationField>,
}

/// `storage:` as written: every field of every kind, checked against
/// `kind` in `storage`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Storage")]
pub(super) struct RawStorage {
    #[serde(default)]
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) endpoints: Option<Vec<String>>,
    #[serde(default)]
    pub(super) prefix: Option<String>,
    #[serde(default)]
    pub(super) tls: Option<RawStorageTls>,
    #[serde(default)]
    pub(super) username: Option<String>,
    #[serde(default)]
    pub(super) password_file: Option<String>,
    #[serde(default)]
    pub(super) lease: Option<DurationField>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "StorageTls")]
pub(super) struct RawStorageTls {
    #[serde(default)]
    pub(super) ca_file: Option<String>,
    #[serde(default)]
    pub(super) client_certificate: Option<String>,
    #[serde(default)]
    pub(super) client_key: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Admin")]
pub(super) struct RawAdmin {
    pub(super) bind: Bind,
    #[serde(default)]
    pub(super) token_file: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema, Default)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Domain")]
pub(super) struct RawDomain {
    #[serde(default)]
    pub(super) certificate_pem: Option<String>,
    #[serde(default)]
    pub(super) certificate_file: Option<String>,
    #[serde(default)]
    pub(super) acme: Option<DomainAcme>,
}

#[derive(Deserialize, schemars::JsonSchema, Default)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Acme")]
pub(super) struct RawAcme {
    #[serde(default)]
    pub(super) directory: Option<DirectoryField>,
    #[serde(default)]
    pub(super) ca_roots: Option<PathList>,
    #[serde(default, deserialize_with = "account_email_field")]
    #[schemars(with = "Option<String>", extend("format" = "email"))]
    pub(super) account_email: Option<String>,
    #[serde(default)]
    pub(super) challenge: Option<ChallengeKind>,
    #[serde(default)]
    pub(super) renew_at: Option<RenewAtField>,
    #[serde(default)]
    pub(super) warn_days: Option<WarnDaysField>,
    #[serde(default)]
    pub(super) expected_addresses: Option<Vec<AddressField>>,
    #[serde(default)]
    pub(super) lock_lease: Option<DurationField>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Listener")]
pub(super) struct RawListener {
    pub(super) name: String,
    pub(super) kind: ListenerKind,
    pub(super) bind: Bind,
    #[serde(default)]
    pub(super) certdir: Option<String>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(super) access_log: Option<RawAccessLog>,
    #[serde(default)]
    pub(super) backend: Option<String>,
    #[serde(default)]
    pub(super) backends: Option<Vec<RawBackendEntry>>,
    #[serde(default)]
    pub(super) balance: Option<String>,
    #[serde(default)]
    pub(super) health: Option<RawHealth>,
    #[serde(default)]
    pub(super) proxy_protocol: Option<String>,
    #[serde(default)]
    pub(super) accept_proxy_protocol: Option<RawAcceptProxy>,
    #[serde(default)]
    pub(super) https_port: Option<u16>,
    #[serde(default)]
    pub(super) handshake_timeout: Option<DurationField>,
    #[serde(default)]
    pub(super) header_timeout: Option<DurationField>,
    #[serde(default)]
    pub(super) idle_timeout: Option<DurationField>,
    #[serde(default)]
    pub(super) tunnel_idle_timeout: Option<DurationField>,
    #[serde(default)]
    pub(super) backend_connect_timeout: Option<DurationField>,
    #[serde(default)]
    pub(super) backend_timeout: Option<DurationField>,
    #[serde(default)]
    pub(super) max_header_bytes: Option<usize>,
    #[serde(default)]
    pub(super) max_connections: Option<usize>,
    #[serde(default)]
    pub(super) max_concurrent_streams: Option<u32>,
    #[serde(default)]
    pub(super) max_backend_connections: Option<usize>,
    #[serde(default)]
    pub(super) send_timeout: Option<DurationField>,
    #[serde(default)]
    pub(super) client_auth: Option<RawClientAuth>,
    #[serde(default)]
    pub(super) backend_tls: Option<RawBackendTls>,
}

/// `accept_proxy_protocol:` as written; checked in `accept_proxy.rs`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AcceptProxyProtocol")]
pub(super) struct RawAcceptProxy {
    #[serde(default)]
    pub(super) versions: Option<Vec<String>>,
    #[serde(default)]
    pub(super) from: Option<Vec<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ClientAuth")]
pub(super) struct RawClientAuth {
    pub(super) mode: String,
    #[serde(default)]
    pub(super) ca_file: Option<String>,
    #[serde(default)]
    pub(super) pinned_sha256: Vec<String>,
    #[serde(default)]
    pub(super) pinned_sha1: Vec<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Route")]
pub(super) struct RawRoute {
    pub(super) host: HostPatternField,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) respond: Option<RawRespond>,
    #[serde(default)]
    pub(super) status_page: bool,
    #[serde(default)]
    pub(super) backend: Option<String>,
    #[serde(default)]
    pub(super) backends: Option<Vec<RawBackendEntry>>,
    #[serde(default)]
    pub(super) balance: Option<String>,
    #[serde(default)]
    pub(super) health: Option<RawHealth>,
    #[serde(default)]
    pub(super) backend_tls: Option<RawBackendTls>,
    #[serde(default)]
    pub(super) redirect: Option<RawRedirect>,
    #[serde(default)]
    pub(super) upgrades: Option<Vec<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Redirect")]
pub(super) struct RawRedirect {
    pub(super) to: String,
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
    #[serde(default = "default_respond_status")]
    pub(super) status: StatusCodeField,
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
