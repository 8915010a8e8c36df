//! `tls` listeners (SIP over TLS): TLS with the same resolver, then the
//! plaintext bytes to one TCP backend and back, optionally behind a PROXY
//! protocol v2 header so the backend sees the client's address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::accept_proxy::ClientAddress;
use super::conn::{Lifecycle, ListenerShared};
use super::log_limit::LogLimit;
use super::tunnel::{Transferred, TunnelEnd, copy_with_idle_timeout};
use crate::config::{ListenerConfig, TcpBackend};
use crate::logging::record::{TlsTunnelRecord, TunnelOutcome};
use crate::metrics::BackendError;
use crate::snapshot::backend_tls::BackendTlsError;

/// What every connection of one `tls` listener shares.
#[derive(Debug)]
pub struct TlsListener {
    /// Name, index, store, events; backend, PROXY header and limits come
    /// from its current settings.
    pub shared: ListenerShared,
    /// Connections closed because no backend was available: logged at
    /// most once per 10 s.
    pub all_down: LogLimit,
}

/// Serves one accepted TCP connection: handshake, backend, tunnel.
/// `client` is the TCP peer, or the client a load balancer's PROXY header
/// named (then its destination goes into the header sent on).
pub async fn serve_connection(
    tcp: TcpStream,
    client: ClientAddress,
    tls: TlsAcceptor,
    listener: Arc<TlsListener>,
    lifecycle: Lifecycle,
) {
    let started = Instant::now();
    let peer = client.source;
    let shared = &listener.shared;
    let settings = shared.settings();
    let limits = settings.limits;
    // The client connected to the load balancer's address when a header
    // said so (as HAProxy's `send-proxy` chains pass it on), else to ours.
    let local = client.destination.or_else(|| tcp.local_addr().ok());
    let handshake = super::conn::handshake(tcp, peer, &tls, shared, |_, choice| choice.step);
    // Boxed, as on `https` listeners: the task lives as long as the
    // tunnel, and a future is as large as its largest state, so the
    // handshake's state and the streams live on the heap instead (README,
    // Performance: an idle `tls` connection's task went from 10.5 KB).
    let Some((client, step)) = Box::pin(handshake).await else {
        return;
    };
    let mut client = Box::new(client);
    let sni = client.get_ref().1.server_name().map(str::to_owned);
    let certificate = super::client_auth::ClientCert::of(client.get_ref().1.peer_certificates());
    if let Err(reason) =
        super::client_auth::admit(settings.client_auth.as_ref(), certificate.as_ref())
    {
        tracing::info!(
            listener = %shared.config.name,
            %peer,
            client_sha256 = certificate.as_ref().map_or("-", |c| c.sha256.as_str()),
            reason,
            "connection refused: invalid client certificate"
        );
        return;
    }
    // The groups and the settings they were built from, from one snapshot
    // (a reload during the handshake may have changed both).
    let (current, backends) = shared.settings_and_backends();
    let (Some(config), Some(group)) = (&current.backends, &backends.tcp) else {
        // Configuration validation requires a backend on `tls` listeners.
        return;
    };
    let destination = local.unwrap_or(peer);
    let mut chosen = None;
    let mut exclude = None;
    // Nothing of the client's has been sent when connecting fails, so one
    // other member may always be tried (README: Redundant backends).
    for _ in 0..2 {
        let Some(choice) = group.choose(peer.ip(), exclude) else {
            break;
        };
        let member = &config.members[choice.index];
        let state = choice.session.backend().clone();
        let connecting = Instant::now();
        match connect_member(shared, member, &current, peer, destination).await {
            Ok(stream) => {
                state.record_connect_time(connecting.elapsed());
                crate::balance::note(&state, state.passed(), "connected");
                chosen = Some((choice, stream));
                break;
            }
            Err((kind, failure)) => {
                shared.metrics.backend_error(&member.address, kind);
                crate::balance::note(&state, state.failed(group.can_go_down()), &failure);
                tracing::warn!(
                    listener = %shared.config.name, %peer, sni = sni.as_deref().unwrap_or("-"),
                    backend = %member.address, failure = %failure,
                    "backend unreachable"
                );
                exclude = Some(choice.index);
            }
        }
    }
    let Some((choice, backend)) = chosen else {
        if exclude.is_none()
            && let Some(refused) = listener.all_down.admit()
        {
            tracing::warn!(
                listener = %shared.config.name, %peer, sni = sni.as_deref().unwrap_or("-"),
                refused,
                "no backend available: every backend is down or draining; connections closed"
            );
        }
        let _ = client.shutdown().await;
        return;
    };
    let address = &config.members[choice.index].address;
    // The session stays counted on its backend for the tunnel's whole life.
    let _session = choice.session;
    let _open_tunnel = shared.metrics.tunnel_opened();
    let end = Box::pin(tunnel(
        client,
        backend,
        limits.tunnel_idle_timeout,
        &lifecycle,
    ))
    .await;
    let (transferred, end) = end;
    shared.metrics.tunnel_done(transferred.up, transferred.down);
    if let TunnelEnd::Closed {
        without_close_notify: true,
        ..
    } = end
    {
        tracing::debug!(
            listener = %shared.config.name, %peer,
            "a TLS peer closed without close_notify (usual for SIP phones): an ordinary end"
        );
    }
    if let Some(log) = shared.access_log(&settings) {
        let record = TlsTunnelRecord {
            listener: shared.config.name.clone(),
            peer,
            sni,
            cert: step,
            backend: address.clone(),
            started,
        };
        let outcome = TunnelOutcome {
            up: transferred.up,
            down: transferred.down,
            end: end.describe(),
        };
        log.tls_tunnel(&record, &outcome);
    }
}

/// A connection to a backend, plain or TLS (also the health checks').
pub trait BackendStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> BackendStream for T {}

/// Connects to `member`: TCP, the PROXY header if the listener sends one,
/// then TLS if the member wants it, all within `backend_connect_timeout`.
/// An error carries the kind for metrics and the text for the log.
async fn connect_member(
    shared: &ListenerShared,
    member: &TcpBackend,
    settings: &ListenerConfig,
    peer: SocketAddr,
    destination: SocketAddr,
) -> Result<Box<dyn BackendStream>, (BackendError, String)> {
    let limits = &settings.limits;
    let connected = tokio::time::timeout(
        limits.backend_connect_timeout,
        TcpStream::connect(member.address.as_str()),
    )
    .await;
    let mut backend = match connected {
        Ok(Ok(backend)) => backend,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Err((BackendError::Timeout, e.to_string()));
        }
        Ok(Err(e)) => return Err((BackendError::Connect, e.to_string())),
        Err(_) => {
            return Err((
                BackendError::Timeout,
                format!(
                    "connect timed out after {} s",
                    limits.backend_connect_timeout.as_secs()
                ),
            ));
        }
    };
    let _ = backend.set_nodelay(true);
    if settings.proxy_protocol
        && let Err(e) = backend.write_all(&proxy_v2_header(peer, destination)).await
    {
        return Err((
            BackendError::Other,
            format!("cannot send the PROXY header: {e}"),
        ));
    }
    let Some(spec) = &member.tls else {
        return Ok(Box::new(backend));
    };
    let connected = Box::pin(tokio::time::timeout(
        limits.backend_connect_timeout,
        connect_tls(shared, &spec.backend, backend),
    ))
    .await
    .unwrap_or_else(|_| {
        Err(ConnectTlsError::Timeout {
            after: limits.backend_connect_timeout,
        })
    });
    match connected {
        Ok(stream) => Ok(Box::new(stream)),
        Err(failure) => Err((BackendError::Tls, failure.to_string())),
    }
}

/// Copies both ways until either side closes, the tunnel idles out or the
/// shutdown timeout cuts it.
async fn tunnel<A, B>(
    client: A,
    backend: B,
    idle: Duration,
    lifecycle: &Lifecycle,
) -> (Transferred, TunnelEnd)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    copy_with_idle_timeout(client, backend, idle, lifecycle.hard_stop.cancelled()).await
}

/// Why TLS to a `tls` listener's backend failed (logged; the client
/// connection is closed).
#[derive(Debug, thiserror::Error)]
enum ConnectTlsError {
    /// The snapshot has no TLS client for the backend.
    #[error(transparent)]
    Client(#[from] BackendTlsError),
    /// The handshake failed.
    #[error("TLS handshake with {backend} ({server_name}): {error}")]
    Handshake {
        /// The backend as configured.
        backend: String,
        /// The name sent as SNI.
        server_name: String,
        /// What the handshake ended with.
        error: std::io::Error,
    },
    /// The handshake did not finish within `backend_connect_timeout`.
    #[error("TLS handshake timed out after {} s", after.as_secs())]
    Timeout {
        /// The timeout.
        after: Duration,
    },
}

/// TLS over an open backend connection, with the backend's client
/// configuration from the current snapshot (so a renewed client
/// certificate is used from the next connection on).
async fn connect_tls(
    shared: &ListenerShared,
    backend: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectTlsError> {
    let client = shared.store.load().backend_tls_client(backend)?;
    tokio_rustls::TlsConnector::from(client.config.clone())
        .connect(client.server_name.clone(), tcp)
        .await
        .map_err(|error| ConnectTlsError::Handshake {
            backend: backend.to_string(),
            server_name: client.spec.server_name.clone(),
            error,
        })
}

/// A PROXY protocol v2 header with the LOCAL command: a connection the
/// proxy makes on its own (a health check), with no client to name, which
/// a backend that requires the header accepts (HAProxy's checks send it).
pub fn proxy_v2_local_header() -> [u8; 16] {
    let mut header = [0u8; 16];
    header[..12].copy_from_slice(&PROXY_V2_SIGNATURE);
    header[12] = 0x20; // version 2, LOCAL
    header[13] = 0x00; // UNSPEC; the length (bytes 14-15) is 0
    header
}

/// The PROXY protocol v2 signature.
const PROXY_V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// A PROXY protocol v2 header (PROXY command, TCP over IPv4 or IPv6) saying
/// the connection came from `source` to `destination`. Mixed families are
/// sent as IPv6 with the IPv4 address mapped.
pub fn proxy_v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut header = Vec::with_capacity(16 + 36);
    header.extend_from_slice(&PROXY_V2_SIGNATURE);
    header.push(0x21); // version 2, PROXY
    match (source, destination) {
        (SocketAddr::V4(src), SocketAddr::V4(dst)) => {
            header.push(0x11); // TCP over IPv4
            header.extend_from_slice(&12u16.to_be_bytes());
            header.extend_from_slice(&src.ip().octets());
            header.extend_from_slice(&dst.ip().octets());
            header.extend_from_slice(&src.port().to_be_bytes());
            header.extend_from_slice(&dst.port().to_be_bytes());
        }
        _ => {
            let v6 = |addr: SocketAddr| match addr {
                SocketAddr::V4(a) => a.ip().to_ipv6_mapped(),
                SocketAddr::V6(a) => *a.ip(),
            };
            header.push(0x21); // TCP over IPv6
            header.extend_from_slice(&36u16.to_be_bytes());
            header.extend_from_slice(&v6(source).octets());
            header.extend_from_slice(&v6(destination).octets());
            header.extend_from_slice(&source.port().to_be_bytes());
            header.extend_from_slice(&destination.port().to_be_bytes());
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_v2_ipv4_layout() {
        let header = proxy_v2_header(
            "192.0.2.1:40000".parse().expect("addr"),
            "198.51.100.2:5061".parse().expect("addr"),
        );
        assert_eq!(&header[..12], &PROXY_V2_SIGNATURE);
        assert_eq!(header[12], 0x21);
        assert_eq!(header[13], 0x11);
        assert_eq!(u16::from_be_bytes([header[14], header[15]]), 12);
        assert_eq!(&header[16..20], &[192, 0, 2, 1]);
        assert_eq!(&header[20..24], &[198, 51, 100, 2]);
        assert_eq!(u16::from_be_bytes([header[24], header[25]]), 40000);
        assert_eq!(u16::from_be_bytes([header[26], header[27]]), 5061);
        assert_eq!(header.len(), 28);
    }

    #[test]
    fn proxy_v2_local_has_no_addresses() {
        let header = proxy_v2_local_header();
        assert_eq!(&header[..12], &PROXY_V2_SIGNATURE);
        assert_eq!(header[12], 0x20, "version 2, LOCAL");
        assert_eq!(header[13], 0x00, "UNSPEC");
        assert_eq!(u16::from_be_bytes([header[14], header[15]]), 0);
    }

    #[test]
    fn proxy_v2_ipv6_and_mixed() {
        let header = proxy_v2_header(
            "[::1]:1".parse().expect("addr"),
            "127.0.0.1:2".parse().expect("addr"),
        );
        assert_eq!(header[13], 0x21);
        assert_eq!(u16::from_be_bytes([header[14], header[15]]), 36);
        assert_eq!(header.len(), 16 + 36);
        assert_eq!(
            &header[32..48],
            &std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets()
        );
    }
}
