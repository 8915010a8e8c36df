//! TLS towards backends: the rustls client side of an `https://` route
//! backend or of a `tls` listener's backend (`backend_tls:`).
//!
//! What a backend connection needs — trust roots, the client certificate,
//! the server name — is built when a snapshot is built, like every other
//! certificate (README, "TLS towards backends"), into one [`BackendTlsClient`] per
//! backend. A changed client certificate or CA file therefore gives a new
//! `BackendTlsClient` at the next reload, and new backend connections use
//! it; connections already open keep the one they were made with.

use std::sync::Arc;

use hyper_rustls::ConfigBuilderExt as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::certificate::{LoadedCertificate, SourceStamp};
use super::roots::TrustError;
use crate::config::BackendTls;

/// Why there is no TLS client for a backend: requests to it fail (502)
/// until the next snapshot has one. Cheap to clone (every request to the
/// backend gets it).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendTlsError {
    /// Its `ca_file` never loaded.
    #[error("{error}; requests to this backend fail (502) until this is fixed")]
    Roots {
        /// Why the CA file cannot be used.
        error: Arc<TrustError>,
    },
    /// The server name is neither a DNS name nor an IP address.
    #[error(
        "backend {backend}: `{server_name}` is neither a DNS name nor an IP address; set backend_tls.server_name"
    )]
    ServerName {
        /// The backend as configured.
        backend: String,
        /// The name.
        server_name: String,
    },
    /// rustls refused the protocol versions.
    #[error("backend {backend}: TLS setup: {error}")]
    Setup {
        /// The backend as configured.
        backend: String,
        /// What rustls said.
        error: rustls::Error,
    },
    /// rustls refused to build the certificate check from the CA file.
    #[error("backend {backend}: TLS setup: {error}")]
    Verifier {
        /// The backend as configured.
        backend: String,
        /// What rustls said.
        error: rustls::client::VerifierBuilderError,
    },
    /// The system's trust store cannot be loaded.
    #[error(
        "backend {backend}: loading the system's trust roots: {error}; set backend_tls.ca_file"
    )]
    SystemRoots {
        /// The backend as configured.
        backend: String,
        /// What the platform verifier said.
        error: rustls::Error,
    },
    /// Not a TLS backend of the running configuration.
    #[error("no TLS settings for backend {backend} in the running configuration")]
    NotConfigured {
        /// The backend asked for.
        backend: String,
    },
}

/// Everything a connection to one TLS backend needs, as of one snapshot.
#[derive(Debug)]
pub struct BackendTlsClient {
    /// The settings it was built from.
    pub spec: BackendTls,
    /// The rustls client configuration (no ALPN: callers add theirs).
    pub config: Arc<ClientConfig>,
    /// The name sent as SNI and verified in the backend's certificate.
    pub server_name: ServerName<'static>,
    /// The trust roots read from `ca_file`, with the file's stamp, so a
    /// rebuild reuses them while the file is unchanged.
    pub roots: Option<(Arc<RootCertStore>, SourceStamp)>,
    /// The client certificate presented, if configured and loaded.
    pub client_certificate: Option<Arc<LoadedCertificate>>,
}

impl BackendTlsClient {
    /// Builds the client configuration for `spec` with the roots read from
    /// its `ca_file` (`None`: the system's trust store, unless
    /// `insecure_skip_verify`) and the client certificate, if any.
    pub fn build(
        spec: &BackendTls,
        roots: Option<(Arc<RootCertStore>, SourceStamp)>,
        client_certificate: Option<Arc<LoadedCertificate>>,
    ) -> Result<Self, BackendTlsError> {
        let backend = || spec.backend.clone();
        let server_name = ServerName::try_from(spec.server_name.clone()).map_err(|_| {
            BackendTlsError::ServerName {
                backend: backend(),
                server_name: spec.server_name.clone(),
            }
        })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| BackendTlsError::Setup {
                backend: backend(),
                error,
            })?;
        let builder = if spec.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                    algorithms: provider.signature_verification_algorithms,
                }))
        } else if let Some((roots, _)) = &roots {
            let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider)
                .build()
                .map_err(|error| BackendTlsError::Verifier {
                    backend: backend(),
                    error,
                })?;
            builder.with_webpki_verifier(verifier)
        } else {
            builder
                .try_with_platform_verifier()
                .map_err(|error| BackendTlsError::SystemRoots {
                    backend: backend(),
                    error,
                })?
        };
        let config = match &client_certificate {
            Some(loaded) => builder.with_client_cert_resolver(Arc::new(PresentCertificate(
                loaded.certified_key.clone(),
            ))),
            None => builder.with_no_client_auth(),
        };
        Ok(BackendTlsClient {
            spec: spec.clone(),
            config: Arc::new(config),
            server_name,
            roots,
            client_certificate,
        })
    }
}

/// Presents one certificate whenever a backend asks for one.
#[derive(Debug)]
struct PresentCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for PresentCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        // Sent whatever the hints say: a backend that pins a certificate
        // need not name its issuer, and rustls checks the signature scheme.
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `insecure_skip_verify: true`: any certificate is accepted (the
/// handshake signatures are still checked, so the connection is encrypted
/// to whoever holds that certificate's key — just not authenticated).
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
