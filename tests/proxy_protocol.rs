//! `accept_proxy_protocol`: sniwalk behind a real HAProxy (Debian's) that
//! sends PROXY v1 (`send-proxy`) and v2 (`send-proxy-v2`) headers, on
//! `https`, `tls` and `http` listeners; and raw sockets that send no
//! header, a header from outside `from`, malformed headers, or nothing.
//!
//! The test client binds 127.0.0.2 while HAProxy connects from 127.0.0.1
//! (the only address in `from`), so what sniwalk reports tells the client
//! from the load balancer. Log lines are read from a subscriber that
//! captures this test binary's logs.

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::backends::{HttpBackend, TcpEcho};
use common::haproxy::{HaProxy, Route};
use common::scrape::{parse, value};
use common::{TestProxy, cert, client_config, proxy_yaml, within};
use rustls::pki_types::ServerName;
use sniwalk::config::Config;
use sniwalk::snapshot::{DefaultPolicy, Snapshot};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The test client's address: not the load balancer's.
const CLIENT_IP: &str = "127.0.0.2";
/// The load balancer's address, the one in `from`.
const BALANCER_IP: &str = "127.0.0.1";

// ---- log capture -------------------------------------------------------------

/// Everything sniwalk logged in this test binary (all tests share it; each
/// looks for its own peer's port).
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter("sniwalk=debug")
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .init();
        logs
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits (up to 10 s) for a log line holding every one of `needles`;
/// returns it.
async fn logged(needles: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = {
            let logs = captured().lock().unwrap_or_else(|p| p.into_inner());
            String::from_utf8_lossy(&logs).into_owned()
        };
        if let Some(line) = text
            .lines()
            .find(|line| needles.iter().all(|n| line.contains(n)))
        {
            return line.to_string();
        }
        if tokio::time::Instant::now() > deadline {
            let mut out = std::io::stderr();
            let _ = writeln!(out, "captured logs:\n{text}");
            panic!("no log line with {needles:?} within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `access_log:` of a listener writing text lines to `dir/access.log`.
fn access_log_in(dir: &std::path::Path) -> String {
    format!(
        "    access_log: {{ format: text, file: \"{}\" }}\n",
        dir.join("access.log").display()
    )
}

/// Waits (up to 10 s) for a line of `dir/access.log` with every one of
/// `needles`.
async fn access_logged(dir: &std::path::Path, needles: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no access log line with {needles:?} within 10 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- clients -----------------------------------------------------------------

/// A TCP connection to `to` from `ip` (a loopback address).
async fn tcp_from(ip: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(ip.parse().expect("ip"), 0))
        .expect("bind the client address");
    within(Duration::from_secs(10), "connect", socket.connect(to))
        .await
        .expect("connect")
}

/// A TLS handshake with SNI `sni` over `tcp` (which may already carry a
/// PROXY header).
async fn tls_over<S>(tcp: S, sni: &str) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connector = tokio_rustls::TlsConnector::from(client_config(&[b"http/1.1"]));
    let name = ServerName::try_from(sni.to_string()).expect("SNI");
    within(
        Duration::from_secs(10),
        "TLS handshake",
        connector.connect(name, tcp),
    )
    .await
}

/// Sends a GET for `/` with `host` and returns the status and body.
async fn get_over<S>(stream: &mut S, host: &str) -> (u16, String)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!("GET /who HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut response = Vec::new();
    within(
        Duration::from_secs(10),
        "response",
        stream.read_to_end(&mut response),
    )
    .await
    .ok();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The `X-Forwarded-For` values the echo backend received.
fn forwarded_for(echo_body: &str) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(echo_body)
        .unwrap_or_else(|e| panic!("echo answer is JSON ({e}): {echo_body}"));
    json["headers"]["x-forwarded-for"]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (up to 10 s) until the server closes `stream`; what it sent
/// before.
async fn closed_by_server(stream: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    within(
        Duration::from_secs(10),
        "the server closes the connection",
        stream.read_to_end(&mut rest),
    )
    .await
    .ok();
    rest
}

// ---- headers made by hand ----------------------------------------------------

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header: `command`, `family`, and `body` with its length (or the
/// `length` given).
fn v2_header(command: u8, family: u8, body: &[u8], length: Option<u16>) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(command);
    header.push(family);
    let length = length.unwrap_or(body.len() as u16);
    header.extend_from_slice(&length.to_be_bytes());
    header.extend_from_slice(body);
    header
}

/// TCP over IPv4 from 192.0.2.55:40000 to 198.51.100.2:443.
const V4_BODY: [u8; 12] = [192, 0, 2, 55, 198, 51, 100, 2, 0x9c, 0x40, 0x01, 0xbb];

// ---- tests -------------------------------------------------------------------

fn https_listener(name: &str, backend: &HttpBackend, extra: &str) -> String {
    format!(
        "  - name: {name}\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      \
         - {{ host: \"*\", backend: \"{}\" }}\n{extra}",
        backend.url()
    )
}

#[tokio::test]
async fn https_behind_haproxy_v1_and_v2_forwards_the_client_address() {
    captured();
    within(Duration::from_secs(60), "test", async {
        let backend = HttpBackend::start().await;
        let app = cert(&["app.example.com"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = format!(
            "master_domain: example.com\nstate_dir: state\ndomains:\n  example.com: {{}}\n  \
             app.example.com:\n    certificate_pem: |\n{}listeners:\n{}",
            app.yaml_block(6),
            https_listener(
                "web_lb",
                &backend,
                &format!(
                    "    accept_proxy_protocol: {{ from: [{BALANCER_IP}/32] }}\n{}",
                    access_log_in(dir.path())
                ),
            )
        );
        let proxy = TestProxy::start(dir.path(), &yaml).await;
        let haproxy = HaProxy::start(&[
            Route {
                target: proxy.addr(),
                options: "send-proxy",
            },
            Route {
                target: proxy.addr(),
                options: "send-proxy-v2",
            },
        ])
        .await;

        for (front, version) in haproxy.frontends.iter().zip(["v1", "v2"]) {
            let tcp = tcp_from(CLIENT_IP, *front).await;
            let client = tcp.local_addr().expect("client address");
            let mut tls = tls_over(tcp, "app.example.com")
                .await
                .unwrap_or_else(|e| panic!("{version}: handshake through haproxy: {e}"));
            let leaf = tls.get_ref().1.peer_certificates().expect("certificates")[0].clone();
            assert_eq!(
                sniwalk::pem::sha256_fingerprint(leaf.as_ref()),
                app.sha256,
                "{version}: the domain's certificate, chosen by the SNI that came through"
            );
            let (status, body) = get_over(&mut tls, "app.example.com").await;
            assert_eq!(status, 200, "{version}: {body}");
            assert_eq!(
                forwarded_for(&body),
                [CLIENT_IP],
                "{version}: the client HAProxy saw, not HAProxy"
            );
            // The access log names the client, port included.
            access_logged(
                dir.path(),
                &["listener=web_lb", &format!("peer={client}"), "status=200"],
            )
            .await;
        }
        drop(haproxy);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn tls_listener_behind_haproxy_sends_the_client_on_in_its_own_proxy_header() {
    captured();
    within(Duration::from_secs(60), "test", async {
        let echo = TcpEcho::start(true).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = format!(
            "  - name: sip_lb\n    kind: tls\n    bind: 127.0.0.1:1\n    backend: \"{}\"\n    \
             proxy_protocol: v2\n    accept_proxy_protocol: {{ versions: [v2], from: [\"{BALANCER_IP}\"] }}\n",
            echo.addr
        );
        let yaml = proxy_yaml("", &listener);
        let (proxy, _reload) = TestProxy::start_with_metrics(dir.path(), &yaml).await;
        let haproxy = HaProxy::start(&[
            Route {
                target: proxy.addr(),
                options: "send-proxy-v2",
            },
            Route {
                target: proxy.addr(),
                options: "send-proxy",
            },
        ])
        .await;

        let (v2_front, v1_front) = (haproxy.frontends[0], haproxy.frontends[1]);
        let tcp = tcp_from(CLIENT_IP, v2_front).await;
        let client = tcp.local_addr().expect("client address");
        let mut tls = tls_over(tcp, "sip.example.com")
            .await
            .expect("handshake through haproxy");
        let message = b"OPTIONS sip:alice@example.com SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        tls.write_all(message).await.expect("send");
        let mut echoed = vec![0u8; message.len()];
        within(Duration::from_secs(10), "echo", tls.read_exact(&mut echoed))
            .await
            .expect("echo");
        assert_eq!(&echoed, message);
        tls.shutdown().await.expect("half-close");
        let mut rest = Vec::new();
        let _ = within(Duration::from_secs(10), "end", tls.read_to_end(&mut rest)).await;
        let report = echo.next_report().await;
        assert_eq!(
            report.proxy.expect("a header").expect("a valid header"),
            (client, v2_front),
            "the backend's header names the client and the address it connected to \
             (HAProxy's frontend), not HAProxy's own connection"
        );
        assert_eq!(report.received, message, "nothing of the header reached the backend");

        // v1 from the same load balancer: not in `versions`.
        let tcp = tcp_from(CLIENT_IP, v1_front).await;
        assert!(
            tls_over(tcp, "sip.example.com").await.is_err(),
            "a v1 header is refused when versions is [v2]"
        );
        logged(&[
            "listener=sip_lb",
            "version_not_allowed",
            "does not list v1",
            "PROXY protocol header refused",
        ])
        .await;
        let metrics = proxy.metrics.clone().expect("metrics");
        let config = Config::load(&dir.path().join("proxy.yaml")).expect("config");
        let snapshot = Snapshot::build(&config, None, DefaultPolicy::InMemory, sniwalk::unix_now())
            .expect("snapshot");
        let labels = [("listener", "sip_lb"), ("reason", "version_not_allowed")];
        assert_eq!(
            value(
                &parse(&metrics.render(&snapshot)),
                "sniwalk_proxy_protocol_rejected_total",
                &labels
            ),
            Some(1.0)
        );
        drop(haproxy);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn http_listener_behind_haproxy_v1_serves_the_request_untouched() {
    captured();
    within(Duration::from_secs(60), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = format!(
            "  - name: plain_lb\n    kind: http\n    bind: 127.0.0.1:1\n    \
             accept_proxy_protocol: {{ versions: [v1], from: [{BALANCER_IP}/32] }}\n{}",
            access_log_in(dir.path())
        );
        let proxy = TestProxy::start(dir.path(), &proxy_yaml("", &listener)).await;
        let haproxy = HaProxy::start(&[Route {
            target: proxy.addr(),
            options: "send-proxy",
        }])
        .await;
        let mut tcp = tcp_from(CLIENT_IP, haproxy.frontends[0]).await;
        let client = tcp.local_addr().expect("client address");
        tcp.write_all(
            b"GET /a/b?c=d HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("send");
        let answer = String::from_utf8_lossy(&closed_by_server(&mut tcp).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
        assert!(
            answer.contains("location: https://www.example.com/a/b?c=d"),
            "the request line came through whole: {answer}"
        );
        access_logged(
            dir.path(),
            &["listener=plain_lb", &format!("peer={client}"), "status=308"],
        )
        .await;

        // A direct client outside `from` whose first bytes could begin
        // `PROXY `: looked at, not taken, then served whole.
        let mut tcp = tcp_from(CLIENT_IP, proxy.addr()).await;
        let direct = tcp.local_addr().expect("client address");
        tcp.write_all(b"PRO").await.expect("send");
        tokio::time::sleep(Duration::from_millis(50)).await;
        tcp.write_all(
            b"PFIND /form HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("send");
        let answer = String::from_utf8_lossy(&closed_by_server(&mut tcp).await).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 308") && answer.contains("https://www.example.com/form"),
            "{answer}"
        );
        access_logged(
            dir.path(),
            &[&format!("peer={direct}"), "method=PROPFIND", "path=/form"],
        )
        .await;
        drop(haproxy);
        proxy.stop().await;
    })
    .await;
}

/// One raw connection's bytes and the reason it must be refused with.
struct Refused {
    what: &'static str,
    from: &'static str,
    send: Vec<u8>,
    reason: &'static str,
}

#[tokio::test]
async fn headers_that_cannot_be_trusted_are_refused_logged_and_counted() {
    captured();
    within(Duration::from_secs(90), "test", async {
        let backend = HttpBackend::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = https_listener(
            "edge_lb",
            &backend,
            &format!(
                "    handshake_timeout: 1s\n    accept_proxy_protocol: {{ from: [{BALANCER_IP}/32] }}\n"
            ),
        );
        let yaml = proxy_yaml("", &listener);
        let (proxy, _reload) = TestProxy::start_with_metrics(dir.path(), &yaml).await;
        let addr = proxy.addr();

        let mut longer_than_107 = b"PROXY TCP4 192.0.2.55 198.51.100.2 40000 443".to_vec();
        longer_than_107.resize(120, b' ');
        let cases = vec![
            Refused {
                what: "a header from outside `from` (v1)",
                from: CLIENT_IP,
                send: b"PROXY TCP4 192.0.2.55 198.51.100.2 40000 443\r\n".to_vec(),
                reason: "untrusted",
            },
            Refused {
                what: "a header from outside `from` (v2)",
                from: CLIENT_IP,
                send: v2_header(0x21, 0x11, &V4_BODY, None),
                reason: "untrusted",
            },
            Refused {
                what: "v1 with a bad address",
                from: BALANCER_IP,
                send: b"PROXY TCP4 192.0.2.555 198.51.100.2 40000 443\r\n".to_vec(),
                reason: "malformed",
            },
            Refused {
                what: "v1 without CRLF within 107 bytes",
                from: BALANCER_IP,
                send: longer_than_107,
                reason: "malformed",
            },
            Refused {
                what: "v1 with IPv6 addresses under TCP4",
                from: BALANCER_IP,
                send: b"PROXY TCP4 2001:db8::1 2001:db8::2 40000 443\r\n".to_vec(),
                reason: "malformed",
            },
            Refused {
                what: "v2 with version 1",
                from: BALANCER_IP,
                send: {
                    let mut header = v2_header(0x21, 0x11, &V4_BODY, None);
                    header[12] = 0x11;
                    header
                },
                reason: "malformed",
            },
            Refused {
                what: "v2 announcing 65535 bytes",
                from: BALANCER_IP,
                send: v2_header(0x21, 0x11, &V4_BODY, Some(u16::MAX)),
                reason: "malformed",
            },
            Refused {
                what: "v2 truncated (12 bytes announced, 4 sent)",
                from: BALANCER_IP,
                send: v2_header(0x21, 0x11, &V4_BODY[..4], Some(12)),
                reason: "eof",
            },
            Refused {
                what: "v2 for UDP",
                from: BALANCER_IP,
                send: v2_header(0x21, 0x12, &V4_BODY, None),
                reason: "unsupported_transport",
            },
            Refused {
                what: "the load balancer sends nothing",
                from: BALANCER_IP,
                send: Vec::new(),
                reason: "timeout",
            },
        ];
        for case in &cases {
            let mut tcp = tcp_from(case.from, addr).await;
            let peer = tcp.local_addr().expect("local address");
            tcp.write_all(&case.send).await.expect("send");
            if case.reason == "eof" {
                tcp.shutdown().await.expect("half-close");
            }
            let answer = closed_by_server(&mut tcp).await;
            assert!(answer.is_empty(), "{}: nothing is answered", case.what);
            // One line per refusal, naming the TCP peer and the reason.
            logged(&[
                "listener=edge_lb",
                &format!("peer={peer}"),
                &format!("reason=\"{}\"", case.reason),
            ])
            .await;
        }

        // A load balancer's connection with a plain ClientHello (no
        // header): the handshake does not happen.
        let tcp = tcp_from(BALANCER_IP, addr).await;
        let peer = tcp.local_addr().expect("local address");
        assert!(
            tls_over(tcp, "example.com").await.is_err(),
            "no header from an address in `from`: closed"
        );
        let line = logged(&["listener=edge_lb", &format!("peer={peer}"), "reason=\"missing\""]).await;
        assert!(line.contains("send-proxy"), "says what to check: {line}");

        // Served: a direct client outside `from` without a header ...
        let tcp = tcp_from(CLIENT_IP, addr).await;
        let mut tls = tls_over(tcp, "example.com").await.expect("direct client");
        let (status, body) = get_over(&mut tls, "example.com").await;
        assert_eq!((status, forwarded_for(&body)), (200, vec![CLIENT_IP.to_string()]));
        // ... a v2 LOCAL (the balancer's own check): the TCP peer ...
        let mut tcp = tcp_from(BALANCER_IP, addr).await;
        tcp.write_all(&v2_header(0x20, 0x00, &[], None))
            .await
            .expect("send");
        let mut tls = tls_over(tcp, "example.com").await.expect("after LOCAL");
        let (status, body) = get_over(&mut tls, "example.com").await;
        assert_eq!((status, forwarded_for(&body)), (200, vec![BALANCER_IP.to_string()]));
        // ... and a v1 header split over segments, its CRLF in the middle
        // of a write: everything after it reaches rustls.
        let mut tcp = tcp_from(BALANCER_IP, addr).await;
        for part in [&b"PRO"[..], b"XY TCP4 192.0.2.55 198.51.100.2 40", b"000 443\r"] {
            tcp.write_all(part).await.expect("send");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        tcp.write_all(b"\n").await.expect("send");
        let mut tls = tls_over(tcp, "example.com").await.expect("after a split header");
        let (status, body) = get_over(&mut tls, "example.com").await;
        assert_eq!((status, forwarded_for(&body)), (200, vec!["192.0.2.55".to_string()]));

        let metrics = proxy.metrics.clone().expect("metrics");
        let config = Config::load(&dir.path().join("proxy.yaml")).expect("config");
        let snapshot = Snapshot::build(&config, None, DefaultPolicy::InMemory, sniwalk::unix_now())
            .expect("snapshot");
        let scrape = parse(&metrics.render(&snapshot));
        for (reason, count) in [
            ("untrusted", 2.0),
            ("malformed", 5.0),
            ("eof", 1.0),
            ("unsupported_transport", 1.0),
            ("timeout", 1.0),
            ("missing", 1.0),
            ("version_not_allowed", 0.0),
        ] {
            assert_eq!(
                value(
                    &scrape,
                    "sniwalk_proxy_protocol_rejected_total",
                    &[("listener", "edge_lb"), ("reason", reason)]
                ),
                Some(count),
                "{reason}"
            );
        }
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_turns_it_on_from_the_next_connection() {
    captured();
    within(Duration::from_secs(60), "test", async {
        let backend = HttpBackend::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let without = proxy_yaml("", &https_listener("reloaded_lb", &backend, ""));
        let (proxy, reload) = TestProxy::start_with_metrics(dir.path(), &without).await;
        let addr = proxy.addr();
        let header = b"PROXY TCP4 192.0.2.77 198.51.100.2 40000 443\r\n";

        // Without `accept_proxy_protocol` a header is just bytes before the
        // ClientHello: the handshake fails.
        let mut tcp = tcp_from(BALANCER_IP, addr).await;
        tcp.write_all(header).await.expect("send");
        assert!(tls_over(tcp, "example.com").await.is_err());

        let with = proxy_yaml(
            "",
            &https_listener(
                "reloaded_lb",
                &backend,
                &format!("    accept_proxy_protocol: {{ from: [{BALANCER_IP}/32] }}\n"),
            ),
        );
        std::fs::write(dir.path().join("proxy.yaml"), &with).expect("write");
        reload.send(sniwalk::reload::Reload::All);
        let served = within(Duration::from_secs(10), "the reload applies", async {
            loop {
                let mut tcp = tcp_from(BALANCER_IP, addr).await;
                tcp.write_all(header).await.expect("send");
                if let Ok(mut tls) = tls_over(tcp, "example.com").await {
                    break get_over(&mut tls, "example.com").await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert_eq!(
            (served.0, forwarded_for(&served.1)),
            (200, vec!["192.0.2.77".to_string()])
        );

        // Its refusals are counted, though the listener started without it.
        let mut tcp = tcp_from(CLIENT_IP, addr).await;
        tcp.write_all(header).await.expect("send");
        closed_by_server(&mut tcp).await;
        let metrics = proxy.metrics.clone().expect("metrics");
        let config = Config::load(&dir.path().join("proxy.yaml")).expect("config");
        let snapshot = Snapshot::build(&config, None, DefaultPolicy::InMemory, sniwalk::unix_now())
            .expect("snapshot");
        let labels = [("listener", "reloaded_lb"), ("reason", "untrusted")];
        within(Duration::from_secs(10), "the refusal counted", async {
            while value(
                &parse(&metrics.render(&snapshot)),
                "sniwalk_proxy_protocol_rejected_total",
                &labels,
            ) != Some(1.0)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        proxy.stop().await;
    })
    .await;
}
