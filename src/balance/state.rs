//! What sniwalk knows of one backend while it runs: its health (from
//! active checks and from the requests it served), whether an operator
//! drains it, the sessions open on it, and its counters.
//!
//! Written by the health checks and by the requests' outcomes through the
//! methods here, read lock-free by every choice of a backend; it outlives
//! a reload that keeps the backend (README: Redundant backends).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::config::{DEFAULT_FALL, HealthCheck};
use crate::metrics::histogram::DurationHistogram;

/// How long a backend without active checks stays out after `fall`
/// failures before it is tried again (nginx's `fail_timeout`).
pub const PASSIVE_COOLDOWN: Duration = Duration::from_secs(10);

/// Health as the choice of a backend sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not checked yet: it takes sessions only when no member of its group
    /// is up (a backend added by a reload waits for its first good check).
    Pending,
    /// Takes new sessions.
    Up,
    /// Failed `fall` times in a row: no new sessions until it passes
    /// `rise` checks (or, without active checks, until the cooldown ends).
    Down,
}

impl Health {
    /// The name shown in `/status`, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Pending => "pending",
            Health::Up => "up",
            Health::Down => "down",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            0 => Health::Pending,
            1 => Health::Up,
            _ => Health::Down,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Health::Pending => 0,
            Health::Up => 1,
            Health::Down => 2,
        }
    }
}

/// What identifies one backend's state across reloads: the same address
/// and protocol keep their state (open sessions, health, drain, counters),
/// whatever else a reload changes (its checks are updated in place).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendKey {
    /// `HOST:PORT`.
    pub address: String,
    /// Spoken to over TLS: the `backend_tls` entry's name, which finds its
    /// TLS client in the snapshot.
    pub tls: Option<String>,
    /// A PROXY protocol v2 header goes first on every connection (a `tls`
    /// listener's `proxy_protocol: v2`; health checks send a LOCAL one).
    pub proxy_protocol: bool,
}

/// One backend's run-time state.
#[derive(Debug)]
pub struct BackendState {
    /// The listener it belongs to, for logs.
    pub listener: Box<str>,
    /// What it is.
    pub key: BackendKey,
    /// Its active checks (`health:` of its group), replaced by a reload.
    check: ArcSwapOption<HealthCheck>,
    health: AtomicU8,
    /// Requests and tunnels that failed in a row (passive checks).
    failures_in_row: AtomicU32,
    /// Active checks that failed in a row: apart from the passive count,
    /// so that traffic a backend still serves does not hide a failing
    /// health check (an operator failing it on purpose to drain it).
    check_failures_in_row: AtomicU32,
    /// Active checks that passed in a row.
    passes_in_row: AtomicU32,
    /// Milliseconds after [`BackendState::epoch`] until which a backend
    /// without active checks stays out.
    down_until_ms: AtomicU64,
    epoch: Instant,
    admin_drain: AtomicBool,
    in_flight: AtomicUsize,
    sessions: AtomicU64,
    failures: AtomicU64,
    /// Request sent to response headers received (`https` routes), held
    /// here so that recording one is no lookup (README: Metrics).
    response_time: DurationHistogram,
    /// Connecting, PROXY header and TLS included (`tls` listeners).
    connect_time: DurationHistogram,
}

/// A change of health, for the caller to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Before.
    pub from: Health,
    /// After.
    pub to: Health,
}

impl BackendState {
    /// A backend first seen: pending when it has active checks (it waits
    /// for the first good one), else up.
    pub fn new(listener: &str, key: BackendKey, check: Option<HealthCheck>) -> Self {
        let health = if check.is_some() {
            Health::Pending
        } else {
            Health::Up
        };
        BackendState {
            listener: listener.into(),
            key,
            check: ArcSwapOption::from(check.map(Arc::new)),
            health: AtomicU8::new(health.as_u8()),
            failures_in_row: AtomicU32::new(0),
            check_failures_in_row: AtomicU32::new(0),
            passes_in_row: AtomicU32::new(0),
            down_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            admin_drain: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            sessions: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            response_time: DurationHistogram::default(),
            connect_time: DurationHistogram::default(),
        }
    }

    /// `HOST:PORT`.
    pub fn address(&self) -> &str {
        &self.key.address
    }

    /// Its active checks now.
    pub fn check(&self) -> Option<Arc<HealthCheck>> {
        self.check.load_full()
    }

    /// Whether it is checked actively.
    pub fn is_checked(&self) -> bool {
        self.check.load().is_some()
    }

    /// Replaces its checks (a reload changed its group's `health:`). A
    /// backend no longer checked and not yet checked is up; one that
    /// becomes checked keeps its health until the first check.
    pub fn set_check(&self, check: Option<HealthCheck>) {
        if self.check.load().as_deref() == check.as_ref() {
            return;
        }
        if check.is_none() && self.health() == Health::Pending {
            self.set(Health::Up);
        }
        self.check.store(check.map(Arc::new));
    }

    /// Its health now.
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Whether a backend that is down without active checks has sat out
    /// its cooldown, so that the next session may try it again.
    pub fn cooled_down(&self) -> bool {
        !self.is_checked() && self.millis_now() >= self.down_until_ms.load(Ordering::Relaxed)
    }

    /// Requests and tunnels open on it now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Sessions (requests and tunnels) it was given since it was first seen.
    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Failures (refused, timed out, 5xx) counted against it.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Records how long it took from sending a request to it (connecting
    /// first when no kept-alive connection was free) to its response
    /// headers.
    pub fn record_response_time(&self, elapsed: Duration) {
        self.response_time.observe(elapsed);
    }

    /// Records how long connecting to it took, until the tunnel could
    /// start (TCP, the PROXY header, TLS to it).
    pub fn record_connect_time(&self, elapsed: Duration) {
        self.connect_time.observe(elapsed);
    }

    /// What [`BackendState::record_response_time`] recorded.
    pub fn response_times(&self) -> &DurationHistogram {
        &self.response_time
    }

    /// What [`BackendState::record_connect_time`] recorded.
    pub fn connect_times(&self) -> &DurationHistogram {
        &self.connect_time
    }

    /// Whether an operator drains it through the admin API.
    pub fn admin_drained(&self) -> bool {
        self.admin_drain.load(Ordering::Relaxed)
    }

    /// Starts or ends an operator's drain.
    pub fn set_admin_drain(&self, drain: bool) {
        self.admin_drain.store(drain, Ordering::Relaxed);
    }

    /// A request or tunnel it served went well.
    pub fn passed(&self) -> Option<Transition> {
        if self.failures_in_row.load(Ordering::Relaxed) != 0 {
            self.failures_in_row.store(0, Ordering::Relaxed);
        }
        // Without active checks a success after the cooldown is what brings
        // it back (one that began before it went down does not); with
        // them, only `rise` good checks do.
        if self.health() == Health::Down && self.cooled_down() {
            return self.set(Health::Up);
        }
        None
    }

    /// A request or tunnel failed on it (refused, timed out, 5xx). After
    /// `fall` in a row it is down; `can_go_down` is false for the only
    /// member of a group without active checks, which is never taken out
    /// (there is nothing to fail over to; nginx does the same).
    pub fn failed(&self, can_go_down: bool) -> Option<Transition> {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let in_row = self.failures_in_row.fetch_add(1, Ordering::Relaxed) + 1;
        let check = self.check.load();
        let fall = check.as_ref().map_or(DEFAULT_FALL, |c| c.fall);
        if !can_go_down || in_row < fall {
            return None;
        }
        if check.is_some() {
            // Back only through `rise` good checks from now on.
            self.passes_in_row.store(0, Ordering::Relaxed);
        } else {
            let until = self.millis_now() + PASSIVE_COOLDOWN.as_millis() as u64;
            self.down_until_ms.store(until, Ordering::Relaxed);
        }
        self.set(Health::Down)
    }

    /// The outcome of one active check.
    pub fn checked(&self, good: bool) -> Option<Transition> {
        let check = self.check.load();
        let check = check.as_ref()?;
        if good {
            self.check_failures_in_row.store(0, Ordering::Relaxed);
            let passes = self.passes_in_row.fetch_add(1, Ordering::Relaxed) + 1;
            let up = match self.health() {
                Health::Up => false,
                // A new backend is up at its first good check (README).
                Health::Pending => true,
                Health::Down => passes >= check.rise,
            };
            if !up {
                return None;
            }
            // What requests failed before it went down is history now.
            self.failures_in_row.store(0, Ordering::Relaxed);
            self.set(Health::Up)
        } else {
            self.passes_in_row.store(0, Ordering::Relaxed);
            let in_row = self.check_failures_in_row.fetch_add(1, Ordering::Relaxed) + 1;
            if in_row >= check.fall {
                self.set(Health::Down)
            } else {
                None
            }
        }
    }

    fn set(&self, to: Health) -> Option<Transition> {
        let from = Health::from_u8(self.health.swap(to.as_u8(), Ordering::Relaxed));
        (from != to).then_some(Transition { from, to })
    }

    fn millis_now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// One request or tunnel on a backend: counted in its open sessions from
/// the choice until dropped (the response body's end, or the tunnel's).
#[derive(Debug)]
pub struct Session {
    backend: Arc<BackendState>,
}

impl Session {
    /// Opens a session on `backend`.
    pub fn open(backend: &Arc<BackendState>) -> Self {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        backend.sessions.fetch_add(1, Ordering::Relaxed);
        Session {
            backend: backend.clone(),
        }
    }

    /// The backend it is on.
    pub fn backend(&self) -> &Arc<BackendState> {
        &self.backend
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
