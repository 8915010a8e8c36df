//! Forwarding a request to an HTTP/1.1 backend: headers rewritten as a
//! proxy must (RFC 9110 §7.6), bodies streamed both ways, WebSocket
//! upgrades turned into tunnels, and backend failures turned into 502/504.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;

pub use self::headers::client_ip_header;
use self::headers::{
    X_FORWARDED_HOST, X_FORWARDED_PROTO, answers_upgrade, append_forwarded_for, strip_hop_by_hop,
    upgrade_protocol,
};
use super::access::AccessEntry;
use super::answers::{ProxyBody, plain};
use super::conn::Lifecycle;
use super::io::Activity;
use super::pool::{Pool, PooledBody, SendError, SendFailure};
use super::request_body::ForwardBody;
use super::slots::BackendSlot;
use super::tunnel::{TunnelEnd, copy_with_idle_timeout};
use crate::balance::{Group, note};
use crate::config::{Backends, HttpBackend, Limits};
use crate::logging::record::TunnelOutcome;
use crate::metrics::{BackendError, ListenerMetrics};
use crate::snapshot::SnapshotReader;

mod headers;

/// The backend connections of one listener (kept alive between requests)
/// and the timeouts of its limits.
#[derive(Debug)]
pub struct Forwarder {
    limits: Limits,
    /// Plain backends by authority, TLS ones also by the snapshot's
    /// [`BackendTlsClient`] (see [`Pool`]).
    pool: Pool<ForwardBody>,
    backend_timeout: Duration,
    tunnel_idle_timeout: Duration,
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
    /// The member the request went to last (`None`: none was available).
    pub backend: Option<Authority>,
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
    /// The snapshot's reader, for the TLS client of an `https://` member.
    pub store: &'a SnapshotReader,
    /// The request's access-log entry (`None` when the log is off): an
    /// upgrade takes it, to write the one line of its tunnel when it ends.
    pub access: &'a mut Option<Box<AccessEntry>>,
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

    /// Sends `request` to a member of `group` (the route's `config`) over
    /// the connection `slot` stands for and returns the response to relay.
    /// A request that failed before anything was sent, or an idempotent
    /// one without a body, goes once more to another member (README:
    /// Redundant backends).
    pub async fn forward(
        &self,
        mut request: Request<Incoming>,
        config: &Backends<HttpBackend>,
        group: &Group,
        mut slot: BackendSlot,
        facts: RequestFacts<'_>,
    ) -> Forwarded {
        // Only the upgrades the route allows are passed on; any other
        // `Upgrade` token (h2c above all) is stripped with the hop-by-hop
        // headers, and the request goes on as an ordinary one.
        let upgrade = upgrade_protocol(&request, facts.upgrades);
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));

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

        let (parts, body) = request.into_parts();
        // A request that was sent may go again only if it is idempotent
        // and had no body (RFC 9110 §9.2.2): its head is kept for that,
        // and only when there is another member to send it to.
        let mut resend =
            (config.members.len() > 1 && parts.method.is_idempotent() && body.is_end_stream())
                .then(|| parts.clone());
        let (body, body_sent) = ForwardBody::client(body);
        let mut request = Request::from_parts(parts, body);
        let client = facts.peer.ip();
        let Some(mut chosen) = group.choose(client, None) else {
            return all_down();
        };
        let mut retried = false;
        let response = loop {
            let member = &config.members[chosen.index];
            let sent_at = Instant::now();
            let attempt = self.send_to(request, member, &facts).await;
            let failure = match attempt {
                Ok(response) => {
                    chosen
                        .session
                        .backend()
                        .record_response_time(sent_at.elapsed());
                    break response;
                }
                Err(failure) => failure,
            };
            facts
                .metrics
                .backend_error(member.authority.as_str(), failure.kind);
            // Not the backend's fault: the client's body failed, or the
            // client was still sending it when time ran out.
            let blame = match failure.cause {
                Cause::Backend => true,
                Cause::Client => false,
                Cause::Timeout => body_sent
                    .as_ref()
                    .is_none_or(|sent| sent.load(std::sync::atomic::Ordering::Relaxed)),
            };
            if blame {
                let state = chosen.session.backend();
                note(state, state.failed(group.can_go_down()), &failure.text);
            }
            // Never again after a timeout (the client would wait twice, and
            // the slow backend may still act on it) or the client's fault.
            let again = if retried {
                None
            } else {
                failure.unsent.or_else(|| {
                    (failure.cause == Cause::Backend)
                        .then(|| resend.take())
                        .flatten()
                        .map(|head| Request::from_parts(head, ForwardBody::Empty))
                })
            };
            let next = again.and_then(|r| Some((r, group.choose(client, Some(chosen.index))?)));
            let Some((again, next)) = next else {
                return failed(failure.status, failure.text, member);
            };
            tracing::info!(
                listener = %facts.listener, peer = %facts.peer,
                backend = %member.authority, next = %config.members[next.index].authority,
                failure = %failure.text,
                "backend failed before answering; the request goes to another backend"
            );
            request = again;
            chosen = next;
            retried = true;
        };
        let member = &config.members[chosen.index];
        let state = chosen.session.backend();
        if response.status().is_server_error() {
            note(
                state,
                state.failed(group.can_go_down()),
                &format!("answered {}", response.status()),
            );
        } else {
            note(state, state.passed(), "answered");
        }
        slot.hold(chosen.session);
        let mut response = response;
        let backend = member.authority.clone();
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let (Some(client_upgrade), Some(asked)) = (client_upgrade, &upgrade) else {
                // A 101 nobody asked for cannot be relayed.
                facts
                    .metrics
                    .backend_error(member.authority.as_str(), BackendError::Other);
                return failed(
                    StatusCode::BAD_GATEWAY,
                    "unexpected 101 from the backend".into(),
                    member,
                );
            };
            // RFC 9110 §15.2.2: the 101's `Upgrade` names the protocol
            // switched to, which must be one the client asked for.
            let switched_to = response.headers().get(header::UPGRADE);
            if !switched_to.is_some_and(|to| answers_upgrade(to, asked)) {
                let to = switched_to
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("(no Upgrade header)");
                facts
                    .metrics
                    .backend_error(member.authority.as_str(), BackendError::Other);
                return failed(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "the backend's 101 switches to `{to}`, not to the `{}` asked for",
                        asked.to_str().unwrap_or("?")
                    ),
                    member,
                );
            }
            {
                let backend_upgrade = hyper::upgrade::on(&mut response);
                facts.activity.pin_busy();
                let idle = self.tunnel_idle_timeout;
                let listener = facts.listener.to_string();
                let peer = facts.peer;
                let authority = backend.clone();
                let hard_stop = facts.lifecycle.hard_stop.clone();
                let metrics = facts.metrics.clone();
                let entry = facts.access.take().map(|mut entry| {
                    entry.record.status = StatusCode::SWITCHING_PROTOCOLS.as_u16();
                    entry.record.backend = Some(authority.to_string());
                    entry
                });
                facts.lifecycle.tracker.spawn(async move {
                    // The tunnel holds the backend connection to its end.
                    let _slot = slot;
                    let (client, backend) = match tokio::try_join!(client_upgrade, backend_upgrade) {
                        Ok(both) => both,
                        Err(e) => {
                            tracing::debug!(%listener, %peer, error = %e, "upgrade did not complete");
                            let end = format!("error: the upgrade did not complete: {e}");
                            log_tunnel(entry, 0, 0, end);
                            return;
                        }
                    };
                    let _open = metrics.tunnel_opened();
                    let (t, end) = copy_with_idle_timeout(
                        TokioIo::new(client),
                        TokioIo::new(backend),
                        idle,
                        hard_stop.cancelled(),
                    )
                    .await;
                    metrics.tunnel_done(t.up, t.down);
                    log_tunnel(entry, t.up, t.down, end.describe());
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
                        TunnelEnd::Shutdown => tracing::debug!(
                            %listener, %peer, backend = %authority, up = t.up, down = t.down,
                            "tunnel cut by the shutdown timeout"
                        ),
                    }
                });
            }
            return Forwarded {
                response: response.map(ProxyBody::Backend),
                slot: None,
                failure: None,
                backend: Some(backend),
            };
        }
        strip_hop_by_hop(response.headers_mut());
        Forwarded {
            response: response.map(ProxyBody::Backend),
            slot: Some(slot),
            failure: None,
            backend: Some(backend),
        }
    }

    /// One attempt: `request` to `member`, its response headers within
    /// `backend_timeout`.
    async fn send_to(
        &self,
        request: Request<ForwardBody>,
        member: &HttpBackend,
        facts: &RequestFacts<'_>,
    ) -> Result<Response<PooledBody<ForwardBody>>, Attempt> {
        let tls = match &member.tls {
            None => None,
            Some(tls) => match facts.store.load().backend_tls_client(&tls.backend) {
                Ok(client) => Some(client),
                Err(why) => {
                    return Err(Attempt {
                        status: StatusCode::BAD_GATEWAY,
                        kind: BackendError::Tls,
                        text: why.to_string(),
                        unsent: Some(request),
                        cause: Cause::Backend,
                    });
                }
            },
        };
        let sent = self.pool.send(request, &member.authority, tls.as_ref());
        match tokio::time::timeout(self.backend_timeout, sent).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(SendFailure { error, unsent })) => {
                let timed_out = is_timeout(&error);
                let cause = match &error {
                    SendError::Request(e) if e.is_user() => Cause::Client,
                    // Connecting in time is the backend's part alone.
                    _ if timed_out && !error.is_connect() => Cause::Timeout,
                    _ => Cause::Backend,
                };
                let (status, kind) = if timed_out {
                    (StatusCode::GATEWAY_TIMEOUT, BackendError::Timeout)
                } else if is_tls_failure(&error) {
                    (StatusCode::BAD_GATEWAY, BackendError::Tls)
                } else if error.is_connect() {
                    (StatusCode::BAD_GATEWAY, BackendError::Connect)
                } else {
                    (StatusCode::BAD_GATEWAY, BackendError::Other)
                };
                Err(Attempt {
                    status,
                    kind,
                    text: describe_client_error(&error, timed_out),
                    unsent,
                    cause,
                })
            }
            // Never sent again: it may have been acted on, and a second
            // wait would double the client's.
            Err(_) => Err(Attempt {
                status: StatusCode::GATEWAY_TIMEOUT,
                kind: BackendError::Timeout,
                text: format!(
                    "no response headers within {} s",
                    self.backend_timeout.as_secs()
                ),
                unsent: None,
                cause: Cause::Timeout,
            }),
        }
    }
}

/// Writes an upgraded request's one access-log line, when its tunnel ended
/// (`bytes`, as for any response, is what the client was sent).
fn log_tunnel(entry: Option<Box<AccessEntry>>, up: u64, down: u64, end: String) {
    if let Some(entry) = entry {
        let outcome = TunnelOutcome { up, down, end };
        entry.log.request(&entry.record, down, Some(&outcome));
    }
}

/// A failed attempt: the answer it would give, the request when it was
/// never sent, and whose fault it was.
struct Attempt {
    status: StatusCode,
    kind: BackendError,
    text: String,
    unsent: Option<Request<ForwardBody>>,
    cause: Cause,
}

/// Why an attempt failed, for the backend's health and for a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The backend: refused, unreachable, TLS, a broken connection.
    Backend,
    /// No answer in time (the backend's fault only if the client's body
    /// was all sent); never sent again.
    Timeout,
    /// The client's body failed (reset, malformed): not the backend's.
    Client,
}

/// Every member of the group is down or draining.
fn all_down() -> Forwarded {
    Forwarded {
        response: unavailable(),
        slot: None,
        failure: None,
        backend: None,
    }
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

fn failed(status: StatusCode, failure: String, member: &HttpBackend) -> Forwarded {
    Forwarded {
        response: plain(status, status.canonical_reason().unwrap_or("error")),
        slot: None,
        failure: Some(failure),
        backend: Some(member.authority.clone()),
    }
}

/// The answer when no member of a group takes requests: 503 with a body
/// that says so and `Retry-After`, never a hang (README: Redundant
/// backends).
pub fn unavailable() -> Response<ProxyBody> {
    let mut response = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "no backend is available: every backend of this route is down or draining; try again shortly",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

#[cfg(test)]
mod tests;
