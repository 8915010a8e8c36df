//! One listener of `proxy.yaml`, from its raw form to [`ListenerConfig`].

use std::path::PathBuf;

use super::fields::{normalize_pin, parse_tcp_backend};
use super::paths::PathResolver;
use super::raw::{RawBackendTls, RawListener};
use super::types::{
    BackendTls, ClientAuthConfig, DEFAULT_UPGRADE, HttpBackend, Limits, ListenerConfig,
    ListenerKind, Route, RouteAction, TcpBackend, host_of,
};

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

/// Validates one listener; errors are messages naming the field.
pub(super) fn listener_from_raw(
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
