//! Per-backend series of the redundant-backend groups (README: Redundant
//! backends), made at each scrape from the snapshot's backend states, as
//! the certificate gauges are. The response and connect times are
//! histograms each state holds (recorded without a lookup); a scrape adds
//! them into the series of their labels.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::histogram::DurationHistogram;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    listener: String,
    backend: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    listener: String,
    backend: String,
    state: &'static str,
}

/// Registers the backend series of `snapshot` in `registry`.
pub(super) fn register(registry: &mut Registry, snapshot: &Snapshot) {
    let up = Family::<BackendLabels, Gauge>::default();
    let state = Family::<StateLabels, Gauge>::default();
    let open = Family::<BackendLabels, Gauge>::default();
    let sessions = Family::<BackendLabels, Counter>::default();
    let failures = Family::<BackendLabels, Counter>::default();
    let response_time = Family::<BackendLabels, DurationHistogram>::default();
    let connect_time = Family::<BackendLabels, DurationHistogram>::default();
    for (name, groups) in snapshot
        .listener_names()
        .iter()
        .zip(snapshot.all_backends())
    {
        for view in groups.views(name) {
            let labels = BackendLabels {
                listener: view.listener.clone(),
                backend: view.backend.clone(),
            };
            let taking = view.health == "up" && view.drain.is_none();
            up.get_or_create(&labels).set(i64::from(taking));
            for health in ["up", "down", "pending"] {
                state
                    .get_or_create(&StateLabels {
                        listener: view.listener.clone(),
                        backend: view.backend.clone(),
                        state: health,
                    })
                    .set(i64::from(view.health == health));
            }
            state
                .get_or_create(&StateLabels {
                    listener: view.listener.clone(),
                    backend: view.backend.clone(),
                    state: "draining",
                })
                .set(i64::from(view.drain.is_some()));
            open.get_or_create(&labels)
                .set(i64::try_from(view.open_sessions).unwrap_or(i64::MAX));
            sessions.get_or_create(&labels).inc_by(view.sessions);
            failures.get_or_create(&labels).inc_by(view.failures);
        }
        // The states `views` shows: the current ones, then removed ones
        // still carrying sessions. Two states of one address (with and
        // without TLS) add up under its labels. A `tls` listener's group
        // connects; a route's sends requests.
        let shown = groups
            .states
            .iter()
            .chain(groups.retired.iter().filter(|s| s.in_flight() > 0));
        for state in shown {
            let labels = BackendLabels {
                listener: name.clone(),
                backend: state.address().to_string(),
            };
            if groups.tcp.is_some() {
                connect_time
                    .get_or_create(&labels)
                    .absorb(state.connect_times());
            } else {
                response_time
                    .get_or_create(&labels)
                    .absorb(state.response_times());
            }
        }
    }
    registry.register(
        "backend_up",
        "1 while a backend takes new requests and tunnels (up and not draining), else 0",
        up,
    );
    registry.register(
        "backend_state",
        "A backend's health (up, down, pending: not checked yet) and whether it drains: 1 for \
         each that holds",
        state,
    );
    registry.register(
        "backend_open_sessions",
        "Requests and tunnels open on a backend now",
        open,
    );
    registry.register(
        "backend_sessions",
        "Requests and tunnels given to a backend since it was first seen",
        sessions,
    );
    registry.register(
        "backend_failures",
        "Failures counted against a backend's health: refused or failed connections, \
         timeouts, 5xx answers",
        failures,
    );
    registry.register_with_unit(
        "backend_response_duration",
        "https routes: from sending a request to a backend (connecting first when no \
         kept-alive connection is free) to its response headers",
        Unit::Seconds,
        response_time,
    );
    registry.register_with_unit(
        "backend_connect_duration",
        "tls listeners: connecting to a backend (TCP, PROXY header, TLS to it) until the \
         tunnel starts",
        Unit::Seconds,
        connect_time,
    );
}
