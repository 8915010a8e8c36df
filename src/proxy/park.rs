//! Idle HTTP/1.1 connections that hold no HTTP buffers.
//!
//! hyper keeps a read buffer (8 KiB, 16 KiB once it has grown) and a write
//! buffer (8 KiB) for every HTTP/1.1 connection for as long as it is open,
//! and has no setting to let them go while the connection waits for its
//! next request. A web softphone platform holds thousands of such
//! connections open for minutes each, so that is most of what an idle
//! connection costs (README, Performance). nginx frees its buffers on an
//! idle keep-alive connection; so does this, by taking the connection back
//! from hyper between requests:
//!
//! - While no request is under way ("parked"), the connection is only its
//!   TLS stream and the service; one byte is read to learn that the next
//!   request starts (nginx waits for the socket to be readable instead,
//!   but a TLS stream can only tell by giving bytes: a readable socket may
//!   hold a partial record or a close_notify).
//! - That byte (with anything hyper had read but not parsed) is handed
//!   back through [`ParkingIo`] to a new hyper connection, which serves
//!   requests until it has waited for the next one for [`PARK_AFTER`]
//!   ([`Activity::waits_for_next_request`]); then hyper's parts are taken
//!   back and its buffers freed. Parking and unparking cost about as much
//!   as a request, so a busy keep-alive connection is never parked: the
//!   delay is timed by [`super::io::TimedIo`]'s idle timer, which is reset
//!   once per request anyway.
//!
//! The idle, header and send timeouts stay where they were, in
//! [`super::io::TimedIo`] under this layer, so a parked connection times
//! out exactly as one hyper holds.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1::{Builder, UpgradeableConnection};
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::conn::Lifecycle;
use super::io::Activity;

/// How long an HTTP/1.1 connection waits for its next request before it is
/// parked: far longer than the gap between a busy client's requests, far
/// shorter than the seconds a page or a phone then stays quiet.
pub const PARK_AFTER: Duration = Duration::from_millis(250);

/// An error ending a connection: hyper's, or the I/O's while parked.
pub type ConnectionError = Box<dyn std::error::Error + Send + Sync>;

/// Every byte value, so one byte read while parked is handed to hyper as
/// a `Bytes` that points here instead of a fresh allocation per request.
static BYTE_VALUES: [u8; 256] = {
    let mut values = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        values[i] = i as u8;
        i += 1;
    }
    values
};

/// A connection's I/O as hyper sees it: bytes read while parked come
/// first, and every read and write is noted in the connection's
/// [`Activity`] so the driver can tell when hyper waits for a request.
#[derive(Debug)]
pub struct ParkingIo<T> {
    inner: T,
    /// Read from `inner` but not yet by hyper.
    unread: Bytes,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> ParkingIo<T> {
    /// Wraps a connection's I/O.
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        ParkingIo {
            inner,
            unread: Bytes::new(),
            activity,
        }
    }

    /// Reads one more byte from the connection and keeps it after what is
    /// unread already; `false` when the client closed its side.
    fn poll_read_one(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
        let Some(&value) = buf.filled().first() else {
            return Poll::Ready(Ok(false));
        };
        let at = usize::from(value);
        let one = Bytes::from_static(&BYTE_VALUES[at..=at]);
        self.unread = if self.unread.is_empty() {
            one
        } else {
            // hyper had part of a request head when it was parked (rare:
            // a head split across packets): keep it in front.
            let mut joined = BytesMut::with_capacity(self.unread.len() + 1);
            joined.put_slice(&self.unread);
            joined.put_slice(&one);
            joined.freeze()
        };
        Poll::Ready(Ok(true))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ParkingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread.split_to(n));
            this.activity.note_read(false);
            return Poll::Ready(Ok(()));
        }
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.activity.note_read(result.is_pending());
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ParkingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.activity.note_write(false);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.activity.note_write(false);
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = result {
            self.activity.note_write(true);
        }
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How long a parked connection that is closed (by the client or by
/// shutdown) may take to send its TLS close_notify.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Closes a parked connection's write side (a TLS close_notify first).
async fn close<T: AsyncWrite + Unpin>(io: &mut TokioIo<ParkingIo<T>>) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.inner_mut().shutdown()).await;
}

/// One turn of hyper serving a connection.
type Http1Connection<T, S> = UpgradeableConnection<TokioIo<ParkingIo<T>>, S>;

/// What ended one hyper connection's turn.
enum Turn<T, S> {
    /// The connection is over (closed, failed, or upgraded to a tunnel).
    Ended(Result<(), hyper::Error>),
    /// hyper waits for the next request: its I/O and service, back.
    Idle(TokioIo<ParkingIo<T>>, S),
}

/// Serves HTTP/1.1 on `io` until the connection ends, parking it between
/// requests (see the module's documentation). Once shutdown starts, a
/// parked connection is closed at once and a busy one is told to finish
/// its request and close (`Connection: close`); at the hard stop it is
/// dropped.
pub async fn serve_http1<T, S, B>(
    io: T,
    service: S,
    builder: &Builder,
    activity: &Arc<Activity>,
    lifecycle: &Lifecycle,
) -> Result<(), ConnectionError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B> + Unpin,
    S::Error: Into<ConnectionError>,
    B: Body + Send + 'static,
    B::Error: Into<ConnectionError>,
{
    let mut io = TokioIo::new(ParkingIo::new(io, activity.clone()));
    let mut service = service;
    // Made once: each poll of a live `cancelled()` is a check, each new
    // one a registration with the token.
    let mut shutdown = pin!(lifecycle.shutdown.cancelled());
    loop {
        let next = std::future::poll_fn(|cx| io.inner_mut().poll_read_one(cx));
        let started = tokio::select! {
            biased;
            () = shutdown.as_mut() => Ok(false),
            read = next => read,
        };
        match started {
            Ok(true) => activity.parked(),
            // The client closed an idle connection, or shutdown closes it.
            Ok(false) => {
                close(&mut io).await;
                return Ok(());
            }
            // The idle or header timeout: closed with a close_notify, as
            // hyper closes it.
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                close(&mut io).await;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
        // Boxed: the task that serves a connection lives as long as the
        // connection; hyper's state exists only while a request runs.
        let mut connection = Some(Box::new(
            builder.serve_connection(io, service).with_upgrades(),
        ));
        let turn = tokio::select! {
            biased;
            turn = until_idle(&mut connection, activity) => turn,
            () = shutdown.as_mut() => {
                let Some(mut connection) = connection else {
                    return Ok(());
                };
                Pin::new(&mut *connection).graceful_shutdown();
                return tokio::select! {
                    result = &mut *connection => result.map_err(Into::into),
                    () = lifecycle.hard_stop.cancelled() => Ok(()),
                };
            }
        };
        match turn {
            Turn::Ended(result) => return result.map_err(Into::into),
            Turn::Idle(parked_io, parked_service) => {
                io = parked_io;
                service = parked_service;
            }
        }
    }
}

/// Drives a hyper connection until it ends or waits for the next request;
/// then takes its I/O (with what it read but did not parse) and service
/// back and drops the rest, buffers included.
async fn until_idle<T, S, B>(
    slot: &mut Option<Box<Http1Connection<T, S>>>,
    activity: &Activity,
) -> Turn<T, S>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B> + Unpin,
    S::Error: Into<ConnectionError>,
    B: Body + Send + 'static,
    B::Error: Into<ConnectionError>,
{
    let idle = std::future::poll_fn(|cx| {
        let Some(connection) = slot.as_mut() else {
            return Poll::Ready(Some(Ok(())));
        };
        match Pin::new(&mut **connection).poll(cx) {
            Poll::Ready(result) => Poll::Ready(Some(result)),
            Poll::Pending if activity.waits_for_next_request() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    if let Some(result) = idle {
        return Turn::Ended(result);
    }
    let Some(connection) = slot.take() else {
        return Turn::Ended(Ok(()));
    };
    match connection.into_parts() {
        Some(parts) => {
            let mut io = parts.io;
            // `read_buf` is a view of hyper's whole read buffer: kept, it
            // would keep all of it. What hyper read but did not parse (part
            // of a head) is copied out; usually there is nothing.
            if !parts.read_buf.is_empty() {
                io.inner_mut().unread = Bytes::copy_from_slice(&parts.read_buf);
            }
            Turn::Idle(io, parts.service)
        }
        None => Turn::Ended(Ok(())),
    }
}

#[cfg(test)]
mod tests;
