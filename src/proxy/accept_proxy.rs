//! Reading the PROXY protocol header a load balancer sends first, right
//! after accept and before TLS or HTTP (README: Behind a load balancer).
//!
//! Exactly the header's bytes are taken from the socket: the first bytes
//! are only peeked at until they say what they are, a v1 header is read up
//! to its CRLF, a v2 header as long as its fixed part says. Whatever
//! follows (the ClientHello, the request) stays in the socket for rustls or
//! hyper, which read the `TcpStream` as if nothing had happened.
//!
//! Listeners without `accept_proxy_protocol` never come here: their
//! connections go straight to TLS or HTTP (`super::accept_loop`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::conn::ListenerShared;
use super::proxy_header::{
    HeaderError, Said, Start, V1_MAX_LENGTH, V2_FIXED_LENGTH, V2_SIGNATURE, parse_v1, parse_v2,
    recognise, v1_length, v2_length,
};
use crate::config::AcceptProxyProtocol;
use crate::metrics::ProxyRejection;

/// Where a connection comes from, once any PROXY header is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress {
    /// The client: the header's source, else the TCP peer. Every log line,
    /// `X-Forwarded-For`, the `client_ip` balancing and the PROXY header
    /// sent on to backends use it.
    pub source: SocketAddr,
    /// The address the client connected to, from the header (the load
    /// balancer's front), when one named it.
    pub destination: Option<SocketAddr>,
}

/// How long to wait before looking again when the first bytes that came
/// begin a signature but are too few to tell (a header split over
/// segments): nothing is consumed (they may be a direct client's), so the
/// socket stays readable and cannot be waited on. The wait doubles up to
/// [`UNDECIDED_MAX_WAIT`], so a peer that sends `P` and stalls costs a few
/// wake-ups a second until `handshake_timeout`, not hundreds.
const UNDECIDED_FIRST_WAIT: Duration = Duration::from_millis(5);

/// The longest wait between two looks at undecided first bytes.
const UNDECIDED_MAX_WAIT: Duration = Duration::from_millis(160);

/// Reads the PROXY header `policy` asks of `peer`, within the listener's
/// `handshake_timeout`. Returns the client's address, or `None` when the
/// connection must be closed: then it has been logged (with the TCP peer)
/// and counted in `sniwalk_proxy_protocol_rejected_total`.
pub async fn read_client_address(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    policy: &AcceptProxyProtocol,
    shared: &ListenerShared,
) -> Option<ClientAddress> {
    let after = shared.settings().limits.handshake_timeout;
    let trusted = policy.trusts(peer.ip());
    let read = tokio::time::timeout(after, read_header(tcp, trusted, policy)).await;
    let failure = match read.unwrap_or(Err(HeaderError::Timeout { after })) {
        Ok(Some(Said::Proxied {
            source,
            destination,
        })) => {
            return Some(ClientAddress {
                source,
                destination: Some(destination),
            });
        }
        Ok(Some(Said::Local)) | Ok(None) => {
            return Some(ClientAddress {
                source: peer,
                destination: None,
            });
        }
        Err(failure) => failure,
    };
    let reason = failure.reason();
    shared.metrics.proxy_header_rejected(reason);
    // One line per refusal: `info` at most every 10 s per listener, since
    // anyone who can connect can send a bad header, `debug` otherwise. A
    // load balancer's plain TCP check opens and closes without a byte every
    // few seconds: always `debug`.
    let quiet = matches!(reason, ProxyRejection::Timeout | ProxyRejection::Eof);
    let admitted = if quiet {
        None
    } else {
        shared.proxy_refusals.admit()
    };
    match admitted {
        Some(refused) => tracing::info!(
            listener = %shared.config.name, %peer, trusted, reason = reason.as_str(), failure = %failure,
            refused,
            "connection closed: PROXY protocol header refused (one line per 10 s; `refused` counts them)"
        ),
        None => tracing::debug!(
            listener = %shared.config.name, %peer, trusted, reason = reason.as_str(), failure = %failure,
            "connection closed: PROXY protocol header refused"
        ),
    }
    None
}

/// Reads what `policy` asks of a peer in `from` (`trusted`) or outside
/// it. `Ok(None)`: a peer outside `from` without a header, served
/// directly; nothing was read.
async fn read_header(
    tcp: &mut TcpStream,
    trusted: bool,
    policy: &AcceptProxyProtocol,
) -> Result<Option<Said>, HeaderError> {
    let mut first = [0u8; V2_SIGNATURE.len()];
    let mut wait = UNDECIDED_FIRST_WAIT;
    let (start, first_byte) = loop {
        let peeked = tcp.peek(&mut first).await.map_err(HeaderError::Ended)?;
        if peeked == 0 {
            return Err(ended("the peer closed"));
        }
        match recognise(&first[..peeked]) {
            Start::Undecided => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(UNDECIDED_MAX_WAIT);
            }
            start => break (start, first[0]),
        }
    };
    let version = match start {
        Start::V1 => 1,
        Start::V2 => 2,
        _ if trusted => return Err(HeaderError::Missing { first: first_byte }),
        _ => return Ok(None),
    };
    if !trusted {
        return Err(HeaderError::Untrusted { version });
    }
    if (version == 1 && !policy.v1) || (version == 2 && !policy.v2) {
        return Err(HeaderError::VersionNotAllowed { version });
    }
    let said = if version == 1 {
        parse_v1_from(tcp).await?
    } else {
        parse_v2_from(tcp).await?
    };
    Ok(Some(said))
}

/// Reads a v1 header up to its CRLF and parses it. What a peek shows
/// before the CRLF is all header, so it is consumed as it comes; the
/// segment with the CRLF only up to the LF.
async fn parse_v1_from(tcp: &mut TcpStream) -> Result<Said, HeaderError> {
    let mut header = [0u8; V1_MAX_LENGTH];
    let mut filled = 0;
    loop {
        let peeked = tcp
            .peek(&mut header[filled..])
            .await
            .map_err(HeaderError::Ended)?;
        if peeked == 0 {
            return Err(ended("the peer closed within a v1 header"));
        }
        let seen = filled + peeked;
        match v1_length(&header[..seen])? {
            Some(length) => {
                read_exact(tcp, &mut header[filled..length]).await?;
                return parse_v1(&header[..length]);
            }
            None => {
                read_exact(tcp, &mut header[filled..seen]).await?;
                filled = seen;
            }
        }
    }
}

/// Reads a v2 header (the fixed part, then the length it announces) and
/// parses it.
async fn parse_v2_from(tcp: &mut TcpStream) -> Result<Said, HeaderError> {
    let mut fixed = [0u8; V2_FIXED_LENGTH];
    read_exact(tcp, &mut fixed).await?;
    let length = v2_length(&fixed)?;
    let mut header = vec![0u8; length];
    header[..V2_FIXED_LENGTH].copy_from_slice(&fixed);
    read_exact(tcp, &mut header[V2_FIXED_LENGTH..]).await?;
    parse_v2(&header)
}

/// Fills `buf` from `tcp`.
async fn read_exact(tcp: &mut TcpStream, buf: &mut [u8]) -> Result<(), HeaderError> {
    if buf.is_empty() {
        return Ok(());
    }
    tcp.read_exact(buf).await.map_err(HeaderError::Ended)?;
    Ok(())
}

fn ended(what: &str) -> HeaderError {
    HeaderError::Ended(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        what.to_string(),
    ))
}
