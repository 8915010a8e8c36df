//! `http` listeners: plain HTTP on port 80. ACME HTTP-01 answers at
//! `/.well-known/acme-challenge/<token>` (from the challenge store, else
//! from the answers other instances share in `state_dir/acme/http-01/`, 404
//! for unknown tokens); everything else is redirected (308) to `https://`
//! with the same host, path and query.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue, LOCATION, REFERER, USER_AGENT};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::access::{AccessEntry, LoggedBody, RequestCount};
use super::answers::{ProxyBody, full, plain};
use super::conn::{Lifecycle, ListenerShared, PerLimits};
use super::io::{Activity, Protocol, TimedIo};
use super::request_id::{X_REQUEST_ID, take_or_make};
use crate::challenge::{self, ChallengeStore};
use crate::logging::record::RequestRecord;
use crate::state_layout::StateLayout;

/// Where ACME HTTP-01 answers live (RFC 8555 §8.3).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// What every connection of one `http` listener shares.
#[derive(Debug)]
pub struct HttpListener {
    /// Name, index, store.
    pub shared: ListenerShared,
    /// Pending HTTP-01 answers of this instance.
    pub challenges: Arc<ChallengeStore>,
    /// The state directory, where instances sharing it publish theirs
    /// (`acme/http-01`).
    pub state: StateLayout,
    /// HTTP server settings, for the current limits.
    pub http: PerLimits<hyper::server::conn::http1::Builder>,
}

impl HttpListener {
    /// Settings for one listener of a proxy whose state directory is
    /// `state`.
    pub fn new(
        shared: ListenerShared,
        challenges: Arc<ChallengeStore>,
        state: StateLayout,
    ) -> Self {
        HttpListener {
            http: PerLimits::new(&shared.config.limits, super::conn::http1_builder),
            shared,
            challenges,
            state,
        }
    }

    /// The answer for `token`: this instance's, else one shared by another
    /// instance (read from disk, size-capped).
    async fn http01_answer(&self, token: &str, peer: SocketAddr) -> Option<Arc<str>> {
        if !challenge::is_token(token) {
            return None;
        }
        if let Some(answer) = self.challenges.http01(token) {
            return Some(answer);
        }
        let file = || self.state.http01_answer(token);
        match challenge::read_shared_http01(&self.state, token).await {
            Ok(Some(answer)) => {
                tracing::debug!(
                    listener = %self.shared.config.name,
                    %peer,
                    token,
                    file = %file().display(),
                    "HTTP-01 answer from the shared state (another instance ordered)"
                );
                Some(answer.into())
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(
                    listener = %self.shared.config.name,
                    token,
                    file = %file().display(),
                    "cannot read a shared HTTP-01 answer: {e}"
                );
                None
            }
        }
    }
}

/// Serves one plain-HTTP connection.
pub async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    listener: Arc<HttpListener>,
    lifecycle: Lifecycle,
) {
    let limits = listener.shared.settings().limits;
    let activity = Arc::new(Activity::default());
    let io = TimedIo::new(
        tcp,
        activity.clone(),
        Protocol::Http1,
        limits.header_timeout,
        limits.idle_timeout,
    )
    .with_send_timeout(limits.send_timeout);
    let service_listener = listener.clone();
    let service = hyper::service::service_fn(move |request| {
        let (listener, activity) = (service_listener.clone(), activity.clone());
        async move {
            let response = handle(request, peer, &listener, &activity).await;
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let http = listener.http.get(&limits);
    let served = Box::pin(http.1.serve_connection(TokioIo::new(io), service));
    // hyper closes an idle HTTP/1.1 connection itself.
    let unused = || false;
    let result =
        super::conn::drive_http(served, |c| c.graceful_shutdown(), unused, &lifecycle).await;
    if let Err(e) = result {
        tracing::debug!(listener = %listener.shared.config.name, %peer, error = %e, "connection ended with an error");
    }
}

async fn handle(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    listener: &HttpListener,
    activity: &Arc<Activity>,
) -> Response<LoggedBody> {
    let in_flight = activity.begin();
    let settings = listener.shared.settings();
    let started = Instant::now();
    let path = request.uri().path().to_owned();
    let host_header = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_owned();
    // With the access log on, the request gets an id (the client's, when
    // sane), returned with the answer and logged.
    let access = listener
        .shared
        .access_log(&settings)
        .map(|log| (log, take_or_make(request.headers_mut())));
    let response = if let Err(problem) = super::routing::check_host_headers(&request) {
        plain(StatusCode::BAD_REQUEST, problem)
    } else {
        match path.strip_prefix(CHALLENGE_PREFIX) {
            Some(token) => match listener.http01_answer(token, peer).await {
                Some(answer) => {
                    tracing::info!(listener = %listener.shared.config.name, %peer, token, "answered an ACME HTTP-01 challenge");
                    // `text/plain` without a charset: the key authorization
                    // is ASCII, and the CA compares the body only.
                    let mut response = Response::new(full(answer.to_string()));
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    response
                }
                None => plain(StatusCode::NOT_FOUND, "no such challenge"),
            },
            None => redirect_to_https(&request, &host_header, settings.https_port),
        }
    };
    let mut response = response;
    let log = access.map(|(log, request_id)| {
        response
            .headers_mut()
            .insert(X_REQUEST_ID, request_id.clone());
        let headers = request.headers();
        Box::new(AccessEntry {
            log,
            record: RequestRecord {
                listener: listener.shared.config.name.clone(),
                peer,
                sni: None,
                cert: None,
                request_id,
                method: request.method().clone(),
                host: super::routing::normalize_host(&host_header).into_owned(),
                path,
                protocol: request.version(),
                user_agent: headers.get(USER_AGENT).cloned(),
                referer: headers.get(REFERER).cloned(),
                status: response.status().as_u16(),
                backend: None,
                started,
            },
        })
    });
    let count = RequestCount {
        metrics: listener.shared.metrics.clone(),
        status: response.status().as_u16(),
        started,
    };
    response.map(|body| LoggedBody::new(body, log, count, in_flight, None, None))
}

/// 308 to the same host (with `https_port` if set), path and query.
fn redirect_to_https(
    request: &Request<Incoming>,
    host_header: &str,
    https_port: Option<u16>,
) -> Response<ProxyBody> {
    let Some(host) = redirect_host(host_header) else {
        return plain(StatusCode::BAD_REQUEST, "missing or invalid Host header");
    };
    let port = match https_port {
        Some(443) | None => String::new(),
        Some(port) => format!(":{port}"),
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(location) = HeaderValue::from_str(&format!("https://{host}{port}{path}")) else {
        return plain(StatusCode::BAD_REQUEST, "invalid request target");
    };
    let mut response = plain(StatusCode::PERMANENT_REDIRECT, "use https");
    response.headers_mut().insert(LOCATION, location);
    response
}

/// The host part of a Host header, if it is a plausible host name or IP
/// (it ends up in a Location header: nothing else may pass).
fn redirect_host(host_header: &str) -> Option<&str> {
    let host = if host_header.starts_with('[') {
        host_header.split_inclusive(']').next()?
    } else {
        host_header.rsplit_once(':').map_or(host_header, |(h, _)| h)
    };
    let valid = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        });
    valid.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_hosts_are_checked() {
        assert_eq!(redirect_host("example.com:80"), Some("example.com"));
        assert_eq!(redirect_host("example.com"), Some("example.com"));
        assert_eq!(redirect_host("[::1]:80"), Some("[::1]"));
        assert_eq!(redirect_host(""), None);
        assert_eq!(redirect_host("evil.com/path"), None);
        assert_eq!(redirect_host("a b"), None);
    }
}
