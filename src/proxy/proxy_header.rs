//! PROXY protocol headers received from a load balancer in front
//! (HAProxy's `proxy-protocol.txt`, v1 text and v2 binary; README: Behind
//! a load balancer): recognising one from a connection's first bytes, how
//! many bytes it takes, and which client it names. Pure: bytes in, no I/O;
//! [`super::accept_proxy`] does the reading.
//!
//! The address parsing itself is `ppp`'s; what is decided here is what
//! the specification leaves to the receiver: which family and transport
//! combinations are served, and how long a header may be.

use std::net::SocketAddr;

use crate::metrics::ProxyRejection;

/// How a v1 header starts (section 2.1: `PROXY` and one space).
pub const V1_PREFIX: &[u8] = b"PROXY ";

/// The 12 bytes every v2 header starts with (section 2.2); chosen so that
/// no TLS, HTTP or SIP client ever sends them first.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest v1 header, CRLF included (section 2.1: `PROXY UNKNOWN`
/// with two IPv6 addresses and ports).
pub const V1_MAX_LENGTH: usize = 107;

/// The fixed part of a v2 header: signature, version and command, family
/// and transport, and the length of what follows.
pub const V2_FIXED_LENGTH: usize = 16;

/// The most address and TLV bytes a v2 header may announce. Addresses
/// take at most 216 bytes (Unix sockets); the TLVs that load balancers add
/// (AWS's VPC endpoint, HAProxy's TLS details) a few hundred more. A larger
/// length is refused before anything past the fixed part is read.
pub const V2_MAX_ADDRESS_LENGTH: usize = 4096;

/// What a connection's first bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A v1 header (`PROXY `).
    V1,
    /// A v2 header (the 12-byte signature).
    V2,
    /// Anything else: a TLS ClientHello, an HTTP request.
    Other,
    /// Too few bytes to tell: what came so far begins a signature.
    Undecided,
}

/// What `first` (a connection's first bytes, at least one) starts with.
pub fn recognise(first: &[u8]) -> Start {
    let starts = |signature: &[u8]| {
        let n = first.len().min(signature.len());
        first[..n] == signature[..n]
    };
    match (starts(V1_PREFIX), starts(&V2_SIGNATURE)) {
        (true, _) if first.len() >= V1_PREFIX.len() => Start::V1,
        (_, true) if first.len() >= V2_SIGNATURE.len() => Start::V2,
        (false, false) => Start::Other,
        _ => Start::Undecided,
    }
}

/// The length of the v1 header at the start of `buffered` (CRLF
/// included), or `None` while its end has not arrived yet.
pub fn v1_length(buffered: &[u8]) -> Result<Option<usize>, HeaderError> {
    let window = &buffered[..buffered.len().min(V1_MAX_LENGTH)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) if lf > 0 && window[lf - 1] == b'\r' => Ok(Some(lf + 1)),
        Some(_) => Err(HeaderError::V1LineEnd),
        None if window.len() == V1_MAX_LENGTH => Err(HeaderError::V1TooLong),
        None => Ok(None),
    }
}

/// The whole length of the v2 header whose fixed part is `fixed`.
pub fn v2_length(fixed: &[u8; V2_FIXED_LENGTH]) -> Result<usize, HeaderError> {
    let version = fixed[12] >> 4;
    if version != 2 {
        return Err(HeaderError::V2Version { version });
    }
    let length = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if length > V2_MAX_ADDRESS_LENGTH {
        return Err(HeaderError::V2TooLong { length });
    }
    Ok(V2_FIXED_LENGTH + length)
}

/// Which client a valid header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said {
    /// A proxied TCP connection from `source` to `destination`.
    Proxied {
        /// The client, as the load balancer saw it.
        source: SocketAddr,
        /// The address the client connected to (the load balancer's).
        destination: SocketAddr,
    },
    /// No client: v2 `LOCAL` (the load balancer's own health check), v1
    /// `UNKNOWN`, or v2 `UNSPEC`. The connection is served with its TCP
    /// peer, as the specification says.
    Local,
}

/// Parses a whole v1 header (as long as [`v1_length`] said).
pub fn parse_v1(header: &[u8]) -> Result<Said, HeaderError> {
    let parsed = ppp::v1::Header::try_from(header).map_err(|e| HeaderError::V1Invalid {
        header: String::from_utf8_lossy(header).into_owned(),
        problem: e.to_string(),
    })?;
    Ok(match parsed.addresses {
        ppp::v1::Addresses::Tcp4(a) => Said::Proxied {
            source: (a.source_address, a.source_port).into(),
            destination: (a.destination_address, a.destination_port).into(),
        },
        ppp::v1::Addresses::Tcp6(a) => Said::Proxied {
            source: (a.source_address, a.source_port).into(),
            destination: (a.destination_address, a.destination_port).into(),
        },
        ppp::v1::Addresses::Unknown => Said::Local,
    })
}

/// Parses a whole v2 header (as long as [`v2_length`] said). TLVs are
/// skipped unread.
pub fn parse_v2(header: &[u8]) -> Result<Said, HeaderError> {
    let (Some(&command), Some(&family)) = (header.get(12), header.get(13)) else {
        return Err(HeaderError::V2Invalid {
            problem: "shorter than its fixed 16 bytes".into(),
        });
    };
    // Section 2.2: with LOCAL "the receiver must accept this connection as
    // valid and must use the real connection endpoints and discard the
    // protocol block including the family".
    if command == 0x20 {
        return Ok(Said::Local);
    }
    let parsed = ppp::v2::Header::try_from(header).map_err(|e| HeaderError::V2Invalid {
        problem: e.to_string(),
    })?;
    // Section 2.2 lists the valid family and transport bytes; "other
    // values [...] must be rejected as invalid by receivers".
    match (family, parsed.addresses) {
        (0x00, _) => Ok(Said::Local),
        (0x11, ppp::v2::Addresses::IPv4(a)) => Ok(Said::Proxied {
            source: (a.source_address, a.source_port).into(),
            destination: (a.destination_address, a.destination_port).into(),
        }),
        (0x21, ppp::v2::Addresses::IPv6(a)) => Ok(Said::Proxied {
            source: (a.source_address, a.source_port).into(),
            destination: (a.destination_address, a.destination_port).into(),
        }),
        (0x12 | 0x22, _) => Err(HeaderError::Transport { transport: "UDP" }),
        (0x31 | 0x32, _) => Err(HeaderError::Transport {
            transport: "a Unix socket",
        }),
        (other, _) => Err(HeaderError::V2Invalid {
            problem: format!(
                "family and transport byte {other:#04x} is not one of the specification's"
            ),
        }),
    }
}

/// Why a connection is closed for its PROXY header (or the lack of one).
/// Logged with the listener and the TCP peer; [`HeaderError::reason`]
/// labels the metric.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// A load balancer's connection did not start with a header.
    #[error(
        "the peer is in `from` but its connection does not start with a PROXY header \
         (first byte {first:#04x}); is the load balancer set to send one (HAProxy: \
         `send-proxy`/`send-proxy-v2`)?"
    )]
    Missing {
        /// The first byte received.
        first: u8,
    },
    /// A peer outside `from` sent a header.
    #[error(
        "a PROXY v{version} header from a peer outside `from`: it may not name the client; \
         add the load balancer's address to `from` if it is one"
    )]
    Untrusted {
        /// 1 or 2.
        version: u8,
    },
    /// A header of a version `versions` does not list.
    #[error("a PROXY v{version} header, but `versions` does not list v{version}")]
    VersionNotAllowed {
        /// 1 or 2.
        version: u8,
    },
    /// No CRLF within 107 bytes.
    #[error("a v1 header without CRLF within its first {V1_MAX_LENGTH} bytes")]
    V1TooLong,
    /// A line feed without the carriage return before it.
    #[error("a v1 header ending in a bare LF; it must end in CRLF")]
    V1LineEnd,
    /// A v1 header that does not parse.
    #[error("invalid v1 header {header:?}: {problem}")]
    V1Invalid {
        /// The header, as received.
        header: String,
        /// What is wrong, as the parser says.
        problem: String,
    },
    /// A v2 signature with another version.
    #[error("a v2 signature with version {version}, not 2")]
    V2Version {
        /// The version nibble.
        version: u8,
    },
    /// A v2 length past [`V2_MAX_ADDRESS_LENGTH`].
    #[error(
        "a v2 header announcing {length} bytes of addresses and TLVs (at most {V2_MAX_ADDRESS_LENGTH})"
    )]
    V2TooLong {
        /// The length announced.
        length: usize,
    },
    /// A v2 header that does not parse.
    #[error("invalid v2 header: {problem}")]
    V2Invalid {
        /// What is wrong.
        problem: String,
    },
    /// A header for another transport than TCP.
    #[error("a header for {transport}; only TCP connections are served")]
    Transport {
        /// What the header says.
        transport: &'static str,
    },
    /// No complete header in time.
    #[error("no complete PROXY header within handshake_timeout ({} s)", after.as_secs())]
    Timeout {
        /// The listener's `handshake_timeout`.
        after: std::time::Duration,
    },
    /// The peer closed, or reading failed, first.
    #[error("the connection ended before a complete PROXY header: {0}")]
    Ended(std::io::Error),
}

impl HeaderError {
    /// The `reason` label of `sniwalk_proxy_protocol_rejected_total`.
    pub fn reason(&self) -> ProxyRejection {
        match self {
            HeaderError::Missing { .. } => ProxyRejection::Missing,
            HeaderError::Untrusted { .. } => ProxyRejection::Untrusted,
            HeaderError::VersionNotAllowed { .. } => ProxyRejection::VersionNotAllowed,
            HeaderError::V1TooLong
            | HeaderError::V1LineEnd
            | HeaderError::V1Invalid { .. }
            | HeaderError::V2Version { .. }
            | HeaderError::V2TooLong { .. }
            | HeaderError::V2Invalid { .. } => ProxyRejection::Malformed,
            HeaderError::Transport { .. } => ProxyRejection::UnsupportedTransport,
            HeaderError::Timeout { .. } => ProxyRejection::Timeout,
            HeaderError::Ended(_) => ProxyRejection::Eof,
        }
    }
}

#[cfg(test)]
mod tests;
