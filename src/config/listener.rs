//! One listener of `proxy.yaml`, from its raw form to [`ListenerConfig`].

use super::accept_proxy::{AcceptProxyError, accept_proxy_from_raw};
use super::backend_list::{BackendsError, http_backends_from_raw, tcp_backends_from_raw};
use super::backend_raw::RawGroup;
use super::backends::{HealthCheck, Member};
use super::field_error::FieldError;
use super::fields::normalize_pin;
use super::log_settings::AccessLogConfig;
use super::paths::{PathError, PathResolver};
use super::raw::RawListener;
use super::types::{
    ClientAuthConfig, DEFAULT_UPGRADE, Limits, ListenerConfig, ListenerKind, Route, RouteAction,
};

/// Why one listener of `proxy.yaml` is refused. `field` is where the
/// setting is: `listeners.NAME`, `listeners.NAME.routes[I]` or
/// `listeners.NAME[.routes[I]].backend_tls`, as each message names it.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// A setting that only other kinds of listener have.
    #[error("{field}.{what}: only {kinds} listeners have `{what}` (this one is `{}`)", kind.as_str())]
    OnlyOtherKinds {
        /// The listener.
        field: String,
        /// The setting.
        what: &'static str,
        /// The kinds that have it.
        kinds: &'static str,
        /// This listener's kind.
        kind: ListenerKind,
    },
    /// `backend:` on a listener other than `tls`.
    #[error(
        "{field}.backend: only `tls` listeners have one `backend`; `https` listeners route with \
         `routes: [{{ host: \"*\", backend: http://HOST:PORT }}]`"
    )]
    BackendNotTls {
        /// The listener.
        field: String,
    },
    /// A listener-wide `backend_tls:` on a listener other than `tls`.
    #[error(
        "{field}.backend_tls: only `tls` listeners have a listener-wide `backend_tls`; on `https` \
         listeners put it on the route, beside `backend: https://HOST:PORT`"
    )]
    BackendTlsNotTls {
        /// The listener.
        field: String,
    },
    /// `certdir:` on an `http` listener.
    #[error("{field}.certdir: an `http` listener serves no certificate; remove `certdir`")]
    HttpCertdir {
        /// The listener.
        field: String,
    },
    /// A `tls` listener without `backend:`.
    #[error(
        "{field}.backend: a `tls` listener needs `backend: HOST:PORT` (where the decrypted bytes go)"
    )]
    NoBackend {
        /// The listener.
        field: String,
    },
    /// A `proxy_protocol:` version other than `v2`.
    #[error("{field}.proxy_protocol: `{value}` is not supported; use `v2` or leave it out")]
    ProxyProtocol {
        /// The listener.
        field: String,
        /// The value as written.
        value: String,
    },
    /// `client_auth:` on an `http` listener.
    #[error("{field}.client_auth: an `http` listener has no TLS; remove `client_auth`")]
    HttpClientAuth {
        /// The listener.
        field: String,
    },
    /// A pin of `client_auth.pinned_sha256` or `pinned_sha1` that is no
    /// fingerprint.
    #[error("{field}.client_auth.{list}: {error}")]
    Pin {
        /// The listener.
        field: String,
        /// `pinned_sha256` or `pinned_sha1`.
        list: &'static str,
        /// Why the pin is refused.
        error: FieldError,
    },
    /// `mode: off` with a CA file or pins.
    #[error(
        "{field}.client_auth: `mode: off` with a `ca_file` or pins would check nothing; set \
         `mode: required` (or `optional`), or remove them"
    )]
    ClientAuthOff {
        /// The listener.
        field: String,
    },
    /// `mode: required` or `optional` without `ca_file`.
    #[error(
        "{field}.client_auth.ca_file: `mode: {mode}` needs the CA client certificates must chain to"
    )]
    ClientAuthNoCa {
        /// The listener.
        field: String,
        /// The mode.
        mode: String,
    },
    /// A `client_auth.mode` other than off, optional and required.
    #[error("{field}.client_auth.mode: `{mode}` is not a mode; use off, optional or required")]
    ClientAuthMode {
        /// The listener.
        field: String,
        /// The mode as written.
        mode: String,
    },
    /// A redirect status that is no redirect.
    #[error("{field}.redirect.status: `{status}` is not a redirect; use 301, 302, 303, 307 or 308")]
    RedirectStatus {
        /// The route.
        field: String,
        /// The status as written.
        status: u16,
    },
    /// A redirect target that is no absolute `http(s)://` URL.
    #[error("{field}.redirect.to: `{to}` must be an absolute http:// or https:// URL")]
    RedirectTarget {
        /// The route.
        field: String,
        /// The target as written.
        to: String,
    },
    /// A route without an action.
    #[error(
        "{field}: says nothing to do; add one of `backend: http://HOST:PORT`, \
         `respond: {{ status: 200, body: ... }}`, `redirect: {{ to: URL }}` or `status_page: true`"
    )]
    NoAction {
        /// The route.
        field: String,
    },
    /// A route with several actions.
    #[error("{field}: set one of `backend`, `respond`, `redirect` or `status_page`, not several")]
    SeveralActions {
        /// The route.
        field: String,
    },
    /// A route path prefix not starting with `/`.
    #[error("{field}.path: `{prefix}` must start with `/`")]
    RoutePath {
        /// The route.
        field: String,
        /// The prefix as written.
        prefix: String,
    },
    /// `upgrades:` on a route without a backend.
    #[error("{field}.upgrades: only a route with a `backend` passes upgrades on; remove it")]
    UpgradesWithoutBackend {
        /// The route.
        field: String,
    },
    /// `h2c` among a route's `upgrades:`.
    #[error(
        "{field}.upgrades: `h2c` is HTTP/2 over cleartext TCP and is never \
         upgraded to over TLS (RFC 9113 §3.1); clients get HTTP/2 through ALPN `h2` \
         on this listener already. Remove it"
    )]
    UpgradeH2c {
        /// The route.
        field: String,
    },
    /// An `upgrades:` entry that is no protocol name.
    #[error(
        "{field}.upgrades: `{token}` is not a protocol name (RFC 9110 §7.8), \
         e.g. `websocket`"
    )]
    UpgradeName {
        /// The route.
        field: String,
        /// The entry as written.
        token: String,
    },
    /// One backend on several routes with different `health:` settings.
    #[error(
        "{field}.health: backend `{backend}` is also on {other}, with other `health:` \
         settings; a backend has one health state, so give it the same `health:` everywhere"
    )]
    HealthDiffers {
        /// The later route.
        field: String,
        /// The backend.
        backend: String,
        /// The earlier route.
        other: String,
    },
    /// `max_header_bytes` below 8192.
    #[error("{field}.max_header_bytes: at least 8192 (browsers send several KiB of cookies)")]
    MaxHeaderBytes {
        /// The listener.
        field: String,
    },
    /// `max_connections: 0`.
    #[error("{field}.max_connections: at least 1")]
    MaxConnections {
        /// The listener.
        field: String,
    },
    /// `max_concurrent_streams: 0`.
    #[error("{field}.max_concurrent_streams: at least 1 (128 is nginx's default)")]
    MaxConcurrentStreams {
        /// The listener.
        field: String,
    },
    /// `max_backend_connections: 0`.
    #[error("{field}.max_backend_connections: at least 1")]
    MaxBackendConnections {
        /// The listener.
        field: String,
    },
    /// `send_timeout: 0`.
    #[error("{field}.send_timeout: must be more than 0 (60s is nginx's default)")]
    SendTimeout {
        /// The listener.
        field: String,
    },
    /// A path of the listener that cannot be used.
    #[error(transparent)]
    Path(#[from] PathError),
    /// `accept_proxy_protocol:` that cannot be used.
    #[error(transparent)]
    AcceptProxy(#[from] AcceptProxyError),
    /// A group's backends, `balance:`, `health:` or `backend_tls:` (boxed:
    /// the largest of these errors).
    #[error(transparent)]
    Backends(Box<BackendsError>),
}

impl From<BackendsError> for ListenerError {
    fn from(error: BackendsError) -> Self {
        ListenerError::Backends(Box::new(error))
    }
}

/// Validates one listener; errors are messages naming the field. Its
/// access log comes checked (`logs::listener_access_log`, which needs the
/// top-level settings); `raw.access_log` is not read here.
pub(super) fn listener_from_raw(
    raw: RawListener,
    field: &str,
    paths: &PathResolver<'_>,
    access_log: Option<AccessLogConfig>,
) -> Result<ListenerConfig, ListenerError> {
    let kind = raw.kind;
    let listener = || field.to_string();
    let only = |what: &'static str, kinds: &'static str| ListenerError::OnlyOtherKinds {
        field: listener(),
        what,
        kinds,
        kind,
    };
    if kind != ListenerKind::Https && !raw.routes.is_empty() {
        return Err(only("routes", "`https`"));
    }
    if kind != ListenerKind::Tls && raw.backend.is_some() {
        return Err(ListenerError::BackendNotTls { field: listener() });
    }
    if kind != ListenerKind::Tls && raw.proxy_protocol.is_some() {
        return Err(only("proxy_protocol", "`tls`"));
    }
    if kind != ListenerKind::Tls && raw.backend_tls.is_some() {
        return Err(ListenerError::BackendTlsNotTls { field: listener() });
    }
    if kind != ListenerKind::Http && raw.https_port.is_some() {
        return Err(only("https_port", "`http`"));
    }
    if kind == ListenerKind::Http && raw.certdir.is_some() {
        return Err(ListenerError::HttpCertdir { field: listener() });
    }
    if kind != ListenerKind::Tls
        && (raw.backends.is_some() || raw.balance.is_some() || raw.health.is_some())
    {
        return Err(ListenerError::BackendNotTls { field: listener() });
    }
    let backends = tcp_backends_from_raw(
        RawGroup {
            backend: raw.backend,
            backends: raw.backends,
            balance: raw.balance,
            health: raw.health,
            backend_tls: raw.backend_tls,
        },
        field,
        paths,
    )?;
    if kind == ListenerKind::Tls && backends.is_none() {
        return Err(ListenerError::NoBackend { field: listener() });
    }
    let proxy_protocol = match raw.proxy_protocol.as_deref() {
        None | Some("off") | Some("none") => false,
        Some("v2") => true,
        Some(other) => {
            return Err(ListenerError::ProxyProtocol {
                field: listener(),
                value: other.to_string(),
            });
        }
    };
    let accept_proxy_protocol = match raw.accept_proxy_protocol {
        Some(raw_accept) => Some(std::sync::Arc::new(accept_proxy_from_raw(
            raw_accept, field,
        )?)),
        None => None,
    };
    let client_auth = match raw.client_auth {
        None => None,
        Some(raw_auth) => {
            let sub = format!("{field}.client_auth");
            if kind == ListenerKind::Http {
                return Err(ListenerError::HttpClientAuth { field: listener() });
            }
            let bad_pin = |list: &'static str| {
                move |error| ListenerError::Pin {
                    field: listener(),
                    list,
                    error,
                }
            };
            let mut pinned_sha256 = Vec::new();
            for pin in &raw_auth.pinned_sha256 {
                pinned_sha256.push(normalize_pin(pin, 64).map_err(bad_pin("pinned_sha256"))?);
            }
            let mut pinned_sha1 = Vec::new();
            for pin in &raw_auth.pinned_sha1 {
                pinned_sha1.push(normalize_pin(pin, 40).map_err(bad_pin("pinned_sha1"))?);
            }
            match raw_auth.mode.as_str() {
                "off" => {
                    if raw_auth.ca_file.is_some()
                        || !pinned_sha256.is_empty()
                        || !pinned_sha1.is_empty()
                    {
                        return Err(ListenerError::ClientAuthOff { field: listener() });
                    }
                    None
                }
                mode @ ("required" | "optional") => {
                    let Some(ca_file) = raw_auth.ca_file else {
                        return Err(ListenerError::ClientAuthNoCa {
                            field: listener(),
                            mode: mode.to_string(),
                        });
                    };
                    Some(ClientAuthConfig {
                        required: mode == "required",
                        ca_file: paths.resolve(&ca_file, &format!("{sub}.ca_file"))?,
                        pinned_sha256,
                        pinned_sha1,
                    })
                }
                other => {
                    return Err(ListenerError::ClientAuthMode {
                        field: listener(),
                        mode: other.to_string(),
                    });
                }
            }
        }
    };
    let certdir = match raw.certdir {
        Some(dir) => Some(paths.resolve(&dir, &format!("{field}.certdir"))?),
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
        let group = RawGroup {
            backend: r.backend,
            backends: r.backends,
            balance: r.balance,
            health: r.health,
            backend_tls: r.backend_tls,
        };
        if let Some(backends) = http_backends_from_raw(group, &route_field, paths)? {
            actions.push(RouteAction::Backend(backends));
        }
        if let Some(redirect) = r.redirect {
            if !matches!(redirect.status, 301 | 302 | 303 | 307 | 308) {
                return Err(ListenerError::RedirectStatus {
                    field: route_field,
                    status: redirect.status,
                });
            }
            if !(redirect.to.starts_with("https://") || redirect.to.starts_with("http://")) {
                return Err(ListenerError::RedirectTarget {
                    field: route_field,
                    to: redirect.to,
                });
            }
            actions.push(RouteAction::Redirect {
                to: redirect.to,
                status: redirect.status,
            });
        }
        let action = match actions.len() {
            1 => actions.remove(0),
            0 => return Err(ListenerError::NoAction { field: route_field }),
            _ => return Err(ListenerError::SeveralActions { field: route_field }),
        };
        if let Some(prefix) = &r.path
            && !prefix.starts_with('/')
        {
            return Err(ListenerError::RoutePath {
                field: route_field,
                prefix: prefix.clone(),
            });
        }
        let upgrades = route_upgrades(r.upgrades, &action, &route_field)?;
        routes.push(Route {
            host: r.host.0,
            path_prefix: r.path,
            action,
            upgrades,
        });
    }
    check_one_health_per_backend(&routes, field)?;
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
        return Err(ListenerError::MaxHeaderBytes { field: listener() });
    }
    if limits.max_connections == 0 {
        return Err(ListenerError::MaxConnections { field: listener() });
    }
    if limits.max_concurrent_streams == 0 {
        return Err(ListenerError::MaxConcurrentStreams { field: listener() });
    }
    if limits.max_backend_connections == 0 {
        return Err(ListenerError::MaxBackendConnections { field: listener() });
    }
    if limits.send_timeout.is_zero() {
        return Err(ListenerError::SendTimeout { field: listener() });
    }
    Ok(ListenerConfig {
        name: raw.name,
        kind,
        bind: raw.bind.0,
        certdir,
        routes,
        access_log,
        backends,
        proxy_protocol,
        accept_proxy_protocol,
        https_port: raw.https_port,
        limits,
        client_auth,
    })
}

/// Refuses a backend that two routes check differently: its health is one
/// state, shared by every route that names it.
fn check_one_health_per_backend(routes: &[Route], field: &str) -> Result<(), ListenerError> {
    let mut seen: Vec<(&str, usize, &Option<HealthCheck>)> = Vec::new();
    for (index, route) in routes.iter().enumerate() {
        let RouteAction::Backend(group) = &route.action else {
            continue;
        };
        for member in &group.members {
            let address = member.address();
            match seen.iter().find(|(a, ..)| *a == address) {
                Some((_, first, health)) if *health != &group.health => {
                    return Err(ListenerError::HealthDiffers {
                        field: format!("{field}.routes[{index}]"),
                        backend: address.to_string(),
                        other: format!("{field}.routes[{first}]"),
                    });
                }
                Some(_) => {}
                None => seen.push((address, index, &group.health)),
            }
        }
    }
    Ok(())
}

/// The `Upgrade` protocols a route passes on: `websocket` by default.
/// `h2c` is refused: it is HTTP/2 over cleartext TCP, never negotiated
/// over TLS (RFC 9113 §3.1), and a backend that accepted it would get a
/// raw tunnel past the routes and the 421 check.
fn route_upgrades(
    raw: Option<Vec<String>>,
    action: &RouteAction,
    route_field: &str,
) -> Result<Vec<String>, ListenerError> {
    let Some(raw) = raw else {
        return Ok(match action {
            RouteAction::Backend(_) => vec![DEFAULT_UPGRADE.to_string()],
            _ => Vec::new(),
        });
    };
    if !matches!(action, RouteAction::Backend(_)) && !raw.is_empty() {
        return Err(ListenerError::UpgradesWithoutBackend {
            field: route_field.to_string(),
        });
    }
    let mut upgrades = Vec::with_capacity(raw.len());
    for token in raw {
        let name = token.trim().to_ascii_lowercase();
        if name == "h2c" {
            return Err(ListenerError::UpgradeH2c {
                field: route_field.to_string(),
            });
        }
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b));
        if !valid {
            return Err(ListenerError::UpgradeName {
                field: route_field.to_string(),
                token,
            });
        }
        if !upgrades.contains(&name) {
            upgrades.push(name);
        }
    }
    Ok(upgrades)
}
