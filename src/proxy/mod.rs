//! Listeners: accept loops, each TLS listener's `ServerConfig` (built once),
//! and graceful shutdown.
//!
//! The shape follows mini-redis: [`serve`] takes already-bound sockets and a
//! shutdown future, so tests bind `127.0.0.1:0` and run everything
//! in-process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, ListenerConfig, ListenerKind};
use crate::resolver::{HandshakeEvents, SnapshotStore, SniResolver};

pub mod https;

/// How long a TLS handshake may take before the connection is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long requests in flight may take to finish after shutdown starts.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

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
pub fn server_config(
    index: usize,
    listener: &ListenerConfig,
    store: SnapshotStore,
    events: Arc<HandshakeEvents>,
) -> Result<Arc<ServerConfig>, ServeError> {
    let tls_err = |source| ServeError::Tls {
        listener: listener.name.clone(),
        source,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver::new(index, store, events)));
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(tls_err)?;
    Ok(Arc::new(config))
}

/// Serves every listener until `shutdown` completes, then stops accepting
/// at once and lets connections in flight finish for up to
/// [`SHUTDOWN_TIMEOUT`].
pub async fn serve(
    config: &Config,
    sockets: Vec<TcpListener>,
    store: SnapshotStore,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    if sockets.len() != config.listeners.len() {
        return Err(ServeError::ListenerCount {
            given: sockets.len(),
            configured: config.listeners.len(),
        });
    }
    let events = Arc::new(HandshakeEvents::default());
    let graceful = Arc::new(GracefulShutdown::new());
    let mut accept_loops = tokio::task::JoinSet::new();
    for (index, (listener, socket)) in config.listeners.iter().zip(sockets).enumerate() {
        match listener.kind {
            ListenerKind::Https => {
                let tls = TlsAcceptor::from(server_config(
                    index,
                    listener,
                    store.clone(),
                    events.clone(),
                )?);
                let context = Arc::new(https::ListenerContext {
                    index,
                    config: listener.clone(),
                    store: store.clone(),
                    events: events.clone(),
                });
                tracing::info!(
                    listener = %listener.name,
                    kind = listener.kind.as_str(),
                    bind = %socket.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                    "listening"
                );
                accept_loops.spawn(https::accept_loop(socket, tls, context, graceful.clone()));
            }
            ListenerKind::Tls | ListenerKind::Http => {
                // Refused by configuration validation until these kinds land.
                tracing::error!(listener = %listener.name, kind = listener.kind.as_str(), "listener kind not served");
            }
        }
    }
    shutdown.await;
    // Dropping the accept loops closes the listening sockets at once, so a
    // new process can bind the same ports while connections drain.
    accept_loops.abort_all();
    while accept_loops.join_next().await.is_some() {}
    let open = graceful.count();
    tracing::info!(
        connections = open,
        "shutting down; letting connections in flight finish"
    );
    match Arc::try_unwrap(graceful) {
        Ok(graceful) => {
            if tokio::time::timeout(SHUTDOWN_TIMEOUT, graceful.shutdown())
                .await
                .is_err()
            {
                tracing::warn!(
                    timeout_secs = SHUTDOWN_TIMEOUT.as_secs(),
                    "connections still open at shutdown timeout; closing them"
                );
            }
        }
        Err(_) => tracing::warn!("connections still referenced at shutdown; closing them"),
    }
    Ok(())
}
