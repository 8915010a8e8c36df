//! A farm of named backends for the load-balancing tests: real HTTP/1.1
//! servers (hyper) on 127.0.0.1 that say who they are, can be killed and
//! brought back on the same port, and whose health answer the test sets.
//!
//! - `/health`: 200, or 503 when unhealthy, after the health delay.
//! - `/ws` (WebSocket upgrade): 101, then a text frame with the backend's
//!   name, then an echo of every frame.
//! - `/fail`: 500.
//! - anything else (any method; a body is read whole): 200 with the name,
//!   after `?ms=N` milliseconds if asked.
//!
//! [`Blackhole`] accepts connections and never answers; [`Dropper`]
//! reads a request head and closes without answering.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

use super::backends::{TestBody, full};
use super::ws;

/// What a farm backend's handlers share with the test.
#[derive(Debug, Default)]
struct Shared {
    unhealthy: AtomicBool,
    health_delay_ms: AtomicU64,
    requests: AtomicU64,
    health_checks: AtomicU64,
    open_websockets: AtomicUsize,
    /// Every task serving a connection, aborted by a kill.
    tasks: std::sync::Mutex<Vec<AbortHandle>>,
}

/// One named backend of the farm.
pub struct FarmBackend {
    /// Its name, in every answer.
    pub name: String,
    /// Where it listens (kept across a restart).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<AbortHandle>,
}

impl FarmBackend {
    /// Starts `name` on a free port of 127.0.0.1.
    pub async fn start(name: &str) -> FarmBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind farm");
        let addr = listener.local_addr().expect("farm addr");
        let mut backend = FarmBackend {
            name: name.to_string(),
            addr,
            shared: Arc::new(Shared::default()),
            accept: None,
        };
        backend.serve(listener);
        backend
    }

    fn serve(&mut self, listener: TcpListener) {
        let shared = self.shared.clone();
        let name: Arc<str> = self.name.as_str().into();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let shared2 = shared.clone();
                let name = name.clone();
                let connection = tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(request, name.clone(), shared2.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
                lock(&shared.tasks).push(connection.abort_handle());
            }
        });
        self.accept = Some(task.abort_handle());
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills it: the port refuses connections and every connection it
    /// had (WebSockets included) is cut.
    pub fn kill(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for task in lock(&self.shared.tasks).drain(..) {
            task.abort();
        }
    }

    /// Brings it back on the same port.
    pub async fn restart(&mut self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Makes `/health` answer 503 (`false`) or 200 (`true`).
    pub fn set_healthy(&self, healthy: bool) {
        self.shared.unhealthy.store(!healthy, Ordering::SeqCst);
    }

    /// Makes `/health` wait this long before answering.
    pub fn set_health_delay(&self, delay: Duration) {
        self.shared
            .health_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Requests other than health checks served so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Health checks received so far.
    pub fn health_checks(&self) -> u64 {
        self.shared.health_checks.load(Ordering::SeqCst)
    }

    /// WebSockets open on it now.
    pub fn open_websockets(&self) -> usize {
        self.shared.open_websockets.load(Ordering::SeqCst)
    }
}

impl Drop for FarmBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

async fn handle(
    mut request: Request<Incoming>,
    name: Arc<str>,
    shared: Arc<Shared>,
) -> Result<Response<TestBody>, Infallible> {
    let named = |status: StatusCode, body: String| {
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            "x-backend",
            hyper::header::HeaderValue::from_str(&name).expect("name"),
        );
        response
    };
    match request.uri().path() {
        "/health" => {
            shared.health_checks.fetch_add(1, Ordering::SeqCst);
            let delay = shared.health_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if shared.unhealthy.load(Ordering::SeqCst) {
                Ok(named(StatusCode::SERVICE_UNAVAILABLE, "unhealthy".into()))
            } else {
                Ok(named(StatusCode::OK, "healthy".into()))
            }
        }
        "/ws" => {
            shared.requests.fetch_add(1, Ordering::SeqCst);
            let key = request
                .headers()
                .get("sec-websocket-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let upgrade = hyper::upgrade::on(&mut request);
            let shared2 = shared.clone();
            let greeting = name.to_string();
            let task = tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else {
                    return;
                };
                shared2.open_websockets.fetch_add(1, Ordering::SeqCst);
                let mut io = TokioIo::new(upgraded);
                if ws::write_frame(&mut io, ws::TEXT, greeting.as_bytes(), None)
                    .await
                    .is_ok()
                {
                    let _ = ws::echo(&mut io).await;
                }
                shared2.open_websockets.fetch_sub(1, Ordering::SeqCst);
            });
            lock(&shared.tasks).push(task.abort_handle());
            let mut response = named(StatusCode::SWITCHING_PROTOCOLS, String::new());
            *response.body_mut() = super::backends::empty();
            let headers = response.headers_mut();
            headers.insert("connection", "upgrade".parse().expect("value"));
            headers.insert("upgrade", "websocket".parse().expect("value"));
            headers.insert(
                "sec-websocket-accept",
                ws::accept_key(&key).parse().expect("value"),
            );
            Ok(response)
        }
        "/fail" => {
            shared.requests.fetch_add(1, Ordering::SeqCst);
            Ok(named(StatusCode::INTERNAL_SERVER_ERROR, name.to_string()))
        }
        _ => {
            shared.requests.fetch_add(1, Ordering::SeqCst);
            let ms: u64 = request
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let _ = request.into_body().collect().await;
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Ok(named(StatusCode::OK, name.to_string()))
        }
    }
}

/// Accepts TCP connections and never answers (nor closes them).
pub struct Blackhole {
    /// Where it listens.
    pub addr: SocketAddr,
    task: AbortHandle,
}

impl Blackhole {
    /// Starts it on a free port of 127.0.0.1.
    pub async fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
            }
        });
        Blackhole {
            addr,
            task: task.abort_handle(),
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads each request head, then closes the connection without a word;
/// counts the heads and whether a body's first bytes came with them.
pub struct Dropper {
    /// Where it listens.
    pub addr: SocketAddr,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
    task: AbortHandle,
}

impl Dropper {
    /// Starts it on a free port of 127.0.0.1.
    pub async fn start() -> Dropper {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    lock(&seen).push(String::from_utf8_lossy(&head).into_owned());
                });
            }
        });
        Dropper {
            addr,
            heads,
            task: task.abort_handle(),
        }
    }

    /// The request lines received so far.
    pub fn request_lines(&self) -> Vec<String> {
        lock(&self.heads)
            .iter()
            .map(|h| h.lines().next().unwrap_or_default().to_string())
            .collect()
    }
}

impl Drop for Dropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// GETs `path` `count` times over one keep-alive HTTP/1.1 connection to
/// the proxy at `addr` (SNI and Host `host`): how many answers came from
/// each backend (`x-backend`), anything but a 200 as `status NNN`.
pub async fn tally(
    addr: SocketAddr,
    host: &str,
    path: &str,
    count: usize,
) -> std::collections::HashMap<String, usize> {
    let mut send = super::h1_client(addr, host).await;
    let mut seen = std::collections::HashMap::new();
    for _ in 0..count {
        let request = Request::get(path)
            .header("host", host)
            .body(super::backends::empty())
            .expect("request");
        let response = super::send_h1(&mut send, request).await;
        let key = match response.header("x-backend") {
            Some(name) if response.status == 200 => name.to_string(),
            _ => format!("status {}", response.status),
        };
        *seen.entry(key).or_insert(0) += 1;
    }
    seen
}

/// A named TCP backend for `tls` listeners: says its name and a newline
/// on every connection, then echoes every byte; can be killed and brought
/// back on the same port.
pub struct NamedEcho {
    /// Its name.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    tasks: Arc<std::sync::Mutex<Vec<AbortHandle>>>,
    accept: Option<AbortHandle>,
}

impl NamedEcho {
    /// Starts `name` on a free port of 127.0.0.1.
    pub async fn start(name: &str) -> NamedEcho {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut echo = NamedEcho {
            name: name.to_string(),
            addr: listener.local_addr().expect("addr"),
            tasks: Arc::default(),
            accept: None,
        };
        echo.serve(listener);
        echo
    }

    fn serve(&mut self, listener: TcpListener) {
        let tasks = self.tasks.clone();
        let greeting = format!("{}\n", self.name);
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let greeting = greeting.clone();
                let connection = tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt as _;
                    if tcp.write_all(greeting.as_bytes()).await.is_err() {
                        return;
                    }
                    let (mut read, mut write) = tcp.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
                lock(&tasks).push(connection.abort_handle());
            }
        });
        self.accept = Some(task.abort_handle());
    }

    /// Kills it: refused from now on, its connections cut.
    pub fn kill(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    /// Brings it back on the same port.
    pub async fn restart(&mut self) {
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(self.addr).await {
                self.serve(listener);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("rebinding {}", self.addr);
    }
}

impl Drop for NamedEcho {
    fn drop(&mut self) {
        self.kill();
    }
}
