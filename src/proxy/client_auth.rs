//! Client certificates (seed 004): the rustls verifier of a listener with
//! `client_auth`, and what a connection's verified certificate means for
//! its requests.
//!
//! rustls verifies the chain against `ca_file` during the handshake. On
//! `https` listeners a missing certificate is allowed *by TLS* and refused
//! per request with 403 "Invalid client certificate", so browsers show a
//! reason instead of a bare handshake failure; on `tls` listeners
//! `required` makes the handshake itself fail. Pins are checked after the
//! handshake on both kinds.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::config::{ClientAuthConfig, ListenerKind};

/// Header carrying the verified client certificate's SHA-256 (lowercase
/// hex of its DER) to the backend.
pub const CLIENT_CERT_SHA256_HEADER: &str = "x-client-cert-sha256";
/// Header carrying the verified client certificate's subject.
pub const CLIENT_CERT_SUBJECT_HEADER: &str = "x-client-cert-subject";

/// The rustls verifier for `auth` on a listener of `kind`.
pub fn verifier(
    auth: &ClientAuthConfig,
    kind: ListenerKind,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let text = crate::fsio::read_cert_text(&auth.ca_file).map_err(|e| format!("ca_file: {e}"))?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(text.as_bytes()) {
        let certificate =
            certificate.map_err(|e| format!("ca_file {}: not PEM: {e}", auth.ca_file.display()))?;
        roots
            .add(certificate)
            .map_err(|e| format!("ca_file {}: {e}", auth.ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "ca_file {}: no `-----BEGIN CERTIFICATE-----` in it; give the PEM of the CA that issues client certificates",
            auth.ca_file.display()
        ));
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if kind == ListenerKind::Https || !auth.required {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| format!("ca_file {}: {e}", auth.ca_file.display()))
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
            aws_lc_rs::digest::digest(algorithm, leaf.as_ref())
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
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
