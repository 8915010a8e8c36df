//! Monitoring end to end (README: Metrics): a real proxy with an `https`
//! listener routing to a real backend, a `tls` listener relaying to a real
//! TCP backend, an `http` listener and the admin API; real requests, a
//! WebSocket and a `tls` tunnel; then `GET /metrics` on the admin API,
//! parsed with a real Prometheus parser. It checks the `code` label,
//! `sniwalk_build_info`, the process metrics, the backend response and
//! connect times and the open tunnels, and that every metric the shipped
//! alert rules (`deploy/prometheus/sniwalk-rules.yml`) and Grafana
//! dashboard (`deploy/grafana/sniwalk-dashboard.json`) query is one that
//! sniwalk exports.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::backends::{HttpBackend, TcpEcho, closed_port};
use common::scrape::{parse, value};
use common::{admin_call, cert, connect, get, within, ws};
use prometheus_parse::Scrape;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/sniwalk-rules.yml"
);
const RULE_TESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/sniwalk-rules.test.yml"
);
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/sniwalk-dashboard.json"
);
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

/// The exposition on the admin API now, as text and parsed.
async fn scrape(admin: SocketAddr) -> (String, Scrape) {
    let (status, text) = admin_call(admin, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{text}");
    let parsed = parse(&text);
    (text, parsed)
}

/// Scrapes until `sample` with exactly `labels` has the value `want`
/// (connection tasks end a moment after the client is done), or panics
/// after 10 s with the last exposition.
async fn until(admin: SocketAddr, name: &str, labels: &[(&str, &str)], want: f64) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (text, parsed) = scrape(admin).await;
        let got = value(&parsed, name, labels);
        if got == Some(want) {
            return parsed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}{labels:?} is {got:?}, want {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The family names a scrape has samples of, as a query would name them
/// without its suffix (see [`family_of`]).
fn exported_families(scrape: &Scrape) -> BTreeSet<String> {
    scrape
        .samples
        .iter()
        .map(|s| family_of(&s.metric).to_string())
        .collect()
}

/// `name` without the suffix a counter or histogram sample adds to its
/// family's name.
fn family_of(name: &str) -> &str {
    ["_total", "_bucket", "_sum", "_count", "_created"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// The metric names a PromQL expression refers to, read loosely: every
/// identifier that starts with `sniwalk_` or `process_` (label names and
/// values never do).
fn metrics_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("sniwalk_") || word.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// Every string under an `expr` key in `json` (the panels' queries), and
/// under `query` or `definition` in its template variables.
fn dashboard_queries(json: &serde_json::Value, out: &mut Vec<String>) {
    match json {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query" | "definition", serde_json::Value::String(text)) => {
                        out.push(text.clone());
                    }
                    _ => dashboard_queries(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                dashboard_queries(item, out);
            }
        }
        _ => {}
    }
}

/// The alerts of the rules file: (name, expr).
fn alert_rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(RULES).expect("the rules file");
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).expect("the rules file is YAML");
    let mut alerts = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("an alert name");
            let expr = rule["expr"].as_str().expect("an expr");
            alerts.push((name.to_string(), expr.to_string()));
        }
    }
    alerts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_prometheus_conventions_and_cover_rules_and_dashboard() {
    within(Duration::from_secs(90), "test", async {
        common::install_provider();
        let backend = HttpBackend::start().await;
        let echo = TcpEcho::start(false).await;
        let down = closed_port().await;
        let app = cert(&["app.example.com"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = format!(
            "master_domain: example.com\nstate_dir: state\nadmin: {{ bind: 127.0.0.1:1 }}\n\
             domains:\n  example.com: {{}}\n  app.example.com:\n    certificate_pem: |\n{}\
             listeners:\n\
             \x20 - name: web\n    kind: https\n    bind: 127.0.0.1:1\n    access_log: false\n    routes:\n\
             \x20     - {{ host: \"app.example.com\", backend: \"{}\" }}\n\
             \x20     - {{ host: \"down.example.com\", backend: \"http://{down}\" }}\n\
             \x20 - name: sip\n    kind: tls\n    bind: 127.0.0.1:2\n    backend: \"{}\"\n\
             \x20 - name: plain\n    kind: http\n    bind: 127.0.0.1:3\n",
            app.yaml_block(6),
            backend.url(),
            echo.addr,
        );
        std::fs::write(dir.path().join("proxy.yaml"), &yaml).expect("config");
        let config = sniwalk::config::Config::load(&dir.path().join("proxy.yaml")).expect("valid");
        let mut sockets = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..3 {
            let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addrs.push(socket.local_addr().expect("addr"));
            sockets.push(socket);
        }
        let (web, sip, plain) = (addrs[0], addrs[1], addrs[2]);
        let admin_socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = admin_socket.local_addr().expect("addr");
        let (mut options, _reloads) = sniwalk::RunOptions::new();
        options.admin_socket = Some(admin_socket);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sniwalk::run_with(config, sockets, options, async move {
            let _ = stopped.await;
        }));

        // Requests: 200 from the backend, 502 from a backend that refuses,
        // 308 from the http listener.
        assert_eq!(get(web, "app.example.com", "/").await.status, 200);
        assert_eq!(get(web, "down.example.com", "/").await.status, 502);
        let mut http = TcpStream::connect(plain).await.expect("connect");
        let redirect = common::raw_exchange(
            &mut http,
            "GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(redirect.status, 308);

        // A WebSocket: one tunnel open while it lasts, none after.
        let tunnels = "sniwalk_tunnels_active";
        let websocket = [("listener", "web"), ("kind", "websocket")];
        let relay = [("listener", "sip"), ("kind", "tls")];
        until(admin, tunnels, &websocket, 0.0).await;
        let mut socket = connect(web, Some("app.example.com"), &[b"http/1.1"]).await;
        within(
            Duration::from_secs(10),
            "WebSocket handshake",
            ws::client_handshake(&mut socket, "app.example.com", "/ws"),
        )
        .await;
        ws::write_frame(&mut socket, ws::TEXT, b"hello", Some([1, 2, 3, 4]))
            .await
            .expect("send");
        let (_, echoed) = within(Duration::from_secs(10), "echo", ws::read_frame(&mut socket))
            .await
            .expect("echo");
        assert_eq!(echoed, b"hello");
        until(admin, tunnels, &websocket, 1.0).await;
        ws::write_frame(&mut socket, ws::CLOSE, b"", Some([1, 2, 3, 4]))
            .await
            .expect("close");
        let mut rest = Vec::new();
        let _ = within(
            Duration::from_secs(10),
            "WebSocket closed",
            socket.read_to_end(&mut rest),
        )
        .await;
        drop(socket);
        until(admin, tunnels, &websocket, 0.0).await;

        // A tls tunnel to the echo: the same.
        let mut tunnel = connect(sip, Some("app.example.com"), &[]).await;
        let message = b"OPTIONS sip:a@example.com SIP/2.0\r\n\r\n";
        tunnel.write_all(message).await.expect("send");
        let mut echoed = vec![0u8; message.len()];
        within(Duration::from_secs(10), "echo", tunnel.read_exact(&mut echoed))
            .await
            .expect("echo");
        assert_eq!(echoed, message);
        until(admin, tunnels, &relay, 1.0).await;
        tunnel.shutdown().await.expect("close");
        let mut rest = Vec::new();
        let _ = within(
            Duration::from_secs(10),
            "tunnel closed",
            tunnel.read_to_end(&mut rest),
        )
        .await;
        drop(tunnel);
        let scrape = until(admin, tunnels, &relay, 0.0).await;
        let get_value = |name: &str, labels: &[(&str, &str)]| value(&scrape, name, labels);

        // The `code` label, with the class beside it.
        let requests = "sniwalk_http_requests_total";
        let coded = |listener, class, code| [("listener", listener), ("class", class), ("code", code)];
        assert_eq!(get_value(requests, &coded("web", "2xx", "200")), Some(1.0));
        assert_eq!(get_value(requests, &coded("web", "5xx", "502")), Some(1.0));
        assert_eq!(get_value(requests, &coded("plain", "3xx", "308")), Some(1.0));
        assert_eq!(
            get_value(requests, &[("listener", "plain"), ("class", "2xx")]),
            Some(0.0),
            "a class without requests yet shows at zero"
        );

        // Build info.
        let features = if cfg!(feature = "etcd") { "etcd" } else { "default" };
        assert_eq!(
            get_value(
                "sniwalk_build_info",
                &[("version", env!("CARGO_PKG_VERSION")), ("features", features)]
            ),
            Some(1.0)
        );

        // Process metrics of this process, under their standard names.
        let process = |name: &str| {
            get_value(name, &[]).unwrap_or_else(|| panic!("{name} is exported"))
        };
        assert!(process("process_resident_memory_bytes") > 0.0);
        assert!(process("process_virtual_memory_bytes") > 0.0);
        assert!(process("process_cpu_seconds_total") > 0.0);
        assert!(process("process_open_fds") >= 3.0);
        assert!(process("process_max_fds") >= process("process_open_fds"));
        let now = sniwalk::unix_now() as f64;
        let started = process("process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "started {started}, now {now}"
        );

        // Backend times: the GET and the WebSocket's 101 came from the
        // backend; the tls listener connected to the echo once.
        let backend_labels = [("listener", "web"), ("backend", &*backend.addr.to_string())];
        assert_eq!(
            get_value("sniwalk_backend_response_duration_seconds_count", &backend_labels),
            Some(2.0)
        );
        let echo_labels = [("listener", "sip"), ("backend", &*echo.addr.to_string())];
        assert_eq!(
            get_value("sniwalk_backend_connect_duration_seconds_count", &echo_labels),
            Some(1.0)
        );
        assert!(
            get_value("sniwalk_tunnel_bytes_total", &[("listener", "sip"), ("direction", "up")])
                .is_some_and(|up| up >= message.len() as f64)
        );

        // Every metric the rules and the dashboard query is exported. The
        // rules' unit tests must feed the same names.
        let exported = exported_families(&scrape);
        let mut missing = Vec::new();
        let mut check = |origin: &str, expr: &str| {
            let names = metrics_in(expr);
            for name in names {
                if !exported.contains(family_of(&name)) {
                    missing.push(format!("{origin}: {name}"));
                }
            }
        };
        let alerts = alert_rules();
        assert!(alerts.len() >= 9, "{alerts:?}");
        for (alert, expr) in &alerts {
            assert!(!metrics_in(expr).is_empty(), "{alert} queries no sniwalk metric");
            check(alert, expr);
        }
        let tests = std::fs::read_to_string(RULE_TESTS).expect("the rule tests");
        let tests: serde_yaml::Value = serde_yaml::from_str(&tests).expect("YAML");
        for test in tests["tests"].as_sequence().expect("tests") {
            for series in test["input_series"].as_sequence().expect("input_series") {
                check("rule tests", series["series"].as_str().expect("series"));
            }
        }
        let dashboard = std::fs::read_to_string(DASHBOARD).expect("the dashboard");
        let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("JSON");
        let mut queries = Vec::new();
        dashboard_queries(&dashboard, &mut queries);
        assert!(queries.len() > 20, "{queries:?}");
        for query in &queries {
            check("dashboard", query);
        }
        assert!(missing.is_empty(), "not exported:\n{}", missing.join("\n"));

        // The dashboard imports: a datasource input, a uid, the variables.
        assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus");
        assert!(dashboard["uid"].as_str().is_some_and(|uid| !uid.is_empty()));
        let variables: Vec<&str> = dashboard["templating"]["list"]
            .as_array()
            .expect("variables")
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(variables, ["instance", "listener"]);

        // Each alert is described in the README.
        let readme = std::fs::read_to_string(README).expect("README");
        for (alert, _) in &alerts {
            assert!(readme.contains(alert.as_str()), "README does not describe {alert}");
        }

        let _ = shutdown.send(());
        within(Duration::from_secs(20), "the proxy stopping", task)
            .await
            .expect("no panic")
            .expect("ran without error");
    })
    .await;
}

#[test]
fn metric_names_are_read_from_promql() {
    let expr = r#"sum by (instance, listener) (rate(sniwalk_tls_handshake_failures_total{reason!~"eof|timeout"}[5m]))
        / sum(rate(sniwalk_http_request_duration_seconds_bucket[5m])) > 0.05
        and process_open_fds{instance=~"$instance"} and label_values(sniwalk_build_info, instance)"#;
    assert_eq!(
        metrics_in(expr),
        [
            "sniwalk_tls_handshake_failures_total",
            "sniwalk_http_request_duration_seconds_bucket",
            "process_open_fds",
            "sniwalk_build_info"
        ]
    );
    assert_eq!(
        family_of("sniwalk_http_request_duration_seconds_bucket"),
        "sniwalk_http_request_duration_seconds"
    );
    assert_eq!(
        family_of("process_cpu_seconds_total"),
        "process_cpu_seconds"
    );
    assert_eq!(family_of("sniwalk_storage_up"), "sniwalk_storage_up");
}
