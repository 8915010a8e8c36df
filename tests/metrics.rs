//! Metrics end to end: real handshakes (good and bad), requests and backend
//! failures through a running proxy, then the exposition that
//! `Metrics::render` gives, parsed with a real Prometheus text parser.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::backends::{HttpBackend, closed_port};
use common::scrape::{parse, value};
use common::{TestProxy, cert, client_config, connect, get, within};
use prometheus_parse::Scrape;
use rustls::pki_types::ServerName;
use sniwalk::config::Config;
use sniwalk::snapshot::{DefaultPolicy, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one scrape must show (`name`, labels, value).
type Expected<'a> = Vec<(&'a str, Vec<(&'a str, &'a str)>, f64)>;

/// Renders until every expectation holds (connection tasks end, and
/// response bodies are dropped, a moment after the client is done), or
/// panics after 10 s with what differs.
async fn eventually(
    metrics: &sniwalk::metrics::Metrics,
    snapshot: &Snapshot,
    expected: &Expected<'_>,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics.render(snapshot);
        let scrape = parse(&text);
        let wrong: Vec<String> = expected
            .iter()
            .filter_map(|(name, labels, want)| {
                let got = value(&scrape, name, labels);
                (got != Some(*want)).then(|| format!("{name}{labels:?}: {got:?}, want {want}"))
            })
            .collect();
        if wrong.is_empty() {
            return scrape;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "metrics did not move as expected:\n{}\n\n{text}",
                wrong.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TLS client that offers only ALPN `protocol`: the handshake must fail.
async fn handshake_with_alpn(addr: SocketAddr, protocol: &[u8]) {
    let connector = tokio_rustls::TlsConnector::from(client_config(&[protocol]));
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    let name = ServerName::try_from("app.example.com").expect("name");
    let result = within(
        Duration::from_secs(10),
        "handshake",
        connector.connect(name, tcp),
    )
    .await;
    assert!(result.is_err(), "no ALPN in common: the handshake fails");
}

#[tokio::test]
async fn handshakes_requests_and_backend_errors_are_counted() {
    within(Duration::from_secs(60), "test", async {
        let backend = HttpBackend::start().await;
        let down = closed_port().await;
        let sip_down = closed_port().await;
        let app = cert(&["app.example.com"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = format!(
            "master_domain: example.com\nstate_dir: state\n\
             domains:\n  example.com: {{}}\n  app.example.com:\n    certificate_pem: |\n{}\
             listeners:\n\
             \x20 - name: web\n    kind: https\n    bind: 127.0.0.1:1\n    access_log: false\n    routes:\n\
             \x20     - {{ host: \"app.example.com\", backend: \"{}\" }}\n\
             \x20     - {{ host: \"down.example.com\", backend: \"http://{down}\" }}\n\
             \x20 - name: sip\n    kind: tls\n    bind: 127.0.0.1:2\n    backend: \"{sip_down}\"\n\
             \x20 - name: plain\n    kind: http\n    bind: 127.0.0.1:3\n",
            app.yaml_block(6),
            backend.url(),
        );
        let (proxy, reload) = TestProxy::start_with_metrics(dir.path(), &yaml).await;
        let metrics = proxy.metrics.clone().expect("metrics");
        let (web, sip, plain) = (proxy.addrs[0], proxy.addrs[1], proxy.addrs[2]);

        // Handshakes that work: an exact match, and two names without a
        // certificate on their chain (the default serves).
        assert_eq!(get(web, "app.example.com", "/").await.status, 200);
        assert_eq!(get(web, "down.example.com", "/").await.status, 502);
        assert_eq!(get(web, "other.example.com", "/").await.status, 404);

        // Handshakes that fail: a client that goes away, plain HTTP on the
        // TLS port, no ALPN protocol in common.
        drop(TcpStream::connect(web).await.expect("connect"));
        let mut garbage = TcpStream::connect(web).await.expect("connect");
        garbage
            .write_all(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
            .await
            .expect("write");
        let mut ignored = Vec::new();
        let _ = within(
            Duration::from_secs(10),
            "server closes",
            garbage.read_to_end(&mut ignored),
        )
        .await;
        handshake_with_alpn(web, b"not-a-protocol/1").await;

        // A tls listener whose backend refuses: the handshake counts, the
        // client is closed, the backend error counts.
        let mut tunnel = connect(sip, Some("app.example.com"), &[]).await;
        let mut rest = Vec::new();
        let _ = within(
            Duration::from_secs(10),
            "tunnel closed",
            tunnel.read_to_end(&mut rest),
        )
        .await;
        drop(tunnel);

        // A plain-HTTP request: redirected.
        let mut http = TcpStream::connect(plain).await.expect("connect");
        let response = common::raw_exchange(
            &mut http,
            "GET /x HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(response.status, 308);
        drop(http);

        let config = Config::load(&dir.path().join("proxy.yaml")).expect("config");
        let snapshot = Snapshot::build(&config, None, DefaultPolicy::InMemory, sniwalk::unix_now())
            .expect("snapshot");
        let hs = "sniwalk_tls_handshakes_total";
        let fail = "sniwalk_tls_handshake_failures_total";
        let requests = "sniwalk_http_requests_total";
        let errors = "sniwalk_backend_errors_total";
        let down_label = down.to_string();
        let sip_down_label = sip_down.to_string();
        let expected: Expected = vec![
            (hs, vec![("listener", "web"), ("outcome", "ok"), ("step", "exact")], 1.0),
            (hs, vec![("listener", "web"), ("outcome", "ok"), ("step", "default")], 2.0),
            (hs, vec![("listener", "web"), ("outcome", "ok"), ("step", "ancestor")], 0.0),
            (hs, vec![("listener", "web"), ("outcome", "failed"), ("step", "none")], 3.0),
            (hs, vec![("listener", "sip"), ("outcome", "ok"), ("step", "exact")], 1.0),
            (fail, vec![("listener", "web"), ("reason", "eof")], 1.0),
            (fail, vec![("listener", "web"), ("reason", "invalid_message")], 1.0),
            (fail, vec![("listener", "web"), ("reason", "no_application_protocol")], 1.0),
            (fail, vec![("listener", "web"), ("reason", "timeout")], 0.0),
            (requests, vec![("listener", "web"), ("class", "2xx"), ("code", "200")], 1.0),
            (requests, vec![("listener", "web"), ("class", "4xx"), ("code", "404")], 1.0),
            (requests, vec![("listener", "web"), ("class", "5xx"), ("code", "502")], 1.0),
            (requests, vec![("listener", "web"), ("class", "3xx")], 0.0),
            (requests, vec![("listener", "plain"), ("class", "3xx"), ("code", "308")], 1.0),
            ("sniwalk_http_request_duration_seconds", vec![("listener", "web")], 3.0),
            ("sniwalk_http_request_duration_seconds_count", vec![("listener", "web")], 3.0),
            ("sniwalk_http_request_duration_seconds_count", vec![("listener", "plain")], 1.0),
            (errors, vec![("backend", &down_label), ("kind", "connect")], 1.0),
            (errors, vec![("backend", &sip_down_label), ("kind", "connect")], 1.0),
            ("sniwalk_connections_total", vec![("listener", "web")], 6.0),
            ("sniwalk_connections_total", vec![("listener", "sip")], 1.0),
            ("sniwalk_connections_total", vec![("listener", "plain")], 1.0),
            ("sniwalk_connections_active", vec![("listener", "web")], 0.0),
            ("sniwalk_connections_active", vec![("listener", "sip")], 0.0),
            ("sniwalk_connections_active", vec![("listener", "plain")], 0.0),
            ("sniwalk_reloads_total", vec![("result", "failed")], 0.0),
            ("sniwalk_acme_orders_total", vec![("result", "issued")], 0.0),
        ];
        let scrape = eventually(&metrics, &snapshot, &expected).await;
        for sample in &scrape.samples {
            assert!(
                sample.metric.starts_with("sniwalk_") || sample.metric.starts_with("process_"),
                "{}",
                sample.metric
            );
        }
        let not_after = sniwalk::pem::parse_certificate_pem(&app.pem)
            .expect("parses")
            .leaf
            .not_after;
        assert_eq!(
            value(
                &scrape,
                "sniwalk_certificate_not_after_seconds",
                &[("place", "domain"), ("name", "app.example.com")]
            ),
            Some(not_after as f64)
        );
        assert_eq!(
            value(
                &scrape,
                "sniwalk_certificate_expiry_state",
                &[("place", "domain"), ("name", "app.example.com")]
            ),
            Some(0.0)
        );

        // An open connection is counted while it lasts.
        let open = connect(web, Some("app.example.com"), &[b"http/1.1"]).await;
        let mut expected_open: Expected = vec![(
            "sniwalk_connections_active",
            vec![("listener", "web")],
            1.0,
        )];
        eventually(&metrics, &snapshot, &expected_open).await;
        drop(open);
        expected_open[0].2 = 0.0;
        eventually(&metrics, &snapshot, &expected_open).await;

        // The reload task counts into the same metrics: a broken
        // configuration file fails the reload, the fixed one passes. (The
        // file watcher may add reloads of its own: counts only grow.)
        let reloads = |result: &str| {
            value(
                &parse(&metrics.render(&snapshot)),
                "sniwalk_reloads_total",
                &[("result", result)],
            )
            .expect("reload series")
        };
        let ok_before = reloads("ok");
        assert_eq!(reloads("failed"), 0.0);
        std::fs::write(dir.path().join("proxy.yaml"), "master_domain: [").expect("break");
        reload.send(sniwalk::reload::Reload::All);
        within(Duration::from_secs(10), "a reload counted failed", async {
            while reloads("failed") < 1.0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        std::fs::write(dir.path().join("proxy.yaml"), &yaml).expect("fix");
        reload.send(sniwalk::reload::Reload::All);
        within(Duration::from_secs(10), "a reload counted ok", async {
            while reloads("ok") <= ok_before {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;

        proxy.stop().await;
    })
    .await;
}
