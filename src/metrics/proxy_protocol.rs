//! `sniwalk_proxy_protocol_rejected_total{listener,reason}`: connections
//! closed before TLS or HTTP because of their PROXY protocol header, or
//! the lack of one (README: Behind a load balancer).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::config::ListenerConfig;

/// Why a connection was closed for its PROXY protocol header: a small
/// fixed set, so label values stay bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyRejection {
    /// A load balancer (a peer in `from`) sent something that is no PROXY
    /// header.
    Missing,
    /// A peer outside `from` sent a PROXY header: it may not say who the
    /// client is.
    Untrusted,
    /// A header that does not parse: a bad address or port, no CRLF
    /// within 107 bytes (v1), a bad version or command, a length past the
    /// limit (v2).
    Malformed,
    /// A valid header of a version `versions` does not list.
    VersionNotAllowed,
    /// A header for UDP or a Unix socket: only TCP connections are proxied.
    UnsupportedTransport,
    /// No complete header (or, from a peer outside `from`, no first byte)
    /// within `handshake_timeout`.
    Timeout,
    /// The peer closed (or the read failed) before a complete header.
    Eof,
}

impl ProxyRejection {
    /// Every reason, in label order.
    pub const ALL: [ProxyRejection; 7] = [
        ProxyRejection::Missing,
        ProxyRejection::Untrusted,
        ProxyRejection::Malformed,
        ProxyRejection::VersionNotAllowed,
        ProxyRejection::UnsupportedTransport,
        ProxyRejection::Timeout,
        ProxyRejection::Eof,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyRejection::Missing => "missing",
            ProxyRejection::Untrusted => "untrusted",
            ProxyRejection::Malformed => "malformed",
            ProxyRejection::VersionNotAllowed => "version_not_allowed",
            ProxyRejection::UnsupportedTransport => "unsupported_transport",
            ProxyRejection::Timeout => "timeout",
            ProxyRejection::Eof => "eof",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RejectionLabels {
    listener: String,
    reason: &'static str,
}

/// One listener's rejection counters.
#[derive(Debug)]
pub(super) struct ListenerRejections {
    /// Made at start, at zero, when the listener reads PROXY headers then;
    /// indexed like [`ProxyRejection::ALL`].
    made: Option<[Counter; ProxyRejection::ALL.len()]>,
    /// For a listener that starts reading them with a reload: looked up
    /// when counting (rejections are not the path that serves traffic).
    family: Family<RejectionLabels, Counter>,
    listener: String,
}

impl ListenerRejections {
    /// The counters of `listener`.
    pub(super) fn new(
        family: &Family<RejectionLabels, Counter>,
        listener: &ListenerConfig,
    ) -> Self {
        let made = listener.accept_proxy_protocol.as_ref().map(|_| {
            ProxyRejection::ALL.map(|reason| {
                family
                    .get_or_create(&RejectionLabels {
                        listener: listener.name.clone(),
                        reason: reason.as_str(),
                    })
                    .clone()
            })
        });
        ListenerRejections {
            made,
            family: family.clone(),
            listener: listener.name.clone(),
        }
    }

    /// Counts one rejection.
    pub(super) fn count(&self, reason: ProxyRejection) {
        match &self.made {
            Some(counters) => {
                counters[reason as usize].inc();
            }
            None => {
                self.family
                    .get_or_create(&RejectionLabels {
                        listener: self.listener.clone(),
                        reason: reason.as_str(),
                    })
                    .inc();
            }
        }
    }
}

/// Registers the family in `registry`.
pub(super) fn register(registry: &mut Registry, family: &Family<RejectionLabels, Counter>) {
    registry.register(
        "proxy_protocol_rejected",
        "Connections closed for their PROXY protocol header on listeners with \
         accept_proxy_protocol, by reason (missing, untrusted, malformed, version_not_allowed, \
         unsupported_transport, timeout, eof)",
        family.clone(),
    );
}
