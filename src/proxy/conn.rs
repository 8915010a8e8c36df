//! What the three listener kinds share: each listener's settings and
//! counters, the shutdown signals, things rebuilt per limits, the TLS
//! handshake with its bookkeeping, and driving an HTTP connection through
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::log_limit::LogLimit;
use crate::balance::ListenerBackends;
use crate::challenge::ACME_TLS_ALPN;
use crate::config::{AcceptProxyProtocol, ListenerConfig};
use crate::logging::access::{AccessLog, AccessLogSlot};
use crate::metrics::{FailureReason, ListenerMetrics};
use crate::resolver::HandshakeEvents;
use crate::snapshot::SnapshotReader;
use crate::snapshot::{Choice, Snapshot};

/// What every connection of a listener shares, whatever its kind.
#[derive(Debug)]
pub struct ListenerShared {
    /// The listener's position in the configuration (indexes the
    /// snapshot's certdirs and routes).
    pub index: usize,
    /// Its configuration.
    pub config: ListenerConfig,
    /// The certificate state.
    pub store: SnapshotReader,
    /// Flags raised by the resolver.
    pub events: Arc<HandshakeEvents>,
    /// The listener's counters, looked up once so counting is an atomic
    /// increment.
    pub metrics: Arc<ListenerMetrics>,
    /// Connections refused for their PROXY protocol header: at most one
    /// `info` line per 10 s (anyone can send a bad header), the others at
    /// `debug`.
    pub proxy_refusals: LogLimit,
    /// The access log for the current settings (read only while it is on).
    pub access_logs: AccessLogSlot,
    /// On-demand certificates, consulted before the certificate is chosen
    /// when `acme.on_demand` is on.
    pub on_demand: Option<Arc<crate::acme::on_demand::OnDemand>>,
}

impl ListenerShared {
    /// The listener's current settings: limits, routes and backends come
    /// from the snapshot, so a configuration reload applies them to new
    /// connections and requests.
    pub fn settings(&self) -> Arc<ListenerConfig> {
        self.store
            .load()
            .listener(self.index)
            .cloned()
            .unwrap_or_else(|| Arc::new(self.config.clone()))
    }

    /// The current `accept_proxy_protocol:` (a reload may change it), for
    /// each accepted connection: a snapshot look-up (no lock, no
    /// allocation, no read on the socket) and, only when it is set, a
    /// reference count.
    pub fn accept_proxy_protocol(&self) -> Option<Arc<AcceptProxyProtocol>> {
        match self.store.load().listener(self.index) {
            Some(settings) => settings.accept_proxy_protocol.clone(),
            None => self.config.accept_proxy_protocol.clone(),
        }
    }

    /// The access log `settings` (the listener's current ones) ask for;
    /// `None` when it is off, and then nothing is looked up.
    pub fn access_log(&self, settings: &ListenerConfig) -> Option<Arc<AccessLog>> {
        settings
            .access_log
            .as_ref()
            .map(|config| self.access_logs.get(config))
    }

    /// [`ListenerShared::settings`] and the backend groups built from them,
    /// from one snapshot (a route's position finds its group).
    pub fn settings_and_backends(&self) -> (Arc<ListenerConfig>, Arc<ListenerBackends>) {
        let snapshot = self.store.load();
        match (snapshot.listener(self.index), snapshot.backends(self.index)) {
            (Some(settings), Some(backends)) => (settings.clone(), backends.clone()),
            // Only a snapshot built without listeners (never the proxy's).
            _ => (
                Arc::new(self.config.clone()),
                Arc::new(ListenerBackends::build(&self.config, None)),
            ),
        }
    }
}

/// Something built from a listener's limits (an HTTP server builder, a
/// backend client), rebuilt only when a reload changes the limits.
#[derive(Debug)]
pub struct PerLimits<T> {
    current: arc_swap::ArcSwap<(crate::config::Limits, T)>,
    build: fn(&crate::config::Limits) -> T,
}

impl<T> PerLimits<T> {
    /// Builds the first value.
    pub fn new(limits: &crate::config::Limits, build: fn(&crate::config::Limits) -> T) -> Self {
        PerLimits {
            current: arc_swap::ArcSwap::from_pointee((*limits, build(limits))),
            build,
        }
    }

    /// The value for `limits`, rebuilt if they changed since the last call.
    pub fn get(&self, limits: &crate::config::Limits) -> Arc<(crate::config::Limits, T)> {
        let current = self.current.load_full();
        if &current.0 == limits {
            return current;
        }
        let next = Arc::new((*limits, (self.build)(limits)));
        self.current.store(next.clone());
        next
    }
}

/// Shutdown signals and the set of connection and tunnel tasks.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    /// Cancelled when shutdown starts: stop accepting, finish what is open.
    pub shutdown: CancellationToken,
    /// Cancelled when `shutdown_timeout` is over: cut what is still open.
    pub hard_stop: CancellationToken,
    /// Every connection and tunnel task.
    pub tracker: TaskTracker,
}

/// Drives an HTTP connection until it ends; once shutdown starts it is
/// told to finish what is in flight and refuse new requests (GOAWAY on h2,
/// `Connection: close` on h1) through `graceful`, and at the hard stop it
/// is dropped. A connection for which `unused()` holds when shutdown starts
/// is closed at once: hyper would wait for an HTTP/2 client that never sent
/// its preface until the hard stop.
///
/// The connection comes boxed: the task that serves a connection lives as
/// long as the connection, and a task is as large as its future's largest
/// state. Boxed, the task holds a pointer and the heap holds exactly what
/// the one protocol spoken needs (README, Performance).
pub(super) async fn drive_http<C, E>(
    mut connection: Pin<Box<C>>,
    graceful: fn(Pin<&mut C>),
    unused: impl Fn() -> bool,
    lifecycle: &Lifecycle,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::select! {
        result = connection.as_mut() => result,
        () = lifecycle.shutdown.cancelled() => {
            if unused() {
                return Ok(());
            }
            graceful(connection.as_mut());
            tokio::select! {
                result = connection.as_mut() => result,
                () = lifecycle.hard_stop.cancelled() => Ok(()),
            }
        }
    }
}

/// hyper's HTTP/1.1 server settings for some limits. hyper's own header
/// timer is off: [`super::io::TimedIo`] already gives the idle and header
/// timeouts apart, and hyper's would reset a timer on every request
/// (README, Performance).
pub(super) fn http1_builder(limits: &crate::config::Limits) -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes);
    http
}

/// The handshake with `acme.on_demand` on: the ClientHello is read first,
/// its name is given to on-demand certificates (which hold it at most
/// `on_demand.wait`), then the handshake goes on with the certificate the
/// snapshot then gives. One deadline, `timeout` from the start, covers the
/// whole handshake but the hold (tokio-rustls' advice for
/// `LazyConfigAcceptor`). A TLS-ALPN-01 validation is never held.
async fn accept_on_demand(
    tcp: TcpStream,
    tls: &TlsAcceptor,
    timeout: Duration,
    listener: usize,
    on_demand: &Arc<crate::acme::on_demand::OnDemand>,
) -> Result<std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>, tokio::time::error::Elapsed>
{
    let deadline = tokio::time::Instant::now() + timeout;
    let lazy = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
    let start = match tokio::time::timeout_at(deadline, lazy).await? {
        Ok(start) => start,
        Err(e) => return Ok(Err(e)),
    };
    let hello = start.client_hello();
    let validation = hello
        .alpn()
        .is_some_and(|mut alpn| alpn.any(|p| p == ACME_TLS_ALPN));
    let held_since = tokio::time::Instant::now();
    if let Some(sni) = hello.server_name().filter(|_| !validation)
        && on_demand.wants(listener, sni)
    {
        let sni = sni.to_string();
        on_demand.hold(&sni).await;
    }
    let deadline = deadline + held_since.elapsed();
    tokio::time::timeout_at(deadline, start.into_stream(tls.config().clone())).await
}

/// Runs the TLS handshake within the listener's handshake timeout, counts
/// it, and logs the first use of the default certificate (flagged by the
/// resolver, which may not log itself).
///
/// Returns the stream and what `describe` takes from the certificate
/// choice for the connection's SNI. That choice is made again here, after
/// the handshake, from the current snapshot: rustls keeps nothing of the
/// resolver's call, and one lookup (tens of nanoseconds, no lock) is what
/// the connection needs anyway for its logs and status page. A swap between
/// the two lookups changes only what is reported, never what was served.
pub(super) async fn handshake<T>(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: &TlsAcceptor,
    shared: &ListenerShared,
    describe: impl FnOnce(&Snapshot, Choice<'_>) -> T,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, T)> {
    let timeout = shared.settings().limits.handshake_timeout;
    let accepted = match shared.on_demand.as_ref().filter(|o| o.is_on()) {
        Some(on_demand) => accept_on_demand(tcp, tls, timeout, shared.index, on_demand).await,
        None => tokio::time::timeout(timeout, tls.accept(tcp)).await,
    };
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let reason = FailureReason::of_io(&e);
            shared.metrics.handshake_failed(reason);
            tracing::debug!(
                listener = %shared.config.name, %peer, failure = %e, reason = reason.as_str(),
                "TLS handshake failed"
            );
            return None;
        }
        Err(_) => {
            shared.metrics.handshake_failed(FailureReason::Timeout);
            tracing::debug!(listener = %shared.config.name, %peer, "TLS handshake timed out");
            return None;
        }
    };
    if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
        // A TLS-ALPN-01 validation: the handshake was the answer (RFC 8737
        // §3); nothing is served on such a connection.
        shared.metrics.acme_challenge_handshake();
        tracing::debug!(listener = %shared.config.name, %peer, "tls-alpn-01 validation connection closed");
        let mut stream = stream;
        let close = tokio::io::AsyncWriteExt::shutdown(&mut stream);
        let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
        return None;
    }
    let snapshot = shared.store.load();
    let sni = stream.get_ref().1.server_name();
    let choice = snapshot.choose(shared.index, sni);
    shared.metrics.handshake_ok(choice.step);
    if shared.events.take_first_default_use() {
        let default = snapshot.default_certificate();
        tracing::warn!(
            listener = %shared.config.name,
            sni = sni.unwrap_or("-"),
            %peer,
            file = %default.file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| "(in memory)".into()),
            subject = %default.facts.subject,
            "served the default certificate for the first time: no domain on the chain has a certificate \
             and the listener has no working certdir"
        );
    }
    let described = describe(&snapshot, choice);
    drop(snapshot);
    Some((stream, described))
}
