//! `https` listeners: TLS with the resolver, then HTTP/1.1 (parked between
//! requests, [`super::park`]) or HTTP/2 as ALPN chose, then routes matched
//! by host and path prefix, first match wins.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::HeaderMap;
use hyper::body::{Body as _, Incoming};
use hyper::header::{ALLOW, HeaderValue, REFERER, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::access::{AccessEntry, LoggedBody, RequestCount};
use super::answers::{ProxyBody, plain, redirect, status_page, text};
use super::client_auth::{
    CLIENT_CERT_SHA256_HEADER, CLIENT_CERT_SUBJECT_HEADER, ClientCert, admit,
};
use super::conn::{Lifecycle, ListenerShared, PerLimits};
use super::forward::{Forwarder, RequestFacts, client_ip_header};
use super::io::{Activity, Protocol, TimedIo};
use super::log_limit::LogLimit;
use super::request_id::{X_REQUEST_ID, take_or_make};
use super::routing::{
    ALLOWED_METHODS, check_host_headers, find_route, is_misdirected, normalize_host, request_host,
};
use super::slots::BackendSlots;
use crate::config::{Limits, ListenerConfig, RouteAction};
use crate::logging::access::AccessLog;
use crate::logging::record::RequestRecord;
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
    pub http: PerLimits<HttpServers>,
    /// Backend connections held by this listener's requests and tunnels.
    pub backend_slots: BackendSlots,
    /// Requests answered 503 because a route had no backend up: logged at
    /// most once per 10 s.
    pub all_down: LogLimit,
}

impl HttpsListener {
    /// Settings for one listener.
    pub fn new(shared: ListenerShared) -> Self {
        let limits = shared.config.limits;
        HttpsListener {
            forwarder: PerLimits::new(&limits, Forwarder::new),
            http: PerLimits::new(&limits, HttpServers::new),
            backend_slots: BackendSlots::default(),
            all_down: LogLimit::default(),
            shared,
        }
    }
}

/// hyper's server settings for some limits, one per protocol: ALPN says
/// which one a connection speaks (RFC 9113 §3.2: HTTP/2 over TLS is
/// negotiated by ALPN; without it the connection is HTTP/1.1, as nginx
/// does), so no connection carries the state of both or sniffs a preface.
#[derive(Debug)]
pub struct HttpServers {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl HttpServers {
    fn new(limits: &Limits) -> Self {
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .max_header_list_size(limits.max_header_bytes as u32)
            .max_concurrent_streams(limits.max_concurrent_streams);
        HttpServers {
            http1: super::conn::http1_builder(limits),
            http2,
        }
    }
}

/// What is known about a connection once its handshake is done.
#[derive(Debug)]
struct Connection {
    peer: SocketAddr,
    /// The peer's IP address as an `X-Forwarded-For` value.
    forwarded_for: HeaderValue,
    sni: Option<String>,
    step: Step,
    domain: Option<String>,
    /// The certificate served, with the facts read when it was loaded.
    certificate: Arc<LoadedCertificate>,
    activity: Arc<Activity>,
    /// The client certificate rustls verified, if one was sent.
    client: Option<ClientCert>,
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
    // Boxed, the handshake's state (rustls's and the timer's) and then the
    // TLS stream live on the heap for exactly as long as they are needed,
    // and the connection's task, which lives as long as the connection,
    // holds pointers to them: a future is as large as its largest state,
    // and every move of a stream held by value would take another copy's
    // room in it (README, Performance).
    let Some((stream, served)) = Box::pin(handshake).await else {
        return;
    };
    let stream = Box::new(stream);
    let (_, tls_connection) = stream.get_ref();
    let sni = tls_connection.server_name().map(str::to_owned);
    let protocol = match tls_connection.alpn_protocol() {
        Some(b"h2") => Protocol::Http2,
        _ => Protocol::Http1,
    };
    let client = ClientCert::of(tls_connection.peer_certificates());
    let activity = Arc::new(Activity::default());
    let send_clock = activity.clone();
    let limits = served.limits;
    let connection = Arc::new(Connection {
        peer,
        forwarded_for: client_ip_header(peer),
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
    let io = match protocol {
        Protocol::Http1 => io.with_parking(super::park::PARK_AFTER),
        Protocol::Http2 => io,
    };
    let service_listener = listener.clone();
    let service_lifecycle = lifecycle.clone();
    let service = hyper::service::service_fn(move |request| {
        let listener = service_listener.clone();
        let connection = connection.clone();
        let lifecycle = service_lifecycle.clone();
        // Boxed, whole: hyper keeps a slot as large as this future on
        // every HTTP/1.1 connection, idle or not, and moves it whole into
        // each HTTP/2 stream's task (several copies per stream); one box
        // per request holds the handler and forwarding state instead
        // (README, Performance).
        Box::pin(async move {
            Ok::<_, std::convert::Infallible>(
                handle(request, &listener, &connection, &lifecycle).await,
            )
        })
    });
    let http = listener.http.get(&limits);
    let result = match protocol {
        Protocol::Http1 => {
            // Parked between requests: an idle connection holds no HTTP
            // buffers (README, Performance).
            super::park::serve_http1(io, service, &http.1.http1, &send_clock, &lifecycle).await
        }
        Protocol::Http2 => {
            let served = Box::pin(http.1.http2.serve_connection(TokioIo::new(io), service));
            let unused = || !send_clock.has_begun_any();
            super::conn::drive_http(served, |c| c.graceful_shutdown(), unused, &lifecycle)
                .await
                .map_err(Into::into)
        }
    };
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

/// Answers one request: the checks, then the first matching route
/// ([`find_route`]), then the access log line and metrics on its body.
async fn handle(
    request: Request<Incoming>,
    listener: &HttpsListener,
    connection: &Arc<Connection>,
    lifecycle: &Lifecycle,
) -> Response<LoggedBody> {
    let in_flight = connection.activity.begin();
    connection
        .activity
        .note_request_body(!request.body().is_end_stream());
    let started = Instant::now();
    let shared = &listener.shared;
    let host_value = request_host(&request);
    // Not text (bytes outside visible ASCII): refused below as a missing
    // host, since the `Host` checks refuse it first.
    let host_with_port = host_value.to_str().unwrap_or_default();
    let host = normalize_host(host_with_port);
    // Kept for routing and the logs without copying (the request moves
    // on): a path is a shared slice of the head.
    let target = request.uri().path_and_query().cloned();
    let path = target.as_ref().map_or("/", |t| t.path());
    let (settings, backends) = shared.settings_and_backends();
    let mut request = request;
    set_client_certificate_headers(request.headers_mut(), connection.client.as_ref());
    // The access log's entry, begun while the request is at hand (with its
    // id, which the backend gets too); nothing is made when the log is off.
    let mut access = shared.access_log(&settings).map(|log| {
        let name = &shared.config.name;
        begin_entry(log, &mut request, connection, name, &host, path, started)
    });
    let request_id = access.as_ref().map(|e| e.record.request_id.clone());

    let mut backend = None;
    let mut slot = None;
    let response = if let Some(refused) = refusal(&request, &host, listener, connection, &settings)
    {
        refused
    } else {
        match find_route(&settings.routes, &host, path) {
            None => plain(StatusCode::NOT_FOUND, "no route for this host and path"),
            Some((index, route)) => match (&route.action, backends.route(index)) {
                (RouteAction::Respond { status, body }, _) => text(
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
                    body.clone(),
                ),
                (RouteAction::StatusPage, _) => status_page(
                    &host,
                    connection.sni.as_deref(),
                    connection.step,
                    connection.domain.as_deref(),
                    &connection.certificate,
                ),
                (RouteAction::Redirect { to, status }, _) => redirect(to, *status, &request),
                (RouteAction::Backend(config), Some(group)) => {
                    let limit = settings.limits.max_backend_connections;
                    match listener.backend_slots.try_take(limit, &shared.metrics) {
                        None => backend_limit_refusal(listener, limit),
                        Some(taken) => {
                            let facts = RequestFacts {
                                peer: connection.peer,
                                forwarded_for: &connection.forwarded_for,
                                host: &host_value,
                                activity: &connection.activity,
                                lifecycle,
                                listener: &shared.config.name,
                                metrics: &shared.metrics,
                                upgrades: &route.upgrades,
                                store: &shared.store,
                                access: &mut access,
                            };
                            let forwarder = listener.forwarder.get(&settings.limits);
                            let forwarded = forwarder
                                .1
                                .forward(request, config, group, taken, facts)
                                .await;
                            backend = forwarded.backend;
                            if let Some(failure) = &forwarded.failure {
                                tracing::warn!(
                                    listener = %shared.config.name,
                                    peer = %connection.peer,
                                    host = %host,
                                    path = %path,
                                    backend = backend.as_ref().map_or("-", |b| b.as_str()),
                                    status = forwarded.response.status().as_u16(),
                                    failure = %failure,
                                    "backend failed"
                                );
                            } else if backend.is_none() {
                                all_down_refusal(listener, &host, path);
                            }
                            slot = forwarded.slot;
                            forwarded.response
                        }
                    }
                }
                // The snapshot builds a group for every backend route.
                (RouteAction::Backend(_), None) => {
                    plain(StatusCode::BAD_GATEWAY, "no backend group for this route")
                }
            },
        }
    };
    let mut response = response;
    if let Some(id) = request_id {
        response.headers_mut().insert(X_REQUEST_ID, id);
    }
    // `None` also when a WebSocket's tunnel took the entry: its one line
    // is written when it ends.
    let log = access.map(|mut entry| {
        entry.record.status = response.status().as_u16();
        entry.record.backend = backend.map(|b| b.to_string());
        entry
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

/// The access-log entry of a request, begun before it is routed: the id
/// taken from the client or made, set in the request for the backend.
fn begin_entry(
    log: Arc<AccessLog>,
    request: &mut Request<Incoming>,
    connection: &Connection,
    listener: &str,
    host: &str,
    path: &str,
    started: Instant,
) -> Box<AccessEntry> {
    let request_id = take_or_make(request.headers_mut());
    let headers = request.headers();
    Box::new(AccessEntry {
        log,
        record: RequestRecord {
            listener: listener.to_string(),
            peer: connection.peer,
            sni: connection.sni.clone(),
            cert: Some(connection.step),
            request_id,
            method: request.method().clone(),
            host: host.to_string(),
            path: path.to_string(),
            protocol: request.version(),
            user_agent: headers.get(USER_AGENT).cloned(),
            referer: headers.get(REFERER).cloned(),
            status: 0,
            backend: None,
            started,
        },
    })
}

/// Sets the client-certificate headers from the certificate rustls
/// verified, after removing any the client sent: never trusted from the
/// client (README, "Client certificates").
fn set_client_certificate_headers(headers: &mut HeaderMap, client: Option<&ClientCert>) {
    // A pass over the names finds whether the client sent either (it hardly
    // ever does), cheaper than looking both up by hash on every request.
    if headers
        .keys()
        .any(|name| *name == CLIENT_CERT_SHA256_HEADER || *name == CLIENT_CERT_SUBJECT_HEADER)
    {
        headers.remove(CLIENT_CERT_SHA256_HEADER);
        headers.remove(CLIENT_CERT_SUBJECT_HEADER);
    }
    if let Some(client) = client {
        if let Ok(value) = HeaderValue::from_str(&client.sha256) {
            headers.insert(CLIENT_CERT_SHA256_HEADER, value);
        }
        if let Ok(value) = HeaderValue::from_str(&client.subject) {
            headers.insert(CLIENT_CERT_SUBJECT_HEADER, value);
        }
    }
}

/// The answer to a request refused before routing: CONNECT (405), a bad
/// or missing `Host` (400), a client certificate the listener does not
/// admit (403), a host the connection's certificate does not cover (421).
fn refusal<B>(
    request: &Request<B>,
    host: &str,
    listener: &HttpsListener,
    connection: &Connection,
    settings: &ListenerConfig,
) -> Option<Response<ProxyBody>> {
    if request.method() == Method::CONNECT {
        // A reverse proxy is no forward proxy: CONNECT would open a tunnel
        // to wherever the client names (RFC 9110 §9.3.6).
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not served here: this is a reverse proxy",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        return Some(response);
    }
    if let Err(problem) = check_host_headers(request) {
        return Some(plain(StatusCode::BAD_REQUEST, problem));
    }
    if host.is_empty() {
        return Some(plain(StatusCode::BAD_REQUEST, "missing Host header"));
    }
    if let Err(reason) = admit(settings.client_auth.as_ref(), connection.client.as_ref()) {
        tracing::info!(
            listener = %listener.shared.config.name,
            peer = %connection.peer,
            client_sha256 = connection.client.as_ref().map_or("-", |c| c.sha256.as_str()),
            reason,
            "request refused: invalid client certificate"
        );
        return Some(plain(StatusCode::FORBIDDEN, "Invalid client certificate"));
    }
    if is_misdirected(
        &connection.certificate.facts,
        connection.sni.as_deref(),
        host,
    ) {
        return Some(plain(
            StatusCode::MISDIRECTED_REQUEST,
            "this connection's certificate does not cover that host",
        ));
    }
    None
}

/// The 503 (`Retry-After: 1`) for a request over the listener's
/// `max_backend_connections`; logged at most every 10 s, not per request
/// like a backend failure: a flood is worth no flood of lines.
/// Logs requests answered 503 because every member of their route's group
/// is down or draining: the first at once, then one line per 10 s.
fn all_down_refusal(listener: &HttpsListener, host: &str, path: &str) {
    if let Some(refused) = listener.all_down.admit() {
        tracing::warn!(
            listener = %listener.shared.config.name,
            host,
            path,
            refused,
            "no backend available: every backend of the route is down or draining; requests \
             answered 503"
        );
    }
}

fn backend_limit_refusal(listener: &HttpsListener, limit: usize) -> Response<ProxyBody> {
    listener
        .backend_slots
        .log_refusal(&listener.shared.config.name, limit);
    let mut response = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many backend connections in use; try again shortly",
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
