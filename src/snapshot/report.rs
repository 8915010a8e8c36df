//! The report model: where a certificate serves ([`Place`]), what is wrong
//! with it ([`Problem`], [`Severity`]) and everything known about one
//! source ([`SourceReport`]), plus the checks that every loaded certificate
//! goes through. Problems are found when a snapshot is built, never during
//! a handshake (README, "How a certificate is chosen").

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::certificate::{LoadedCertificate, SourceKind};
use crate::expiry::{self, ExpiryState};
use crate::pem::CertificateFacts;

/// Where a certificate serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Place {
    /// A configured domain.
    Domain(String),
    /// The certdir of a listener.
    Certdir(String),
    /// The default certificate.
    Default,
    /// The client CA (`client_auth.ca_file`) of a listener.
    ClientCa(String),
    /// A TLS backend (`backend_tls:`): its client certificate and CA file.
    Backend(String),
}

impl Place {
    /// The kind of place and its name, for tables, JSON and metric labels:
    /// `("domain", NAME)`, `("certdir", LISTENER)`, `("default",
    /// "default")`, `("client_ca", LISTENER)`, `("backend", BACKEND)`.
    pub fn label(&self) -> (&'static str, &str) {
        match self {
            Place::Domain(name) => ("domain", name),
            Place::Certdir(listener) => ("certdir", listener),
            Place::Default => ("default", "default"),
            Place::ClientCa(listener) => ("client_ca", listener),
            Place::Backend(backend) => ("backend", backend),
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Domain(name) => write!(f, "domain {name}"),
            Place::Certdir(listener) => write!(f, "certdir of listener {listener}"),
            Place::Default => f.write_str("default certificate"),
            Place::ClientCa(listener) => write!(f, "client CA of listener {listener}"),
            Place::Backend(backend) => write!(f, "backend {backend}"),
        }
    }
}

/// How bad a problem is: errors make `check` exit 1, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; nothing is broken yet.
    Warning,
    /// Something configured does not work.
    Error,
}

impl Severity {
    /// Lower-case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A problem found while building a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and what to do.
    pub message: String,
    /// Whether this is the expiry problem (expired, or expiring within
    /// `acme.warn_days`). Its text changes every day; the expiry monitor
    /// (`monitor.rs`) logs it once a day per certificate, so the start-up
    /// and reload logs leave it out rather than repeat it.
    pub expiry: bool,
}

impl Problem {
    /// An error that is not about expiry.
    pub fn error(message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            message: message.into(),
            expiry: false,
        }
    }

    /// A warning that is not about expiry.
    pub fn warning(message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            message: message.into(),
            expiry: false,
        }
    }
}

/// Everything known about one certificate source: for `check`, status and
/// logs.
#[derive(Debug, Clone)]
pub struct SourceReport {
    /// Where it serves.
    pub place: Place,
    /// How it is configured (`None`: nothing configured for this place).
    pub kind: Option<SourceKind>,
    /// The file (or certdir) it comes from.
    pub file: Option<PathBuf>,
    /// The certificate serving for this place, if any.
    pub loaded: Option<Arc<LoadedCertificate>>,
    /// Whether ACME is enabled for it.
    pub acme_enabled: bool,
    /// How close the serving certificate is to expiry, as of the build of
    /// the snapshot that made this report (`None`: nothing loaded). A
    /// rebuild for a few changed files keeps the reports of untouched
    /// domains, so this may be as old as `rescan_interval`, after which a
    /// full rebuild dates every report again.
    pub expiry: Option<ExpiryState>,
    /// What is wrong with it.
    pub problems: Vec<Problem>,
}

impl SourceReport {
    /// A report for `place` configured as `kind` from `file`, before
    /// anything is loaded.
    pub fn new(place: Place, kind: Option<SourceKind>, file: Option<PathBuf>) -> Self {
        SourceReport {
            place,
            kind,
            file,
            loaded: None,
            acme_enabled: false,
            expiry: None,
            problems: Vec::new(),
        }
    }

    /// The worst problem's severity.
    pub fn worst(&self) -> Option<Severity> {
        self.problems.iter().map(|p| p.severity).max()
    }
}

/// Records expiry and not-yet-valid problems of a serving certificate and
/// returns its expiry state. Expiry is judged by [`expiry::expiry_state`],
/// the same rule the expiry monitor logs by.
pub(super) fn check_validity(
    problems: &mut Vec<Problem>,
    facts: &CertificateFacts,
    now: i64,
    warn_days: u32,
) -> ExpiryState {
    let state = expiry::expiry_state(facts.not_after, now, warn_days);
    match state {
        ExpiryState::Ok => {}
        ExpiryState::Expired => problems.push(Problem {
            severity: Severity::Error,
            message: format!(
                "the certificate expired {} day(s) ago; replace it (it is still served: clients will refuse it)",
                -facts.days_left(now)
            ),
            expiry: true,
        }),
        ExpiryState::ExpiresSoon { days_left } => problems.push(Problem {
            severity: Severity::Warning,
            message: format!(
                "the certificate expires within {warn_days} days ({days_left} left); renew it"
            ),
            expiry: true,
        }),
    }
    if facts.not_before > now {
        problems.push(Problem::warning(
            "the certificate is not valid yet (not-before is in the future); check the clock",
        ));
    }
    state
}

/// Records a warning for a certificate whose key many clients cannot use.
/// rustls serves Ed25519, but browsers do not offer it in TLS, so their
/// handshakes fail with no certificate to fall back to; the certificate is
/// still served (clients that can use it keep working) and the warning says
/// who fails. Ed448 keys do not load at all (the key is refused), so they
/// never get here, but the rule is the same.
pub(super) fn check_key(problems: &mut Vec<Problem>, loaded: &LoadedCertificate) {
    let name = match loaded.certified_key.key.algorithm() {
        rustls::SignatureAlgorithm::ED25519 => "Ed25519",
        rustls::SignatureAlgorithm::ED448 => "Ed448",
        _ => return,
    };
    problems.push(Problem::warning(format!(
        "the certificate's key is {name}: web browsers (Chrome, Firefox, Safari, Edge), \
         Windows (Schannel), Apple's TLS and mbed TLS clients (many SIP phones) cannot use it \
         and fail the handshake; OpenSSL 1.1.1+ (curl, baresip), GnuTLS, Go and rustls \
         clients can. It is served anyway; for browsers use an ECDSA P-256 or RSA key"
    )));
}

pub(super) fn names_or_none(facts: &CertificateFacts) -> String {
    if facts.dns_names.is_empty() {
        "none".to_string()
    } else {
        facts.dns_names.join(", ")
    }
}
