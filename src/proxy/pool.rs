//! Keep-alive HTTP/1.1 connections to backends, reused across requests.
//!
//! Our own small pool on `hyper::client::conn::http1` rather than
//! hyper-util's pooled client: that one costs several thousand
//! instructions per request (a SipHash of the pool key, large futures
//! moved around, an executor between), a good share of what proxying a
//! keep-alive request costs in all. Here a request takes an idle
//! connection of its backend from a short list (last in, first out: the
//! warmest one), and its response body puts the connection back when it
//! has been read to its end. A connection whose response ended early, was
//! cut, said `Connection: close` or switched protocols (101) is never put
//! back.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper::header::{self, HeaderMap};
use hyper::http::uri::Authority;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::snapshot::backend_tls::BackendTlsClient;

/// How long a connection may wait unused before it is closed (what
/// hyper-util's `pool_idle_timeout` was set to): shorter than the keep-alive
/// timeout of most servers is not needed, since a connection the backend
/// closed meanwhile is noticed and never used.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// At most this many TLS backend clients are kept per pool; older ones no
/// snapshot uses any more are dropped first.
const MAX_TLS_CLIENTS: usize = 64;

/// The idle connections of one backend, most recently used last.
type IdleList<B> = Mutex<Vec<Idle<B>>>;

/// A connection waiting for its next request.
#[derive(Debug)]
struct Idle<B> {
    sender: SendRequest<B>,
    /// When it went idle, for [`IDLE_TIMEOUT`].
    since: Instant,
}

/// The idle connections of one TLS backend, made with one snapshot's
/// [`BackendTlsClient`].
#[derive(Debug)]
struct TlsBucket<B> {
    /// Compared by pointer: a reload that changes a backend's client
    /// certificate or CA makes a new client, so new connections use the new
    /// settings while those made with the old ones age out.
    client: Arc<BackendTlsClient>,
    authority: Authority,
    idle: Arc<IdleList<B>>,
}

/// The lists, shared with the task that closes expired connections.
#[derive(Debug)]
struct Lists<B> {
    /// Plain `http://` backends by authority as written; foldhash rather
    /// than the standard SipHash, as this is looked up on every request,
    /// and a string key rather than the `Authority`, whose hash feeds the
    /// hasher one lowercased byte at a time (two spellings of one backend
    /// get two lists, which costs nothing but a connection).
    plain: Mutex<HashMap<Box<str>, Arc<IdleList<B>>, foldhash::fast::RandomState>>,
    /// TLS backends, oldest first (at most [`MAX_TLS_CLIENTS`]); few, and
    /// looked up by pointer.
    tls: Mutex<Vec<TlsBucket<B>>>,
    /// Whether the sweeping task runs (started with the first connection,
    /// inside the runtime).
    sweeping: AtomicBool,
}

/// Idle backend connections of one listener, and how to make new ones.
/// `B` is the request body type (hyper's `Incoming` when proxying).
#[derive(Debug)]
pub struct Pool<B> {
    lists: Arc<Lists<B>>,
    connect_timeout: Duration,
    http1: Builder,
}

/// Why a request got no response headers from its backend.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No TCP connection: refused, unreachable, or no answer within the
    /// connect timeout (then an error of kind `TimedOut`).
    #[error("cannot connect")]
    Connect(#[source] io::Error),
    /// The TLS handshake with the backend failed (a rustls error inside
    /// when the backend's certificate or protocol was refused).
    #[error("cannot connect")]
    Tls(#[source] io::Error),
    /// The connection was made but the request or its response failed.
    #[error("request failed")]
    Request(#[source] hyper::Error),
}

/// A request that got no response headers: why, and the request itself
/// when it never left (so that it may go to another backend).
#[derive(Debug)]
pub struct SendFailure<B> {
    /// Why.
    pub error: SendError,
    /// The request, when nothing of it was sent.
    pub unsent: Option<Request<B>>,
}

impl SendError {
    /// Whether no connection could be made (TCP or TLS).
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_) | SendError::Tls(_))
    }
}

impl<B> Pool<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// An empty pool; new connections wait at most `connect_timeout` for
    /// TCP.
    pub fn new(connect_timeout: Duration) -> Self {
        Pool {
            lists: Arc::new(Lists {
                plain: Mutex::default(),
                tls: Mutex::default(),
                sweeping: AtomicBool::new(false),
            }),
            connect_timeout,
            // hyper's defaults, as hyper-util's client used them.
            http1: Builder::new(),
        }
    }

    /// Sends `request` (origin-form URI, `Host` set) to the backend at
    /// `authority`, over TLS with `tls` if given, on an idle connection or
    /// a new one; the response body puts the connection back when it has
    /// been read to its end.
    pub async fn send(
        &self,
        request: Request<B>,
        authority: &Authority,
        tls: Option<&Arc<BackendTlsClient>>,
    ) -> Result<Response<PooledBody<B>>, SendFailure<B>> {
        let idle = match tls {
            None => self.plain_list(authority),
            Some(tls) => self.tls_list(authority, tls),
        };
        let (mut sender, reused) = match checkout(&idle) {
            Some(sender) => (sender, true),
            None => match self.connect(authority, tls).await {
                Ok(sender) => (sender, false),
                Err(error) => {
                    return Err(SendFailure {
                        error,
                        unsent: Some(request),
                    });
                }
            },
        };
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut e) => match e.take_message() {
                // The backend closed an idle connection just as it was
                // taken: nothing was sent, so trying once more on a new
                // connection is safe (a request that was sent never is).
                Some(request) if reused => {
                    tracing::debug!(backend = %authority, error = %e.error(), "idle backend connection closed before the request was sent; using a new one");
                    sender = match self.connect(authority, tls).await {
                        Ok(sender) => sender,
                        Err(error) => {
                            return Err(SendFailure {
                                error,
                                unsent: Some(request),
                            });
                        }
                    };
                    match sender.try_send_request(request).await {
                        Ok(response) => response,
                        Err(mut e) => {
                            let request = e.take_message();
                            return Err(SendFailure {
                                error: SendError::Request(e.into_error()),
                                unsent: request,
                            });
                        }
                    }
                }
                request => {
                    return Err(SendFailure {
                        error: SendError::Request(e.into_error()),
                        unsent: request,
                    });
                }
            },
        };
        let back = (response.status() != StatusCode::SWITCHING_PROTOCOLS
            && keeps_alive(response.version(), response.headers()))
        .then_some(Back { sender, idle });
        Ok(response.map(|inner| PooledBody::new(inner, back)))
    }

    /// The idle list of a plain backend, made on first use.
    fn plain_list(&self, authority: &Authority) -> Arc<IdleList<B>> {
        let mut plain = lock(&self.lists.plain);
        if let Some(idle) = plain.get(authority.as_str()) {
            return idle.clone();
        }
        plain.entry(authority.as_str().into()).or_default().clone()
    }

    /// The idle list of a TLS backend with these settings, made on first
    /// use.
    fn tls_list(&self, authority: &Authority, tls: &Arc<BackendTlsClient>) -> Arc<IdleList<B>> {
        let mut buckets = lock(&self.lists.tls);
        if let Some(bucket) = buckets
            .iter()
            .find(|b| Arc::ptr_eq(&b.client, tls) && b.authority == *authority)
        {
            return bucket.idle.clone();
        }
        // Clients whose settings no snapshot holds any more (only this pool
        // does) go; their idle connections close with them.
        buckets.retain(|b| Arc::strong_count(&b.client) > 1);
        if buckets.len() >= MAX_TLS_CLIENTS {
            buckets.remove(0);
        }
        let idle = Arc::<IdleList<B>>::default();
        buckets.push(TlsBucket {
            client: tls.clone(),
            authority: authority.clone(),
            idle: idle.clone(),
        });
        idle
    }

    /// A new connection: TCP within the connect timeout, then TLS if the
    /// backend wants it, then hyper's HTTP/1.1 connection task.
    async fn connect(
        &self,
        authority: &Authority,
        tls: Option<&Arc<BackendTlsClient>>,
    ) -> Result<SendRequest<B>, SendError> {
        self.start_sweeping();
        let host = authority.host();
        // IPv6 literals come bracketed in an authority.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = authority
            .port_u16()
            .unwrap_or(if tls.is_some() { 443 } else { 80 });
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, port)))
            .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(SendError::Connect(e)),
            // Of kind `TimedOut`, as the kernel's own connect timeout is:
            // the caller tells timeouts (504) from refusals (502) by it.
            Err(_) => {
                return Err(SendError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no connection within {} s",
                        self.connect_timeout.as_secs_f64()
                    ),
                )));
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(backend = %authority, error = %e, "cannot set TCP_NODELAY");
        }
        match tls {
            None => self.handshake(TokioIo::new(tcp), authority).await,
            Some(tls) => {
                let stream = TlsConnector::from(tls.config.clone())
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(SendError::Tls)?;
                self.handshake(TokioIo::new(stream), authority).await
            }
        }
    }

    /// hyper's HTTP/1.1 client on `io`, its connection task spawned (with
    /// upgrades, for WebSocket tunnels).
    async fn handshake<T>(&self, io: T, authority: &Authority) -> Result<SendRequest<B>, SendError>
    where
        T: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
    {
        let (sender, connection) = self.http1.handshake(io).await.map_err(SendError::Request)?;
        let authority = authority.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(backend = %authority, error = %e, "backend connection failed");
            }
        });
        Ok(sender)
    }

    /// Starts the task that closes connections idle for longer than
    /// [`IDLE_TIMEOUT`] (a checkout only looks at the most recent ones),
    /// once; it ends with the pool.
    fn start_sweeping(&self) {
        if self.lists.sweeping.load(Ordering::Relaxed)
            || self.lists.sweeping.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let lists = Arc::downgrade(&self.lists);
        tokio::spawn(sweep_every(lists, IDLE_TIMEOUT));
    }

    /// Idle connections of a backend now (for tests).
    #[cfg(test)]
    fn idle_count(&self, authority: &Authority) -> usize {
        lock(&self.plain_list(authority)).len()
    }
}

/// Every `period`, closes the connections idle for longer than
/// [`IDLE_TIMEOUT`] or closed by their backend, and forgets backends no
/// longer used; ends when the pool is dropped.
async fn sweep_every<B>(lists: Weak<Lists<B>>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(lists) = lists.upgrade() else {
            return;
        };
        let now = Instant::now();
        let usable =
            |e: &Idle<B>| e.sender.is_ready() && now.duration_since(e.since) < IDLE_TIMEOUT;
        // An empty list nobody holds (no request in flight) goes too.
        lock(&lists.plain).retain(|_, idle| {
            let mut list = lock(idle);
            list.retain(usable);
            !list.is_empty() || Arc::strong_count(idle) > 1
        });
        lock(&lists.tls).retain(|bucket| {
            lock(&bucket.idle).retain(usable);
            // Settings no snapshot holds any more are never asked for again.
            Arc::strong_count(&bucket.client) > 1
        });
    }
}

/// The most recently used idle connection that can take a request now;
/// those closed or idle too long are dropped on the way (closing them).
fn checkout<B>(idle: &IdleList<B>) -> Option<SendRequest<B>> {
    let mut list = lock(idle);
    let mut now = None;
    while let Some(entry) = list.pop() {
        // Only connections ready for a request are put back, so one that
        // is not any more has been closed (by the backend, or an error).
        if !entry.sender.is_ready() {
            continue;
        }
        let now = *now.get_or_insert_with(Instant::now);
        if now.duration_since(entry.since) < IDLE_TIMEOUT {
            return Some(entry.sender);
        }
    }
    None
}

/// Whether the backend keeps the connection open after this response, as
/// hyper decides it (RFC 9112 §9.3): HTTP/1.1 unless `Connection: close`,
/// HTTP/1.0 only with `Connection: keep-alive`.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    // The usual answers first: no `Connection` header, or nginx's
    // `Connection: keep-alive` alone.
    if version == Version::HTTP_11 {
        let mut values = headers.get_all(header::CONNECTION).iter();
        match (values.next(), values.next()) {
            (None, _) => return true,
            (Some(only), None) if only.as_bytes().eq_ignore_ascii_case(b"keep-alive") => {
                return true;
            }
            _ => {}
        }
    }
    let has = |wanted: &str| {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case(wanted))
    };
    match version {
        Version::HTTP_11 => !has("close"),
        Version::HTTP_10 => has("keep-alive"),
        _ => false,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The lists stay consistent whatever panicked while one was held: each
    // change is a single push, pop or retain.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection lent to one request, and where it goes back.
#[derive(Debug)]
struct Back<B> {
    sender: SendRequest<B>,
    idle: Arc<IdleList<B>>,
}

impl<B: Send + 'static> Back<B> {
    /// Puts the connection back for the next request. hyper's connection
    /// task usually has finished the exchange by the time the body's end
    /// is seen; if not (the request body is still being sent, or that
    /// task has not run yet), a small task waits for it, as hyper-util's
    /// client did.
    fn put_back(mut self) {
        if self.sender.is_ready() {
            self.push();
            return;
        }
        if self.sender.is_closed() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if self.sender.ready().await.is_ok() {
                    self.push();
                }
            });
        }
    }

    fn push(self) {
        lock(&self.idle).push(Idle {
            sender: self.sender,
            since: Instant::now(),
        });
    }
}

/// A backend's response body; when read to its end, its connection goes
/// back to the pool. Dropped before that, the connection is closed (it is
/// in the middle of a response).
#[derive(Debug)]
pub struct PooledBody<B> {
    inner: Incoming,
    back: Option<Back<B>>,
}

impl<B: Send + 'static> PooledBody<B> {
    fn new(inner: Incoming, back: Option<Back<B>>) -> Self {
        let mut body = PooledBody { inner, back };
        // A response without a body (HEAD, 204, 304, `Content-Length: 0`)
        // may never be polled.
        if body.inner.is_end_stream() {
            body.release();
        }
        body
    }

    fn release(&mut self) {
        if let Some(back) = self.back.take() {
            back.put_back();
        }
    }
}

impl<B: Send + Unpin + 'static> Body for PooledBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            // With a `Content-Length`, the last frame already ends the
            // body, and whoever reads it may not poll again.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
