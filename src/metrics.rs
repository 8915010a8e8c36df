//! Prometheus metrics: counters bumped on the hot paths, and the text
//! exposition rendered on demand. No I/O here; the admin listener serves
//! [`Metrics::render`] at `GET /metrics` with [`CONTENT_TYPE`].
//!
//! Hot-path rule (issue 6): "Counters on the hot path are atomics; no lock
//! on the handshake path." prometheus-client's `Family::get_or_create`
//! takes a lock, so every per-listener series is looked up **once**, when
//! the listeners start ([`Metrics::listener`]), into a [`ListenerMetrics`]
//! of plain handles (`Counter`/`Gauge` are an `Arc` around an atomic). A
//! handshake then costs one relaxed `fetch_add`; a request one per counter
//! and two for the duration histogram, which is our own atomic one
//! (`DurationHistogram`) because prometheus-client's takes a mutex per
//! observation. Requests by status code are one `fetch_add` into an array
//! indexed by the status (`metrics/status_codes.rs`), and a backend's
//! response and connect times go to histograms its state holds
//! (`balance/state.rs`): no lookup per request either. Only error paths
//! (backend errors) and rare events (reloads, ACME orders, tunnels) go
//! through a `Family` lookup or an `Arc` clone.
//!
//! The certificate gauges are not stored at all: [`Metrics::render`] reads
//! them from the snapshot it is given, so a removed certificate disappears
//! from the next scrape.
//!
//! All names start with `sniwalk_` (a sub-registry with that prefix), but
//! the standard process metrics (`metrics/process.rs`), which every
//! Prometheus client exports unprefixed; counters get their `_total`
//! suffix and seconds their `_seconds` suffix from prometheus-client, as
//! OpenMetrics wants.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use self::histogram::DurationHistogram;
pub use self::reasons::{BackendError, FailureReason};
use self::status_codes::{StatusCodeFamily, StatusCounts};
use crate::config::{Config, ListenerConfig, ListenerKind};
use crate::expiry::ExpiryState;
use crate::snapshot::Snapshot;
use crate::tree::Step;

/// The content type to serve [`Metrics::render`]'s output with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of the proxy. Created once per process with
/// [`Metrics::new`] and shared (`Arc`) by the listeners, the reload task,
/// the ACME manager and whatever serves `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    /// Handles by listener position, made by [`Metrics::new`].
    listeners: Vec<Arc<ListenerMetrics>>,
    handshakes: Family<HandshakeLabels, Counter>,
    handshake_failures: Family<FailureLabels, Counter>,
    connections_active: Family<ListenerLabel, Gauge>,
    connections: Family<ListenerLabel, Counter>,
    requests: StatusCodeFamily,
    request_duration: Family<ListenerLabel, DurationHistogram>,
    backend_errors: Family<BackendLabels, Counter>,
    reloads: Family<ResultLabel, Counter>,
    acme_orders: Family<ResultLabel, Counter>,
    backend_connections_active: Family<ListenerLabel, Gauge>,
    backend_limit_rejections: Family<ListenerLabel, Counter>,
    send_timeouts: Family<ListenerLabel, Counter>,
    tunnel_bytes: Family<DirectionLabels, Counter>,
    tunnels_active: Family<TunnelLabels, Gauge>,
    proxy_rejections: Family<proxy_protocol::RejectionLabels, Counter>,
    on_demand: Family<on_demand::OutcomeLabel, Counter>,
    storage_up: Gauge,
}

impl Metrics {
    /// The metrics for `config`'s listeners, every series they can have
    /// created at zero (so a rate over a series that never moved is 0, not
    /// missing).
    pub fn new(config: &Config) -> Arc<Metrics> {
        let mut metrics = Metrics {
            listeners: Vec::new(),
            handshakes: Family::default(),
            handshake_failures: Family::default(),
            connections_active: Family::default(),
            connections: Family::default(),
            requests: StatusCodeFamily::default(),
            request_duration: Family::default(),
            backend_errors: Family::default(),
            reloads: Family::default(),
            acme_orders: Family::default(),
            backend_connections_active: Family::default(),
            // Up until told otherwise (the state directory always is).
            storage_up: {
                let up = Gauge::default();
                up.set(1);
                up
            },
            backend_limit_rejections: Family::default(),
            send_timeouts: Family::default(),
            tunnel_bytes: Family::default(),
            tunnels_active: Family::default(),
            proxy_rejections: Family::default(),
            on_demand: on_demand::family(),
        };
        metrics.listeners = config
            .listeners
            .iter()
            .map(|listener| Arc::new(metrics.make_listener(listener)))
            .collect();
        // Looking a series up creates it (at zero); the guard is not needed.
        for result in [RELOAD_OK, RELOAD_FAILED] {
            drop(metrics.reloads.get_or_create(&ResultLabel { result }));
        }
        for result in [ORDER_ISSUED, ORDER_FAILED] {
            drop(metrics.acme_orders.get_or_create(&ResultLabel { result }));
        }
        Arc::new(metrics)
    }

    /// The handles of listener number `index` (its position in the
    /// configuration). A listener [`Metrics::new`] did not see at that
    /// position gets handles made now (a lock, once per listener start).
    pub fn listener(&self, index: usize, listener: &ListenerConfig) -> Arc<ListenerMetrics> {
        match self.listeners.get(index) {
            Some(made) if made.name == listener.name && made.kind == listener.kind => made.clone(),
            _ => Arc::new(self.make_listener(listener)),
        }
    }

    /// Counts a finished ACME order: a certificate issued (`ok`) or an
    /// order that failed (it is retried on the backoff schedule).
    pub fn acme_order(&self, ok: bool) {
        let result = if ok { ORDER_ISSUED } else { ORDER_FAILED };
        self.acme_orders
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Counts what became of a name with `acme.on_demand` on.
    pub fn on_demand(&self, outcome: OnDemandOutcome) {
        on_demand::count(&self.on_demand, outcome);
    }

    /// Whether the storage (`storage:`) can be reached now.
    pub fn set_storage_up(&self, up: bool) {
        self.storage_up.set(i64::from(up));
    }

    /// Counts a reload: the snapshot was rebuilt (`ok`), or the rebuild or
    /// the configuration file failed (the running state stays).
    pub fn reload(&self, ok: bool) {
        let result = if ok { RELOAD_OK } else { RELOAD_FAILED };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// The whole text exposition (OpenMetrics, ending in `# EOF`), with
    /// the certificate gauges read from `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        self.render_at(snapshot, crate::clock::unix_now())
    }

    /// [`Metrics::render`] at `now` (Unix seconds), which only decides
    /// whether a certificate counts as expired.
    fn render_at(&self, snapshot: &Snapshot, now: i64) -> String {
        // A registry per scrape: it holds clones of the families (an `Arc`
        // each), plus certificate gauges made from this snapshot and the
        // process metrics read now, so the output is one exposition with
        // one `# EOF`. A few dozen registrations, nothing next to encoding
        // the text. The process metrics go in the root, unprefixed; ours in
        // its `sniwalk` sub-registry.
        let mut root = Registry::default();
        process::register(&mut root);
        let registry = root.sub_registry_with_prefix("sniwalk");
        registry.register(
            "build_info",
            "Always 1: the version of sniwalk running and the optional cargo features it \
             was built with (comma-separated; default when none)",
            build_info(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes by outcome (ok, failed) and how the certificate was chosen \
             (exact, listed, ancestor, master, certdir, default, acme-challenge; none when failed)",
            self.handshakes.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Failed TLS handshakes by reason",
            self.handshake_failures.clone(),
        );
        registry.register(
            "connections_active",
            "Connections open now",
            self.connections_active.clone(),
        );
        registry.register(
            "connections",
            "Connections accepted",
            self.connections.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by status code and class (a class with no code seen yet: \
             one series without code, at 0)",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to the end of its response body",
            Unit::Seconds,
            self.request_duration.clone(),
        );
        registry.register(
            "backend_errors",
            "Requests or tunnels whose backend failed: connect (refused, unreachable), \
             timeout (connect or response headers), other",
            self.backend_errors.clone(),
        );
        registry.register(
            "backend_connections_active",
            "Requests and WebSocket tunnels of an https listener holding a backend connection now \
             (bounded by max_backend_connections)",
            self.backend_connections_active.clone(),
        );
        registry.register(
            "backend_limit_rejections",
            "Requests answered 503 because the listener's max_backend_connections were in use",
            self.backend_limit_rejections.clone(),
        );
        registry.register(
            "send_timeouts",
            "Client connections cut because the client took no response byte for send_timeout",
            self.send_timeouts.clone(),
        );
        registry.register_with_unit(
            "tunnel",
            "Bytes copied by ended tls-listener and WebSocket tunnels, up (client to backend) \
             and down",
            Unit::Bytes,
            self.tunnel_bytes.clone(),
        );
        registry.register(
            "tunnels_active",
            "Tunnels open now: WebSocket tunnels of https listeners (kind websocket), tls \
             listener connections relaying to their backend (kind tls)",
            self.tunnels_active.clone(),
        );
        registry.register(
            "reloads",
            "Reloads: snapshot rebuilt (ok), or rebuild or configuration file failed",
            self.reloads.clone(),
        );
        registry.register(
            "acme_orders",
            "ACME orders by result (issued, failed)",
            self.acme_orders.clone(),
        );
        registry.register(
            "storage_up",
            "1 while the storage (storage:) can be reached, 0 while it cannot (no orders then)",
            self.storage_up.clone(),
        );
        proxy_protocol::register(registry, &self.proxy_rejections);
        on_demand::register(registry, &self.on_demand);
        backends::register(registry, snapshot);
        let (not_after, expiry) = certificate_gauges(snapshot, now);
        registry.register_with_unit(
            "certificate_not_after",
            "End of validity (Unix time) of each certificate in use",
            Unit::Seconds,
            not_after,
        );
        registry.register(
            "certificate_expiry_state",
            "Expiry state of each certificate in use: 0 ok, 1 expires soon, 2 expired",
            expiry,
        );
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &root) {
            // Writing into a String cannot fail; should the encoder refuse
            // anyway, a scrape gets a valid empty exposition, not half a one.
            tracing::error!(error = %e, "encoding the metrics failed");
            return "# EOF\n".to_string();
        }
        text
    }

    /// Looks up (or creates) every series of one listener. Series that do
    /// not apply to its kind (handshakes on `http`, requests on `tls`) are
    /// detached handles that no exposition shows.
    fn make_listener(&self, listener: &ListenerConfig) -> ListenerMetrics {
        let name = listener.name.clone();
        let tls = listener.kind.terminates_tls();
        let http = matches!(listener.kind, ListenerKind::Https | ListenerKind::Http);
        let handshake = |applies: bool, labels: HandshakeLabels| {
            if applies {
                self.handshakes.get_or_create(&labels).clone()
            } else {
                Counter::default()
            }
        };
        let handshakes_ok = HANDSHAKE_STEPS.map(|step| {
            // Only `https` listeners offer ALPN `acme-tls/1`.
            let applies =
                tls && (step != ACME_CHALLENGE_STEP || listener.kind == ListenerKind::Https);
            handshake(
                applies,
                HandshakeLabels {
                    listener: name.clone(),
                    outcome: "ok",
                    step,
                },
            )
        });
        let handshakes_failed = handshake(
            tls,
            HandshakeLabels {
                listener: name.clone(),
                outcome: "failed",
                step: "none",
            },
        );
        let failures = FailureReason::ALL.map(|reason| {
            if tls {
                self.handshake_failures
                    .get_or_create(&FailureLabels {
                        listener: name.clone(),
                        reason: reason.as_str(),
                    })
                    .clone()
            } else {
                Counter::default()
            }
        });
        let requests = if http {
            self.requests.listener(&name)
        } else {
            Arc::new(StatusCounts::new(&name))
        };
        let by_listener = ListenerLabel {
            listener: name.clone(),
        };
        let duration = if http {
            self.request_duration.get_or_create(&by_listener).clone()
        } else {
            DurationHistogram::default()
        };
        let https = listener.kind == ListenerKind::Https;
        let tunnel_bytes = ["up", "down"].map(|direction| {
            if tls {
                self.tunnel_bytes
                    .get_or_create(&DirectionLabels {
                        listener: name.clone(),
                        direction,
                    })
                    .clone()
            } else {
                Counter::default()
            }
        });
        let tunnel_kind = match listener.kind {
            ListenerKind::Https => Some("websocket"),
            ListenerKind::Tls => Some("tls"),
            ListenerKind::Http => None,
        };
        let tunnels_active = match tunnel_kind {
            Some(kind) => self
                .tunnels_active
                .get_or_create(&TunnelLabels {
                    listener: name.clone(),
                    kind,
                })
                .clone(),
            None => Gauge::default(),
        };
        let (backend_connections_active, backend_limit_rejections, send_timeouts) = if https {
            (
                self.backend_connections_active
                    .get_or_create(&by_listener)
                    .clone(),
                self.backend_limit_rejections
                    .get_or_create(&by_listener)
                    .clone(),
                self.send_timeouts.get_or_create(&by_listener).clone(),
            )
        } else {
            Default::default()
        };
        ListenerMetrics {
            backend_connections_active,
            backend_limit_rejections,
            send_timeouts,
            tunnel_bytes,
            tunnels_active,
            handshakes_ok,
            handshakes_failed,
            failures,
            connections_active: self.connections_active.get_or_create(&by_listener).clone(),
            connections: self.connections.get_or_create(&by_listener).clone(),
            requests,
            duration,
            backend_errors: self.backend_errors.clone(),
            proxy_rejections: ListenerRejections::new(&self.proxy_rejections, listener),
            name,
            kind: listener.kind,
        }
    }
}

/// One listener's series, resolved once at start so the hot path is a
/// plain atomic increment (see the module documentation).
#[derive(Debug)]
pub struct ListenerMetrics {
    /// Successful handshakes, indexed like [`HANDSHAKE_STEPS`].
    handshakes_ok: [Counter; HANDSHAKE_STEPS.len()],
    handshakes_failed: Counter,
    /// Failed handshakes, indexed like [`FailureReason::ALL`].
    failures: [Counter; FailureReason::ALL.len()],
    connections_active: Gauge,
    connections: Counter,
    /// Requests by status code.
    requests: Arc<StatusCounts>,
    duration: DurationHistogram,
    backend_connections_active: Gauge,
    backend_limit_rejections: Counter,
    send_timeouts: Counter,
    /// Tunnel bytes, up then down.
    tunnel_bytes: [Counter; 2],
    tunnels_active: Gauge,
    /// The shared family (an `Arc`): backend errors are labelled by
    /// backend, known only when one fails.
    backend_errors: Family<BackendLabels, Counter>,
    /// Connections closed for their PROXY protocol header.
    proxy_rejections: ListenerRejections,
    name: String,
    kind: ListenerKind,
}

impl ListenerMetrics {
    /// Counts a completed handshake whose certificate was chosen by `step`.
    pub fn handshake_ok(&self, step: Step) {
        self.handshakes_ok[step_index(step)].inc();
    }

    /// Counts a completed TLS-ALPN-01 validation handshake.
    pub fn acme_challenge_handshake(&self) {
        self.handshakes_ok[ACME_CHALLENGE_INDEX].inc();
    }

    /// Counts a connection closed for its PROXY protocol header (or the
    /// lack of one) before TLS or HTTP.
    pub fn proxy_header_rejected(&self, reason: ProxyRejection) {
        self.proxy_rejections.count(reason);
    }

    /// Counts a failed handshake.
    pub fn handshake_failed(&self, reason: FailureReason) {
        self.handshakes_failed.inc();
        self.failures[reason as usize].inc();
    }

    /// Counts an accepted connection; the returned guard counts it closed
    /// when dropped (at the end of the connection's task, however it ends).
    pub fn connection_opened(&self) -> OpenConnection<'_> {
        self.connections.inc();
        self.connections_active.inc();
        OpenConnection { metrics: self }
    }

    /// Counts an answered request with its status and duration (arrival to
    /// end of the response body).
    pub fn request_done(&self, status: u16, duration: Duration) {
        self.requests.count(status);
        self.duration.observe(duration);
    }

    /// Counts a request or tunnel that took a backend connection; the
    /// returned guard counts it given back when dropped.
    pub fn backend_connection_taken(&self) -> HeldBackendConnection {
        self.backend_connections_active.inc();
        HeldBackendConnection(self.backend_connections_active.clone())
    }

    /// Counts a request refused with 503 at `max_backend_connections`.
    pub fn backend_limit_rejected(&self) {
        self.backend_limit_rejections.inc();
    }

    /// Counts a client connection cut by `send_timeout`.
    pub fn send_timed_out(&self) {
        self.send_timeouts.inc();
    }

    /// Counts a tunnel that starts copying (a WebSocket on `https`
    /// listeners, the relay to the backend on `tls` ones); the returned
    /// guard counts it ended when dropped.
    pub fn tunnel_opened(&self) -> OpenTunnel {
        self.tunnels_active.inc();
        OpenTunnel(self.tunnels_active.clone())
    }

    /// Counts the bytes an ended tunnel copied each way.
    pub fn tunnel_done(&self, up: u64, down: u64) {
        self.tunnel_bytes[0].inc_by(up);
        self.tunnel_bytes[1].inc_by(down);
    }

    /// Counts a failure of `backend` (its `host:port`), on the error path
    /// only: it looks the series up in the shared family.
    pub fn backend_error(&self, backend: &str, kind: BackendError) {
        self.backend_errors
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
                kind: kind.as_str(),
            })
            .inc();
    }
}

/// A backend connection held by a request or tunnel, counted in
/// `sniwalk_backend_connections_active` until dropped.
#[derive(Debug)]
pub struct HeldBackendConnection(Gauge);

impl Drop for HeldBackendConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An open tunnel, counted in `sniwalk_tunnels_active` until dropped.
/// It owns its gauge (an `Arc`): a WebSocket tunnel runs in a task of its
/// own.
#[derive(Debug)]
pub struct OpenTunnel(Gauge);

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An open connection, counted in `sniwalk_connections_active` until
/// dropped.
#[derive(Debug)]
pub struct OpenConnection<'a> {
    metrics: &'a ListenerMetrics,
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.metrics.connections_active.dec();
    }
}

/// The `step` label values of successful handshakes: the tree steps in
/// [`Step`]'s order (see [`step_index`]), then TLS-ALPN-01 validations.
const HANDSHAKE_STEPS: [&str; 7] = [
    "exact",
    "ancestor",
    "master",
    "certdir",
    "default",
    "listed",
    ACME_CHALLENGE_STEP,
];

/// The `step` label of TLS-ALPN-01 validation handshakes.
const ACME_CHALLENGE_STEP: &str = "acme-challenge";
const ACME_CHALLENGE_INDEX: usize = 6;

const RELOAD_OK: &str = "ok";
const RELOAD_FAILED: &str = "failed";
const ORDER_ISSUED: &str = "issued";
const ORDER_FAILED: &str = "failed";

/// Where a step's counter sits in [`HANDSHAKE_STEPS`].
fn step_index(step: Step) -> usize {
    match step {
        Step::Exact => 0,
        Step::Ancestor => 1,
        Step::Master => 2,
        Step::Certdir => 3,
        Step::Default => 4,
        Step::Listed => 5,
    }
}

/// `sniwalk_build_info`: one series at 1 whose labels tell the version
/// and the optional cargo features of this build (Prometheus's `_info`
/// convention: join it on `instance` to label other series).
fn build_info() -> Family<BuildLabels, Gauge> {
    let features: &[&str] = &[
        #[cfg(feature = "etcd")]
        "etcd",
    ];
    let features = if features.is_empty() {
        "default".to_owned()
    } else {
        features.join(",")
    };
    let info = Family::<BuildLabels, Gauge>::default();
    info.get_or_create(&BuildLabels {
        version: env!("CARGO_PKG_VERSION"),
        features,
    })
    .set(1);
    info
}

/// The certificate gauges for every certificate in use in `snapshot`.
fn certificate_gauges(
    snapshot: &Snapshot,
    now: i64,
) -> (
    Family<CertificateLabels, Gauge>,
    Family<CertificateLabels, Gauge>,
) {
    let not_after = Family::<CertificateLabels, Gauge>::default();
    let expiry = Family::<CertificateLabels, Gauge>::default();
    for report in snapshot.reports() {
        let Some(loaded) = &report.loaded else {
            continue;
        };
        let (place, name) = report.place.label();
        let labels = CertificateLabels {
            place,
            name: name.to_string(),
        };
        let ends = loaded.facts.not_after;
        // The report's state dates from the snapshot's build (up to a
        // re-scan interval ago); "expired" is decided now, so it never lags.
        let state = if now > ends {
            2
        } else {
            match report.expiry {
                Some(ExpiryState::Expired) => 2,
                Some(ExpiryState::ExpiresSoon { .. }) => 1,
                Some(ExpiryState::Ok) | None => 0,
            }
        };
        not_after.get_or_create(&labels).set(ends);
        expiry.get_or_create(&labels).set(state);
    }
    (not_after, expiry)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    listener: String,
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    listener: String,
    outcome: &'static str,
    step: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    listener: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelLabels {
    listener: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    features: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    place: &'static str,
    name: String,
}

mod backends;
pub mod histogram;
mod on_demand;
mod process;
mod proxy_protocol;
mod reasons;
mod status_codes;

#[cfg(test)]
use histogram::{DURATION_BOUNDS_NS, DURATION_BUCKETS};
pub use on_demand::OnDemandOutcome;
use proxy_protocol::ListenerRejections;
pub use proxy_protocol::ProxyRejection;
#[cfg(test)]
use status_codes::{STATUS_CLASSES, status_class_index};

#[cfg(test)]
mod tests;
