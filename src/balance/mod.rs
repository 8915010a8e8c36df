//! Load balancing over a group of backends (issue 15, in slices): which
//! backend of a route's or `tls` listener's group takes the next request
//! or tunnel.
//!
//! [`pick`] holds the choice itself as pure functions of the candidates'
//! weights, open sessions and health, with no I/O and no clock, so the
//! rules are tested on their own: smooth weighted round robin (nginx's),
//! least connections relative to weight, and client-address affinity by
//! weighted rendezvous hashing.

pub mod group;
pub mod pick;
pub mod state;

pub use group::{BackendView, Chosen, DrainedBy, Group, GroupMember, ListenerBackends};
pub use state::{BackendKey, BackendState, Health, Session, Transition};

/// Logs a backend's change of health if there was one.
pub fn note(state: &BackendState, transition: Option<Transition>, why: &str) {
    if let Some(transition) = transition {
        log_transition(state, transition, why);
    }
}

/// Logs a backend's change of health, one line with its listener and
/// address and what caused it.
pub fn log_transition(state: &BackendState, transition: Transition, why: &str) {
    match transition.to {
        Health::Down => tracing::warn!(
            listener = %state.listener,
            backend = %state.address(),
            from = transition.from.as_str(),
            why,
            "backend down: no new requests or tunnels go to it until it recovers"
        ),
        Health::Up => tracing::info!(
            listener = %state.listener,
            backend = %state.address(),
            from = transition.from.as_str(),
            why,
            "backend up: it takes new requests and tunnels"
        ),
        Health::Pending => {}
    }
}
