//! Forwarding a request to an HTTP/1.1 backend: headers rewritten as a
//! proxy must (RFC 9110 §7.6), bodies streamed both ways, WebSocket
//! upgrades turned into tunnels, and backend failures turned into 502/504.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;

use super::answers::{ProxyBody, plain};
use super::conn::Lifecycle;
use super::io::Activity;
use super::pool::{Pool, SendError};
use super::tunnel::{TunnelEnd, copy_with_idle_timeout};
use crate::config::{HttpBackend, Limits};
use crate::metrics::{BackendError, HeldBackendConnection, ListenerMetrics};
use crate::snapshot::backend_tls::{BackendTlsClient, BackendTlsError};

/// `X-Forwarded-For` and friends.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The backend connections of one listener (kept alive between requests)
/// and the timeouts of its limits.
#[derive(Debug)]
pub struct Forwarder {
    limits: Limits,
    /// Plain backends by authority, TLS ones also by the snapshot's
    /// [`BackendTlsClient`] (see [`Pool`]).
    pool: Pool<Incoming>,
    backend_timeout: Duration,
    tunnel_idle_timeout: Duration,
}

/// The backend connections one `https` listener's requests and tunnels
/// hold now, bounded by `max_backend_connections` (README: Limits). A
/// plain counter rather than a semaphore: the limit comes from the current
/// snapshot, so a reload changes it without rebuilding anything.
#[derive(Debug, Default)]
pub struct BackendSlots {
    in_use: Arc<AtomicUsize>,
    /// Refusals not logged yet, and when the last line was written
    /// (seconds on the process clock): one line per 10 s at most, so a
    /// flood does not become a flood of log lines.
    refused_unlogged: AtomicU64,
    last_logged: AtomicU64,
}

/// One backend connection held by a request (until its response body is
/// done) or a tunnel (until it ends).
#[derive(Debug)]
pub struct BackendSlot {
    in_use: Arc<AtomicUsize>,
    _counted: HeldBackendConnection,
}

impl BackendSlots {
    /// A slot, unless `limit` are in use (the refusal is counted).
    pub fn try_take(&self, limit: usize, metrics: &ListenerMetrics) -> Option<BackendSlot> {
        if self.in_use.fetch_add(1, Ordering::AcqRel) >= limit {
            self.in_use.fetch_sub(1, Ordering::AcqRel);
            metrics.backend_limit_rejected();
            return None;
        }
        Some(BackendSlot {
            in_use: self.in_use.clone(),
            _counted: metrics.backend_connection_taken(),
        })
    }

    /// Logs a refusal: the first at once, then one line per 10 s with the
    /// number refused meanwhile.
    pub fn log_refusal(&self, listener: &str, limit: usize) {
        let refused = self.refused_unlogged.fetch_add(1, Ordering::AcqRel) + 1;
        let now = crate::clock::unix_now().max(0) as u64;
        let last = self.last_logged.load(Ordering::Acquire);
        if last != 0 && now < last + 10 {
            return;
        }
        if self
            .last_logged
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        self.refused_unlogged.fetch_sub(refused, Ordering::AcqRel);
        tracing::warn!(
            %listener,
            max_backend_connections = limit,
            refused,
            "backend connection limit reached: requests answered 503 (raise max_backend_connections, \
             or lower max_concurrent_streams / send_timeout if slow clients hold them)"
        );
    }
}

impl Drop for BackendSlot {
    fn drop(&mut self) {
        self.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the caller needs to know about a forwarded request.
#[derive(Debug)]
pub struct Forwarded {
    /// The response to send to the client.
    pub response: Response<ProxyBody>,
    /// The backend connection slot, for the response body to hold until
    /// it is done (`None` when a tunnel took it, or nothing was sent).
    pub slot: Option<BackendSlot>,
    /// A failure worth a log line (the response is then 400, 502 or 504).
    pub failure: Option<String>,
    /// How the backend failed, for `sniwalk_backend_errors_total` (`None`
    /// when it did not: success, or a request refused before it was sent).
    pub error: Option<BackendError>,
}

/// Per-request facts the forwarder uses.
#[derive(Debug)]
pub struct RequestFacts<'a> {
    /// The client's address, for logs.
    pub peer: SocketAddr,
    /// The client's IP address as a header value, made once per connection
    /// ([`client_ip_header`]) and appended to `X-Forwarded-For`.
    pub forwarded_for: &'a HeaderValue,
    /// The host the client asked for, with its port if it gave one (the
    /// client's `Host` header itself when it sent one).
    pub host: &'a HeaderValue,
    /// Requests in flight on the client connection (an upgrade pins it).
    pub activity: &'a std::sync::Arc<Activity>,
    /// Where tunnels are tracked for graceful shutdown.
    pub lifecycle: &'a Lifecycle,
    /// The listener, for logs.
    pub listener: &'a str,
    /// The listener's counters (tunnel bytes).
    pub metrics: &'a Arc<ListenerMetrics>,
    /// The `Upgrade` protocols the route passes on (lower case).
    pub upgrades: &'a [String],
    /// For an `https://` backend: its TLS client from the current snapshot,
    /// or why there is none; `None` for a plain `http://` backend.
    pub backend_tls: Option<Result<Arc<BackendTlsClient>, BackendTlsError>>,
}

impl Forwarder {
    /// A forwarder for one listener's limits (no connection is made yet).
    pub fn new(limits: &Limits) -> Self {
        Forwarder {
            limits: *limits,
            pool: Pool::new(limits.backend_connect_timeout),
            backend_timeout: limits.backend_timeout,
            tunnel_idle_timeout: limits.tunnel_idle_timeout,
        }
    }

    /// The limits this client was built for.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sends `request` to `backend` over the connection `slot` stands for
    /// and returns the response to relay.
    pub async fn forward(
        &self,
        mut request: Request<Incoming>,
        backend: &HttpBackend,
        slot: BackendSlot,
        facts: RequestFacts<'_>,
    ) -> Forwarded {
        // Only the upgrades the route allows are passed on; any other
        // `Upgrade` token (h2c above all) is stripped with the hop-by-hop
        // headers, and the request goes on as an ordinary one.
        let upgrade = upgrade_protocol(&request, facts.upgrades);
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));

        let tls = match facts.backend_tls {
            None => None,
            Some(Ok(tls)) => Some(tls),
            Some(Err(why)) => {
                return failed(
                    StatusCode::BAD_GATEWAY,
                    Some(BackendError::Tls),
                    why.to_string(),
                );
            }
        };
        // Origin-form (RFC 9112 §3.2.1): the backend is no proxy, and the
        // host goes in the Host header below.
        let target = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(target);
        *request.version_mut() = Version::HTTP_11;
        let headers = request.headers_mut();
        strip_hop_by_hop(headers);
        if let Some(protocol) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, protocol.clone());
        }
        // HTTP/2 has no Host header (the authority is in the URI): give the
        // backend the name the client asked for, never the backend address.
        headers.insert(header::HOST, facts.host.clone());
        headers.insert(X_FORWARDED_HOST, facts.host.clone());
        append_forwarded_for(headers, facts.forwarded_for);
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));

        let sent = self.pool.send(request, &backend.authority, tls.as_ref());
        let mut response = match tokio::time::timeout(self.backend_timeout, sent).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                let timed_out = is_timeout(&e);
                let (status, kind) = if timed_out {
                    (StatusCode::GATEWAY_TIMEOUT, BackendError::Timeout)
                } else if is_tls_failure(&e) {
                    (StatusCode::BAD_GATEWAY, BackendError::Tls)
                } else if e.is_connect() {
                    (StatusCode::BAD_GATEWAY, BackendError::Connect)
                } else {
                    (StatusCode::BAD_GATEWAY, BackendError::Other)
                };
                return failed(status, Some(kind), describe_client_error(&e, timed_out));
            }
            Err(_) => {
                return failed(
                    StatusCode::GATEWAY_TIMEOUT,
                    Some(BackendError::Timeout),
                    format!(
                        "no response headers within {} s",
                        self.backend_timeout.as_secs()
                    ),
                );
            }
        };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let (Some(client_upgrade), Some(asked)) = (client_upgrade, &upgrade) else {
                // A 101 nobody asked for cannot be relayed.
                return failed(
                    StatusCode::BAD_GATEWAY,
                    Some(BackendError::Other),
                    "unexpected 101 from the backend".into(),
                );
            };
            // RFC 9110 §15.2.2: the 101's `Upgrade` names the protocol
            // switched to, which must be one the client asked for.
            let switched_to = response.headers().get(header::UPGRADE);
            if !switched_to.is_some_and(|to| answers_upgrade(to, asked)) {
                let to = switched_to
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("(no Upgrade header)");
                return failed(
                    StatusCode::BAD_GATEWAY,
                    Some(BackendError::Other),
                    format!(
                        "the backend's 101 switches to `{to}`, not to the `{}` asked for",
                        asked.to_str().unwrap_or("?")
                    ),
                );
            }
            {
                let backend_upgrade = hyper::upgrade::on(&mut response);
                facts.activity.pin_busy();
                let idle = self.tunnel_idle_timeout;
                let listener = facts.listener.to_string();
                let peer = facts.peer;
                let authority = backend.authority.clone();
                let hard_stop = facts.lifecycle.hard_stop.clone();
                let metrics = facts.metrics.clone();
                facts.lifecycle.tracker.spawn(async move {
                    // The tunnel holds the backend connection to its end.
                    let _slot = slot;
                    let (client, backend) = match tokio::try_join!(client_upgrade, backend_upgrade) {
                        Ok(both) => both,
                        Err(e) => {
                            tracing::debug!(%listener, %peer, error = %e, "upgrade did not complete");
                            return;
                        }
                    };
                    let (t, end) = copy_with_idle_timeout(
                        TokioIo::new(client),
                        TokioIo::new(backend),
                        idle,
                        hard_stop.cancelled(),
                    )
                    .await;
                    metrics.tunnel_done(t.up, t.down);
                    match end {
                        TunnelEnd::Closed { .. } => tracing::debug!(
                            %listener, %peer, backend = %authority, up = t.up, down = t.down, "tunnel closed"
                        ),
                        TunnelEnd::IdleTimeout => tracing::info!(
                            %listener, %peer, backend = %authority, up = t.up, down = t.down,
                            idle_secs = idle.as_secs(), "tunnel closed: idle timeout"
                        ),
                        TunnelEnd::Failed(e) => tracing::debug!(
                            %listener, %peer, backend = %authority, up = t.up, down = t.down, error = %e,
                            "tunnel ended with an error"
                        ),
                    }
                });
            }
            return Forwarded {
                response: response.map(ProxyBody::Backend),
                slot: None,
                failure: None,
                error: None,
            };
        }
        strip_hop_by_hop(response.headers_mut());
        Forwarded {
            response: response.map(ProxyBody::Backend),
            slot: Some(slot),
            failure: None,
            error: None,
        }
    }
}

/// The `Upgrade` value to pass on for an HTTP/1.1 upgrade request
/// (`Connection: upgrade` plus `Upgrade: ...`): the tokens whose protocol
/// name is in `allowed`, in the client's order; `None` when it is no
/// upgrade request or none is allowed.
fn upgrade_protocol<B>(request: &Request<B>, allowed: &[String]) -> Option<HeaderValue> {
    if request.version() != Version::HTTP_11 {
        return None;
    }
    let asks = request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !asks {
        return None;
    }
    let kept: Vec<&str> = request
        .headers()
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| {
            allowed
                .iter()
                .any(|name| protocol_name(token).eq_ignore_ascii_case(name))
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

/// `websocket` of `websocket` or `websocket/13` (RFC 9110 §7.8:
/// protocol-name ["/" protocol-version]).
fn protocol_name(token: &str) -> &str {
    token.split('/').next().unwrap_or(token).trim()
}

/// Whether a 101's `Upgrade` value names a protocol of the `asked` list.
fn answers_upgrade(switched_to: &HeaderValue, asked: &HeaderValue) -> bool {
    let (Ok(to), Ok(asked)) = (switched_to.to_str(), asked.to_str()) else {
        return false;
    };
    let to = to.trim();
    !to.is_empty()
        && !to.contains(',')
        && asked
            .split(',')
            .any(|token| protocol_name(token).eq_ignore_ascii_case(protocol_name(to)))
}

/// Whether a header describes one hop (RFC 9110 §7.6.1), is one of the
/// obsolete ones proxies are expected to drop, or is `Upgrade` (which the
/// caller passes on itself, and only when the route allows it).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    // One match on the (lowercase) name, which the compiler turns into a
    // switch on its length: cheaper than comparing it with nine names, on
    // every header of every request and response.
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes hop-by-hop headers, including those the `Connection` header
/// names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names, which hashes nothing: most requests carry
    // none of these, and then nothing is looked up or removed; a response
    // from nginx carries `Connection: keep-alive` alone, and then nothing
    // is allocated either (a `Vec` of no names allocates nothing).
    let mut present = headers.keys().filter(|name| is_hop_by_hop(name));
    let Some(first) = present.next().cloned() else {
        return;
    };
    let mut found: Vec<HeaderName> = present.cloned().collect();
    if (first == header::CONNECTION || found.contains(&header::CONNECTION))
        && !names_no_header(headers)
    {
        found.extend(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                // `keep-alive` was found above if present, and `Close` is
                // a reserved field name (RFC 9110 §7.6.1), not a header to
                // look for: neither is worth parsing into a name.
                .filter(|token| {
                    !token.eq_ignore_ascii_case("keep-alive")
                        && !token.eq_ignore_ascii_case("close")
                })
                .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok()),
        );
    }
    headers.remove(first);
    for name in found {
        headers.remove(name);
    }
}

/// Whether the `Connection` header is the usual lone `keep-alive` or
/// `close`, which names no header to remove (`keep-alive` is removed as a
/// hop-by-hop header anyway).
fn names_no_header(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONNECTION).iter();
    match (values.next(), values.next()) {
        (Some(only), None) => {
            let only = only.as_bytes();
            only.eq_ignore_ascii_case(b"keep-alive") || only.eq_ignore_ascii_case(b"close")
        }
        _ => false,
    }
}

/// Appends the client address to `X-Forwarded-For` (keeping what earlier
/// proxies put there, as the header's convention is).
fn append_forwarded_for(headers: &mut HeaderMap, ip: &HeaderValue) {
    // One lookup (the entry) rather than a `get` and an `insert`.
    match headers.entry(X_FORWARDED_FOR) {
        header::Entry::Vacant(vacant) => {
            vacant.insert(ip.clone());
        }
        header::Entry::Occupied(mut occupied) => {
            let joined = match occupied.get().to_str() {
                Ok(existing) if !existing.trim().is_empty() => HeaderValue::from_str(&format!(
                    "{existing}, {}",
                    ip.to_str().unwrap_or_default()
                ))
                .ok(),
                _ => None,
            };
            // `insert` replaces every value the client sent.
            occupied.insert(joined.unwrap_or_else(|| ip.clone()));
        }
    }
}

/// A client's IP address as an `X-Forwarded-For` value.
pub fn client_ip_header(peer: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.ip().to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Whether the backend request failed in the TLS handshake.
fn is_tls_failure(error: &SendError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Whether the backend request failed on a timeout: the connect timeout
/// (the pool gives an `io::Error` of kind `TimedOut`, as does the kernel's
/// own connect timeout) or one of hyper's (an HTTP/2
/// keep-alive that went unanswered).
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// The log text of a backend failure: what failed, then the chain of
/// causes ("cannot connect: Connection refused (os error 111)").
fn describe_client_error(error: &SendError, timed_out: bool) -> String {
    let mut text = if error.is_connect() {
        if timed_out {
            "connect timed out".to_string()
        } else {
            "cannot connect".to_string()
        }
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn failed(status: StatusCode, error: Option<BackendError>, failure: String) -> Forwarded {
    Forwarded {
        response: plain(status, status.canonical_reason().unwrap_or("error")),
        slot: None,
        failure: Some(failure),
        error,
    }
}

#[cfg(test)]
mod tests;
