//! Client certificates (README, "Client certificates"): the rustls verifier of a listener with
//! `client_auth`, and what a connection's verified certificate means for
//! its requests.
//!
//! rustls verifies the chain against `ca_file` during the handshake,
//! through a [`ReloadingVerifier`] that reads the CA and the settings from
//! the current snapshot, so they reload like certificates. On
//! `https` listeners a missing certificate is allowed *by TLS* and refused
//! per request with 403 "Invalid client certificate", so browsers show a
//! reason instead of a bare handshake failure; on `tls` listeners
//! `required` makes the handshake itself fail. Pins are checked after the
//! handshake on both kinds.

use hyper::header::HeaderName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::config::{ClientAuthConfig, ListenerKind};
use crate::snapshot::SnapshotReader;

/// Header carrying the verified client certificate's SHA-256 (lowercase
/// hex of its DER) to the backend. A `HeaderName` made once: looking a
/// header up by a string parses the name on every request.
pub const CLIENT_CERT_SHA256_HEADER: HeaderName = HeaderName::from_static("x-client-cert-sha256");
/// Header carrying the verified client certificate's subject.
pub const CLIENT_CERT_SUBJECT_HEADER: HeaderName = HeaderName::from_static("x-client-cert-subject");

/// The client certificate verifier every TLS listener's `ServerConfig` is
/// built with, once: each handshake asks the current snapshot whether to
/// ask for a certificate, whether it is mandatory, and which CA checks it.
/// A reload (new pins, mode, or CA file content) therefore applies to the
/// next handshake while the `ServerConfig`, and with it session
/// resumption, stays (README, "Changing certificates and configuration
/// while running": a reload never rebuilds a listener's rustls config).
#[derive(Debug)]
pub struct ReloadingVerifier {
    index: usize,
    store: SnapshotReader,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ReloadingVerifier {
    /// The verifier of listener number `index`.
    pub fn new(index: usize, store: SnapshotReader) -> Self {
        ReloadingVerifier {
            index,
            store,
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms,
        }
    }

    fn settings(&self) -> Option<(ListenerKind, bool)> {
        let snapshot = self.store.load();
        let listener = snapshot.listener(self.index)?;
        listener
            .client_auth
            .as_ref()
            .map(|auth| (listener.kind, auth.required))
    }
}

impl ClientCertVerifier for ReloadingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.settings().is_some()
    }

    fn client_auth_mandatory(&self) -> bool {
        // `https` listeners answer 403 instead, so browsers see a reason;
        // TLS-ALPN-01 validations (only on `https`) never send one.
        self.settings()
            .is_some_and(|(kind, required)| required && kind == ListenerKind::Tls)
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would have to outlive a snapshot swap; an empty list
        // is allowed (RFC 8446 §4.2.4, RFC 5246 §7.4.4) and lets the
        // client offer any certificate it has.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.store.load().client_verifier(self.index) {
            Some(verifier) => verifier.verify_client_cert(end_entity, intermediates, now),
            // Fail closed: client_auth is configured but its CA never loaded.
            None => Err(rustls::Error::General(
                "the listener's client CA file is not loaded; see `sniwalk check`".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A connection's client certificate, verified by rustls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// SHA-256 of the DER, lowercase hex, no separators.
    pub sha256: String,
    /// SHA-1 of the DER, same form (legacy thumbprints).
    pub sha1: String,
    /// The subject, RFC 4514-ish as x509-parser prints it.
    pub subject: String,
}

impl ClientCert {
    /// The leaf rustls verified, if the client sent one.
    pub fn of(peer_certificates: Option<&[CertificateDer<'_>]>) -> Option<ClientCert> {
        let leaf = peer_certificates?.first()?;
        let digest = |algorithm| {
            crate::ids::hex(aws_lc_rs::digest::digest(algorithm, leaf.as_ref()).as_ref())
        };
        let subject = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map(|(_, c)| c.subject().to_string())
            .unwrap_or_default();
        Some(ClientCert {
            sha256: digest(&aws_lc_rs::digest::SHA256),
            sha1: digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY),
            subject,
        })
    }
}

/// Whether a connection with `cert` may be served under `auth`; the reason
/// when not.
pub fn admit(
    auth: Option<&ClientAuthConfig>,
    cert: Option<&ClientCert>,
) -> Result<(), &'static str> {
    let Some(auth) = auth else {
        return Ok(());
    };
    match cert {
        None if auth.required => Err("no client certificate"),
        None => Ok(()),
        Some(cert) if auth.pinned(&cert.sha256, &cert.sha1) => Ok(()),
        Some(_) => Err("client certificate not pinned"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(required: bool, pins: &[&str]) -> ClientAuthConfig {
        ClientAuthConfig {
            required,
            ca_file: "ca.pem".into(),
            pinned_sha256: pins.iter().map(|p| p.to_string()).collect(),
            pinned_sha1: Vec::new(),
        }
    }

    #[test]
    fn admission() {
        let cert = ClientCert {
            sha256: "ab".repeat(32),
            sha1: "cd".repeat(20),
            subject: "CN=x".into(),
        };
        assert_eq!(admit(None, None), Ok(()));
        assert!(admit(Some(&auth(true, &[])), None).is_err());
        assert_eq!(admit(Some(&auth(false, &[])), None), Ok(()));
        assert_eq!(admit(Some(&auth(true, &[])), Some(&cert)), Ok(()));
        let pin = "ab".repeat(32);
        assert_eq!(admit(Some(&auth(true, &[&pin])), Some(&cert)), Ok(()));
        assert!(admit(Some(&auth(true, &[&"ee".repeat(32)])), Some(&cert)).is_err());
        let mut sha1_pinned = auth(false, &[]);
        sha1_pinned.pinned_sha1 = vec!["cd".repeat(20)];
        assert_eq!(admit(Some(&sha1_pinned), Some(&cert)), Ok(()));
    }
}
