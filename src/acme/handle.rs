//! How others ask the running ACME task for an order and hear how it went:
//! the admin API through [`ManagerHandle`], `sniwalk renew` through request
//! and result files (see [`super::control`]).

use tokio::sync::mpsc;

use super::Step;
use super::control::{self, RenewResult};
use super::job::Clock;
use super::listeners::{NO_LISTENER_CODE, NoListener};
use crate::state_layout::StateLayout;

/// What the ACME task tells whoever asked for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderEvent {
    /// The order reached this step.
    Step(Step),
    /// It ended.
    Done(OrderOutcome),
}

/// How an asked-for order ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderOutcome {
    /// Whether a new certificate is being served.
    pub ok: bool,
    /// What happened, for people.
    pub message: String,
    /// The error code ([`super::AcmeError::code`], or `NotManaged`), when it failed.
    pub code: Option<String>,
    /// The step that failed, if one did.
    pub step: Option<Step>,
}

/// Asks the running ACME task for orders.
#[derive(Debug, Clone)]
pub struct ManagerHandle {
    pub(super) tx: mpsc::UnboundedSender<(String, mpsc::UnboundedSender<OrderEvent>)>,
}

impl ManagerHandle {
    /// Asks for an order for `domain` now (whatever the schedule and the
    /// backoff say; joining the one in flight if there is one). Its steps
    /// and its outcome arrive on the returned receiver.
    pub fn order(&self, domain: &str) -> mpsc::UnboundedReceiver<OrderEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.tx.send((domain.to_string(), tx));
        rx
    }
}

/// Someone waiting for a domain's next order to end.
pub(super) enum Waiter {
    /// `sniwalk renew`: answered with a result file.
    File(String),
    /// In process (admin API jobs): told every step and the outcome.
    Watch(mpsc::UnboundedSender<OrderEvent>),
}

/// The outcome for a request ACME will not act on.
pub(super) fn not_managed(message: String) -> OrderOutcome {
    OrderOutcome {
        ok: false,
        message,
        code: Some("NotManaged".into()),
        step: None,
    }
}

/// The outcome for a request no order is placed for, because no bound
/// listener can answer the challenge.
pub(super) fn not_answerable(domain: &str, no_listener: &NoListener) -> OrderOutcome {
    OrderOutcome {
        ok: false,
        message: format!("{domain}: no order placed: {no_listener}"),
        code: Some(NO_LISTENER_CODE.into()),
        step: None,
    }
}

/// Tells `waiter` how the order for `domain` ended (a result file is stamped
/// with `clock`'s time).
pub(super) fn answer(
    state: &StateLayout,
    domain: &str,
    waiter: Waiter,
    outcome: &OrderOutcome,
    clock: &Clock,
) {
    match waiter {
        Waiter::Watch(tx) => {
            let _ = tx.send(OrderEvent::Done(outcome.clone()));
        }
        Waiter::File(id) => {
            let result = RenewResult {
                id,
                ok: outcome.ok,
                message: outcome.message.clone(),
                code: outcome.code.clone(),
                finished_at: clock(),
            };
            if let Err(e) = control::write_result(state, domain, &result) {
                tracing::error!(domain, "cannot write the renewal result: {e}");
            }
        }
    }
}
