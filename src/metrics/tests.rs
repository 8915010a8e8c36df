use std::io;
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
            sample.metric.starts_with("sniwalk_") || sample.metric.starts_with("process_"),
            "{} has the prefix (or is a standard process metric)",
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
    let coded = |listener, class, code| [("listener", listener), ("class", class), ("code", code)];
    assert_eq!(get(requests, &coded("web", "2xx", "200")), Some(1.0));
    assert_eq!(get(requests, &coded("web", "4xx", "404")), Some(1.0));
    assert_eq!(
        get(requests, &[("listener", "web"), ("class", "2xx")]),
        None,
        "a class with a code seen has no code-less series"
    );
    assert_eq!(
        get(requests, &[("listener", "web"), ("class", "5xx")]),
        Some(0.0),
        "a class without any code seen shows at zero"
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
    let tunnels = "sniwalk_tunnels_active";
    assert_eq!(
        get(tunnels, &[("listener", "web"), ("kind", "websocket")]),
        Some(0.0)
    );
    assert_eq!(
        get(tunnels, &[("listener", "sip"), ("kind", "tls")]),
        Some(0.0)
    );
    assert!(
        !scrape
            .samples
            .iter()
            .any(|s| s.metric == tunnels && s.labels.get("listener") == Some("plain")),
        "no tunnels on http listeners"
    );
    let features = if cfg!(feature = "etcd") {
        "etcd"
    } else {
        "default"
    };
    assert_eq!(
        get(
            "sniwalk_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("features", features)
            ]
        ),
        Some(1.0)
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
fn requests_count_by_code_into_one_cell_each() {
    let counts = status_codes::StatusCounts::new("web");
    for status in [200, 200, 204, 599, 999, 100, 42, 1000] {
        counts.count(status);
    }
    assert_eq!(counts.get(200), 2);
    assert_eq!(counts.get(204), 1);
    assert_eq!(counts.get(201), 0);
    assert_eq!(counts.get(999), 1);
    assert_eq!(counts.get(100), 1);
    assert_eq!(counts.get(42), 2, "outside 100-999: one cell for all");

    let family = status_codes::StatusCodeFamily::default();
    let web = family.listener("web");
    assert!(Arc::ptr_eq(&web, &family.listener("web")), "made once");
    for status in [200, 301, 301, 502, 600, 42] {
        web.count(status);
    }
    let mut registry = Registry::with_prefix("sniwalk");
    registry.register("http_requests", "test", family);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    let scrape = parse(&text);
    let get = |labels: &[(&str, &str)]| value(&scrape, "sniwalk_http_requests_total", labels);
    let coded = |class, code| [("listener", "web"), ("class", class), ("code", code)];
    assert_eq!(get(&coded("2xx", "200")), Some(1.0));
    assert_eq!(get(&coded("3xx", "301")), Some(2.0));
    assert_eq!(get(&coded("5xx", "502")), Some(1.0));
    assert_eq!(get(&coded("5xx", "600")), Some(1.0), "600-999 are 5xx");
    assert_eq!(get(&coded("5xx", "other")), Some(1.0));
    assert_eq!(get(&[("listener", "web"), ("class", "1xx")]), Some(0.0));
    assert_eq!(get(&[("listener", "web"), ("class", "4xx")]), Some(0.0));
    assert_eq!(get(&[("listener", "web"), ("class", "2xx")]), None);
    assert_eq!(
        scrape.samples.len(),
        7,
        "five codes, two empty classes: {text}"
    );
}

#[test]
fn open_tunnels_are_counted_until_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&dir.path().join("web-certs"));
    let metrics = Metrics::new(&config);
    let web = metrics.listener(0, &config.listeners[0]);
    let sip = metrics.listener(1, &config.listeners[1]);
    let first = web.tunnel_opened();
    let second = web.tunnel_opened();
    let relay = sip.tunnel_opened();
    let active = |listener: &str, kind: &str| {
        value(
            &parse(&metrics.render_at(&snapshot(&config), T0)),
            "sniwalk_tunnels_active",
            &[("listener", listener), ("kind", kind)],
        )
    };
    assert_eq!(active("web", "websocket"), Some(2.0));
    assert_eq!(active("sip", "tls"), Some(1.0));
    drop(first);
    drop(relay);
    assert_eq!(active("web", "websocket"), Some(1.0));
    assert_eq!(active("sip", "tls"), Some(0.0));
    drop(second);
    assert_eq!(active("web", "websocket"), Some(0.0));
}

#[test]
fn backend_times_are_rendered_from_the_states() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&dir.path().join("web-certs"));
    let snapshot = snapshot(&config);
    let metrics = Metrics::new(&config);
    // `sip` (a tls listener) has one backend.
    let sip = &snapshot.all_backends()[1];
    let state = &sip.states[0];
    state.record_connect_time(Duration::from_millis(2));
    state.record_connect_time(Duration::from_millis(40));
    // Recorded on the state, but a tls listener's backends only connect.
    state.record_response_time(Duration::from_millis(1));
    let scrape = parse(&metrics.render_at(&snapshot, T0));
    let labels = [("listener", "sip"), ("backend", "127.0.0.1:5060")];
    let connect = "sniwalk_backend_connect_duration_seconds";
    assert_eq!(value(&scrape, connect, &labels), Some(2.0));
    let sum = value(&scrape, &format!("{connect}_sum"), &labels).expect("sum");
    assert!((sum - 0.042).abs() < 1e-9, "sum {sum}");
    assert_eq!(
        value(
            &scrape,
            "sniwalk_backend_response_duration_seconds",
            &labels
        ),
        None
    );
}

#[test]
fn process_stat_is_read_after_the_command_name() {
    // `comm` with a space and a parenthesis; utime 150, stime 50 and
    // starttime 1234 ticks.
    let line = "4242 (a b) c) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 50 0 0 20 0 9 0 \
                1234 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
    let stat = process::parse_stat(line).expect("parses");
    assert_eq!(stat.cpu_seconds, 2.0);
    assert_eq!(stat.started_after_boot, 12.34);
    for broken in [
        "",
        "4242 (sniwalk",
        "4242 (sniwalk) S 1 2 3",
        "4242 (sniwalk) S 1 4242 4242 0 -1 4194560 1000 0 0 0 x 50 0 0 20 0 9 0 1234",
        "4242 (sniwalk) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 50 0 0 20 0 9 0 -5",
    ] {
        assert_eq!(process::parse_stat(broken), None, "{broken:?}");
    }
}

#[test]
fn process_memory_is_read_from_vm_lines_in_kib() {
    let status =
        "Name:\tsniwalk\nVmPeak:\t  9000 kB\nVmSize:\t  8192 kB\nVmRSS:\t   1024 kB\nThreads:\t3\n";
    let memory = process::parse_status(status);
    assert_eq!(memory.resident_bytes, Some(1024.0 * 1024.0));
    assert_eq!(memory.virtual_bytes, Some(8192.0 * 1024.0));
    for broken in [
        "",
        "VmRSS: many kB\nVmSize: 12 MB\n",
        "VmRSS:\nVmSize: 12 kB trailing\n",
        "VmRSS -> 12 kB",
    ] {
        assert_eq!(
            process::parse_status(broken),
            process::Memory::default(),
            "{broken:?}"
        );
    }
    let half = process::parse_status("VmRSS: 4 kB\nVmSize: x kB\n");
    assert_eq!(half.resident_bytes, Some(4096.0));
    assert_eq!(half.virtual_bytes, None);
}

#[test]
fn boot_time_is_the_btime_line() {
    let stat = "cpu  1 2 3 4\nintr 5 6\nbtime 1767225600\nprocesses 9\n";
    assert_eq!(process::parse_boot_time(stat), Some(T0 as f64));
    for broken in ["", "btime\n", "btime soon\n", "cpu 1 2\n", "xbtime 12\n"] {
        assert_eq!(process::parse_boot_time(broken), None, "{broken:?}");
    }
}

#[test]
fn process_metrics_are_unprefixed_and_sane() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&dir.path().join("web-certs"));
    let metrics = Metrics::new(&config);
    let text = metrics.render_at(&snapshot(&config), T0);
    let scrape = parse(&text);
    let get = |name: &str| value(&scrape, name, &[]).unwrap_or_else(|| panic!("{name}: {text}"));
    assert!(get("process_cpu_seconds_total") >= 0.0);
    assert!(get("process_resident_memory_bytes") > 0.0);
    assert!(get("process_virtual_memory_bytes") >= get("process_resident_memory_bytes"));
    assert!(get("process_open_fds") >= 3.0);
    assert!(get("process_max_fds") >= get("process_open_fds"));
    let now = crate::clock::unix_now() as f64;
    let started = get("process_start_time_seconds");
    assert!(started <= now + 1.0 && started > now - 3600.0, "{started}");
    assert!(text.contains("# TYPE process_cpu_seconds counter"));
    assert!(text.contains("# UNIT process_resident_memory_bytes bytes"));
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
