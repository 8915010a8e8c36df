//! Connection I/O with the timeouts hyper does not give us.
//!
//! hyper's own `header_read_timeout` starts as soon as a keep-alive
//! connection waits for its next request, so one value would have to serve
//! both as the slowloris limit (seconds) and as the keep-alive idle limit
//! (a minute or more). [`TimedIo`] separates them: while no request is in
//! flight, the connection may sit silent for `idle_timeout`, but once the
//! first byte of a new request arrives its head must be complete within
//! `header_timeout`. Requests in flight are never cut by either (a long
//! upload, a slow backend, a WebSocket).
//!
//! [`copy_with_idle_timeout`] is the tunnel's counterpart: bytes both ways
//! until both sides close, or until nothing moved for the idle timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Requests in flight on one connection, shared by its I/O and its service.
#[derive(Debug, Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Requests begun so far: tells [`TimedIo`] that a request came and
    /// went between two of its reads (it then never saw it busy).
    begun: AtomicU64,
}

impl Activity {
    /// Marks a request as started; it ends when the guard drops (after its
    /// response body was written or abandoned).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.begun.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Keeps the connection busy for good: it was upgraded into a tunnel,
    /// which has its own idle timeout.
    pub fn pin_busy(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    fn begun(&self) -> u64 {
        self.begun.load(Ordering::Acquire)
    }
}

/// One request in flight; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Which clock runs on a [`TimedIo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request is in flight: no deadline.
    Busy,
    /// Waiting for the next request: the idle deadline runs.
    Idle,
    /// A request's first bytes arrived: the header deadline runs.
    Head,
}

/// How the connection's protocol uses the read side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.x: bytes while idle start a new request.
    Http1,
    /// HTTP/2: control frames (PING, SETTINGS) flow while idle, so there is
    /// no header phase, and only a request starting or ending restarts the
    /// idle clock.
    Http2,
}

/// An I/O stream that fails reads with `TimedOut` when the connection sat
/// idle too long or a request head took too long.
#[derive(Debug)]
pub struct TimedIo<T> {
    inner: T,
    activity: Arc<Activity>,
    protocol: Protocol,
    header_timeout: Duration,
    idle_timeout: Duration,
    phase: Phase,
    /// `Activity::begun` when this last looked.
    seen_begun: u64,
    deadline: Pin<Box<Sleep>>,
}

impl<T> TimedIo<T> {
    /// Wraps `inner`; the idle clock starts now.
    pub fn new(
        inner: T,
        activity: Arc<Activity>,
        protocol: Protocol,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            activity,
            protocol,
            header_timeout,
            idle_timeout,
            phase: Phase::Idle,
            seen_begun: 0,
            deadline: Box::pin(tokio::time::sleep(idle_timeout)),
        }
    }

    fn enter(&mut self, phase: Phase) {
        let timeout = match phase {
            Phase::Busy => {
                self.phase = phase;
                return;
            }
            Phase::Idle => self.idle_timeout,
            Phase::Head => self.header_timeout,
        };
        self.phase = phase;
        self.deadline.as_mut().reset(Instant::now() + timeout);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let begun = this.activity.begun();
        if this.activity.is_busy() {
            this.seen_begun = begun;
            this.enter(Phase::Busy);
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // A request ran since the last read, possibly all of it between two
        // reads (a quick answer): its head is done, so the idle clock runs.
        if this.phase == Phase::Busy || begun != this.seen_begun {
            this.seen_begun = begun;
            this.enter(Phase::Idle);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    // For HTTP/2, PING, SETTINGS and WINDOW_UPDATE frames
                    // are no sign of use: hyper's own keep-alive PINGs would
                    // otherwise keep an unused connection open forever.
                    if (this.protocol, this.phase) == (Protocol::Http1, Phase::Idle) {
                        this.enter(Phase::Head);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                let what = match this.phase {
                    Phase::Head => "request header timeout",
                    _ => "idle timeout",
                };
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Bytes moved by a tunnel, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transferred {
    /// From the client to the backend.
    pub up: u64,
    /// From the backend to the client.
    pub down: u64,
}

/// How a tunnel ended.
#[derive(Debug)]
pub enum TunnelEnd {
    /// Both sides closed.
    Closed(Transferred),
    /// Nothing moved for the idle timeout.
    IdleTimeout,
    /// A read or write failed (reset, broken TLS...).
    Failed(io::Error),
}

/// Copies bytes both ways until both sides have closed (a half-close is
/// passed on), or until nothing moved for `idle`. Buffers are the fixed
/// 8 KiB of `copy_bidirectional`: nothing is held beyond them.
pub async fn copy_with_idle_timeout<A, B>(client: A, backend: B, idle: Duration) -> TunnelEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut client = Touch {
        inner: client,
        start,
        last: last.clone(),
    };
    let mut backend = Touch {
        inner: backend,
        start,
        last: last.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut backend);
    let watch = async {
        loop {
            let deadline = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        result = copy => match result {
            Ok((up, down)) => TunnelEnd::Closed(Transferred { up, down }),
            Err(e) => TunnelEnd::Failed(e),
        },
        () = watch => TunnelEnd::IdleTimeout,
    }
}

/// Records the time of the last byte moved through it.
struct Touch<T> {
    inner: T,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Touch<T> {
    fn touch(&self) {
        let elapsed = self.start.elapsed().as_millis() as u64;
        self.last.store(elapsed, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Touch<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.inner).poll_read(cx, buf));
        if buf.filled().len() > before {
            self.touch();
        }
        Poll::Ready(result)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Touch<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.inner).poll_write(cx, buf));
        if matches!(written, Ok(n) if n > 0) {
            self.touch();
        }
        Poll::Ready(written)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn idle_connection_times_out_after_idle_timeout() {
        let (client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::default());
        let mut io = TimedIo::new(
            server,
            activity,
            Protocol::Http1,
            Duration::from_secs(2),
            Duration::from_secs(60),
        );
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let err = io.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 60);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_control_frames_do_not_keep_an_idle_connection_open() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::default());
        let mut io = TimedIo::new(
            server,
            activity,
            Protocol::Http2,
            Duration::from_secs(2),
            Duration::from_secs(60),
        );
        let started = Instant::now();
        let pinger = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                if client.write_all(b"ping").await.is_err() {
                    return;
                }
            }
        });
        let mut buf = [0u8; 8];
        let err = loop {
            match io.read(&mut buf).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            started.elapsed().as_secs(),
            60,
            "pings every 20 s do not extend it"
        );
        pinger.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn first_byte_starts_the_header_clock() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::default());
        let mut io = TimedIo::new(
            server,
            activity,
            Protocol::Http1,
            Duration::from_secs(2),
            Duration::from_secs(60),
        );
        client.write_all(b"G").await.expect("write");
        let mut buf = [0u8; 8];
        assert_eq!(io.read(&mut buf).await.expect("first byte"), 1);
        let started = Instant::now();
        let err = io.read(&mut buf).await.expect_err("header timeout");
        assert_eq!(err.to_string(), "request header timeout");
        assert_eq!(started.elapsed().as_secs(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_answered_between_two_reads_ends_the_header_clock() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::default());
        let mut io = TimedIo::new(
            server,
            activity.clone(),
            Protocol::Http1,
            Duration::from_secs(2),
            Duration::from_secs(60),
        );
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.expect("request head") > 0);
        // The request begins and is answered before the next read.
        drop(activity.begin());
        let started = Instant::now();
        let err = io.read(&mut buf).await.expect_err("idle timeout");
        assert_eq!(err.to_string(), "idle timeout");
        assert_eq!(started.elapsed().as_secs(), 60);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_are_never_cut() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::default());
        let mut io = TimedIo::new(
            server,
            activity.clone(),
            Protocol::Http1,
            Duration::from_secs(2),
            Duration::from_secs(5),
        );
        let guard = activity.begin();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            io.read(&mut buf).await.map(|n| (n, io))
        });
        tokio::time::sleep(Duration::from_secs(600)).await;
        client.write_all(b"x").await.expect("write");
        let (n, mut io) = reader.await.expect("join").expect("read after 10 minutes");
        assert_eq!(n, 1);
        drop(guard);
        // Back to idle: the idle clock applies again.
        let mut buf = [0u8; 8];
        let started = Instant::now();
        assert!(io.read(&mut buf).await.is_err());
        assert_eq!(started.elapsed().as_secs(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn tunnel_idle_timeout_and_half_close() {
        let (mut a_outer, a_inner) = tokio::io::duplex(1024);
        let (b_inner, mut b_outer) = tokio::io::duplex(1024);
        let tunnel = tokio::spawn(copy_with_idle_timeout(
            a_inner,
            b_inner,
            Duration::from_secs(30),
        ));
        a_outer.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        b_outer.read_exact(&mut buf).await.expect("through");
        assert_eq!(&buf, b"ping");
        // Half-close from the client: the backend sees EOF, and can still answer.
        a_outer.shutdown().await.expect("shutdown");
        assert_eq!(b_outer.read(&mut buf).await.expect("eof"), 0);
        b_outer.write_all(b"pong").await.expect("answer");
        a_outer.read_exact(&mut buf).await.expect("answer arrives");
        assert_eq!(&buf, b"pong");
        drop(b_outer);
        match tunnel.await.expect("join") {
            TunnelEnd::Closed(t) => assert_eq!(t, Transferred { up: 4, down: 4 }),
            other => panic!("expected a clean close, got {other:?}"),
        }

        let (_a_outer, a_inner) = tokio::io::duplex(1024);
        let (b_inner, _b_outer) = tokio::io::duplex(1024);
        let started = Instant::now();
        let end = copy_with_idle_timeout(a_inner, b_inner, Duration::from_secs(30)).await;
        assert!(matches!(end, TunnelEnd::IdleTimeout), "{end:?}");
        assert_eq!(started.elapsed().as_secs(), 30);
    }
}
