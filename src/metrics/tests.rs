use std::path::Path;

use prometheus_parse::{Scrape, Value};

use std::sync::atomic::Ordering;

use super::*;
use crate::snapshot::DefaultPolicy;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;
const DAY: i64 = 86_400;

/// Parses an exposition with prometheus-parse, a Prometheus text-format
/// (0.0.4) parser, after checking the OpenMetrics frame.
///
/// Where OpenMetrics differs, the parser needs a hand: a counter's `# TYPE`
/// line names the family without the `_total` its samples carry, which
/// would leave them untyped, so the line is renamed. `# UNIT` and `# EOF`
/// are comments to it and are skipped as such.
pub(crate) fn parse(text: &str) -> Scrape {
    assert!(text.ends_with("# EOF\n"), "ends in # EOF: {text}");
    assert_eq!(text.matches("# EOF").count(), 1, "one # EOF: {text}");
    let lines = text.lines().map(|line| {
        Ok(
            match line
                .strip_prefix("# TYPE ")
                .and_then(|rest| rest.strip_suffix(" counter"))
            {
                Some(name) => format!("# TYPE {name}_total counter"),
                None => line.to_string(),
            },
        )
    });
    Scrape::parse(lines).expect("the exposition parses")
}

/// The value of the one sample named `name` whose labels are exactly
/// `labels`; histograms give their count.
pub(crate) fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&prometheus_parse::Sample> = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} appears twice");
    found.first().map(|s| match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        Value::Summary(_) => panic!("no summaries here"),
    })
}

/// A certificate for `name` valid for 90 days up to `not_after`.
fn pem_until(name: &str, not_after: i64) -> (String, String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
    let at = |unix| time::OffsetDateTime::from_unix_timestamp(unix).expect("time");
    params.not_before = at(not_after - 90 * DAY);
    params.not_after = at(not_after);
    let cert = params.self_signed(&key).expect("self-signed");
    let (key, cert) = (key.serialize_pem(), cert.pem());
    (format!("{key}{cert}"), key, cert)
}

fn indented(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

/// Listeners `web` (https, with a certdir), `sip` (tls) and `plain`
/// (http); domains `example.com` (certificate until T0 + 60 days),
/// `shop.example.com` (until T0 + 5 days) and `api.example.com` (none).
fn config(certdir: &Path) -> Config {
    let (master, _, _) = pem_until("example.com", T0 + 60 * DAY);
    let (shop, _, _) = pem_until("shop.example.com", T0 + 5 * DAY);
    let (_, key, cert) = pem_until("web.internal", T0 + 30 * DAY);
    std::fs::create_dir_all(certdir).expect("certdir");
    std::fs::write(certdir.join("server.key"), key).expect("key");
    std::fs::write(certdir.join("server.crt"), cert).expect("cert");
    let yaml = format!(
        "master_domain: example.com\nstate_dir: /nonexistent/sniwalk-metrics-test\n\
         domains:\n  example.com:\n    certificate_pem: |\n{}  shop.example.com:\n    certificate_pem: |\n{}  api.example.com: {{}}\n\
         listeners:\n  - name: web\n    kind: https\n    bind: 127.0.0.1:1\n    certdir: {}\n    routes:\n      - host: \"*\"\n        status_page: true\n\
         \x20 - name: sip\n    kind: tls\n    bind: 127.0.0.1:2\n    backend: \"127.0.0.1:5060\"\n\
         \x20 - name: plain\n    kind: http\n    bind: 127.0.0.1:3\n",
        indented(&master),
        indented(&shop),
        certdir.display(),
    );
    Config::parse(&yaml, Path::new("/nonexistent/proxy.yaml")).expect("valid config")
}

fn snapshot(config: &Config) -> Snapshot {
    Snapshot::build(config, None, DefaultPolicy::InMemory, T0).expect("builds")
}

#[test]
fn render_is_one_valid_exposition_with_every_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&dir.path().join("web-certs"));
    let snapshot = snapshot(&config);
    let metrics = Metrics::new(&config);
    let web = metrics.listener(0, &config.listeners[0]);
    web.handshake_ok(Step::Exact);
    web.handshake_ok(Step::Exact);
    web.handshake_ok(Step::Default);
    web.acme_challenge_handshake();
    web.handshake_failed(FailureReason::Eof);
    web.request_done(200, Duration::from_millis(3));
    web.request_done(404, Duration::from_millis(1));
    web.backend_error("127.0.0.1:8080", BackendError::Connect);
    metrics.reload(true);
    metrics.acme_order(false);

    let text = metrics.render_at(&snapshot, T0);
    let scrape = parse(&text);
    for sample in &scrape.samples {
        assert!(
            sample.metric.starts_with("sniwalk_"),
            "{} has the prefix",
            sample.metric
        );
    }
    let get = |name: &str, labels: &[(&str, &str)]| value(&scrape, name, labels);
    let hs = "sniwalk_tls_handshakes_total";
    let ok = |step| [("listener", "web"), ("outcome", "ok"), ("step", step)];
    assert_eq!(get(hs, &ok("exact")), Some(2.0));
    assert_eq!(get(hs, &ok("default")), Some(1.0));
    assert_eq!(get(hs, &ok("acme-challenge")), Some(1.0));
    assert_eq!(get(hs, &ok("ancestor")), Some(0.0), "made at zero");
    assert_eq!(
        get(
            hs,
            &[("listener", "web"), ("outcome", "failed"), ("step", "none")]
        ),
        Some(1.0)
    );
    let sip_ok = [("listener", "sip"), ("outcome", "ok"), ("step", "exact")];
    assert_eq!(get(hs, &sip_ok), Some(0.0));
    let sip_acme = [
        ("listener", "sip"),
        ("outcome", "ok"),
        ("step", "acme-challenge"),
    ];
    assert_eq!(
        get(hs, &sip_acme),
        None,
        "tls listeners offer no acme-tls/1"
    );
    assert_eq!(
        get(
            hs,
            &[("listener", "plain"), ("outcome", "ok"), ("step", "exact")]
        ),
        None,
        "no handshakes on http listeners"
    );
    let failures = "sniwalk_tls_handshake_failures_total";
    assert_eq!(
        get(failures, &[("listener", "web"), ("reason", "eof")]),
        Some(1.0)
    );
    assert_eq!(
        get(failures, &[("listener", "sip"), ("reason", "timeout")]),
        Some(0.0)
    );
    let requests = "sniwalk_http_requests_total";
    assert_eq!(
        get(requests, &[("listener", "web"), ("class", "2xx")]),
        Some(1.0)
    );
    assert_eq!(
        get(requests, &[("listener", "web"), ("class", "4xx")]),
        Some(1.0)
    );
    assert_eq!(
        get(requests, &[("listener", "plain"), ("class", "3xx")]),
        Some(0.0)
    );
    assert_eq!(
        get(requests, &[("listener", "sip"), ("class", "2xx")]),
        None,
        "no requests on tls listeners"
    );
    let duration = "sniwalk_http_request_duration_seconds";
    assert_eq!(get(duration, &[("listener", "web")]), Some(2.0));
    assert_eq!(
        get(&format!("{duration}_count"), &[("listener", "web")]),
        Some(2.0)
    );
    let sum = get(&format!("{duration}_sum"), &[("listener", "web")]).expect("sum");
    assert!((sum - 0.004).abs() < 1e-9, "sum {sum}");
    for listener in ["web", "sip", "plain"] {
        assert_eq!(
            get("sniwalk_connections_active", &[("listener", listener)]),
            Some(0.0)
        );
        assert_eq!(
            get("sniwalk_connections_total", &[("listener", listener)]),
            Some(0.0)
        );
    }
    assert_eq!(
        get(
            "sniwalk_backend_errors_total",
            &[("backend", "127.0.0.1:8080"), ("kind", "connect")]
        ),
        Some(1.0)
    );
    assert_eq!(get("sniwalk_reloads_total", &[("result", "ok")]), Some(1.0));
    assert_eq!(
        get("sniwalk_reloads_total", &[("result", "failed")]),
        Some(0.0)
    );
    assert_eq!(
        get("sniwalk_acme_orders_total", &[("result", "failed")]),
        Some(1.0)
    );
    assert_eq!(
        get("sniwalk_acme_orders_total", &[("result", "issued")]),
        Some(0.0)
    );
    assert!(text.contains("# UNIT sniwalk_certificate_not_after_seconds seconds"));
    assert!(text.contains("# TYPE sniwalk_http_request_duration_seconds histogram"));
}

#[test]
fn certificate_gauges_follow_the_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&dir.path().join("web-certs"));
    let snapshot = snapshot(&config);
    let metrics = Metrics::new(&config);
    let scrape = parse(&metrics.render_at(&snapshot, T0));
    let not_after = "sniwalk_certificate_not_after_seconds";
    let state = "sniwalk_certificate_expiry_state";
    let get = |name: &str, place: &str, which: &str| {
        value(&scrape, name, &[("place", place), ("name", which)])
    };
    assert_eq!(
        get(not_after, "domain", "example.com"),
        Some((T0 + 60 * DAY) as f64)
    );
    assert_eq!(
        get(not_after, "domain", "shop.example.com"),
        Some((T0 + 5 * DAY) as f64)
    );
    assert_eq!(
        get(not_after, "certdir", "web"),
        Some((T0 + 30 * DAY) as f64)
    );
    assert_eq!(
        get(not_after, "domain", "api.example.com"),
        None,
        "no certificate, no series"
    );
    let default = get(not_after, "default", "default").expect("the default certificate");
    assert!(default > T0 as f64);
    assert_eq!(get(state, "domain", "example.com"), Some(0.0));
    assert_eq!(
        get(state, "domain", "shop.example.com"),
        Some(1.0),
        "5 days left is within the 14-day warning"
    );
    assert_eq!(get(state, "certdir", "web"), Some(0.0));
    let certificates = scrape
        .samples
        .iter()
        .filter(|s| s.metric == not_after)
        .count();
    assert_eq!(certificates, 4, "two domains, one certdir, the default");

    // Past its end a certificate counts as expired at once, whatever the
    // (older) report said.
    let later = parse(&metrics.render_at(&snapshot, T0 + 6 * DAY));
    assert_eq!(
        value(
            &later,
            state,
            &[("place", "domain"), ("name", "shop.example.com")]
        ),
        Some(2.0)
    );
}

#[test]
fn a_listener_not_known_at_start_gets_its_own_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&dir.path().join("web-certs"));
    let metrics = Metrics::new(&config);
    let known = metrics.listener(0, &config.listeners[0]);
    assert!(Arc::ptr_eq(
        &known,
        &metrics.listener(0, &config.listeners[0])
    ));
    let mut other = config.listeners[0].clone();
    other.name = "extra".into();
    let extra = metrics.listener(0, &other);
    extra.handshake_ok(Step::Master);
    let _open = extra.connection_opened();
    let scrape = parse(&metrics.render_at(&snapshot(&config), T0));
    assert_eq!(
        value(
            &scrape,
            "sniwalk_tls_handshakes_total",
            &[("listener", "extra"), ("outcome", "ok"), ("step", "master")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &scrape,
            "sniwalk_connections_active",
            &[("listener", "extra")]
        ),
        Some(1.0)
    );
}

#[test]
fn open_connections_are_counted_until_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&dir.path().join("web-certs"));
    let metrics = Metrics::new(&config);
    let web = metrics.listener(0, &config.listeners[0]);
    let first = web.connection_opened();
    let second = web.connection_opened();
    assert_eq!(web.connections_active.get(), 2);
    drop(first);
    assert_eq!(web.connections_active.get(), 1);
    drop(second);
    assert_eq!(web.connections_active.get(), 0);
    assert_eq!(web.connections.get(), 2);
}

#[test]
fn duration_buckets_double_from_half_a_millisecond() {
    assert_eq!(DURATION_BOUNDS_NS[0], 500_000);
    assert_eq!(DURATION_BOUNDS_NS[DURATION_BUCKETS - 1], 32_768_000_000);
    let histogram = DurationHistogram::default();
    for ms in [0.1, 0.5, 0.6, 1.0, 40_000.0] {
        histogram.observe(Duration::from_secs_f64(ms / 1000.0));
    }
    let cells: Vec<u64> = histogram
        .inner
        .buckets
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    assert_eq!(cells[0], 2, "0.1 ms and 0.5 ms (bounds are inclusive)");
    assert_eq!(cells[1], 2, "0.6 ms and 1 ms");
    assert_eq!(cells[DURATION_BUCKETS], 1, "40 s is past the last bound");
    assert_eq!(histogram.count(), 5);

    // As rendered: cumulative, bounds in seconds, +Inf last.
    let family = Family::<ListenerLabel, DurationHistogram>::default();
    family
        .get_or_create(&ListenerLabel {
            listener: "web".into(),
        })
        .observe(Duration::from_millis(2));
    let mut registry = Registry::with_prefix("sniwalk");
    registry.register_with_unit("d", "test", Unit::Seconds, family);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    assert!(
        text.contains("sniwalk_d_seconds_bucket{le=\"0.001\",listener=\"web\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("sniwalk_d_seconds_bucket{le=\"0.002\",listener=\"web\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("sniwalk_d_seconds_bucket{le=\"32.768\",listener=\"web\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("sniwalk_d_seconds_bucket{le=\"+Inf\",listener=\"web\"} 1\n"),
        "{text}"
    );
    let scrape = parse(&text);
    match &scrape
        .samples
        .iter()
        .find(|s| s.metric == "sniwalk_d_seconds")
        .expect("histogram sample")
        .value
    {
        Value::Histogram(buckets) => {
            assert_eq!(buckets.len(), DURATION_BUCKETS + 1);
            assert_eq!(buckets[0].less_than, 0.0005);
            assert!(buckets[DURATION_BUCKETS].less_than.is_infinite());
        }
        other => panic!("not a histogram: {other:?}"),
    }
}

#[test]
fn failure_reasons_are_indexed_in_order() {
    for (i, reason) in FailureReason::ALL.iter().enumerate() {
        assert_eq!(*reason as usize, i, "{reason:?}");
    }
    let mut labels: Vec<&str> = FailureReason::ALL.iter().map(|r| r.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), FailureReason::ALL.len());
}

#[test]
fn handshake_errors_map_to_a_few_reasons() {
    use rustls::{AlertDescription, Error, InvalidMessage, PeerIncompatible, PeerMisbehaved};
    let tls = |e: Error| io::Error::new(io::ErrorKind::InvalidData, e);
    let table: Vec<(io::Error, FailureReason)> = vec![
        (
            io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof"),
            FailureReason::Eof,
        ),
        (io::ErrorKind::ConnectionReset.into(), FailureReason::Eof),
        (io::ErrorKind::TimedOut.into(), FailureReason::Timeout),
        (io::ErrorKind::PermissionDenied.into(), FailureReason::Io),
        (
            tls(Error::PeerIncompatible(
                PeerIncompatible::NoCipherSuitesInCommon,
            )),
            FailureReason::PeerIncompatible,
        ),
        (
            tls(Error::NoApplicationProtocol),
            FailureReason::NoApplicationProtocol,
        ),
        (
            tls(Error::AlertReceived(AlertDescription::UnknownCA)),
            FailureReason::CertificateRejected,
        ),
        (
            tls(Error::AlertReceived(AlertDescription::CertificateExpired)),
            FailureReason::CertificateRejected,
        ),
        (
            tls(Error::AlertReceived(AlertDescription::HandshakeFailure)),
            FailureReason::AlertReceived,
        ),
        (
            tls(Error::InvalidMessage(InvalidMessage::InvalidContentType)),
            FailureReason::InvalidMessage,
        ),
        (
            tls(Error::PeerMisbehaved(
                PeerMisbehaved::MissingPskModesExtension,
            )),
            FailureReason::PeerMisbehaved,
        ),
        (
            tls(Error::NoCertificatesPresented),
            FailureReason::BadCertificate,
        ),
        (tls(Error::General("x".into())), FailureReason::Other),
        // Invalid data that is not a rustls error is plain I/O.
        (
            io::Error::new(io::ErrorKind::InvalidData, "garbage"),
            FailureReason::Io,
        ),
    ];
    for (error, expected) in table {
        assert_eq!(FailureReason::of_io(&error), expected, "{error:?}");
    }
}

#[test]
fn statuses_fall_into_five_classes() {
    for (status, class) in [
        (100, "1xx"),
        (101, "1xx"),
        (200, "2xx"),
        (308, "3xx"),
        (404, "4xx"),
        (421, "4xx"),
        (502, "5xx"),
        (599, "5xx"),
        (999, "5xx"),
    ] {
        assert_eq!(
            STATUS_CLASSES[status_class_index(status)],
            class,
            "{status}"
        );
    }
}

#[test]
fn steps_index_their_labels() {
    for step in [
        Step::Exact,
        Step::Ancestor,
        Step::Master,
        Step::Certdir,
        Step::Default,
    ] {
        assert_eq!(HANDSHAKE_STEPS[step_index(step)], step.as_str());
    }
    assert_eq!(HANDSHAKE_STEPS[ACME_CHALLENGE_INDEX], ACME_CHALLENGE_STEP);
}
