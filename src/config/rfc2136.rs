//! `acme.rfc2136:` of `proxy.yaml`: the DNS server that takes the DNS-01
//! answers as RFC 2136 dynamic updates signed with TSIG (RFC 8945), the
//! interface BIND, Knot, PowerDNS and most DNS services speak (README,
//! "DNS-01 and wildcards").

use std::time::Duration;

use serde::Deserialize;

use super::fields::{DurationField, normalize_domain_name};
use super::paths::{PathError, PathResolver};
use super::positions::locate_in_section;
pub use super::types::Rfc2136Config;
pub use crate::acme::rfc2136::TsigAlgorithm;

/// Default port of `acme.rfc2136.server`.
pub const DNS_PORT: u16 = 53;

/// Default `acme.rfc2136.propagation_timeout`.
pub const DEFAULT_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(60);

/// `acme.rfc2136` as written.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rfc2136")]
pub(super) struct RawRfc2136 {
    /// The primary DNS server that accepts dynamic updates: `IP`, `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT` (port 53 when absent).
    server: String,
    /// The TSIG key's name, as in the server's configuration (`key "acme-update" { ... }`).
    tsig_key_name: String,
    /// `hmac-sha256` (the default, what `tsig-keygen` makes), `hmac-sha384` or `hmac-sha512`.
    #[serde(default)]
    tsig_algorithm: Option<String>,
    /// A file holding the key's base64 secret (or the whole block `tsig-keygen` prints); keep it 0600.
    tsig_secret_file: String,
    /// The zone to update; when absent it is found with an SOA query for each `_acme-challenge.` name.
    #[serde(default)]
    zone: Option<String>,
    /// How long to wait for the TXT record to be visible on the server before the CA is told to look (default 60s).
    #[serde(default)]
    propagation_timeout: Option<DurationField>,
}

/// Why `acme.rfc2136` is refused; each message names the field.
#[derive(Debug, thiserror::Error)]
pub enum Rfc2136ConfigError {
    /// `server` is empty or not `HOST[:PORT]`.
    #[error(
        "acme.rfc2136.server: `{input}` is not a DNS server address; write IP, IP:PORT, \
         [IPv6]:PORT or HOST:PORT, e.g. `192.0.2.53` or `ns1.example.net:53`{at}"
    )]
    Server {
        /// As written.
        input: String,
        /// Where it is.
        at: String,
    },
    /// `tsig_key_name` is not a DNS name.
    #[error(
        "acme.rfc2136.tsig_key_name: `{input}` is not a key name ({problem}); write the name \
         of the key as the DNS server knows it, e.g. `acme-update`{at}"
    )]
    KeyName {
        /// As written.
        input: String,
        /// What is wrong.
        problem: String,
        /// Where it is.
        at: String,
    },
    /// An algorithm we do not sign with.
    #[error(
        "acme.rfc2136.tsig_algorithm: `{input}` is not supported; use {}{at}",
        TsigAlgorithm::ACCEPTED.join(", ")
    )]
    Algorithm {
        /// As written.
        input: String,
        /// Where it is.
        at: String,
    },
    /// `zone` is not a DNS name.
    #[error("acme.rfc2136.zone: `{input}` is not a zone name ({problem}){at}")]
    Zone {
        /// As written.
        input: String,
        /// What is wrong.
        problem: String,
        /// Where it is.
        at: String,
    },
    /// `propagation_timeout` of zero or over ten minutes.
    #[error(
        "acme.rfc2136.propagation_timeout: between 1s and 10m (how long a published record \
         may take to be visible on the server){at}"
    )]
    PropagationTimeout {
        /// Where it is.
        at: String,
    },
    /// The secret file's path does not resolve.
    #[error(transparent)]
    Path(#[from] PathError),
}

/// Validates `acme.rfc2136`.
pub(super) fn rfc2136_from_raw(
    raw: RawRfc2136,
    paths: &PathResolver<'_>,
) -> Result<Rfc2136Config, Rfc2136ConfigError> {
    let at = |key: &str| locate_in_section(paths.text, "rfc2136", key);
    let server = normalize_server(&raw.server).ok_or_else(|| Rfc2136ConfigError::Server {
        input: raw.server.clone(),
        at: at("server"),
    })?;
    let tsig_key_name =
        normalize_domain_name(&raw.tsig_key_name).map_err(|e| Rfc2136ConfigError::KeyName {
            input: raw.tsig_key_name.clone(),
            problem: e.to_string(),
            at: at("tsig_key_name"),
        })?;
    let tsig_algorithm = match raw.tsig_algorithm {
        None => TsigAlgorithm::HmacSha256,
        Some(input) => TsigAlgorithm::parse(&input).map_err(|_| Rfc2136ConfigError::Algorithm {
            input,
            at: at("tsig_algorithm"),
        })?,
    };
    let tsig_secret_file = paths.resolve(&raw.tsig_secret_file, "acme.rfc2136.tsig_secret_file")?;
    let zone = raw
        .zone
        .map(|input| {
            normalize_domain_name(&input).map_err(|e| Rfc2136ConfigError::Zone {
                problem: e.to_string(),
                input,
                at: at("zone"),
            })
        })
        .transpose()?;
    let propagation_timeout = raw
        .propagation_timeout
        .map_or(DEFAULT_PROPAGATION_TIMEOUT, |d| d.0);
    if propagation_timeout.is_zero() || propagation_timeout > Duration::from_secs(600) {
        return Err(Rfc2136ConfigError::PropagationTimeout {
            at: at("propagation_timeout"),
        });
    }
    Ok(Rfc2136Config {
        server,
        tsig_key_name,
        tsig_algorithm,
        tsig_secret_file,
        zone,
        propagation_timeout,
    })
}

/// `HOST:PORT` from `IP`, `IP:PORT`, `[IPv6]:PORT`, `[IPv6]`, `HOST` or
/// `HOST:PORT`; `None` when it is none of them.
fn normalize_server(input: &str) -> Option<String> {
    let input = input.trim();
    if let Ok(ip) = input.parse::<std::net::IpAddr>() {
        return Some(std::net::SocketAddr::new(ip, DNS_PORT).to_string());
    }
    if let Ok(addr) = input.parse::<std::net::SocketAddr>() {
        return Some(addr.to_string());
    }
    if let Some(inner) = input.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        let ip = inner.parse::<std::net::Ipv6Addr>().ok()?;
        return Some(std::net::SocketAddr::new(ip.into(), DNS_PORT).to_string());
    }
    let (host, port) = match input.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => (input, DNS_PORT),
    };
    let host = normalize_domain_name(host).ok()?;
    Some(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_get_port_53_when_none_is_written() {
        for (input, expected) in [
            ("192.0.2.53", Some("192.0.2.53:53")),
            ("192.0.2.53:5353", Some("192.0.2.53:5353")),
            ("::1", Some("[::1]:53")),
            ("[::1]", Some("[::1]:53")),
            ("[::1]:8053", Some("[::1]:8053")),
            ("ns1.Example.net", Some("ns1.example.net:53")),
            ("ns1.example.net:5300", Some("ns1.example.net:5300")),
            ("ns1.example.net:0", None),
            ("ns1.example.net:x", None),
            ("", None),
            ("http://ns1.example.net", None),
        ] {
            assert_eq!(normalize_server(input).as_deref(), expected, "{input}");
        }
    }
}
