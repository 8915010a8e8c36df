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
//! The tunnel's counterpart is in [`super::tunnel`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Requests in flight on one connection, shared by its I/O and its service.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Requests begun so far: tells [`TimedIo`] that a request came and
    /// went between two of its reads (it then never saw it busy).
    begun: AtomicU64,
    /// Response bodies handed to hyper and not yet done, for the send
    /// timeout; `bodies_live` mirrors its length so the read path checks
    /// it without the lock.
    bodies: Mutex<Vec<Arc<SendClock>>>,
    bodies_live: AtomicUsize,
    /// What [`SendClock`] times are measured from.
    epoch: Instant,
    /// Set by [`Activity::pin_busy`]: the connection became a tunnel.
    pinned: AtomicBool,
    /// Set when [`TimedIo`] failed the connection with a [`SendTimeout`]
    /// (HTTP/2 keeps only the text of an I/O error, so the connection's
    /// error cannot tell).
    send_timed_out: AtomicBool,
    /// What [`super::park`] reads to tell an HTTP/1.1 connection waiting
    /// for its next request: the last read found nothing, every write was
    /// flushed, and the last request had no body left to read.
    reads_waiting: AtomicBool,
    writes_unflushed: AtomicBool,
    request_body_open: AtomicBool,
    /// Set by [`TimedIo`] once the connection has waited for its next
    /// request for the parking delay ([`TimedIo::with_parking`]).
    park_due: AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            bodies: Mutex::new(Vec::new()),
            bodies_live: AtomicUsize::new(0),
            epoch: Instant::now(),
            pinned: AtomicBool::new(false),
            send_timed_out: AtomicBool::new(false),
            reads_waiting: AtomicBool::new(false),
            writes_unflushed: AtomicBool::new(false),
            request_body_open: AtomicBool::new(false),
            park_due: AtomicBool::new(false),
        }
    }
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
        self.pinned.store(true, Ordering::Release);
    }

    fn is_pinned(&self) -> bool {
        self.pinned.load(Ordering::Acquire)
    }

    fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Whether any request ever started on this connection.
    pub fn has_begun_any(&self) -> bool {
        self.begun() > 0
    }

    fn begun(&self) -> u64 {
        self.begun.load(Ordering::Acquire)
    }

    /// Starts the send clock of a response body about to be handed to
    /// hyper: from now on, the time the body waits for hyper to ask for
    /// its next frame is time the client is not taking what is ready.
    pub fn track_body(self: &Arc<Self>) -> BodyClock {
        let clock = Arc::new(SendClock {
            waiting_since: AtomicU64::new(self.millis()),
        });
        let mut bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        bodies.push(clock.clone());
        self.bodies_live.store(bodies.len(), Ordering::Release);
        BodyClock {
            clock,
            activity: self.clone(),
        }
    }

    /// Notes whether the request just begun has a body still to come
    /// (HTTP/1.1 reads one request at a time, so the next request's
    /// beginning means this one's body was read to its end).
    pub fn note_request_body(&self, open: bool) {
        self.request_body_open.store(open, Ordering::Relaxed);
    }

    /// Notes how a read of the connection's I/O ended.
    pub(super) fn note_read(&self, pending: bool) {
        self.reads_waiting.store(pending, Ordering::Relaxed);
    }

    /// Notes a write (`flushed: false`) or a completed flush (`true`).
    pub(super) fn note_write(&self, flushed: bool) {
        self.writes_unflushed.store(!flushed, Ordering::Relaxed);
    }

    /// Whether an HTTP/1.1 connection has sat between two requests for
    /// the parking delay: nothing in flight, no request body left unread,
    /// no response byte unflushed, and its last read found nothing to read.
    /// Then hyper holds nothing but its buffers, and [`super::park`] may
    /// take the connection back.
    pub(super) fn waits_for_next_request(&self) -> bool {
        self.park_due.load(Ordering::Relaxed)
            && !self.is_busy()
            && !self.has_bodies()
            && self.reads_waiting.load(Ordering::Relaxed)
            && !self.writes_unflushed.load(Ordering::Relaxed)
            && !self.request_body_open.load(Ordering::Relaxed)
    }

    /// Forgets that parking was due (the connection was parked).
    pub(super) fn parked(&self) {
        self.park_due.store(false, Ordering::Relaxed);
    }

    /// Whether the connection was cut by the send timeout.
    pub fn send_timed_out(&self) -> bool {
        self.send_timed_out.load(Ordering::Acquire)
    }

    fn has_bodies(&self) -> bool {
        self.bodies_live.load(Ordering::Acquire) > 0
    }

    /// When the body that has waited longest for the client began waiting
    /// (milliseconds since `epoch`), if one waits.
    fn oldest_waiting(&self) -> Option<u64> {
        let bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        bodies
            .iter()
            .map(|clock| clock.waiting_since.load(Ordering::Acquire))
            .filter(|&since| since != NOT_WAITING)
            .min()
    }

    fn millis(&self) -> u64 {
        Instant::now().duration_since(self.epoch).as_millis() as u64
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

/// `SendClock::waiting_since` while the body is not waiting for the
/// client (hyper is polling it, or it waits for its backend).
const NOT_WAITING: u64 = u64::MAX;

/// Since when one response body has had something for the client that
/// hyper has not taken (milliseconds since [`Activity`]'s epoch).
#[derive(Debug)]
struct SendClock {
    waiting_since: AtomicU64,
}

/// A response body's send clock (see [`Activity::track_body`]); the
/// response body calls [`BodyClock::polled`] and [`BodyClock::delivered`],
/// and dropping it takes the body out of the connection's count.
///
/// Why this works for HTTP/2: hyper asks a body for its next frame only
/// when the stream has flow-control window. A client that never opens
/// its window (`INITIAL_WINDOW_SIZE=0`) leaves the body unasked while it
/// holds its backend connection; [`TimedIo`] sees that and cuts the
/// connection after `send_timeout`. A body waiting for its backend (a slow
/// API, an event stream) is not waiting for the client and is never cut.
#[derive(Debug)]
pub struct BodyClock {
    clock: Arc<SendClock>,
    activity: Arc<Activity>,
}

impl BodyClock {
    /// hyper asked for the next frame: the client has taken what it had.
    pub fn polled(&self) {
        self.clock
            .waiting_since
            .store(NOT_WAITING, Ordering::Release);
    }

    /// A frame was handed to hyper: until it asks again, the body waits
    /// for the client.
    pub fn delivered(&self) {
        self.clock
            .waiting_since
            .store(self.activity.millis(), Ordering::Release);
    }
}

impl Drop for BodyClock {
    fn drop(&mut self) {
        let mut bodies = self
            .activity
            .bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(at) = bodies.iter().position(|c| Arc::ptr_eq(c, &self.clock)) {
            bodies.swap_remove(at);
        }
        self.activity
            .bodies_live
            .store(bodies.len(), Ordering::Release);
    }
}

/// The error [`TimedIo`] fails a connection with when its client took
/// nothing for `send_timeout` (inside an `io::Error` of kind `TimedOut`).
#[derive(Debug, thiserror::Error)]
#[error("send timeout: the client took no response byte for {} s", .0.as_secs())]
pub struct SendTimeout(pub Duration);

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
    /// The idle or header deadline; `None` once the connection became a
    /// tunnel (see `poll_read`).
    deadline: Option<Pin<Box<Sleep>>>,
    /// The send timeout, when set (see [`TimedIo::with_send_timeout`]).
    send: Option<SendTimers>,
    /// The parking delay, when set (see [`TimedIo::with_parking`]).
    park_after: Option<Duration>,
    /// Whether `deadline` is the parking delay's (which comes before the
    /// idle timeout's).
    parking: bool,
}

/// The two clocks of the send timeout, each made on first use (an idle
/// connection or tunnel never needs them) and kept for reuse.
#[derive(Debug)]
struct SendTimers {
    timeout: Duration,
    /// Runs while response bodies are out (read side: it is polled
    /// whenever hyper reads, which an HTTP/2 connection always does).
    stall_check: Option<Pin<Box<Sleep>>>,
    stall_armed: bool,
    /// Runs while a write waits on a full socket.
    write_deadline: Option<Pin<Box<Sleep>>>,
    write_armed: bool,
}

/// The timer in `slot`, set to fire at `at` (made if there is none yet).
fn arm(slot: &mut Option<Pin<Box<Sleep>>>, at: Instant) {
    let timer = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
    timer.as_mut().reset(at);
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
            deadline: Some(Box::pin(tokio::time::sleep(idle_timeout))),
            send: None,
            park_after: None,
            parking: false,
        }
    }

    /// Raises [`Activity`]'s `park_due` once the connection has waited
    /// `after` for its next request, for [`super::park`]. The same timer
    /// serves, reset once per request as it is anyway: a busy connection
    /// pays nothing for parking, and only one idle for `after` is parked
    /// (README, Performance).
    pub fn with_parking(mut self, after: Duration) -> Self {
        self.park_after = Some(after);
        self
    }

    /// Also fails the connection when the client takes no response byte
    /// for `timeout` while one is ready for it: a write that stays blocked
    /// on a full socket, or a response body hyper does not ask for (an
    /// HTTP/2 stream whose window the client keeps shut). The error is a
    /// [`SendTimeout`], and [`Activity::send_timed_out`] tells afterwards.
    pub fn with_send_timeout(mut self, timeout: Duration) -> Self {
        self.send = Some(SendTimers {
            timeout,
            stall_check: None,
            stall_armed: false,
            write_deadline: None,
            write_armed: false,
        });
        self
    }

    /// The read side's look at the response bodies: an error once one has
    /// waited for the client for the send timeout. Arms a timer only while
    /// there are bodies, so idle connections and tunnels cost no wake-ups.
    fn check_stalled_bodies(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let send = self.send.as_mut()?;
        if !self.activity.has_bodies() {
            send.stall_armed = false;
            return None;
        }
        if !send.stall_armed {
            send.stall_armed = true;
            arm(&mut send.stall_check, Instant::now() + send.timeout);
        }
        while let Some(timer) = send.stall_check.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            let next = match self.activity.oldest_waiting() {
                Some(since) => {
                    let since = self.activity.epoch + Duration::from_millis(since);
                    if Instant::now() >= since + send.timeout {
                        return Some(send_timeout_error(&self.activity, send.timeout));
                    }
                    since + send.timeout
                }
                None => Instant::now() + send.timeout,
            };
            arm(&mut send.stall_check, next);
        }
        None
    }

    /// Passes a write's result on, timing how long writes stay blocked.
    fn time_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        let Some(send) = self.send.as_mut() else {
            return result;
        };
        if result.is_ready() {
            send.write_armed = false;
            return result;
        }
        if !send.write_armed {
            send.write_armed = true;
            arm(&mut send.write_deadline, Instant::now() + send.timeout);
        }
        match send
            .write_deadline
            .as_mut()
            .map(|timer| timer.as_mut().poll(cx))
        {
            Some(Poll::Ready(())) => {
                Poll::Ready(Err(send_timeout_error(&self.activity, send.timeout)))
            }
            _ => Poll::Pending,
        }
    }

    /// An HTTP/1.1 response was flushed: if that ended the request, the
    /// idle clock (and the parking delay) starts now. hyper may not read
    /// again before the next request arrives (it last read while the head
    /// was still in), so waiting for its next read would leave the header
    /// deadline running instead.
    fn idle_after_response(&mut self, cx: &mut Context<'_>) {
        if self.protocol != Protocol::Http1 || self.activity.is_busy() || self.deadline.is_none() {
            return;
        }
        let begun = self.activity.begun();
        if self.phase == Phase::Busy || begun != self.seen_begun {
            self.seen_begun = begun;
            self.enter(Phase::Idle);
            if let Some(deadline) = self.deadline.as_mut() {
                // Polled to be woken when it fires; it was just set ahead.
                let _ = deadline.as_mut().poll(cx);
            }
        }
    }

    fn enter(&mut self, phase: Phase) {
        let timeout = match phase {
            Phase::Busy => {
                self.phase = phase;
                return;
            }
            Phase::Idle => {
                self.activity.parked();
                match self.park_after {
                    Some(after) if after < self.idle_timeout => {
                        self.parking = true;
                        after
                    }
                    _ => self.idle_timeout,
                }
            }
            Phase::Head => self.header_timeout,
        };
        if phase != Phase::Idle {
            self.parking = false;
        }
        self.phase = phase;
        arm(&mut self.deadline, Instant::now() + timeout);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Checked before reading: a client could otherwise keep a stalled
        // stream alive by sending PINGs.
        if let Some(e) = this.check_stalled_bodies(cx) {
            return Poll::Ready(Err(e));
        }
        let begun = this.activity.begun();
        if this.activity.is_busy() {
            this.seen_begun = begun;
            this.enter(Phase::Busy);
            if this.activity.is_pinned() {
                // A tunnel never reads these timers again. Dropped, they
                // let go of the waker of the connection task that last
                // polled them; kept, that waker would hold the finished
                // task's memory (about 11 KB) for as long as the timer
                // stays registered (README, Performance).
                this.deadline = None;
                if let Some(send) = this.send.as_mut() {
                    send.stall_check = None;
                    send.stall_armed = false;
                }
            }
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
                let Some(deadline) = this.deadline.as_mut() else {
                    return Poll::Pending;
                };
                ready!(deadline.as_mut().poll(cx));
                if this.parking {
                    // The parking delay is over: say so, and wait out the
                    // rest of the idle timeout.
                    this.parking = false;
                    this.activity.park_due.store(true, Ordering::Relaxed);
                    let after = this.park_after.unwrap_or_default();
                    deadline
                        .as_mut()
                        .reset(Instant::now() + this.idle_timeout.saturating_sub(after));
                    if deadline.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
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
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.time_write(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.time_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        if result.is_ready() {
            self.idle_after_response(cx);
        }
        self.time_write(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn send_timeout_error(activity: &Activity, timeout: Duration) -> io::Error {
    activity.send_timed_out.store(true, Ordering::Release);
    io::Error::new(io::ErrorKind::TimedOut, SendTimeout(timeout))
}

#[cfg(test)]
mod tests;
