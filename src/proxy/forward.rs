//! Forwarding a request to an HTTP/1.1 backend: headers rewritten as a
//! proxy must (RFC 9110 §7.6), bodies streamed both ways, WebSocket
//! upgrades turned into tunnels, and backend failures turned into 502/504.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::Lifecycle;
use super::backend_tls::BackendTlsClient;
use super::io::{Activity, TunnelEnd, copy_with_idle_timeout};
use crate::config::{HttpBackend, Limits};
use crate::metrics::BackendError;

/// The body type every response of an `https` listener has.
pub type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// Headers that describe one hop and must not be forwarded (RFC 9110
/// §7.6.1), plus the obsolete ones proxies are expected to drop.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// `X-Forwarded-For` and friends.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// A pooled client for one TLS backend.
type TlsClient = Client<HttpsConnector<HttpConnector>, Incoming>;

/// The pooled HTTP/1.1 clients of one listener: one for plain backends,
/// one per TLS backend configuration.
#[derive(Debug)]
pub struct Forwarder {
    limits: Limits,
    client: Client<HttpConnector, Incoming>,
    /// Keyed by the snapshot's [`BackendTlsClient`]: a reload that changes
    /// a backend's client certificate or CA makes a new key, so new
    /// connections use the new settings while pooled ones age out.
    tls_clients: ArcSwap<Vec<(Arc<BackendTlsClient>, TlsClient)>>,
    backend_timeout: Duration,
    tunnel_idle_timeout: Duration,
}

/// At most this many TLS backend clients are kept per listener; older ones
/// no snapshot uses any more are dropped first.
const MAX_TLS_CLIENTS: usize = 64;

/// What the caller needs to know about a forwarded request.
#[derive(Debug)]
pub struct Forwarded {
    /// The response to send to the client.
    pub response: Response<ProxyBody>,
    /// A failure worth a log line (the response is then 400, 502 or 504).
    pub failure: Option<String>,
    /// How the backend failed, for `sniwalk_backend_errors_total` (`None`
    /// when it did not: success, or a request refused before it was sent).
    pub error: Option<BackendError>,
}

/// Per-request facts the forwarder uses.
#[derive(Debug)]
pub struct RequestFacts<'a> {
    /// The client's address, appended to `X-Forwarded-For`.
    pub peer: SocketAddr,
    /// The host the client asked for, with its port if it gave one.
    pub host: &'a str,
    /// Requests in flight on the client connection (an upgrade pins it).
    pub activity: &'a std::sync::Arc<Activity>,
    /// Where tunnels are tracked for graceful shutdown.
    pub lifecycle: &'a Lifecycle,
    /// The listener, for logs.
    pub listener: &'a str,
    /// For an `https://` backend: its TLS client from the current snapshot,
    /// or why there is none; `None` for a plain `http://` backend.
    pub backend_tls: Option<Result<Arc<BackendTlsClient>, String>>,
}

impl Forwarder {
    /// A client for one listener's limits.
    pub fn new(limits: &Limits) -> Self {
        let client = client_builder().build(tcp_connector(limits, true));
        Forwarder {
            limits: *limits,
            client,
            tls_clients: ArcSwap::default(),
            backend_timeout: limits.backend_timeout,
            tunnel_idle_timeout: limits.tunnel_idle_timeout,
        }
    }

    /// The pooled client for one TLS backend configuration, made on first
    /// use.
    fn tls_client(&self, tls: &Arc<BackendTlsClient>) -> TlsClient {
        if let Some((_, client)) = self
            .tls_clients
            .load()
            .iter()
            .find(|(k, _)| Arc::ptr_eq(k, tls))
        {
            return client.clone();
        }
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config((*tls.config).clone())
            .https_only()
            .with_server_name_resolver(FixedServerNameResolver::new(tls.server_name.clone()))
            .enable_http1()
            .wrap_connector(tcp_connector(&self.limits, false));
        let client = client_builder().build(connector);
        self.tls_clients.rcu(|current| {
            // Clients whose settings no snapshot holds any more (only this
            // cache does) go; their pooled connections close with them.
            let mut next: Vec<_> = current
                .iter()
                .filter(|(k, _)| Arc::strong_count(k) > 1 && !Arc::ptr_eq(k, tls))
                .cloned()
                .collect();
            if next.len() >= MAX_TLS_CLIENTS {
                next.remove(0);
            }
            next.push((tls.clone(), client.clone()));
            next
        });
        client
    }

    /// The limits this client was built for.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sends `request` to `backend` and returns the response to relay.
    pub async fn forward(
        &self,
        mut request: Request<Incoming>,
        backend: &HttpBackend,
        facts: RequestFacts<'_>,
    ) -> Forwarded {
        let upgrade = upgrade_protocol(&request);
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));

        let tls_client = match facts.backend_tls {
            None => None,
            Some(Ok(tls)) => Some(self.tls_client(&tls)),
            Some(Err(why)) => {
                return failed(StatusCode::BAD_GATEWAY, Some(BackendError::Tls), why);
            }
        };
        let scheme = if tls_client.is_some() {
            "https"
        } else {
            "http"
        };
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri: Uri = match format!("{scheme}://{}{path}", backend.authority).parse() {
            Ok(uri) => uri,
            Err(_) => {
                return failed(
                    StatusCode::BAD_REQUEST,
                    None,
                    "invalid request target".into(),
                );
            }
        };
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        let headers = request.headers_mut();
        strip_hop_by_hop(headers);
        if let Some(protocol) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, protocol.clone());
        }
        // HTTP/2 has no Host header (the authority is in the URI): give the
        // backend the name the client asked for, never the backend address.
        if let Ok(host) = HeaderValue::from_str(facts.host) {
            headers.insert(header::HOST, host.clone());
            headers.insert(X_FORWARDED_HOST, host);
        }
        append_forwarded_for(headers, facts.peer);
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));

        let sent = match &tls_client {
            Some(client) => client.request(request),
            None => self.client.request(request),
        };
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
            if let Some(client_upgrade) = client_upgrade {
                let backend_upgrade = hyper::upgrade::on(&mut response);
                facts.activity.pin_busy();
                let idle = self.tunnel_idle_timeout;
                let listener = facts.listener.to_string();
                let peer = facts.peer;
                let authority = backend.authority.clone();
                let hard_stop = facts.lifecycle.hard_stop.clone();
                facts.lifecycle.tracker.spawn(async move {
                    let (client, backend) = match tokio::try_join!(client_upgrade, backend_upgrade) {
                        Ok(both) => both,
                        Err(e) => {
                            tracing::debug!(%listener, %peer, error = %e, "upgrade did not complete");
                            return;
                        }
                    };
                    let copy = copy_with_idle_timeout(TokioIo::new(client), TokioIo::new(backend), idle);
                    let end = tokio::select! {
                        end = copy => end,
                        () = hard_stop.cancelled() => TunnelEnd::Failed(std::io::Error::other("shutdown timeout")),
                    };
                    match end {
                        TunnelEnd::Closed(t) => tracing::debug!(
                            %listener, %peer, backend = %authority, up = t.up, down = t.down, "tunnel closed"
                        ),
                        TunnelEnd::IdleTimeout => tracing::info!(
                            %listener, %peer, backend = %authority, idle_secs = idle.as_secs(), "tunnel closed: idle timeout"
                        ),
                        TunnelEnd::Failed(e) => tracing::debug!(
                            %listener, %peer, backend = %authority, error = %e, "tunnel ended with an error"
                        ),
                    }
                });
            } else {
                // A 101 nobody asked for cannot be relayed.
                return failed(
                    StatusCode::BAD_GATEWAY,
                    Some(BackendError::Other),
                    "unexpected 101 from the backend".into(),
                );
            }
        } else {
            strip_hop_by_hop(response.headers_mut());
        }
        Forwarded {
            response: response.map(|body| body.boxed_unsync()),
            failure: None,
            error: None,
        }
    }
}

/// The `Upgrade` value of an HTTP/1.1 upgrade request (`Connection:
/// upgrade` plus `Upgrade: ...`), if it is one.
fn upgrade_protocol(request: &Request<Incoming>) -> Option<HeaderValue> {
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
    request.headers().get(header::UPGRADE).cloned()
}

/// Removes hop-by-hop headers, including those the `Connection` header
/// names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Appends the client address to `X-Forwarded-For` (keeping what earlier
/// proxies put there, as the header's convention is).
fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
    let ip = peer.ip().to_string();
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.trim().is_empty() => format!("{existing}, {ip}"),
        _ => ip,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

/// hyper-util's client settings shared by plain and TLS backends.
fn client_builder() -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .set_host(false);
    builder
}

/// The TCP side of backend connections; `plain_only` refuses `https://`
/// URIs (those go through the TLS connector wrapping one of these).
fn tcp_connector(limits: &Limits, plain_only: bool) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(limits.backend_connect_timeout));
    connector.enforce_http(plain_only);
    connector
}

/// Whether the backend request failed in the TLS handshake.
fn is_tls_failure(error: &hyper_util::client::legacy::Error) -> bool {
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

fn is_timeout(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        if e.to_string().contains("timed out") {
            return true;
        }
        source = e.source();
    }
    false
}

fn describe_client_error(error: &hyper_util::client::legacy::Error, timed_out: bool) -> String {
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
        failure: Some(failure),
        error,
    }
}

/// A short plain-text response.
pub fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let body = http_body_util::Full::new(Bytes::from(format!("{} {text}\n", status.as_u16())))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_connection_named_ones_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn forwarded_for_is_appended() {
        let peer: SocketAddr = "192.0.2.7:5555".parse().expect("addr");
        let mut headers = HeaderMap::new();
        append_forwarded_for(&mut headers, peer);
        assert_eq!(headers[&X_FORWARDED_FOR], "192.0.2.7");
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.1"));
        append_forwarded_for(&mut headers, peer);
        assert_eq!(headers[&X_FORWARDED_FOR], "203.0.113.1, 192.0.2.7");
    }
}
