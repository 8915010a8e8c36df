//! Trust roots read from PEM files while a snapshot is built: a TLS
//! listener's client CA (`client_auth.ca_file`) and a TLS backend's CA
//! (`backend_tls.ca_file`). Serving code only uses what these build.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// Reads a PEM file of CA certificates into a root store; `field` names
/// the setting in messages (`ca_file`, `backend_tls.ca_file`).
pub fn load_roots(path: &Path, field: &str) -> Result<RootCertStore, String> {
    let text = crate::fsio::read_cert_text(path).map_err(|e| format!("{field}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(text.as_bytes()) {
        let certificate =
            certificate.map_err(|e| format!("{field} {}: not PEM: {e}", path.display()))?;
        roots
            .add(certificate)
            .map_err(|e| format!("{field} {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "{field} {}: no `-----BEGIN CERTIFICATE-----` in it; give the PEM of the CA certificate(s)",
            path.display()
        ));
    }
    Ok(roots)
}

/// The chain check of client certificates against `ca_file`, built when a
/// snapshot is built (so a changed CA file applies without touching the
/// listener's `ServerConfig`). Whether a certificate is required is
/// `proxy::client_auth::ReloadingVerifier`'s decision, from the listener's current settings.
pub fn chain_verifier(ca_file: &Path) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let roots = load_roots(ca_file, "ca_file")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("ca_file {}: {e}", ca_file.display()))
}
