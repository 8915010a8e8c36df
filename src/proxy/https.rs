//! `https` listeners: TLS with the resolver, then HTTP/1.1 or HTTP/2 on the
//! same connection (hyper-util's auto builder, with upgrades), then routes
//! matched by host and path prefix, first match wins.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{ALLOW, HOST, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::access::{AccessLog, LoggedBody, RequestCount};
use super::answers::{plain, redirect, status_page, text};
use super::client_auth::{CLIENT_CERT_SHA256_HEADER, CLIENT_CERT_SUBJECT_HEADER, admit};
use super::conn::{Lifecycle, ListenerShared, PerLimits};
use super::forward::{BackendSlots, Forwarder, RequestFacts};
use super::io::{Activity, Protocol, TimedIo};
use crate::config::{Limits, RouteAction};
use crate::snapshot::LoadedCertificate;
use crate::tree::Step;

/// What every connection of one `https` listener shares.
#[derive(Debug)]
pub struct HttpsListener {
    /// Name, index, store, events.
    pub shared: ListenerShared,
    /// The pooled backend client, for the current limits.
    pub forwarder: PerLimits<Forwarder>,
    /// The HTTP server settings, for the current limits.
    pub http: PerLimits<auto::Builder<TokioExecutor>>,
    /// Backend connections held by this listener's requests and tunnels.
    pub backend_slots: BackendSlots,
}

impl HttpsListener {
    /// Settings for one listener.
    pub fn new(shared: ListenerShared) -> Self {
        let limits = shared.config.limits;
        HttpsListener {
            forwarder: PerLimits::new(&limits, Forwarder::new),
            http: PerLimits::new(&limits, http_builder),
            backend_slots: BackendSlots::default(),
            shared,
        }
    }
}

/// hyper's server settings for some limits.
fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut http = auto::Builder::new(TokioExecutor::new());
    // hyper's timeouts need a timer or silently do nothing. Its header
    // timer also runs on idle keep-alive connections, so it is set to the
    // idle timeout; the (shorter) header timeout is TimedIo's.
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout.max(limits.header_timeout))
        .max_buf_size(limits.max_header_bytes);
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(limits.max_concurrent_streams);
    http
}

/// What is known about a connection once its handshake is done.
#[derive(Debug)]
struct Connection {
    peer: SocketAddr,
    sni: Option<String>,
    step: Step,
    domain: Option<String>,
    /// The certificate served, with the facts read when it was loaded.
    certificate: Arc<LoadedCertificate>,
    activity: Arc<Activity>,
    /// The client certificate rustls verified, if one was sent.
    client: Option<super::client_auth::ClientCert>,
}

impl Connection {
    fn covers(&self, host: &str) -> bool {
        self.certificate.facts.covers(host)
    }
}

/// What a connection takes from the certificate choice made after its
/// handshake (one snapshot load for all of it).
struct Served {
    step: Step,
    domain: Option<String>,
    certificate: Arc<LoadedCertificate>,
    limits: Limits,
}

/// Serves one accepted TCP connection until it closes or shutdown ends it.
pub async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: TlsAcceptor,
    listener: Arc<HttpsListener>,
    lifecycle: Lifecycle,
) {
    let shared = &listener.shared;
    let index = shared.index;
    let default_limits = shared.config.limits;
    let handshake = super::conn::handshake(tcp, peer, &tls, shared, |snapshot, choice| Served {
        step: choice.step,
        domain: choice.domain.map(str::to_owned),
        certificate: choice.certificate.clone(),
        limits: snapshot
            .listener(index)
            .map_or(default_limits, |settings| settings.limits),
    });
    let Some((stream, served)) = handshake.await else {
        return;
    };
    let (_, tls_connection) = stream.get_ref();
    let sni = tls_connection.server_name().map(str::to_owned);
    let protocol = match tls_connection.alpn_protocol() {
        Some(b"h2") => Protocol::Http2,
        _ => Protocol::Http1,
    };
    let client = super::client_auth::ClientCert::of(tls_connection.peer_certificates());
    let activity = Arc::new(Activity::default());
    let send_clock = activity.clone();
    let limits = served.limits;
    let connection = Arc::new(Connection {
        peer,
        step: served.step,
        domain: served.domain,
        certificate: served.certificate,
        sni,
        activity: activity.clone(),
        client,
    });

    let io = TimedIo::new(
        stream,
        activity,
        protocol,
        limits.header_timeout,
        limits.idle_timeout,
    )
    .with_send_timeout(limits.send_timeout);
    let service_listener = listener.clone();
    let service_lifecycle = lifecycle.clone();
    let service = hyper::service::service_fn(move |request| {
        let listener = service_listener.clone();
        let connection = connection.clone();
        let lifecycle = service_lifecycle.clone();
        async move {
            Ok::<_, std::convert::Infallible>(
                handle(request, &listener, &connection, &lifecycle).await,
            )
        }
    });
    let http = listener.http.get(&limits);
    let served = http
        .1
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    let result = super::conn::drive_http(served, &lifecycle).await;
    if let Err(e) = result {
        if send_clock.send_timed_out() {
            shared.metrics.send_timed_out();
            tracing::info!(
                listener = %shared.config.name, %peer,
                send_timeout_secs = limits.send_timeout.as_secs(),
                "connection cut: the client took no response byte for send_timeout"
            );
        } else {
            tracing::debug!(listener = %shared.config.name, %peer, error = %e, "connection ended with an error");
        }
    }
}

/// Answers one request from the listener's routes.
async fn handle(
    request: Request<Incoming>,
    listener: &HttpsListener,
    connection: &Arc<Connection>,
    lifecycle: &Lifecycle,
) -> Response<LoggedBody> {
    let in_flight = connection.activity.begin();
    let started = Instant::now();
    let shared = &listener.shared;
    let host_with_port = request_host(&request);
    let host = normalize_host(&host_with_port);
    let path = request.uri().path().to_owned();
    let method = request.method().to_string();
    let mut backend = None;
    let mut failure = None;
    let settings = shared.settings();

    // Never trust these from the client; set them only from the verified
    // certificate.
    let mut request = request;
    let headers = request.headers_mut();
    headers.remove(CLIENT_CERT_SHA256_HEADER);
    headers.remove(CLIENT_CERT_SUBJECT_HEADER);
    if let Some(client) = &connection.client {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&client.sha256) {
            headers.insert(CLIENT_CERT_SHA256_HEADER, value);
        }
        if let Ok(value) = hyper::header::HeaderValue::from_str(&client.subject) {
            headers.insert(CLIENT_CERT_SUBJECT_HEADER, value);
        }
    }
    let admitted = admit(settings.client_auth.as_ref(), connection.client.as_ref());

    let mut slot = None;
    let response = if request.method() == Method::CONNECT {
        // A reverse proxy is no forward proxy: CONNECT would open a tunnel
        // to wherever the client names (RFC 9110 §9.3.6).
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not served here: this is a reverse proxy",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        response
    } else if let Err(problem) = check_host_headers(&request) {
        plain(StatusCode::BAD_REQUEST, problem)
    } else if host.is_empty() {
        plain(StatusCode::BAD_REQUEST, "missing Host header")
    } else if let Err(reason) = admitted {
        tracing::info!(
            listener = %shared.config.name,
            peer = %connection.peer,
            client_sha256 = connection.client.as_ref().map_or("-", |c| c.sha256.as_str()),
            reason,
            "request refused: invalid client certificate"
        );
        plain(StatusCode::FORBIDDEN, "Invalid client certificate")
    } else if is_misdirected(connection, &host) {
        plain(
            StatusCode::MISDIRECTED_REQUEST,
            "this connection's certificate does not cover that host",
        )
    } else {
        let route = settings.routes.iter().find(|route| {
            route.host.matches(&host)
                && route
                    .path_prefix
                    .as_deref()
                    .is_none_or(|prefix| path.starts_with(prefix))
        });
        match route.map(|route| (route, &route.action)) {
            Some((_, RouteAction::Respond { status, body })) => text(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
                body.clone(),
            ),
            Some((_, RouteAction::StatusPage)) => status_page(
                &host,
                connection.sni.as_deref(),
                connection.step,
                connection.domain.as_deref(),
                &connection.certificate,
            ),
            Some((_, RouteAction::Redirect { to, status })) => redirect(to, *status, &request),
            Some((route, RouteAction::Backend(target))) => {
                backend = Some(target.authority.clone());
                let limit = settings.limits.max_backend_connections;
                match listener.backend_slots.try_take(limit, &shared.metrics) {
                    None => {
                        // Logged at most every 10 s, not per request like
                        // a backend failure: a flood is worth no flood of
                        // lines.
                        listener
                            .backend_slots
                            .log_refusal(&shared.config.name, limit);
                        let mut response = plain(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "too many backend connections in use; try again shortly",
                        );
                        response
                            .headers_mut()
                            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                        response
                    }
                    Some(taken) => {
                        let facts = RequestFacts {
                            peer: connection.peer,
                            host: &host_with_port,
                            activity: &connection.activity,
                            lifecycle,
                            listener: &shared.config.name,
                            metrics: &shared.metrics,
                            upgrades: &route.upgrades,
                            backend_tls: target
                                .tls
                                .as_ref()
                                .map(|tls| shared.store.load().backend_tls_client(&tls.backend)),
                        };
                        let forwarder = listener.forwarder.get(&settings.limits);
                        let forwarded = forwarder.1.forward(request, target, taken, facts).await;
                        if let Some(kind) = forwarded.error {
                            shared.metrics.backend_error(&target.authority, kind);
                        }
                        failure = forwarded.failure;
                        slot = forwarded.slot;
                        forwarded.response
                    }
                }
            }
            None => plain(StatusCode::NOT_FOUND, "no route for this host and path"),
        }
    };
    if let Some(failure) = &failure {
        tracing::warn!(
            listener = %shared.config.name,
            peer = %connection.peer,
            host = %host,
            path = %path,
            backend = backend.as_deref().unwrap_or("-"),
            status = response.status().as_u16(),
            failure = %failure,
            "backend failed"
        );
    }
    let log = settings.access_log.then(|| AccessLog {
        listener: shared.config.name.clone(),
        peer: connection.peer,
        sni: connection.sni.clone(),
        step: Some(connection.step),
        method,
        host,
        path,
        status: response.status().as_u16(),
        backend,
        started,
    });
    let count = RequestCount {
        metrics: shared.metrics.clone(),
        status: response.status().as_u16(),
        started,
    };
    // Every response gets a send clock, HTTP/1.1 too: a client can speak
    // HTTP/2 by its preface without asking for it by ALPN.
    let clock = Some(connection.activity.track_body());
    response.map(|body| LoggedBody::new(body, log, count, in_flight, clock, slot))
}

/// Whether `value` is a `Host` value: `uri-host [ ":" port ]` (RFC 9110
/// §7.2), a reg-name or an IP literal; no userinfo, no path, no spaces. A
/// byte scan, not a parse: it runs on every request.
fn is_host_value(value: &str) -> bool {
    let (host_ok, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let Some((literal, after)) = rest.split_once(']') else {
                return false;
            };
            let port = match after.strip_prefix(':') {
                Some(port) => port,
                None if after.is_empty() => "",
                None => return false,
            };
            let ip_literal = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
            (!literal.is_empty() && literal.bytes().all(ip_literal), port)
        }
        None => {
            let (name, port) = value.rsplit_once(':').unwrap_or((value, ""));
            let reg_name = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
            (!name.is_empty() && name.bytes().all(reg_name), port)
        }
    };
    host_ok && port.bytes().all(|b| b.is_ascii_digit())
}

/// What the `Allow` header of a 405 lists.
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH";

/// RFC 9112 §3.2: a request with more than one `Host` line, or a `Host`
/// that is not valid, is answered 400; and RFC 9113 §8.3.1: an HTTP/2
/// request whose `Host` names another host than its `:authority` is
/// malformed. Without this, the first `Host` would route while a backend
/// that reads the last one serves another site.
pub(super) fn check_host_headers<B>(request: &Request<B>) -> Result<(), &'static str> {
    let mut hosts = request.headers().get_all(HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    let Some(first) = first else {
        return Ok(());
    };
    let Ok(value) = first.to_str() else {
        return Err("invalid Host header");
    };
    if !is_host_value(value) {
        return Err("invalid Host header");
    }
    if let Some(authority) = request.uri().authority()
        && request.version() == hyper::Version::HTTP_2
        && !authority.as_str().eq_ignore_ascii_case(value)
    {
        return Err("Host header and :authority differ");
    }
    Ok(())
}

/// The 421 rule: a request whose host the served certificate does not
/// cover was meant for another connection (HTTP/2 reuses connections for
/// every name a certificate covers). Asking for exactly the SNI name is
/// never misdirected, nor is an IP literal on a connection without SNI.
fn is_misdirected(connection: &Connection, host: &str) -> bool {
    if connection.covers(host) {
        return false;
    }
    match &connection.sni {
        Some(sni) => !sni.eq_ignore_ascii_case(host),
        None => host.trim_matches(['[', ']']).parse::<IpAddr>().is_err(),
    }
}

/// The host asked for, with its port if given: the URI authority (HTTP/2,
/// absolute-form) or the `Host` header.
fn request_host(request: &Request<Incoming>) -> String {
    if let Some(authority) = request.uri().authority() {
        return authority.as_str().to_owned();
    }
    request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_default()
}

/// Lower-case host without port or trailing dot.
fn normalize_host(host: &str) -> String {
    strip_port(host).trim_end_matches('.').to_ascii_lowercase()
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values() {
        for good in [
            "example.com",
            "example.com:8443",
            "EXAMPLE.com.",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:8443",
            "a_b.example.com",
        ] {
            assert!(is_host_value(good), "{good}");
        }
        for bad in [
            "",
            ":443",
            "user@example.com",
            "example.com/path",
            "example.com:80x",
            "exa mple.com",
            "[::1",
            "[::1]x",
            "[]:1",
            "[zz]",
            "a[b].example.com",
        ] {
            assert!(!is_host_value(bad), "{bad}");
        }
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:8443"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8443"), "::1");
        assert_eq!(strip_port("127.0.0.1:1"), "127.0.0.1");
        assert_eq!(normalize_host("Example.COM.:443"), "example.com");
    }

    fn connection(sni: Option<&str>, names: &[&str]) -> Connection {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let text =
            crate::snapshot::generate_self_signed_pem(&names, 1, false).expect("certificate");
        let parsed = crate::pem::parse_certificate_pem(&text).expect("parses");
        Connection {
            peer: "127.0.0.1:1".parse().expect("addr"),
            sni: sni.map(str::to_owned),
            step: Step::Exact,
            domain: None,
            certificate: Arc::new(LoadedCertificate::from_parsed(
                parsed,
                crate::snapshot::SourceKind::Inline,
                None,
            )),
            activity: Arc::default(),
            client: None,
        }
    }

    #[test]
    fn misdirected_requests() {
        let c = connection(
            Some("a.example.com"),
            &["a.example.com", "*.shop.example.com"],
        );
        assert!(!is_misdirected(&c, "a.example.com"));
        assert!(
            !is_misdirected(&c, "x.shop.example.com"),
            "covered by the wildcard"
        );
        assert!(
            is_misdirected(&c, "b.example.com"),
            "another name, not covered"
        );
        let wrong_cert = connection(Some("b.example.com"), &["a.example.com"]);
        assert!(
            !is_misdirected(&wrong_cert, "b.example.com"),
            "the SNI itself is never misdirected"
        );
        let by_ip = connection(None, &["a.example.com"]);
        assert!(!is_misdirected(&by_ip, "127.0.0.1"));
        assert!(!is_misdirected(&by_ip, "[::1]"));
        assert!(is_misdirected(&by_ip, "b.example.com"));
    }
}
