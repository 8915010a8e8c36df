//! Backend groups as written in `proxy.yaml`: `backends:` entries (an
//! address, or a map), `health:` and `backend_tls:`, read by serde and
//! checked in `backend_list.rs`.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::fields::DurationField;

/// `backend_tls:` as written.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BackendTls")]
pub(super) struct RawBackendTls {
    /// PEM file of the CA(s) the backend's certificate must chain to (default: the system's).
    #[serde(default)]
    pub(super) ca_file: Option<String>,
    /// A certificate_pem file presented when the backend asks for a client certificate.
    #[serde(default)]
    pub(super) client_certificate: Option<String>,
    /// The name sent as SNI and required in the backend's certificate (default: the backend's host).
    #[serde(default)]
    pub(super) server_name: Option<String>,
    /// Accept any backend certificate (encrypted, not authenticated).
    #[serde(default)]
    pub(super) insecure_skip_verify: bool,
}

/// One entry of `backends:` as written: an address, or a map with
/// `url:` (routes) or `address:` (`tls` listeners), `weight:` and `drain:`.
#[derive(Debug)]
pub(super) struct RawBackendEntry {
    pub(super) url: Option<String>,
    pub(super) address: Option<String>,
    pub(super) weight: Option<u32>,
    pub(super) drain: bool,
    /// Written as a bare string (no key at all).
    pub(super) bare: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BackendMap")]
struct RawBackendMap {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    drain: bool,
}

impl<'de> Deserialize<'de> for RawBackendEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = RawBackendEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a backend address, or a map such as `{ url: http://HOST:PORT, weight: 2 }` \
                     (routes) or `{ address: HOST:PORT, weight: 2 }` (`tls` listeners)",
                )
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RawBackendEntry, E> {
                Ok(RawBackendEntry {
                    url: None,
                    address: None,
                    weight: None,
                    drain: false,
                    bare: Some(text.to_string()),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawBackendEntry, A::Error> {
                let raw = RawBackendMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawBackendEntry {
                    url: raw.url,
                    address: raw.address,
                    weight: raw.weight,
                    drain: raw.drain,
                    bare: None,
                })
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

/// `health:` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Health")]
pub(super) struct RawHealth {
    /// Routes: the path of the health check GET (default `/`).
    #[serde(default)]
    pub(super) path: Option<String>,
    /// `tls` listeners: bytes to send.
    #[serde(default)]
    pub(super) send: Option<String>,
    /// `tls` listeners: bytes the answer must contain.
    #[serde(default)]
    pub(super) expect: Option<String>,
    /// Time between checks (default 5s).
    #[serde(default)]
    pub(super) interval: Option<DurationField>,
    /// Limit for one check (default 2s).
    #[serde(default)]
    pub(super) timeout: Option<DurationField>,
    /// Failed checks in a row that take a backend down (default 3).
    #[serde(default)]
    pub(super) fall: Option<u32>,
    /// Good checks in a row that bring it back (default 2).
    #[serde(default)]
    pub(super) rise: Option<u32>,
}

/// The backend settings of a route or `tls` listener as written.
pub(super) struct RawGroup {
    pub(super) backend: Option<String>,
    pub(super) backends: Option<Vec<RawBackendEntry>>,
    pub(super) balance: Option<String>,
    pub(super) health: Option<RawHealth>,
    pub(super) backend_tls: Option<RawBackendTls>,
}
