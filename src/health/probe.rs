//! One health check of one backend: a TCP connection (after it a PROXY v2
//! LOCAL header where the backend expects PROXY headers, and TLS where it
//! speaks TLS), then `GET path` for a route's backend, or `send`/`expect`
//! for a `tls` listener's, all within `health.timeout`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, HeaderValue, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::balance::BackendState;
use crate::config::{HealthCheck, Probe};
use crate::proxy::tls::{BackendStream, proxy_v2_local_header};
use crate::snapshot::SnapshotReader;
use crate::snapshot::backend_tls::BackendTlsError;

/// The most of a backend's answer read while looking for `expect`.
const MAX_EXPECT_READ: usize = 64 * 1024;

/// Why a check failed (logged when the backend changes state).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No answer within `health.timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// No TCP connection.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The PROXY header or the `send` text could not be written, or the
    /// answer not read.
    #[error("{0}")]
    Io(std::io::Error),
    /// The snapshot has no TLS client for the backend.
    #[error(transparent)]
    TlsClient(#[from] BackendTlsError),
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(hyper::Error),
    /// A status other than 2xx or 3xx.
    #[error("answered {0}")]
    Status(StatusCode),
    /// The answer ended without the expected text.
    #[error("the answer did not contain `{0}`")]
    Expect(String),
}

/// Runs one check of `backend` within `check.timeout`.
pub async fn run(
    backend: &BackendState,
    check: &HealthCheck,
    store: &SnapshotReader,
) -> Result<(), ProbeError> {
    tokio::time::timeout(check.timeout, exchange(backend, check, store))
        .await
        .unwrap_or(Err(ProbeError::Timeout(check.timeout)))
}

async fn exchange(
    backend: &BackendState,
    check: &HealthCheck,
    store: &SnapshotReader,
) -> Result<(), ProbeError> {
    let address = backend.address();
    let mut tcp = TcpStream::connect(address)
        .await
        .map_err(ProbeError::Connect)?;
    let _ = tcp.set_nodelay(true);
    if backend.key.proxy_protocol {
        tcp.write_all(&proxy_v2_local_header())
            .await
            .map_err(ProbeError::Io)?;
    }
    let mut stream: Box<dyn BackendStream> = match &backend.key.tls {
        None => Box::new(tcp),
        Some(name) => {
            let client = store.load().backend_tls_client(name)?;
            let tls = tokio_rustls::TlsConnector::from(client.config.clone())
                .connect(client.server_name.clone(), tcp)
                .await
                .map_err(ProbeError::Tls)?;
            Box::new(tls)
        }
    };
    match &check.probe {
        Probe::Http { path } => http_get(stream, address, path).await,
        Probe::Tcp { send, expect } => {
            if let Some(text) = send {
                stream
                    .write_all(text.as_bytes())
                    .await
                    .map_err(ProbeError::Io)?;
                stream.flush().await.map_err(ProbeError::Io)?;
            }
            match expect {
                None => Ok(()),
                Some(expected) => read_until(&mut stream, expected).await,
            }
        }
    }
}

/// `GET path` over `stream` with hyper's HTTP/1.1 client; 2xx and 3xx are
/// good.
async fn http_get(
    stream: Box<dyn BackendStream>,
    address: &str,
    path: &str,
) -> Result<(), ProbeError> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ProbeError::Http)?;
    let connection = tokio::spawn(connection);
    let mut request = Request::new(Empty::<Bytes>::new());
    *request.uri_mut() = path
        .parse()
        .unwrap_or_else(|_| hyper::Uri::from_static("/"));
    let headers = request.headers_mut();
    if let Ok(host) = HeaderValue::from_str(address) {
        headers.insert(HOST, host);
    }
    headers.insert(USER_AGENT, HeaderValue::from_static("sniwalk-health-check"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    let response = sender.send_request(request).await.map_err(ProbeError::Http);
    connection.abort();
    let status = response?.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(ProbeError::Status(status))
    }
}

/// Reads until `expected` appears in what the backend sent.
async fn read_until(stream: &mut Box<dyn BackendStream>, expected: &str) -> Result<(), ProbeError> {
    let mut seen: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stream.read(&mut buffer).await.map_err(ProbeError::Io)?;
        if read == 0 {
            return Err(ProbeError::Expect(expected.to_string()));
        }
        seen.extend_from_slice(&buffer[..read]);
        if seen
            .windows(expected.len())
            .any(|w| w == expected.as_bytes())
        {
            return Ok(());
        }
        if seen.len() > MAX_EXPECT_READ {
            return Err(ProbeError::Expect(expected.to_string()));
        }
    }
}
