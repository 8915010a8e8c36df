//! `https` listeners: TLS with the resolver, then HTTP/1.1 or HTTP/2 (by
//! ALPN, or by the connection preface), then routes matched by host.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::TLS_HANDSHAKE_TIMEOUT;
use crate::config::{ListenerConfig, RouteAction};
use crate::resolver::{HandshakeEvents, SnapshotStore};
use crate::tree::Step;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What every connection of one listener shares.
#[derive(Debug)]
pub struct ListenerContext {
    /// The listener's position in the configuration.
    pub index: usize,
    /// Its configuration.
    pub config: ListenerConfig,
    /// The certificate state.
    pub store: SnapshotStore,
    /// Flags raised by the resolver.
    pub events: Arc<HandshakeEvents>,
}

/// What is known about a connection once its handshake is done: the access
/// log and the status page show it.
#[derive(Debug, Clone)]
struct ConnectionInfo {
    peer: SocketAddr,
    sni: Option<String>,
    step: Step,
    domain: Option<String>,
    subject: String,
    not_after: i64,
    sha256: String,
}

/// Accepts connections until the task is dropped.
pub async fn accept_loop(
    socket: TcpListener,
    tls: TlsAcceptor,
    context: Arc<ListenerContext>,
    graceful: Arc<GracefulShutdown>,
) {
    let mut http = auto::Builder::new(TokioExecutor::new());
    // hyper's timeouts do nothing without a timer (notes/crates.md §3.1).
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    loop {
        let (tcp, peer) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of
                // spinning, and keep serving the connections we have.
                tracing::warn!(listener = %context.config.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let context = context.clone();
        let http = http.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Some((stream, info)) = handshake(tcp, peer, &tls, &context).await else {
                return;
            };
            let info = Arc::new(info);
            let context2 = context.clone();
            let service = hyper::service::service_fn(move |request| {
                let info = info.clone();
                let context = context2.clone();
                async move { Ok::<_, Infallible>(handle(request, &context, &info)) }
            });
            let connection = http.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(listener = %context.config.name, %peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Runs the TLS handshake with a deadline and records what was served.
async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: &TlsAcceptor,
    context: &ListenerContext,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, ConnectionInfo)> {
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(listener = %context.config.name, %peer, failure = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(listener = %context.config.name, %peer, "TLS handshake timed out");
            return None;
        }
    };
    let sni = stream.get_ref().1.server_name().map(str::to_owned);
    // The resolver may not log; repeat its pure choice here for the log
    // and the status page (a swap in between is harmless for either).
    let snapshot = context.store.load();
    let choice = snapshot.choose(context.index, sni.as_deref());
    let facts = &choice.certificate.facts;
    if context.events.take_first_default_use() {
        tracing::warn!(
            listener = %context.config.name,
            sni = sni.as_deref().unwrap_or("-"),
            %peer,
            file = %choice.certificate.file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| "(in memory)".into()),
            subject = %facts.subject,
            "served the default certificate for the first time: no domain on the chain has a certificate \
             and the listener has no working certdir"
        );
    }
    let info = ConnectionInfo {
        peer,
        sni,
        step: choice.step,
        domain: choice.domain.map(str::to_owned),
        subject: facts.subject.clone(),
        not_after: facts.not_after,
        sha256: facts.sha256.clone(),
    };
    Some((stream, info))
}

/// Answers one request from the listener's routes.
fn handle(
    request: Request<Incoming>,
    context: &ListenerContext,
    info: &ConnectionInfo,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let host = request_host(&request);
    let path = request.uri().path().to_owned();
    let route = context.config.routes.iter().find(|route| {
        route.host.matches(&host)
            && route
                .path_prefix
                .as_deref()
                .is_none_or(|prefix| path.starts_with(prefix))
    });
    let response = match route.map(|r| &r.action) {
        Some(RouteAction::Respond { status, body }) => text_response(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
            body.clone(),
        ),
        Some(RouteAction::StatusPage) => status_page(info, &host),
        None => text_response(
            StatusCode::NOT_FOUND,
            "no route for this host and path\n".into(),
        ),
    };
    if context.config.access_log {
        tracing::info!(
            target: "sniwalk::access",
            listener = %context.config.name,
            peer = %info.peer,
            sni = info.sni.as_deref().unwrap_or("-"),
            cert = info.step.as_str(),
            method = %request.method(),
            host = %host,
            path = %path,
            status = response.status().as_u16(),
            bytes = body_len(&response),
            duration_us = started.elapsed().as_micros() as u64,
            "request"
        );
    }
    response
}

/// The request's host, lower-case, without port: `Host` for HTTP/1.1, the
/// URI authority for HTTP/2.
fn request_host(request: &Request<Incoming>) -> String {
    let raw = request
        .uri()
        .host()
        .map(str::to_owned)
        .or_else(|| {
            request
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    strip_port(&raw).trim_end_matches('.').to_ascii_lowercase()
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

fn body_len(response: &Response<Full<Bytes>>) -> u64 {
    use hyper::body::Body as _;
    response.body().size_hint().exact().unwrap_or(0)
}

fn text_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A small page saying that sniwalk works and which certificate this
/// connection got and why; it shows nothing beyond this connection.
fn status_page(info: &ConnectionInfo, host: &str) -> Response<Full<Bytes>> {
    let not_after = time::OffsetDateTime::from_unix_timestamp(info.not_after)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| info.not_after.to_string());
    let why = match (info.step, info.domain.as_deref()) {
        (Step::Exact, Some(d)) => format!(
            "the domain <code>{}</code> has its own certificate",
            escape(d)
        ),
        (Step::Ancestor, Some(d)) => format!(
            "the nearest configured domain with a certificate is <code>{}</code>",
            escape(d)
        ),
        (Step::Master, Some(d)) => format!(
            "the walk ended at the master domain <code>{}</code>",
            escape(d)
        ),
        (Step::Certdir, _) => {
            "no domain on the chain has a certificate, so the listener's certdir served".into()
        }
        _ => "no domain on the chain has a certificate and the listener has no working certdir, \
              so the default certificate served"
            .into(),
    };
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>sniwalk</title>\
         <style>body{{font-family:sans-serif;max-width:46em;margin:2em auto;line-height:1.5}}\
         code{{background:#eee;padding:0 .2em}}td{{padding:.1em .8em .1em 0;vertical-align:top}}</style></head>\n\
         <body><h1>sniwalk is running</h1>\n\
         <p>This page is served by sniwalk {version}, a TLS-terminating reverse proxy. \
         Edit <code>proxy.yaml</code> to add domains, certificates and routes; \
         <code>sniwalk check</code> shows every certificate and its problems.</p>\n\
         <h2>This connection</h2><table>\n\
         <tr><td>Host</td><td><code>{host}</code></td></tr>\n\
         <tr><td>SNI</td><td><code>{sni}</code></td></tr>\n\
         <tr><td>Certificate</td><td>{step}: {why}</td></tr>\n\
         <tr><td>Subject</td><td><code>{subject}</code></td></tr>\n\
         <tr><td>Valid until</td><td>{not_after}</td></tr>\n\
         <tr><td>SHA-256</td><td><code>{sha256}</code></td></tr>\n\
         </table></body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        host = escape(host),
        sni = escape(
            info.sni
                .as_deref()
                .unwrap_or("(none: connected by address)")
        ),
        step = info.step.as_str(),
        subject = escape(&info.subject),
        sha256 = info.sha256,
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Escapes text for HTML: SNI and Host come from the network.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:8443"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8443"), "::1");
        assert_eq!(strip_port("127.0.0.1:1"), "127.0.0.1");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
    }
}
