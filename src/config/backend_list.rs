//! Checking a route's or `tls` listener's backends as written
//! (`backend_raw.rs`) into a [`Backends`] group: addresses, weights,
//! `balance:`, `health:` and `backend_tls:`, every error naming its field.

use std::path::PathBuf;
use std::time::Duration;

use super::backend_raw::{RawBackendTls, RawGroup, RawHealth};
use super::backends::{
    Backends, Balance, DEFAULT_FALL, DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_TIMEOUT, DEFAULT_RISE,
    HealthCheck, MAX_WEIGHT, Probe,
};
use super::field_error::FieldError;
use super::fields::parse_tcp_backend;
use super::paths::{PathError, PathResolver};
use super::types::{BackendTls, HttpBackend, HttpBackendError, TcpBackend, host_of};

/// Why a group's `backends:`, `balance:` or `health:` is refused. `field`
/// is the route or listener, as each message names it.
#[derive(Debug, thiserror::Error)]
pub enum BackendsError {
    /// A `tls` listener's backend that is no `HOST:PORT`.
    #[error("{field}: {error}")]
    Backend {
        /// The listener.
        field: String,
        /// Why the backend is refused.
        error: FieldError,
    },
    /// `backend_tls:` with both `insecure_skip_verify: true` and `ca_file`.
    #[error(
        "{field}: `insecure_skip_verify: true` ignores `ca_file`; keep one of them \
         (a CA file is the safe choice)"
    )]
    InsecureWithCaFile {
        /// The `backend_tls` block.
        field: String,
    },
    /// A `backend_tls.server_name` that is neither a DNS name nor an IP.
    #[error("{field}.server_name: `{name}` is neither a DNS name nor an IP address")]
    ServerName {
        /// The `backend_tls` block.
        field: String,
        /// The name as written.
        name: String,
    },
    /// A route's backend that is no `http(s)://HOST:PORT`.
    #[error("{field}: {error}")]
    RouteBackend {
        /// The route.
        field: String,
        /// Why the backend is refused.
        error: HttpBackendError,
    },
    /// `backend_tls:` on a route to a plain `http://` backend.
    #[error(
        "{field}.backend_tls: the backend `{backend}` is plain HTTP; write \
         `backend: https://{authority}` to speak TLS to it"
    )]
    PlainBackendTls {
        /// The route.
        field: String,
        /// The backend as written.
        backend: String,
        /// Its `HOST:PORT`.
        authority: String,
    },
    /// `backend_tls:` on a route without a backend.
    #[error("{field}.backend_tls: only a route with `backend: https://HOST:PORT` uses it")]
    BackendTlsWithoutBackend {
        /// The route.
        field: String,
    },
    /// A path of a `backend_tls:` block that cannot be used.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Both `backend:` and `backends:`.
    #[error(
        "{field}: has both `backend` and `backends`; keep `backends:` (a list) and move the \
         single backend into it"
    )]
    Both {
        /// The route or listener.
        field: String,
    },
    /// `backends: []`.
    #[error("{field}.backends: the list is empty; name at least one backend")]
    Empty {
        /// The route or listener.
        field: String,
    },
    /// One backend twice in a list.
    #[error(
        "{field}.backends[{index}]: `{address}` is already in the list; give it a `weight` instead"
    )]
    Duplicate {
        /// The route or listener.
        field: String,
        /// The entry's position.
        index: usize,
        /// The address.
        address: String,
    },
    /// A weight outside 1 to 256.
    #[error("{field}.backends[{index}].weight: `{weight}` is out of range; use 1 to {MAX_WEIGHT}")]
    Weight {
        /// The route or listener.
        field: String,
        /// The entry's position.
        index: usize,
        /// The weight as written.
        weight: u32,
    },
    /// A map entry without its address key, with the other kind's key, or
    /// with both.
    #[error("{field}.backends[{index}]: {what}")]
    EntryKey {
        /// The route or listener.
        field: String,
        /// The entry's position.
        index: usize,
        /// What to write instead.
        what: &'static str,
    },
    /// `http://` and `https://` members in one list.
    #[error(
        "{field}.backends: mixes http:// and https:// backends; one group speaks one protocol \
         (its `backend_tls` applies to all of them), so make them all https:// or split the route"
    )]
    MixedSchemes {
        /// The route.
        field: String,
    },
    /// `balance:` beside a single `backend:` or no backend.
    #[error(
        "{field}.balance: only a `backends:` list is balanced; write the backends as a list or \
         remove `balance`"
    )]
    BalanceWithoutList {
        /// The route or listener.
        field: String,
    },
    /// A `balance:` value that is none of the three.
    #[error("{field}.balance: `{value}` is not a method; use round_robin, least_conn or client_ip")]
    Balance {
        /// The route or listener.
        field: String,
        /// The value as written.
        value: String,
    },
    /// `health:` on a route or listener without backends.
    #[error("{field}.health: only a route or `tls` listener with backends is checked; remove it")]
    HealthWithoutBackend {
        /// The route or listener.
        field: String,
    },
    /// `health.send`/`expect` on a route, or `health.path` on a `tls`
    /// listener.
    #[error("{field}.health.{key}: {why}")]
    HealthKey {
        /// The route or listener.
        field: String,
        /// The key.
        key: &'static str,
        /// What to write instead.
        why: &'static str,
    },
    /// `health.path` not starting with `/`, or with characters a request
    /// target cannot carry.
    #[error(
        "{field}.health.path: `{path}` must start with `/` and be a valid request path \
         (percent-encode spaces and the like)"
    )]
    HealthPath {
        /// The route.
        field: String,
        /// The path as written.
        path: String,
    },
    /// A zero `interval`, `timeout`, `fall` or `rise`.
    #[error("{field}.health.{key}: must be more than 0")]
    HealthZero {
        /// The route or listener.
        field: String,
        /// The key.
        key: &'static str,
    },
    /// An `interval` or `timeout` over an hour.
    #[error("{field}.health.{key}: {value:?} is too long; at most 1h")]
    HealthTooLong {
        /// The route or listener.
        field: String,
        /// The key.
        key: &'static str,
        /// The value.
        value: Duration,
    },
    /// `health.timeout` not shorter than `health.interval`.
    #[error(
        "{field}.health.timeout: {timeout:?} is not shorter than the interval {interval:?}; \
         a check must end before the next one starts"
    )]
    HealthTimeout {
        /// The route or listener.
        field: String,
        /// The timeout.
        timeout: Duration,
        /// The interval.
        interval: Duration,
    },
}

/// The longest `health.interval` and `health.timeout`: longer is no check
/// at all (and tokio's timers would overflow far beyond).
const MAX_HEALTH_INTERVAL: Duration = Duration::from_secs(3600);

/// Whether the group is a route's (HTTP) or a `tls` listener's (TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Route,
    Tcp,
}

/// A route's backends: `None` when it names none.
pub(super) fn http_backends_from_raw(
    raw: RawGroup,
    field: &str,
    paths: &PathResolver<'_>,
) -> Result<Option<Backends<HttpBackend>>, BackendsError> {
    let Some(entries) = entries(&raw, field, Kind::Route)? else {
        return no_backends(raw, field);
    };
    let mut members: Vec<HttpBackend> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let Entry {
            address,
            weight,
            drain,
        } = entry;
        let backend_field = backend_field(field, &raw, index);
        let mut parsed =
            HttpBackend::parse(&address).map_err(|error| BackendsError::RouteBackend {
                field: backend_field.clone(),
                error,
            })?;
        parsed.weight = weight;
        parsed.drain = drain;
        if members.iter().any(|m| m.authority == parsed.authority) {
            return Err(BackendsError::Duplicate {
                field: field.to_string(),
                index,
                address,
            });
        }
        if members
            .first()
            .is_some_and(|m| m.tls.is_some() != parsed.tls.is_some())
        {
            return Err(BackendsError::MixedSchemes {
                field: field.to_string(),
            });
        }
        if let Some(raw_tls) = &raw.backend_tls {
            let Some(default) = &parsed.tls else {
                return Err(BackendsError::PlainBackendTls {
                    field: field.to_string(),
                    backend: address,
                    authority: parsed.authority.to_string(),
                });
            };
            parsed.tls = Some(backend_tls_from_raw(
                raw_tls,
                &default.backend.clone(),
                &default.server_name.clone(),
                &format!("{field}.backend_tls"),
                paths,
            )?);
        }
        members.push(parsed);
    }
    group(members, &raw, field, Kind::Route).map(Some)
}

/// A `tls` listener's backends: `None` when it names none.
pub(super) fn tcp_backends_from_raw(
    raw: RawGroup,
    field: &str,
    paths: &PathResolver<'_>,
) -> Result<Option<Backends<TcpBackend>>, BackendsError> {
    let Some(entries) = entries(&raw, field, Kind::Tcp)? else {
        return no_backends(raw, field);
    };
    let mut members: Vec<TcpBackend> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let Entry {
            address,
            weight,
            drain,
        } = entry;
        let address = parse_tcp_backend(&address).map_err(|error| BackendsError::Backend {
            field: backend_field(field, &raw, index),
            error,
        })?;
        if members.iter().any(|m| m.address == address) {
            return Err(BackendsError::Duplicate {
                field: field.to_string(),
                index,
                address,
            });
        }
        let tls = match &raw.backend_tls {
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
        members.push(TcpBackend {
            address,
            tls,
            weight,
            drain,
        });
    }
    group(members, &raw, field, Kind::Tcp).map(Some)
}

/// Where an entry's address is, for messages: `backend` or `backends[I]`.
fn backend_field(field: &str, raw: &RawGroup, index: usize) -> String {
    if raw.backends.is_some() {
        format!("{field}.backends[{index}]")
    } else {
        format!("{field}.backend")
    }
}

/// The settings that only a group has, refused when there is none.
fn no_backends<T>(raw: RawGroup, field: &str) -> Result<Option<T>, BackendsError> {
    if raw.balance.is_some() {
        return Err(BackendsError::BalanceWithoutList {
            field: field.to_string(),
        });
    }
    if raw.health.is_some() {
        return Err(BackendsError::HealthWithoutBackend {
            field: field.to_string(),
        });
    }
    if raw.backend_tls.is_some() {
        return Err(BackendsError::BackendTlsWithoutBackend {
            field: field.to_string(),
        });
    }
    Ok(None)
}

/// One entry of a group, checked for shape (its address not parsed yet).
struct Entry {
    address: String,
    weight: u32,
    drain: bool,
}

/// Every entry of a group, checked for shape; `None` when the group names
/// no backend.
fn entries(raw: &RawGroup, field: &str, kind: Kind) -> Result<Option<Vec<Entry>>, BackendsError> {
    let list = match (&raw.backend, &raw.backends) {
        (Some(_), Some(_)) => {
            return Err(BackendsError::Both {
                field: field.to_string(),
            });
        }
        (None, None) => return Ok(None),
        (Some(single), None) => {
            if raw.balance.is_some() {
                return Err(BackendsError::BalanceWithoutList {
                    field: field.to_string(),
                });
            }
            return Ok(Some(vec![Entry {
                address: single.clone(),
                weight: 1,
                drain: false,
            }]));
        }
        (None, Some(list)) => list,
    };
    if list.is_empty() {
        return Err(BackendsError::Empty {
            field: field.to_string(),
        });
    }
    let mut out = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        let key_error = |what| BackendsError::EntryKey {
            field: field.to_string(),
            index,
            what,
        };
        let address = match (kind, &entry.bare, &entry.url, &entry.address) {
            (_, Some(bare), None, None) => bare.clone(),
            (Kind::Route, None, Some(url), None) => url.clone(),
            (Kind::Tcp, None, None, Some(address)) => address.clone(),
            (Kind::Route, None, None, Some(_)) => {
                return Err(key_error(
                    "a route's backend is `url: http://HOST:PORT`, not `address:`",
                ));
            }
            (Kind::Tcp, None, Some(_), None) => {
                return Err(key_error(
                    "a `tls` listener's backend is `address: HOST:PORT`, not `url:`",
                ));
            }
            (Kind::Route, ..) => return Err(key_error("write one `url: http://HOST:PORT`")),
            (Kind::Tcp, ..) => return Err(key_error("write one `address: HOST:PORT`")),
        };
        let weight = entry.weight.unwrap_or(1);
        if !(1..=MAX_WEIGHT).contains(&weight) {
            return Err(BackendsError::Weight {
                field: field.to_string(),
                index,
                weight,
            });
        }
        out.push(Entry {
            address,
            weight,
            drain: entry.drain,
        });
    }
    Ok(Some(out))
}

/// The group around checked members: `balance:` and `health:`.
fn group<M>(
    members: Vec<M>,
    raw: &RawGroup,
    field: &str,
    kind: Kind,
) -> Result<Backends<M>, BackendsError> {
    let balance = match raw.balance.as_deref() {
        None | Some("round_robin") => Balance::RoundRobin,
        Some("least_conn") => Balance::LeastConn,
        Some("client_ip") => Balance::ClientIp,
        Some(other) => {
            return Err(BackendsError::Balance {
                field: field.to_string(),
                value: other.to_string(),
            });
        }
    };
    let health = match &raw.health {
        None => None,
        Some(health) => Some(health_check(health, field, kind)?),
    };
    Ok(Backends {
        members,
        balance,
        health,
    })
}

/// `health:` checked for the group's kind.
fn health_check(raw: &RawHealth, field: &str, kind: Kind) -> Result<HealthCheck, BackendsError> {
    let key_error = |key, why| BackendsError::HealthKey {
        field: field.to_string(),
        key,
        why,
    };
    let probe = match kind {
        Kind::Route => {
            if raw.send.is_some() {
                return Err(key_error(
                    "send",
                    "only `tls` listeners check with send/expect; a route checks `path:`",
                ));
            }
            if raw.expect.is_some() {
                return Err(key_error(
                    "expect",
                    "only `tls` listeners check with send/expect; a route checks `path:`",
                ));
            }
            let path = raw.path.clone().unwrap_or_else(|| "/".to_string());
            if !path.starts_with('/') || path.parse::<hyper::http::uri::PathAndQuery>().is_err() {
                return Err(BackendsError::HealthPath {
                    field: field.to_string(),
                    path,
                });
            }
            Probe::Http { path }
        }
        Kind::Tcp => {
            if raw.path.is_some() {
                return Err(key_error(
                    "path",
                    "a `tls` listener's backends speak no HTTP; check them with `send:` and \
                     `expect:`, or with a bare connect (`health: {}`)",
                ));
            }
            if raw.send.as_deref() == Some("") || raw.expect.as_deref() == Some("") {
                return Err(key_error(
                    if raw.send.as_deref() == Some("") {
                        "send"
                    } else {
                        "expect"
                    },
                    "is empty; remove it or give it text",
                ));
            }
            Probe::Tcp {
                send: raw.send.clone(),
                expect: raw.expect.clone(),
            }
        }
    };
    let interval = raw
        .interval
        .as_ref()
        .map_or(DEFAULT_HEALTH_INTERVAL, |d| d.0);
    let timeout = raw
        .timeout
        .as_ref()
        .map_or(DEFAULT_HEALTH_TIMEOUT.min(interval / 2), |d| d.0);
    let fall = raw.fall.unwrap_or(DEFAULT_FALL);
    let rise = raw.rise.unwrap_or(DEFAULT_RISE);
    let zero = |key| BackendsError::HealthZero {
        field: field.to_string(),
        key,
    };
    if interval.is_zero() {
        return Err(zero("interval"));
    }
    if timeout.is_zero() {
        return Err(zero("timeout"));
    }
    if fall == 0 {
        return Err(zero("fall"));
    }
    if rise == 0 {
        return Err(zero("rise"));
    }
    for (key, value) in [("interval", interval), ("timeout", timeout)] {
        if value > MAX_HEALTH_INTERVAL {
            return Err(BackendsError::HealthTooLong {
                field: field.to_string(),
                key,
                value,
            });
        }
    }
    if timeout >= interval {
        return Err(BackendsError::HealthTimeout {
            field: field.to_string(),
            timeout,
            interval,
        });
    }
    Ok(HealthCheck {
        probe,
        interval,
        timeout,
        fall,
        rise,
    })
}

/// Validates a `backend_tls:` block for `backend` (whose host is the
/// default server name).
fn backend_tls_from_raw(
    raw: &RawBackendTls,
    backend: &str,
    default_server_name: &str,
    field: &str,
    paths: &PathResolver<'_>,
) -> Result<BackendTls, BackendsError> {
    if raw.insecure_skip_verify && raw.ca_file.is_some() {
        return Err(BackendsError::InsecureWithCaFile {
            field: field.to_string(),
        });
    }
    let server_name = match &raw.server_name {
        Some(name) => {
            let trimmed = name.trim().trim_end_matches('.').to_ascii_lowercase();
            if rustls_pki_types::ServerName::try_from(trimmed.clone()).is_err() {
                return Err(BackendsError::ServerName {
                    field: field.to_string(),
                    name: name.clone(),
                });
            }
            trimmed
        }
        None => default_server_name.to_string(),
    };
    let resolve = |value: &Option<String>, what: &str| -> Result<Option<PathBuf>, PathError> {
        value
            .as_deref()
            .map(|v| paths.resolve(v, &format!("{field}.{what}")))
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

#[cfg(test)]
#[path = "backends/tests.rs"]
mod tests;
