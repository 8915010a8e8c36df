//! The `ask` question of `acme.on_demand`: `GET <ask>?domain=NAME`, 200
//! allows, any other answer refuses (README, "On-demand certificates"; the
//! same contract as Caddy's `on_demand_tls.ask`). `http://` and `https://`
//! (verified against the system's roots); bounded in time.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Longest time the `ask` endpoint gets to answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the `ask` endpoint said about a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200: the name may get a certificate.
    Allowed,
    /// Any other status.
    Refused(u16),
}

/// Why the `ask` endpoint gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The URL with the query is no URL (cannot happen for a checked
    /// `ask` and a checked name, but never a panic).
    #[error("acme.on_demand.ask: `{0}` is not a URL")]
    Url(String),
    /// Connecting or the request failed.
    #[error("acme.on_demand.ask {url}: {error}; is the endpoint running?")]
    Request {
        /// The URL asked.
        url: String,
        /// What failed.
        error: String,
    },
    /// No answer within [`ASK_TIMEOUT`].
    #[error("acme.on_demand.ask {url}: no answer within {}s", ASK_TIMEOUT.as_secs())]
    Timeout {
        /// The URL asked.
        url: String,
    },
    /// No TLS client could be made (the system's roots).
    #[error("acme.on_demand.ask: cannot set up TLS: {0}")]
    Tls(String),
}

/// The HTTP client that asks; one per process, connections kept alive.
#[derive(Debug, Clone)]
pub struct Asker {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Asker {
    /// A client for `http://` and `https://` endpoints.
    pub fn new() -> Result<Self, AskError> {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| AskError::Tls(e.to_string()))?
            .try_with_platform_verifier()
            .map_err(|e| AskError::Tls(e.to_string()))?
            .with_no_client_auth();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Asker {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Asks `ask` about `name`.
    pub async fn ask(&self, ask: &str, name: &str) -> Result<Answer, AskError> {
        let url = question_url(ask, name);
        let uri: hyper::Uri = url.parse().map_err(|_| AskError::Url(url.clone()))?;
        let request = hyper::Request::get(uri)
            .header(
                hyper::header::USER_AGENT,
                concat!("sniwalk/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|_| AskError::Url(url.clone()))?;
        let response = tokio::time::timeout(ASK_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| AskError::Timeout { url: url.clone() })?
            .map_err(|e| AskError::Request {
                url: url.clone(),
                error: error_chain(&e),
            })?;
        // The body is not read: the status is the answer, and dropping the
        // response closes a connection that still has one coming.
        Ok(match response.status().as_u16() {
            200 => Answer::Allowed,
            status => Answer::Refused(status),
        })
    }
}

/// `ask` with `domain=NAME` added to its query.
pub fn question_url(ask: &str, name: &str) -> String {
    let value: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    let separator = if ask.contains('?') { '&' } else { '?' };
    format!("{ask}{separator}domain={value}")
}

/// An error and its sources on one line (hyper's own says only "client
/// error (Connect)").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
