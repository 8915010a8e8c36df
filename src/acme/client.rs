//! The HTTP client instant-acme reaches the CA with.
//!
//! Ours rather than instant-acme's default for two reasons: `acme.ca_roots`
//! may name several PEM files (instant-acme's `builder_with_root` takes
//! one certificate), and the CA's `Retry-After` on an error response (rate
//! limits, maintenance) is not part of instant-acme's errors, so this client
//! records it for the scheduler.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::fsio;

/// The latest `Retry-After` the CA sent with an error response, shared
/// between the client and whoever ran the request.
#[derive(Debug, Clone, Default)]
pub struct RetryAfter(Arc<Mutex<Option<SystemTime>>>);

impl RetryAfter {
    /// Seconds from `now` until the recorded `Retry-After` time (0 when it
    /// has passed), and forgets it.
    pub fn take_secs(&self, now: SystemTime) -> Option<i64> {
        let at = self.0.lock().ok()?.take()?;
        Some(
            at.duration_since(now)
                .unwrap_or(Duration::ZERO)
                .as_secs()
                .try_into()
                .unwrap_or(i64::MAX),
        )
    }

    fn record(&self, at: SystemTime) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(at);
        }
    }
}

/// Why the HTTP client for the CA cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum CaClientError {
    /// rustls refused the protocol versions.
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
    /// The system's trust store cannot be loaded.
    #[error("loading the system's trust roots: {0}")]
    SystemRoots(rustls::Error),
    /// An `acme.ca_roots` file cannot be read, or is no text.
    #[error("acme.ca_roots: {0}")]
    Read(fsio::FsError),
    /// A PEM block of an `acme.ca_roots` file cannot be decoded.
    #[error("acme.ca_roots: {}: not a PEM certificate: {error}", path.display())]
    NotPem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        error: rustls_pki_types::pem::Error,
    },
    /// A certificate of an `acme.ca_roots` file that cannot be a root.
    #[error("acme.ca_roots: {}: unusable as a trust root: {error}", path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        error: rustls::Error,
    },
    /// An `acme.ca_roots` file without a certificate.
    #[error(
        "acme.ca_roots: {}: no `-----BEGIN CERTIFICATE-----` block in it; \
         give the PEM file of the CA's root",
        path.display()
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
}

/// An instant-acme HTTP client trusting `ca_roots` (PEM files, every
/// certificate in them) or, when empty, the system's roots; and the handle
/// to the `Retry-After` it records.
pub fn ca_client(ca_roots: &[PathBuf]) -> Result<(Box<dyn HttpClient>, RetryAfter), CaClientError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(CaClientError::Setup)?;
    let tls = if ca_roots.is_empty() {
        builder
            .try_with_platform_verifier()
            .map_err(CaClientError::SystemRoots)?
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for path in ca_roots {
            let text = fsio::read_cert_text(path).map_err(CaClientError::Read)?;
            let mut found = 0;
            for certificate in CertificateDer::pem_slice_iter(text.as_bytes()) {
                let certificate = certificate.map_err(|error| CaClientError::NotPem {
                    path: path.clone(),
                    error,
                })?;
                roots
                    .add(certificate)
                    .map_err(|error| CaClientError::Unusable {
                        path: path.clone(),
                        error,
                    })?;
                found += 1;
            }
            if found == 0 {
                return Err(CaClientError::NoCertificate { path: path.clone() });
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    let connector: HttpsConnector<HttpConnector> = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let retry_after = RetryAfter::default();
    Ok((
        Box::new(CaClient {
            client,
            retry_after: retry_after.clone(),
        }),
        retry_after,
    ))
}

struct CaClient {
    client: Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    retry_after: RetryAfter,
}

impl HttpClient for CaClient {
    fn request(
        &self,
        req: hyper::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.client.request(req);
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let response = response
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            // Only errors: on success a Retry-After paces polling, which
            // instant-acme already honours.
            let failed = response.status().is_client_error() || response.status().is_server_error();
            if let Some(at) = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
                .filter(|_| failed)
            {
                retry_after.record(at);
            }
            Ok(BytesResponse::from(response))
        })
    }
}

/// `Retry-After` is either seconds or an HTTP-date (RFC 9110 §10.2.3).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return now.checked_add(Duration::from_secs(secs));
    }
    let format = time::format_description::well_known::Rfc2822;
    time::OffsetDateTime::parse(value, &format)
        .ok()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(
            parse_retry_after("120", now),
            Some(now + Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 01:00:00 GMT", now),
            Some(now + Duration::from_secs(3600))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        let recorded = RetryAfter::default();
        recorded.record(now + Duration::from_secs(90));
        assert_eq!(recorded.take_secs(now), Some(90));
        assert_eq!(recorded.take_secs(now), None, "taken once");
        recorded.record(now);
        assert_eq!(recorded.take_secs(now + Duration::from_secs(5)), Some(0));
    }

    #[test]
    fn ca_roots_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("roots.pem");
        std::fs::write(&empty, "nothing here").expect("write");
        let error = ca_client(std::slice::from_ref(&empty))
            .err()
            .expect("fails")
            .to_string();
        assert!(error.contains("roots.pem"), "{error}");
        assert!(error.contains("acme.ca_roots"), "{error}");
        let missing = dir.path().join("missing.pem");
        let error = ca_client(&[missing]).err().expect("fails").to_string();
        assert!(error.contains("missing.pem"), "{error}");
    }
}
