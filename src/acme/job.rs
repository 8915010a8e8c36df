//! What the ACME task and its issuer hand each other: the domain to order
//! for, the job with its progress callback, and what comes back (an issued
//! certificate, a failure, the CA's renewal information, RFC 9773). A leaf
//! of `acme/` (with the loop's timing), so the loop, the issuer and their tests share these without
//! using each other.

use std::sync::Arc;
use std::time::Duration;

use super::schedule::RenewalWindow;
use super::{AcmeError, Step};
use crate::config::AcmeConfig;
use crate::state_layout::StateLayout;

/// Renewal information from the CA is asked again after this long at most,
/// and not sooner than [`ARI_MIN_REFRESH`] (whatever its `Retry-After`).
pub(super) const ARI_MAX_REFRESH: i64 = 24 * 3600;
pub(super) const ARI_MIN_REFRESH: i64 = 3600;

/// Unix seconds now. A function so tests can run the scheduler on tokio's
/// paused clock.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(crate::clock::unix_now)
}

/// The domain an ACME operation is for, with what it needs to reach the CA.
#[derive(Clone)]
pub struct Target {
    /// The domain.
    pub domain: String,
    /// The names to order for (the domain's `names`, else its own name).
    pub names: Vec<String>,
    /// The challenge its orders use (its own, else `acme.challenge`).
    pub challenge: crate::config::ChallengeKind,
    /// The account contact: the domain's, else `acme.account_email`.
    pub email: Option<String>,
    /// The global ACME settings at the time.
    pub settings: Arc<AcmeConfig>,
    /// Where accounts and certificates live.
    pub state: StateLayout,
}

/// One issuance to run.
#[derive(Clone)]
pub struct Job {
    /// What to issue for.
    pub target: Target,
    /// Told each step as it starts.
    pub progress: Arc<dyn Fn(Step) + Send + Sync>,
}

/// A certificate that was issued, stored and is being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Its expiry (Unix seconds).
    pub not_after: i64,
    /// SHA-256 of the leaf.
    pub sha256: String,
}

/// A failed issuance.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What went wrong, where.
    pub error: AcmeError,
    /// The CA's `Retry-After`, in seconds from now, if it sent one.
    pub retry_after: Option<i64>,
}

/// A renewal-information question for the CA (ARI, RFC 9773).
#[derive(Clone)]
pub struct AriQuery {
    /// Whose certificate.
    pub target: Target,
    /// The served leaf, DER.
    pub leaf: Vec<u8>,
}

/// What the CA said about renewing one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AriAnswer {
    /// The CA does not offer renewal information.
    Unsupported,
    /// Its suggested window, and in how many seconds to ask again.
    Window(RenewalWindow, i64),
    /// Asking failed; try again later.
    Failed,
}

/// Orders running at once, across domains: enough to issue a handful of
/// new domains quickly, few enough not to trip a CA's rate limits when a
/// thousand domains are switched on together.
pub const MAX_CONCURRENT_ORDERS: usize = 4;

/// How often the manager looks around by itself.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often request files are looked for and the snapshot is compared
    /// with the last one planned against.
    pub poll: Duration,
    /// Longest sleep between plans even when nothing is due: a wall-clock
    /// jump (suspend, NTP step) is noticed within this.
    pub max_sleep: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            poll: Duration::from_secs(1),
            max_sleep: Duration::from_secs(60),
        }
    }
}
