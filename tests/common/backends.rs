//! Backends for the traffic tests: real servers on 127.0.0.1:0.
//!
//! - [`HttpBackend`]: an HTTP/1.1 server (hyper) that echoes what it saw as
//!   JSON, sleeps on `/slow?ms=N`, checks streamed uploads on `/upload`,
//!   streams `/download?bytes=N`, answers `/hop` with hop-by-hop headers and
//!   echoes WebSocket frames on `/ws`.
//! - [`TcpEcho`]: a TCP echo for `tls` listeners that can parse a PROXY v2
//!   header first and reports what it saw.

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use super::ws;

/// Body type of every test request and response.
pub type TestBody = BoxBody<Bytes, io::Error>;

/// An empty body.
pub fn empty() -> TestBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

/// A body with `data`.
pub fn full(data: impl Into<Bytes>) -> TestBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

// ---- the byte pattern of streamed bodies -----------------------------------

/// Length of the pattern: prime, so it lines up with no chunk size and a
/// lost, duplicated or reordered chunk shows as a mismatch.
const PATTERN_LEN: usize = 1_000_003;

fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..PATTERN_LEN)
            .map(|_| {
                // xorshift64
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    })
}

/// The `len` pattern bytes starting at stream position `pos`.
pub fn pattern_chunk(pos: u64, len: usize) -> Bytes {
    let p = pattern();
    let mut out = Vec::with_capacity(len);
    let mut i = (pos % PATTERN_LEN as u64) as usize;
    while out.len() < len {
        let take = (len - out.len()).min(PATTERN_LEN - i);
        out.extend_from_slice(&p[i..i + take]);
        i = 0;
    }
    Bytes::from(out)
}

/// Checks a stream against the pattern as it arrives, without keeping it:
/// counts bytes and remembers the first position that differs.
#[derive(Debug, Default)]
pub struct PatternCheck {
    /// Bytes seen so far.
    pub bytes: u64,
    /// The first stream position whose byte was not the pattern's.
    pub first_mismatch: Option<u64>,
}

impl PatternCheck {
    /// Checks the next piece of the stream.
    pub fn feed(&mut self, data: &[u8]) {
        let p = pattern();
        let mut done = 0;
        while done < data.len() {
            let pos = self.bytes + done as u64;
            let i = (pos % PATTERN_LEN as u64) as usize;
            let take = (data.len() - done).min(PATTERN_LEN - i);
            let got = &data[done..done + take];
            let want = &p[i..i + take];
            if self.first_mismatch.is_none() && got != want {
                let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                self.first_mismatch = Some(pos + at as u64);
            }
            done += take;
        }
        self.bytes += data.len() as u64;
    }
}

/// A body of `total` pattern bytes, made chunk by chunk as it is polled:
/// never more than one chunk in memory.
#[derive(Debug)]
pub struct PatternBody {
    pos: u64,
    total: u64,
    chunk: usize,
}

impl PatternBody {
    /// `total` bytes in chunks of 64 KiB.
    pub fn new(total: u64) -> Self {
        PatternBody {
            pos: 0,
            total,
            chunk: 64 * 1024,
        }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.pos >= self.total {
            return Poll::Ready(None);
        }
        let len = (self.total - self.pos).min(self.chunk as u64) as usize;
        let data = pattern_chunk(self.pos, len);
        self.pos += len as u64;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.total
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total - self.pos)
    }
}

// ---- the HTTP backend ------------------------------------------------------

/// An HTTP/1.1 backend on 127.0.0.1:0 (see the module documentation).
pub struct HttpBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    arrivals: Mutex<mpsc::UnboundedReceiver<String>>,
    task: JoinHandle<()>,
}

impl HttpBackend {
    /// Binds and starts serving.
    pub async fn start() -> HttpBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request| handle(request, tx.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        HttpBackend {
            addr,
            arrivals: Mutex::new(rx),
            task,
        }
    }

    /// `http://ADDR`, for a route's `backend`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits (up to 10 s) until the next request's head arrives and
    /// returns its path and query.
    pub async fn next_arrival(&self) -> String {
        let mut rx = self.arrivals.lock().await;
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a request reaches the backend within 10 s")
            .expect("backend running")
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The value of `name=` in a query string.
fn query_value<'a>(request: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

async fn handle(
    mut request: Request<Incoming>,
    arrivals: mpsc::UnboundedSender<String>,
) -> Result<Response<TestBody>, Infallible> {
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let _ = arrivals.send(target.clone());
    let response = match request.uri().path() {
        "/slow" => {
            let ms: u64 = query_value(&request, "ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(full("slow done"))
        }
        "/upload" => {
            let mut check = PatternCheck::default();
            let mut body = request.into_body();
            let mut error = None;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            check.feed(data);
                        }
                    }
                    Err(e) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            let report = serde_json::json!({
                "bytes": check.bytes,
                "first_mismatch": check.first_mismatch,
                "error": error,
            });
            json(&report)
        }
        "/download" => {
            let bytes: u64 = query_value(&request, "bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Response::new(PatternBody::new(bytes).boxed())
        }
        "/hop" => {
            let mut response = Response::new(full("hop"));
            let headers = response.headers_mut();
            headers.insert("connection", "x-backend-hop".parse().expect("value"));
            headers.insert("x-backend-hop", "1".parse().expect("value"));
            headers.insert("keep-alive", "timeout=5".parse().expect("value"));
            headers.insert("proxy-connection", "keep-alive".parse().expect("value"));
            headers.insert("x-backend-keep", "yes".parse().expect("value"));
            response
        }
        "/ws" => websocket(&mut request),
        _ => echo(request).await,
    };
    Ok(response)
}

fn json(value: &serde_json::Value) -> Response<TestBody> {
    let mut response = Response::new(full(value.to_string()));
    response.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("content type"),
    );
    response
}

/// What the backend saw: method, target, version, headers (name → values,
/// in order) and the body as text.
async fn echo(request: Request<Incoming>) -> Response<TestBody> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<serde_json::Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned().into())
            .collect();
        headers.insert(name.as_str().to_string(), values.into());
    }
    json(&serde_json::json!({
        "method": parts.method.as_str(),
        "target": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

/// Answers a WebSocket handshake with 101 and echoes frames on the upgraded
/// connection.
fn websocket(request: &mut Request<Incoming>) -> Response<TestBody> {
    let upgrade = request
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(key) = request
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
    else {
        let mut response = Response::new(full("no Sec-WebSocket-Key"));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    if !upgrade.eq_ignore_ascii_case("websocket") {
        let mut response = Response::new(full("not a WebSocket upgrade"));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    }
    let accept = ws::accept_key(key);
    let on_upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let _ = ws::echo(TokioIo::new(upgraded)).await;
        }
    });
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert("upgrade", "websocket".parse().expect("value"));
    headers.insert("connection", "Upgrade".parse().expect("value"));
    headers.insert("sec-websocket-accept", accept.parse().expect("value"));
    response
}

/// A loopback port that refuses connections for as long as the result lives.
pub async fn closed_port() -> ClosedPort {
    // Bound but never listening: a connection to it is refused, and while
    // the socket lives no other test in this binary can be handed the same
    // port (a dropped listener's port could go to the next echo server).
    // `TcpSocket` sets no SO_REUSEADDR, so nothing can share it either.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    ClosedPort {
        addr,
        _held: socket,
    }
}

/// A loopback port that refuses connections for as long as this lives.
pub struct ClosedPort {
    addr: SocketAddr,
    _held: tokio::net::TcpSocket,
}

impl ClosedPort {
    /// The refused address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl std::fmt::Display for ClosedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

// ---- the TCP echo ----------------------------------------------------------

/// The last bytes a [`TcpEcho`] sends after the client's EOF.
pub const ECHO_GOODBYE: &[u8] = b"BYE after EOF\r\n";

/// What a [`TcpEcho`] saw on one connection.
#[derive(Debug)]
pub struct TcpReport {
    /// Source and destination from the PROXY v2 header, when one was
    /// expected; an error text when it was malformed.
    pub proxy: Option<Result<(SocketAddr, SocketAddr), String>>,
    /// Every byte received after the header.
    pub received: Vec<u8>,
    /// Whether the connection ended with a clean EOF (the client's
    /// half-close passed on).
    pub saw_eof: bool,
}

/// A TCP echo on 127.0.0.1:0: echoes every byte; on EOF it sends
/// [`ECHO_GOODBYE`], closes, and reports.
pub struct TcpEcho {
    /// Where it listens.
    pub addr: SocketAddr,
    reports: Mutex<mpsc::UnboundedReceiver<TcpReport>>,
    task: JoinHandle<()>,
}

impl TcpEcho {
    /// Starts the echo; with `proxy_v2`, each connection must start with a
    /// PROXY protocol v2 header.
    pub async fn start(proxy_v2: bool) -> TcpEcho {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(echo_connection(tcp, proxy_v2).await);
                });
            }
        });
        TcpEcho {
            addr,
            reports: Mutex::new(rx),
            task,
        }
    }

    /// Waits (up to 10 s) for the report of the next connection that ends.
    pub async fn next_report(&self) -> TcpReport {
        let mut rx = self.reports.lock().await;
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a backend connection ends within 10 s")
            .expect("echo running")
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_connection(mut tcp: TcpStream, proxy_v2: bool) -> TcpReport {
    let proxy = if proxy_v2 {
        Some(read_proxy_v2(&mut tcp).await)
    } else {
        None
    };
    let mut received = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let saw_eof = loop {
        match tcp.read(&mut buf).await {
            Ok(0) => break true,
            Ok(n) => {
                received.extend_from_slice(&buf[..n]);
                if tcp.write_all(&buf[..n]).await.is_err() {
                    break false;
                }
            }
            Err(_) => break false,
        }
    };
    if saw_eof {
        let _ = tcp.write_all(ECHO_GOODBYE).await;
        let _ = tcp.shutdown().await;
    }
    TcpReport {
        proxy,
        received,
        saw_eof,
    }
}

/// Reads and parses a PROXY protocol v2 header (PROXY command, TCP over
/// IPv4 or IPv6).
async fn read_proxy_v2(tcp: &mut TcpStream) -> Result<(SocketAddr, SocketAddr), String> {
    let mut head = [0u8; 16];
    tcp.read_exact(&mut head)
        .await
        .map_err(|e| format!("reading the header: {e}"))?;
    if &head[..12] != b"\r\n\r\n\0\r\nQUIT\n" {
        return Err(format!("bad signature {:?}", &head[..12]));
    }
    if head[12] != 0x21 {
        return Err(format!("version/command {:#04x}, expected 0x21", head[12]));
    }
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body)
        .await
        .map_err(|e| format!("reading the addresses: {e}"))?;
    match head[13] {
        0x11 if len >= 12 => {
            let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
            let src = SocketAddr::new(ip(&body[0..4]), u16::from_be_bytes([body[8], body[9]]));
            let dst = SocketAddr::new(ip(&body[4..8]), u16::from_be_bytes([body[10], body[11]]));
            Ok((src, dst))
        }
        0x21 if len >= 36 => {
            let ip = |b: &[u8]| {
                let octets: [u8; 16] = b.try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let src = SocketAddr::new(ip(&body[0..16]), u16::from_be_bytes([body[32], body[33]]));
            let dst = SocketAddr::new(ip(&body[16..32]), u16::from_be_bytes([body[34], body[35]]));
            Ok((src, dst))
        }
        other => Err(format!("family/transport {other:#04x} with length {len}")),
    }
}
