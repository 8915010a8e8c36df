//! Trust roots read from PEM files while a snapshot is built: a TLS
//! listener's client CA (`client_auth.ca_file`) and a TLS backend's CA
//! (`backend_tls.ca_file`). Serving code only uses what these build.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::fsio::FsError;

/// Why a CA file cannot be used. `field` names the setting
/// (`ca_file`, `backend_tls.ca_file`).
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file cannot be read, or is no text.
    #[error("{field}: {error}")]
    Read {
        /// The setting.
        field: String,
        /// Why it cannot be read.
        error: FsError,
    },
    /// A PEM block that cannot be decoded.
    #[error("{field} {}: not PEM: {error}", path.display())]
    NotPem {
        /// The setting.
        field: String,
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        error: rustls_pki_types::pem::Error,
    },
    /// A certificate that cannot be a trust root.
    #[error("{field} {}: {error}", path.display())]
    Unusable {
        /// The setting.
        field: String,
        /// The file.
        path: PathBuf,
        /// What rustls said.
        error: rustls::Error,
    },
    /// No certificate in the file.
    #[error(
        "{field} {}: no `-----BEGIN CERTIFICATE-----` in it; give the PEM of the CA certificate(s)",
        path.display()
    )]
    NoCertificate {
        /// The setting.
        field: String,
        /// The file.
        path: PathBuf,
    },
    /// rustls refused to build the client certificate check.
    #[error("ca_file {}: {error}", path.display())]
    Verifier {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        error: VerifierBuilderError,
    },
}

/// Reads a PEM file of CA certificates into a root store; `field` names
/// the setting in messages (`ca_file`, `backend_tls.ca_file`).
pub fn load_roots(path: &Path, field: &str) -> Result<RootCertStore, TrustError> {
    let text = crate::fsio::read_cert_text(path).map_err(|error| TrustError::Read {
        field: field.to_string(),
        error,
    })?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(text.as_bytes()) {
        let certificate = certificate.map_err(|error| TrustError::NotPem {
            field: field.to_string(),
            path: path.to_path_buf(),
            error,
        })?;
        roots
            .add(certificate)
            .map_err(|error| TrustError::Unusable {
                field: field.to_string(),
                path: path.to_path_buf(),
                error,
            })?;
    }
    if roots.is_empty() {
        return Err(TrustError::NoCertificate {
            field: field.to_string(),
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

/// The chain check of client certificates against `ca_file`, built when a
/// snapshot is built (so a changed CA file applies without touching the
/// listener's `ServerConfig`). Whether a certificate is required is
/// `proxy::client_auth::ReloadingVerifier`'s decision, from the listener's current settings.
pub fn chain_verifier(ca_file: &Path) -> Result<Arc<dyn ClientCertVerifier>, TrustError> {
    let roots = load_roots(ca_file, "ca_file")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|error| TrustError::Verifier {
            path: ca_file.to_path_buf(),
            error,
        })
}
