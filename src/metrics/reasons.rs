//! Why a handshake or a backend failed: small fixed sets, so that label
//! values stay bounded (never an error's text). A leaf of `metrics`.

use std::io;

/// Why a TLS handshake failed: a small fixed set, so label values stay
/// bounded (never the error text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// Not done within the listener's handshake timeout.
    Timeout,
    /// The client closed or reset the connection mid-handshake (port
    /// scanners and health checks that only connect end here too).
    Eof,
    /// Another I/O error.
    Io,
    /// No protocol version, cipher suite, key exchange group or signature
    /// scheme in common.
    PeerIncompatible,
    /// The client offered ALPN protocols and none of ours.
    NoApplicationProtocol,
    /// The client sent an alert refusing our certificate (unknown CA,
    /// expired, bad or unsupported certificate, wrong name).
    CertificateRejected,
    /// The client sent another fatal alert.
    AlertReceived,
    /// What arrived is not TLS or not valid at that point (plain HTTP on a
    /// TLS port lands here).
    InvalidMessage,
    /// The client broke the protocol in another way.
    PeerMisbehaved,
    /// A client certificate was missing or invalid.
    BadCertificate,
    /// Anything else.
    Other,
}

impl FailureReason {
    /// Every reason, in the order of the enum (indexes the counters).
    pub const ALL: [FailureReason; 11] = [
        FailureReason::Timeout,
        FailureReason::Eof,
        FailureReason::Io,
        FailureReason::PeerIncompatible,
        FailureReason::NoApplicationProtocol,
        FailureReason::CertificateRejected,
        FailureReason::AlertReceived,
        FailureReason::InvalidMessage,
        FailureReason::PeerMisbehaved,
        FailureReason::BadCertificate,
        FailureReason::Other,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Eof => "eof",
            FailureReason::Io => "io",
            FailureReason::PeerIncompatible => "peer_incompatible",
            FailureReason::NoApplicationProtocol => "no_application_protocol",
            FailureReason::CertificateRejected => "certificate_rejected",
            FailureReason::AlertReceived => "alert_received",
            FailureReason::InvalidMessage => "invalid_message",
            FailureReason::PeerMisbehaved => "peer_misbehaved",
            FailureReason::BadCertificate => "bad_certificate",
            FailureReason::Other => "other",
        }
    }

    /// The reason for an error from tokio-rustls's `accept`, which wraps
    /// rustls's errors in an `io::Error` of kind `InvalidData`.
    pub fn of_io(error: &io::Error) -> FailureReason {
        if let Some(tls) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return FailureReason::of_tls(tls);
        }
        match error.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => FailureReason::Eof,
            io::ErrorKind::TimedOut => FailureReason::Timeout,
            _ => FailureReason::Io,
        }
    }

    /// The reason for a rustls error.
    pub fn of_tls(error: &rustls::Error) -> FailureReason {
        use rustls::AlertDescription as Alert;
        match error {
            rustls::Error::PeerIncompatible(_) => FailureReason::PeerIncompatible,
            rustls::Error::NoApplicationProtocol => FailureReason::NoApplicationProtocol,
            rustls::Error::AlertReceived(
                Alert::BadCertificate
                | Alert::UnsupportedCertificate
                | Alert::CertificateRevoked
                | Alert::CertificateExpired
                | Alert::CertificateUnknown
                | Alert::UnknownCA,
            ) => FailureReason::CertificateRejected,
            rustls::Error::AlertReceived(_) => FailureReason::AlertReceived,
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. }
            | rustls::Error::PeerSentOversizedRecord
            | rustls::Error::UnsupportedNameType => FailureReason::InvalidMessage,
            rustls::Error::PeerMisbehaved(_) | rustls::Error::DecryptError => {
                FailureReason::PeerMisbehaved
            }
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                FailureReason::BadCertificate
            }
            _ => FailureReason::Other,
        }
    }
}

/// How a backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendError {
    /// It could not be connected: refused, unreachable.
    Connect,
    /// Connecting or waiting for its response headers took too long (the
    /// client got 504 on `https` listeners).
    Timeout,
    /// The TLS handshake with it failed (`backend_tls`): untrusted or
    /// wrong-name certificate, client certificate refused.
    Tls,
    /// Anything else: the connection broke, the response was invalid.
    Other,
}

impl BackendError {
    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendError::Connect => "connect",
            BackendError::Timeout => "timeout",
            BackendError::Tls => "tls",
            BackendError::Other => "other",
        }
    }
}
