//! Tunnels: WebSocket upgrades and `tls` listeners relay bytes both ways
//! until both sides close, or until nothing moved for the idle timeout.
//!
//! A softphone holds its tunnel open for hours and sends a few hundred bytes
//! now and then (README, Performance), so an idle tunnel must hold no copy
//! buffer. Each direction reads into a buffer on the stack that lives for
//! one poll, writes straight from it, and keeps on the heap only what the
//! writer did not take (backpressure) until it is written. `tokio::io::
//! copy_bidirectional` instead holds two 8 KiB buffers for the tunnel's
//! whole life.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The most read in one step: one TLS record's plaintext (RFC 8446 §5.1,
/// 2^14 bytes), so a record read from rustls is passed on whole.
const CHUNK: usize = 16 * 1024;

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
    /// Both sides closed. `without_close_notify` when a TLS peer closed its
    /// side without a close_notify alert, which most SIP phones and
    /// browsers do: after the application's data that is an ordinary end
    /// (the tunnel carries no length of its own to be cut short).
    Closed {
        /// A TLS peer ended without close_notify.
        without_close_notify: bool,
        /// The side that closed first (its end of stream was passed on,
        /// then the other side closed too).
        first: Side,
    },
    /// Nothing moved for the idle timeout.
    IdleTimeout,
    /// Cut by the shutdown timeout (`shutdown_timeout` after SIGTERM).
    Shutdown,
    /// A read or write failed (reset, broken TLS...).
    Failed(io::Error),
}

/// One side of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client (browser, phone).
    Client,
    /// The backend.
    Backend,
}

impl TunnelEnd {
    /// The access log's `end` value (README: Logs): `client_closed`,
    /// `backend_closed`, `idle_timeout`, `shutdown` or `error: ...`.
    pub fn describe(&self) -> String {
        match self {
            TunnelEnd::Closed {
                first: Side::Client,
                ..
            } => "client_closed".to_string(),
            TunnelEnd::Closed {
                first: Side::Backend,
                ..
            } => "backend_closed".to_string(),
            TunnelEnd::IdleTimeout => "idle_timeout".to_string(),
            TunnelEnd::Shutdown => "shutdown".to_string(),
            TunnelEnd::Failed(e) => format!("error: {e}"),
        }
    }
}

/// Copies bytes both ways until both sides have closed (a half-close is
/// passed on), until nothing moved for `idle`, or until `stop` completes
/// (the shutdown timeout). No buffer is held while the tunnel is idle (see
/// the module's comment). The bytes written each way are counted however
/// the tunnel ends.
pub async fn copy_with_idle_timeout<A, B>(
    client: A,
    backend: B,
    idle: Duration,
    stop: impl Future<Output = ()>,
) -> (Transferred, TunnelEnd)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut client = Touch::new(client, start, last.clone());
    let mut backend = Touch::new(backend, start, last.clone());
    let copy = copy_both_ways(&mut client, &mut backend);
    let watch = async {
        loop {
            let deadline = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    let end = tokio::select! {
        result = copy => match result {
            Ok(first) => TunnelEnd::Closed {
                without_close_notify: client.without_close_notify || backend.without_close_notify,
                first,
            },
            Err(e) => TunnelEnd::Failed(e),
        },
        () = watch => TunnelEnd::IdleTimeout,
        () = stop => TunnelEnd::Shutdown,
    };
    let transferred = Transferred {
        up: backend.written,
        down: client.written,
    };
    (transferred, end)
}

/// Both directions until both are done; the first error ends both. The
/// answer is the side whose end of stream came first (`a` is the client).
async fn copy_both_ways<A, B>(a: &mut A, b: &mut B) -> io::Result<Side>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut up = Direction::default();
    let mut down = Direction::default();
    let mut first = None;
    std::future::poll_fn(|cx| {
        let up_done = up.poll_copy(cx, &mut *a, &mut *b)?.is_ready();
        let down_done = down.poll_copy(cx, &mut *b, &mut *a)?.is_ready();
        if first.is_none() {
            if up.read_done {
                first = Some(Side::Client);
            } else if down.read_done {
                first = Some(Side::Backend);
            }
        }
        if up_done && down_done {
            Poll::Ready(Ok(first.unwrap_or(Side::Client)))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// One direction of a tunnel: what it still owes its writer.
#[derive(Debug, Default)]
struct Direction {
    /// Bytes read and not yet written, only while the writer pushes back;
    /// `None` whenever the writer took everything (an idle tunnel).
    unwritten: Option<Unwritten>,
    /// Something was written since the last flush (rustls may hold the
    /// encrypted records until flushed).
    need_flush: bool,
    /// The reader reached its end; the writer is shut down once the
    /// unwritten bytes are out.
    read_done: bool,
    /// The writer was shut down: this direction is finished.
    done: bool,
}

/// Bytes a writer did not take yet.
#[derive(Debug)]
struct Unwritten {
    bytes: Box<[u8]>,
    at: usize,
}

impl Direction {
    /// Moves bytes from `reader` to `writer` until the reader has nothing
    /// (Pending) or the writer pushes back (Pending), or the direction is
    /// done (Ready: EOF passed on as a shutdown).
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Some(unwritten) = &mut self.unwritten {
                while unwritten.at < unwritten.bytes.len() {
                    unwritten.at +=
                        ready!(write_some(cx, writer, &unwritten.bytes[unwritten.at..]))?;
                    self.need_flush = true;
                }
                self.unwritten = None;
            }
            if self.read_done {
                if self.need_flush {
                    ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                    self.need_flush = false;
                }
                ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            // Lives for this call only: an idle tunnel holds no buffer.
            let mut chunk = [MaybeUninit::<u8>::uninit(); CHUNK];
            let mut buf = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut *reader).poll_read(cx, &mut buf) {
                Poll::Pending => {
                    if self.need_flush {
                        ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                        self.need_flush = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(result) => result?,
            }
            let read = buf.filled();
            if read.is_empty() {
                self.read_done = true;
                continue;
            }
            let mut at = 0;
            while at < read.len() {
                match write_some(cx, writer, &read[at..]) {
                    Poll::Ready(written) => {
                        at += written?;
                        self.need_flush = true;
                    }
                    Poll::Pending => {
                        self.unwritten = Some(Unwritten {
                            bytes: read[at..].into(),
                            at: 0,
                        });
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

/// One write; a writer that takes nothing is an error (as in tokio's copy).
fn write_some<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    writer: &mut W,
    bytes: &[u8],
) -> Poll<io::Result<usize>> {
    let n = ready!(Pin::new(writer).poll_write(cx, bytes))?;
    if n == 0 {
        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
    }
    Poll::Ready(Ok(n))
}

/// Records the time of the last byte moved through it and counts the bytes
/// written to it.
struct Touch<T> {
    inner: T,
    start: Instant,
    last: Arc<AtomicU64>,
    written: u64,
    /// A read ended with rustls's "peer closed connection without sending
    /// TLS close_notify"; it was passed on as an ordinary end of stream.
    without_close_notify: bool,
}

impl<T> Touch<T> {
    fn new(inner: T, start: Instant, last: Arc<AtomicU64>) -> Self {
        Touch {
            inner,
            start,
            last,
            written: 0,
            without_close_notify: false,
        }
    }

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
        match result {
            // rustls reports a TCP close without close_notify as
            // UnexpectedEof (a plain socket never does): an end of stream,
            // whose half-close is passed on like any other.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.without_close_notify = true;
                Poll::Ready(Ok(()))
            }
            other => Poll::Ready(other),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Touch<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.inner).poll_write(cx, buf));
        if let Ok(n) = written
            && n > 0
        {
            self.written += n as u64;
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
mod tests;
