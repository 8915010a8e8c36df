//! `sniwalk_acme_on_demand_total{outcome}`: what became of the handshakes
//! for names no domain answers, with `acme.on_demand` on (README,
//! "On-demand certificates").

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// What became of a name; a small fixed set, so label values stay bounded
/// (names are never labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDemandOutcome {
    /// Allowed by `ask`, within the rate: an order was asked for.
    Ordered,
    /// Its on-demand order ended with the certificate served.
    Issued,
    /// `ask` answered something else than 200.
    RefusedByAsk,
    /// `ask` could not be reached or did not answer in time.
    AskFailed,
    /// Over `rate`/`burst`.
    RateLimited,
    /// The name does not resolve to `expected_addresses`.
    PreflightFailed,
    /// The domain store could not take it.
    StoreFailed,
    /// Stored, but this instance did not load it in time (the name leaves
    /// the domain store again).
    NotLoaded,
    /// The order failed (the name leaves the domain store again).
    OrderFailed,
    /// The process stopped during the order (the name stays in the domain
    /// store and is ordered again at the next start).
    Stopped,
    /// A handshake for a name refused within `refused_for`: nothing asked.
    RefusedBefore,
    /// Every `ask` slot busy: served unasked.
    AskBusy,
}

impl OnDemandOutcome {
    /// Every outcome, in label order.
    pub const ALL: [OnDemandOutcome; 12] = [
        OnDemandOutcome::Ordered,
        OnDemandOutcome::Issued,
        OnDemandOutcome::RefusedByAsk,
        OnDemandOutcome::AskFailed,
        OnDemandOutcome::RateLimited,
        OnDemandOutcome::PreflightFailed,
        OnDemandOutcome::StoreFailed,
        OnDemandOutcome::NotLoaded,
        OnDemandOutcome::OrderFailed,
        OnDemandOutcome::Stopped,
        OnDemandOutcome::RefusedBefore,
        OnDemandOutcome::AskBusy,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            OnDemandOutcome::Ordered => "ordered",
            OnDemandOutcome::Issued => "issued",
            OnDemandOutcome::RefusedByAsk => "refused_by_ask",
            OnDemandOutcome::AskFailed => "ask_failed",
            OnDemandOutcome::RateLimited => "rate_limited",
            OnDemandOutcome::PreflightFailed => "preflight_failed",
            OnDemandOutcome::StoreFailed => "store_failed",
            OnDemandOutcome::NotLoaded => "not_loaded",
            OnDemandOutcome::OrderFailed => "order_failed",
            OnDemandOutcome::Stopped => "stopped",
            OnDemandOutcome::RefusedBefore => "refused_before",
            OnDemandOutcome::AskBusy => "ask_busy",
        }
    }
}

/// The label set.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabel {
    outcome: &'static str,
}

/// The family with every outcome at zero.
pub(super) fn family() -> Family<OutcomeLabel, Counter> {
    let family = Family::<OutcomeLabel, Counter>::default();
    for outcome in OnDemandOutcome::ALL {
        drop(family.get_or_create(&OutcomeLabel {
            outcome: outcome.as_str(),
        }));
    }
    family
}

/// Counts one `outcome`.
pub(super) fn count(family: &Family<OutcomeLabel, Counter>, outcome: OnDemandOutcome) {
    family
        .get_or_create(&OutcomeLabel {
            outcome: outcome.as_str(),
        })
        .inc();
}

/// Registers the family.
pub(super) fn register(registry: &mut Registry, family: &Family<OutcomeLabel, Counter>) {
    registry.register(
        "acme_on_demand",
        "Names no domain answers, with acme.on_demand on, by what became of them (once per \
         name decided, however many handshakes joined): ordered, issued, refused_by_ask, \
         ask_failed, rate_limited, preflight_failed, store_failed, not_loaded, order_failed, \
         stopped; and per handshake not asked about: refused_before (refused within \
         refused_for), ask_busy (every ask slot busy)",
        family.clone(),
    );
}
