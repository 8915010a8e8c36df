//! Why a name gets no certificate on demand, for the log line, the metric
//! and how long the name is remembered as refused.

use std::time::Duration;

use super::ask::AskError;
use crate::acme::AcmeError;
use crate::metrics::OnDemandOutcome;
use crate::storage::document::DocumentError;

/// How long a name is refused after the `ask` endpoint could not be
/// asked (at most `refused_for`): an outage of the endpoint is not its
/// answer, so the names that came meanwhile are asked again soon.
pub const ASK_FAILURE_MEMORY: Duration = Duration::from_secs(30);

/// Why a name gets no order now.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// `ask` answered something else than 200.
    #[error("the ask endpoint answered {0}")]
    RefusedByAsk(u16),
    /// `ask` could not be asked.
    #[error(transparent)]
    AskFailed(AskError),
    /// The order budget is spent.
    #[error(
        "over acme.on_demand.rate ({count}/{per_secs}s, burst {burst}); the next order is \
         possible in {next_secs}s"
    )]
    OverRate {
        /// Orders per period.
        count: u32,
        /// The period, in seconds.
        per_secs: u64,
        /// The burst.
        burst: u32,
        /// Seconds until the next order is possible.
        next_secs: u64,
    },
    /// The name does not resolve to `acme.expected_addresses`.
    #[error(transparent)]
    Preflight(AcmeError),
    /// The domain store could not take it.
    #[error("adding it to the domain store: {0}")]
    Store(DocumentError),
    /// Stored, but this instance did not load it in time.
    #[error("it was added to the domain store but not loaded within {0}s; see the log")]
    NotLoaded(u64),
    /// The order failed.
    #[error("the order failed: {0}")]
    OrderFailed(String),
    /// The ACME task stopped first (shutdown).
    #[error("the ACME task stopped before the order ended")]
    Stopped,
}

impl Refusal {
    /// The metric's outcome.
    pub fn outcome(&self) -> OnDemandOutcome {
        match self {
            Refusal::RefusedByAsk(_) => OnDemandOutcome::RefusedByAsk,
            Refusal::AskFailed(_) => OnDemandOutcome::AskFailed,
            Refusal::OverRate { .. } => OnDemandOutcome::RateLimited,
            Refusal::Preflight(_) => OnDemandOutcome::PreflightFailed,
            Refusal::Store(_) => OnDemandOutcome::StoreFailed,
            Refusal::NotLoaded(_) => OnDemandOutcome::NotLoaded,
            Refusal::OrderFailed(_) => OnDemandOutcome::OrderFailed,
            Refusal::Stopped => OnDemandOutcome::Stopped,
        }
    }

    /// How long the name stays refused, given `acme.on_demand.refused_for`.
    pub fn remembered_for(&self, refused_for: Duration) -> Duration {
        match self {
            Refusal::AskFailed(_) => refused_for.min(ASK_FAILURE_MEMORY),
            _ => refused_for,
        }
    }

    /// Whether the name may be in the domain store and must be taken out
    /// again (it got there, but never got its certificate). Not after a
    /// stop: the order is resumed at the next start ([`super::OnDemand::resume`]),
    /// and another instance may be ordering the name meanwhile.
    pub fn after_storing(&self) -> bool {
        matches!(self, Refusal::NotLoaded(_) | Refusal::OrderFailed(_))
    }
}
