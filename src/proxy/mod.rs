//! Listeners: accept loops with a connection limit, each TLS listener's
//! `ServerConfig` (built once), and graceful shutdown.
//!
//! The shape follows mini-redis: [`serve`] takes already-bound sockets and a
//! shutdown future, so tests bind `127.0.0.1:0` and run everything
//! in-process.
//!
//! Shutdown, in order: the listening sockets close at once (a new process
//! can bind the same ports), open HTTP connections are told to finish
//! (`Connection: close` / GOAWAY) and tunnels run on, then whatever is still
//! open after `shutdown_timeout` is cut.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::challenge::{ACME_TLS_ALPN, ChallengeStore};
use crate::config::{AcceptProxyProtocol, Config, ListenerConfig, ListenerKind};
use crate::logging::access::AccessLogSlot;
use crate::metrics::Metrics;
use crate::resolver::{HandshakeEvents, SniResolver};
use crate::snapshot::SnapshotReader;

pub mod accept_proxy;
pub mod access;
pub mod answers;
pub mod client_auth;
mod conn;
pub mod forward;
pub mod http;
pub mod https;
pub mod io;
pub mod log_limit;
pub mod park;
mod pool;
pub mod proxy_header;
mod request_body;
pub mod request_id;
mod routing;
pub mod slots;
pub mod tls;
pub mod tunnel;

use accept_proxy::ClientAddress;
pub use conn::{Lifecycle, ListenerShared, PerLimits};

/// ALPN protocols offered, in the server's order of preference.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The sockets given do not match the configured listeners.
    #[error("{given} sockets given for {configured} configured listeners")]
    ListenerCount {
        /// Sockets passed in.
        given: usize,
        /// Listeners in the configuration.
        configured: usize,
    },
    /// rustls refused the TLS configuration.
    #[error("listener {listener}: TLS configuration: {source}")]
    Tls {
        /// The listener.
        listener: String,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The client certificate settings cannot be used (fail closed: the
    /// listener does not start without its CA).
    #[error("listener {listener}: client_auth: {problem}")]
    ClientAuth {
        /// The listener.
        listener: String,
        /// What is wrong.
        problem: String,
    },
    /// Binding a configured address failed.
    #[error(
        "listener {listener}: cannot bind {bind}: {source}; is another process using the port?"
    )]
    Bind {
        /// The listener.
        listener: String,
        /// The address.
        bind: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Binds every configured listener, in configuration order.
pub async fn bind_all(config: &Config) -> Result<Vec<TcpListener>, ServeError> {
    let mut sockets = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        let socket = TcpListener::bind(listener.bind)
            .await
            .map_err(|source| ServeError::Bind {
                listener: listener.name.clone(),
                bind: listener.bind,
                source,
            })?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Builds a TLS listener's `ServerConfig`: once per listener, never rebuilt
/// on certificate changes, so session tickets survive swaps.
///
/// `https` listeners also offer ALPN `acme-tls/1` (last, so no ordinary
/// client ever picks it) and answer TLS-ALPN-01 validations from
/// `challenges`.
pub fn server_config(
    index: usize,
    listener: &ListenerConfig,
    store: SnapshotReader,
    events: Arc<HandshakeEvents>,
    challenges: &Arc<ChallengeStore>,
    tickets: Option<&Arc<dyn rustls::server::ProducesTickets>>,
) -> Result<Arc<ServerConfig>, ServeError> {
    let tls_err = |source| ServeError::Tls {
        listener: listener.name.clone(),
        source,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    if listener.client_auth.is_some() && store.load().client_verifier(index).is_none() {
        // Fail closed: a listener that must check client certificates does
        // not start without its CA.
        let snapshot = store.load();
        let problem = snapshot
            .report(&crate::snapshot::Place::ClientCa(listener.name.clone()))
            .and_then(|r| r.problems.first())
            .map_or_else(
                || "the CA file did not load".to_string(),
                |p| p.message.clone(),
            );
        return Err(ServeError::ClientAuth {
            listener: listener.name.clone(),
            problem,
        });
    }
    // Every TLS listener gets the reloading verifier, so `client_auth`
    // (mode, pins, CA) can change with a reload; without `client_auth` it
    // asks for nothing.
    let builder = builder.with_client_cert_verifier(Arc::new(client_auth::ReloadingVerifier::new(
        index,
        store.clone(),
    )));
    let mut config =
        builder.with_cert_resolver(Arc::new(if listener.kind == ListenerKind::Https {
            SniResolver::new(index, store, events).with_challenges(challenges.clone())
        } else {
            SniResolver::new(index, store, events)
        }));
    if listener.kind == ListenerKind::Https {
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    // Keys shared through `tls.ticket_keys_file` let another instance
    // resume; without them, per-process keys rotated by rustls.
    config.ticketer = match tickets {
        Some(shared) => shared.clone(),
        None => rustls::crypto::aws_lc_rs::Ticketer::new().map_err(tls_err)?,
    };
    Ok(Arc::new(config))
}

/// One listener's connection handler.
enum Handler {
    Https(TlsAcceptor, Arc<https::HttpsListener>),
    Tls(TlsAcceptor, Arc<tls::TlsListener>),
    Http(Arc<http::HttpListener>),
}

impl Handler {
    fn shared(&self) -> &ListenerShared {
        match self {
            Handler::Https(_, listener) => &listener.shared,
            Handler::Tls(_, listener) => &listener.shared,
            Handler::Http(listener) => &listener.shared,
        }
    }
}

/// What the TLS handshakes of every listener share besides the snapshot.
pub struct Handshakes {
    /// Pending TLS-ALPN-01 challenges.
    pub challenges: Arc<ChallengeStore>,
    /// Session ticket keys shared by instances (a file or the storage);
    /// `None`: per-process keys rotated by rustls.
    pub tickets: Option<Arc<dyn rustls::server::ProducesTickets>>,
    /// On-demand certificates (`acme.on_demand`).
    pub on_demand: Option<Arc<crate::acme::on_demand::OnDemand>>,
}

/// Serves every listener until `shutdown` completes, then shuts down as the
/// module documentation says.
pub async fn serve(
    config: &Config,
    sockets: Vec<TcpListener>,
    store: SnapshotReader,
    handshakes: Handshakes,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let Handshakes {
        challenges,
        tickets,
        on_demand,
    } = handshakes;
    if sockets.len() != config.listeners.len() {
        return Err(ServeError::ListenerCount {
            given: sockets.len(),
            configured: config.listeners.len(),
        });
    }
    let events = Arc::new(HandshakeEvents::default());
    let lifecycle = Lifecycle::default();
    let mut accept_loops = tokio::task::JoinSet::new();
    for (index, (listener, socket)) in config.listeners.iter().zip(sockets).enumerate() {
        let shared = ListenerShared {
            index,
            config: listener.clone(),
            store: store.clone(),
            events: events.clone(),
            metrics: metrics.listener(index, listener),
            proxy_refusals: Default::default(),
            access_logs: AccessLogSlot::new(listener.access_log.as_ref()),
            on_demand: on_demand.clone(),
        };
        let handler = match listener.kind {
            ListenerKind::Https => Handler::Https(
                TlsAcceptor::from(server_config(
                    index,
                    listener,
                    store.clone(),
                    events.clone(),
                    &challenges,
                    tickets.as_ref(),
                )?),
                Arc::new(https::HttpsListener::new(shared)),
            ),
            ListenerKind::Tls => Handler::Tls(
                TlsAcceptor::from(server_config(
                    index,
                    listener,
                    store.clone(),
                    events.clone(),
                    &challenges,
                    tickets.as_ref(),
                )?),
                Arc::new(tls::TlsListener {
                    shared,
                    all_down: Default::default(),
                }),
            ),
            ListenerKind::Http => Handler::Http(Arc::new(http::HttpListener::new(
                shared,
                challenges.clone(),
                config.state_layout(),
            ))),
        };
        tracing::info!(
            listener = %listener.name,
            kind = listener.kind.as_str(),
            bind = %socket.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            "listening"
        );
        accept_loops.spawn(accept_loop(
            socket,
            listener.name.clone(),
            listener.limits.max_connections,
            Arc::new(handler),
            lifecycle.clone(),
        ));
    }
    shutdown.await;
    lifecycle.shutdown.cancel();
    while accept_loops.join_next().await.is_some() {}
    lifecycle.tracker.close();
    let open = lifecycle.tracker.len();
    tracing::info!(
        connections = open,
        timeout_secs = config.shutdown_timeout.as_secs(),
        "listeners closed; letting connections in flight finish"
    );
    if tokio::time::timeout(config.shutdown_timeout, lifecycle.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = lifecycle.tracker.len(),
            "connections still open at the shutdown timeout; closing them"
        );
        lifecycle.hard_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), lifecycle.tracker.wait()).await;
    }
    Ok(())
}

/// Runs one connection's future as its own task, holding its slot of
/// `max_connections` and counted open until it ends, however it ends.
fn spawn_connection(
    tracker: &tokio_util::task::TaskTracker,
    handler: Arc<Handler>,
    permit: tokio::sync::OwnedSemaphorePermit,
    served: impl Future<Output = ()> + Send + 'static,
) {
    tracker.spawn(async move {
        let _permit = permit;
        let _open = handler.shared().metrics.connection_opened();
        served.await
    });
}

/// Spawns `serve` for one accepted connection. With `accept_proxy`, the
/// task first reads the load balancer's PROXY header
/// ([`accept_proxy::read_client_address`]) and serves the client it names,
/// or closes the connection; without, `serve` is the task as it is.
fn spawn_served<S, F>(
    tracker: &tokio_util::task::TaskTracker,
    handler: &Arc<Handler>,
    permit: tokio::sync::OwnedSemaphorePermit,
    mut tcp: TcpStream,
    peer: SocketAddr,
    accept_proxy: Option<Arc<AcceptProxyProtocol>>,
    serve: S,
) where
    S: FnOnce(TcpStream, ClientAddress) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let Some(policy) = accept_proxy else {
        let direct = ClientAddress {
            source: peer,
            destination: None,
        };
        spawn_connection(tracker, handler.clone(), permit, serve(tcp, direct));
        return;
    };
    let reader = handler.clone();
    let served = async move {
        // Boxed: the header's buffers live only while it is read, not for
        // the connection's whole life (README, Performance).
        let read = accept_proxy::read_client_address(&mut tcp, peer, &policy, reader.shared());
        let Some(client) = Box::pin(read).await else {
            return;
        };
        drop((policy, reader));
        serve(tcp, client).await
    };
    spawn_connection(tracker, handler.clone(), permit, served);
}

/// Accepts connections until shutdown. At `max_connections`, accepting
/// pauses: new connections wait in the kernel's accept queue.
async fn accept_loop(
    socket: TcpListener,
    name: String,
    max_connections: usize,
    handler: Arc<Handler>,
    lifecycle: Lifecycle,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tracing::warn!(listener = %name, max_connections, "connection limit reached; new connections wait");
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return,
                    },
                    () = lifecycle.shutdown.cancelled() => return,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead
                    // of spinning, and keep serving what is open.
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = lifecycle.shutdown.cancelled() => return,
        };
        let _ = tcp.set_nodelay(true);
        let task_lifecycle = lifecycle.clone();
        // Read per connection, so a reload that changes it applies to the
        // next one; `None` (the usual case) costs no read and no allocation.
        let accept_proxy = handler.shared().accept_proxy_protocol();
        // One spawn per kind: a task is as large as its future, and a match
        // over the three inside one task would make every HTTPS
        // connection's task as large as a `tls` tunnel's (README,
        // Performance).
        let tracker = &lifecycle.tracker;
        match &*handler {
            Handler::Https(tls, listener) => {
                let (tls, listener) = (tls.clone(), listener.clone());
                spawn_served(
                    tracker,
                    &handler,
                    permit,
                    tcp,
                    peer,
                    accept_proxy,
                    move |tcp, client| {
                        https::serve_connection(tcp, client.source, tls, listener, task_lifecycle)
                    },
                );
            }
            Handler::Tls(tls, listener) => {
                let (tls, listener) = (tls.clone(), listener.clone());
                spawn_served(
                    tracker,
                    &handler,
                    permit,
                    tcp,
                    peer,
                    accept_proxy,
                    move |tcp, client| {
                        tls::serve_connection(tcp, client, tls, listener, task_lifecycle)
                    },
                );
            }
            Handler::Http(listener) => {
                let listener = listener.clone();
                spawn_served(
                    tracker,
                    &handler,
                    permit,
                    tcp,
                    peer,
                    accept_proxy,
                    move |tcp, client| {
                        http::serve_connection(tcp, client.source, listener, task_lifecycle)
                    },
                );
            }
        }
    }
}
