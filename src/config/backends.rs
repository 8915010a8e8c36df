//! Backend groups of `proxy.yaml` (README: Redundant backends): what a
//! route's or a `tls` listener's `backend:` or `backends:` list, with
//! `balance:` and `health:`, becomes once checked (`backend_list.rs`).

use std::time::Duration;

/// The largest `weight:` (nginx and HAProxy allow 256 too).
pub const MAX_WEIGHT: u32 = 256;

/// A group of interchangeable backends: where a route's requests or a `tls`
/// listener's tunnels go. A single `backend:` is a group of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends<M> {
    /// The members, in configuration order (never empty).
    pub members: Vec<M>,
    /// How a member is chosen for each new request or tunnel.
    pub balance: Balance,
    /// Active health checks, if configured; passive checks always run.
    pub health: Option<HealthCheck>,
}

/// What a group needs of each of its members.
pub trait Member {
    /// `HOST:PORT`: names the backend in logs, metrics, `/status` and the
    /// admin API's drain calls.
    fn address(&self) -> &str;
    /// Its share of new sessions, 1 to [`MAX_WEIGHT`].
    fn weight(&self) -> u32;
    /// `drain: true`: it takes no new sessions.
    fn drain(&self) -> bool;
}

/// `balance:` — how the member for a new session is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Smooth weighted round robin (nginx's default).
    #[default]
    RoundRobin,
    /// The fewest open sessions for its weight: the choice for WebSockets
    /// and SIP, whose sessions last hours.
    LeastConn,
    /// By the client's IP address: a phone's reconnections land on the same
    /// member while it is up (weighted rendezvous hashing).
    ClientIp,
}

impl Balance {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastConn => "least_conn",
            Balance::ClientIp => "client_ip",
        }
    }
}

/// `health:` — active checks of every member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    /// What one check does.
    pub probe: Probe,
    /// Time between the start of two checks of one member.
    pub interval: Duration,
    /// One check must succeed within this.
    pub timeout: Duration,
    /// Consecutive failures (checks, or requests passively) that take a
    /// member out.
    pub fall: u32,
    /// Consecutive good checks that bring a member that is down back.
    pub rise: u32,
}

/// What one health check does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Probe {
    /// `GET path` (routes): any 2xx or 3xx status is good.
    Http {
        /// The path asked for, with `Host:` the member's address.
        path: String,
    },
    /// A TCP connection (`tls` listeners), optionally `send`ing bytes and
    /// waiting for an answer containing `expect`.
    Tcp {
        /// Sent once connected (after the PROXY header if the listener
        /// sends one).
        send: Option<String>,
        /// Must appear in what the member answers.
        expect: Option<String>,
    },
}

/// Default `health.interval`.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Default `health.timeout`.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `health.fall` (HAProxy's).
pub const DEFAULT_FALL: u32 = 3;
/// Default `health.rise` (HAProxy's).
pub const DEFAULT_RISE: u32 = 2;
