//! The access log on the request path: a request's line is written when
//! its response body is done, so streamed bodies are logged with their real
//! size and duration (the lines themselves: [`crate::logging`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::answers::ProxyBody;
use super::io::{BodyClock, InFlight};
use super::slots::BackendSlot;
use crate::logging::access::AccessLog;
use crate::logging::record::RequestRecord;
use crate::metrics::ListenerMetrics;

/// A request's access-log line in the making: where it goes, and what is
/// known of the request (status and backend are filled in once known).
/// Made only while the listener's access log is on.
#[derive(Debug)]
pub struct AccessEntry {
    /// The listener's access log.
    pub log: Arc<AccessLog>,
    /// The request.
    pub record: RequestRecord,
}

/// What the request metrics need when the response body is done (counted
/// whether the access log is on or off).
#[derive(Debug)]
pub struct RequestCount {
    /// The listener's counters.
    pub metrics: Arc<ListenerMetrics>,
    /// Response status.
    pub status: u16,
    /// When the request arrived.
    pub started: Instant,
}

/// A response body that counts what it sends, ends the request when it is
/// done (for the idle clock of [`super::io::TimedIo`]) and writes the access log line
/// and counts the request then, so streamed bodies are logged and measured
/// with their real size and duration.
#[derive(Debug)]
pub struct LoggedBody {
    inner: ProxyBody,
    bytes: u64,
    /// Boxed: a response body is moved several times on its way through
    /// hyper, and the entry is `None` when the access log is off.
    log: Option<Box<AccessEntry>>,
    count: RequestCount,
    /// The send timeout's view of this body (see [`BodyClock`]); `None` on
    /// the plain `http` listener, whose answers are its own and small.
    clock: Option<BodyClock>,
    _in_flight: InFlight,
    /// The backend connection this response streams from, held until the
    /// body is done.
    _slot: Option<BackendSlot>,
}

impl LoggedBody {
    /// Wraps a response body; `log` is `None` when the access log is off.
    pub fn new(
        inner: ProxyBody,
        log: Option<Box<AccessEntry>>,
        count: RequestCount,
        in_flight: InFlight,
        clock: Option<BodyClock>,
        slot: Option<BackendSlot>,
    ) -> Self {
        LoggedBody {
            inner,
            bytes: 0,
            log,
            count,
            clock,
            _in_flight: in_flight,
            _slot: slot,
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(clock) = &self.clock {
            clock.polled();
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(clock) = &self.clock {
                clock.delivered();
            }
            if let Some(data) = frame.data_ref() {
                self.bytes += data.len() as u64;
            }
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

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let count = &self.count;
        count
            .metrics
            .request_done(count.status, count.started.elapsed());
        if let Some(entry) = self.log.take() {
            entry.log.request(&entry.record, self.bytes, None);
        }
    }
}
