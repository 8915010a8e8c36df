//! What outside testing found (issue 11), each over real sockets: an h2c
//! upgrade never becomes a tunnel, a client that reads nothing cannot hold
//! backend connections (HTTP/2 with a shut window, HTTP/1.1 that stops
//! reading), CONNECT and a doubled Host are refused, and `tls` tunnels
//! count their bytes however they end.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::backends::{PatternBody, TcpEcho, TestBody, full};
use common::{TestProxy, connect, proxy_yaml, within};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

// ---- the access log ---------------------------------------------------

/// `access_log:` of a listener writing text lines to `dir/access.log`.
fn access_log_in(dir: &std::path::Path) -> String {
    format!(
        "    access_log: {{ format: text, file: \"{}\" }}\n",
        dir.join("access.log").display()
    )
}

/// Waits (up to 10 s) for a line of `dir/access.log` with every one of
/// `needles`.
async fn access_line(dir: &std::path::Path, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .rfind(|line| needles.iter().all(|n| line.contains(n)))
        {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no access log line with {needles:?} within 10 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- metrics -----------------------------------------------------------

/// A sample of the proxy's metrics (counters and gauges), 0 if absent.
fn metric(proxy: &TestProxy, name: &str, labels: &[(&str, &str)]) -> f64 {
    let metrics = proxy.metrics.as_ref().expect("started with metrics");
    let config =
        sniwalk::config::Config::load(&proxy.dir.join("proxy.yaml")).expect("config loads");
    let snapshot = sniwalk::snapshot::Snapshot::build(
        &config,
        None,
        sniwalk::snapshot::DefaultPolicy::InMemory,
        sniwalk::unix_now(),
    )
    .expect("snapshot");
    let scrape = common::scrape::parse(&metrics.render(&snapshot));
    common::scrape::value(&scrape, name, labels).unwrap_or(0.0)
}

/// Waits (up to `limit`) until `check` holds.
async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- raw HTTP/1.1 ------------------------------------------------------

/// A response read off a raw stream: status, head, body (by
/// Content-Length).
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Reads one response with a Content-Length body (10 s at most).
async fn read_answer<S: AsyncRead + Unpin>(stream: &mut S) -> Answer {
    within(Duration::from_secs(10), "a response", async {
        let mut bytes = Vec::new();
        let mut byte = [0u8; 1];
        while !bytes.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.expect("read the head");
            assert!(
                n > 0,
                "closed before a response head: {:?}",
                String::from_utf8_lossy(&bytes)
            );
            bytes.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&bytes).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.expect("read the body");
        Answer {
            status,
            head,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    })
    .await
}

/// An HTTP/1.1 backend that says yes to any upgrade with `101 Upgrade:
/// h2c`, as an h2c-capable server would (then records every byte it gets
/// on the tunnel); other requests get the request head it saw as body.
/// Every byte received is kept.
struct UpgradingBackend {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

impl UpgradingBackend {
    async fn start() -> UpgradingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = received.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut pending = Vec::new();
                    let mut upgraded = false;
                    loop {
                        let Ok(n) = tcp.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.lock().expect("lock").extend_from_slice(&buf[..n]);
                        if upgraded {
                            continue;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head: Vec<u8> = pending.drain(..end + 4).collect();
                            let head = String::from_utf8_lossy(&head).into_owned();
                            if head.to_ascii_lowercase().contains("\r\nupgrade:") {
                                let _ = tcp
                                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
                                    .await;
                                upgraded = true;
                                break;
                            }
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{head}",
                                head.len()
                            );
                            if tcp.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        UpgradingBackend { addr, received }
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().expect("lock")).into_owned()
    }
}

fn https_listener(name: &str, limits: &str, routes: &str) -> String {
    format!(
        "  - name: {name}\n    kind: https\n    bind: 127.0.0.1:1\n{limits}    routes:\n{routes}"
    )
}

#[tokio::test]
async fn h2c_upgrades_are_stripped_and_a_101_must_answer_what_was_asked() {
    within(Duration::from_secs(60), "test", async {
        let backend = UpgradingBackend::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml(
            "",
            &https_listener(
                "h2c",
                "",
                &format!(
                    "      - host: \"*\"\n        backend: http://{}\n",
                    backend.addr
                ),
            ),
        );
        let proxy = TestProxy::start(dir.path(), &yaml).await;
        let mut tls = connect(proxy.addr(), Some("example.com"), &[b"http/1.1"]).await;

        // The h2c upgrade goes on as an ordinary request: the backend sees
        // no Upgrade (nor the HTTP2-Settings the Connection header names)
        // and answers 200, so nothing is tunnelled.
        tls.write_all(
            b"GET /first HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\n\
              Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        )
        .await
        .expect("write");
        let answer = read_answer(&mut tls).await;
        assert_eq!(answer.status, 200, "{}", answer.head);
        let seen = answer.body.to_ascii_lowercase();
        assert!(seen.starts_with("get /first"), "{seen}");
        assert!(!seen.contains("upgrade"), "no Upgrade reached the backend: {seen}");
        assert!(!seen.contains("http2-settings"), "{seen}");

        // The same connection is still parsed by sniwalk: a request for
        // another site is refused (421) and never reaches the backend.
        tls.write_all(b"GET /SMUGGLED HTTP/1.1\r\nHost: other.org\r\n\r\n")
            .await
            .expect("write");
        let answer = read_answer(&mut tls).await;
        assert_eq!(answer.status, 421, "{}", answer.head);
        assert!(!backend.received().contains("SMUGGLED"), "{}", backend.received());

        // A WebSocket upgrade is passed on, but the backend's 101 switches
        // to h2c, which nobody asked for: 502, no tunnel.
        let mut tls = connect(proxy.addr(), Some("example.com"), &[b"http/1.1"]).await;
        tls.write_all(
            b"GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .expect("write");
        let answer = read_answer(&mut tls).await;
        assert_eq!(answer.status, 502, "{}", answer.head);
        assert!(
            backend.received().to_ascii_lowercase().contains("upgrade: websocket"),
            "the allowed upgrade was passed on"
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn connect_is_405_and_two_host_headers_are_400() {
    within(Duration::from_secs(60), "test", async {
        let backend = UpgradingBackend::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml(
            "",
            &https_listener(
                "methods",
                "",
                &format!(
                    "      - host: \"*\"\n        backend: http://{}\n",
                    backend.addr
                ),
            ),
        );
        let proxy = TestProxy::start(dir.path(), &yaml).await;

        let mut tls = connect(proxy.addr(), Some("example.com"), &[b"http/1.1"]).await;
        tls.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
            .await
            .expect("write");
        let answer = read_answer(&mut tls).await;
        assert_eq!(answer.status, 405, "{}", answer.head);
        assert!(
            answer.head.to_ascii_lowercase().contains("allow: get"),
            "{}",
            answer.head
        );

        let mut tls = connect(proxy.addr(), Some("example.com"), &[b"http/1.1"]).await;
        tls.write_all(b"GET /twice HTTP/1.1\r\nHost: example.com\r\nHost: other.org\r\n\r\n")
            .await
            .expect("write");
        let answer = read_answer(&mut tls).await;
        assert_eq!(answer.status, 400, "{}", answer.head);
        assert!(
            answer.body.contains("more than one Host"),
            "{}",
            answer.body
        );

        // An ordinary request still gets through, and neither refused one
        // reached the backend.
        let mut tls = connect(proxy.addr(), Some("example.com"), &[b"http/1.1"]).await;
        tls.write_all(b"GET /fine HTTP/1.1\r\nHost: example.com\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(read_answer(&mut tls).await.status, 200);
        let received = backend.received();
        assert!(received.contains("GET /fine"), "{received}");
        assert!(!received.contains("CONNECT"), "{received}");
        assert!(!received.contains("/twice"), "{received}");
        proxy.stop().await;
    })
    .await;
}

// ---- clients that read nothing -------------------------------------------

/// An HTTP/1.1 backend that counts its open connections: `/big` streams
/// 256 MiB, anything else answers `ok`.
struct CountingBackend {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
}

impl CountingBackend {
    async fn start() -> CountingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let open = Arc::new(AtomicUsize::new(0));
        let counter = open.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let counter = counter.clone();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |request: hyper::Request<hyper::body::Incoming>| async move {
                            let body: TestBody = if request.uri().path() == "/big" {
                                PatternBody::new(256 << 20).boxed()
                            } else {
                                full("ok")
                            };
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                    counter.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        CountingBackend { addr, open }
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// An HTTP/2 connection whose client never opens its flow-control window
/// (`INITIAL_WINDOW_SIZE` 0), with `streams` GETs of `/big`.
struct ShutWindowClient {
    statuses: Vec<u16>,
    /// The connection's task: it ends when the proxy cuts it.
    task: tokio::task::JoinHandle<Result<(), h2::Error>>,
    /// The streams, kept open (dropping one would reset it).
    _streams: Vec<hyper::Response<h2::RecvStream>>,
    _client: h2::client::SendRequest<Bytes>,
}

async fn shut_window_client(addr: SocketAddr, streams: usize) -> ShutWindowClient {
    let tls = connect(addr, Some("example.com"), &[b"h2"]).await;
    let (mut client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tls)
        .await
        .expect("HTTP/2 handshake");
    let task = tokio::spawn(connection);
    let mut pending = Vec::new();
    for _ in 0..streams {
        client = client.ready().await.expect("stream slot");
        let request = hyper::Request::get("https://example.com/big")
            .body(())
            .expect("request");
        let (response, _) = client.send_request(request, true).expect("send");
        pending.push(response);
    }
    let mut statuses = Vec::new();
    let mut kept = Vec::new();
    for response in pending {
        // The body stays unread: its window stays shut.
        let response = within(Duration::from_secs(10), "response head", response)
            .await
            .expect("response head");
        statuses.push(response.status().as_u16());
        kept.push(response);
    }
    ShutWindowClient {
        statuses,
        task,
        _streams: kept,
        _client: client,
    }
}

#[tokio::test]
async fn clients_that_read_nothing_are_bounded_and_cut_after_the_send_timeout() {
    within(Duration::from_secs(90), "test", async {
        let backend = CountingBackend::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml(
            "",
            &https_listener(
                "slow",
                "    max_concurrent_streams: 8\n    max_backend_connections: 12\n    send_timeout: 2s\n",
                &format!(
                    "      - host: \"*\"\n        backend: http://{}\n",
                    backend.addr
                ),
            ),
        );
        let (proxy, _reload) = TestProxy::start_with_metrics(dir.path(), &yaml).await;
        let addr = proxy.addr();
        let slow = [("listener", "slow")];

        // One client opens its 8 streams with the window shut: 8 backend
        // connections, each waiting to send.
        let started = Instant::now();
        let first = shut_window_client(addr, 8).await;
        assert_eq!(first.statuses, [200; 8]);
        eventually(Duration::from_secs(10), "8 backend connections", || backend.open() == 8).await;

        // Other clients are still served.
        let ok = common::get(addr, "example.com", "/small").await;
        assert_eq!((ok.status, ok.body.as_str()), (200, "ok"));

        // A second such client gets 4 more, then 503: never more than
        // max_backend_connections (12) at once.
        let second = shut_window_client(addr, 8).await;
        let mut sorted = second.statuses.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [200, 200, 200, 200, 503, 503, 503, 503], "{:?}", second.statuses);
        assert!(backend.open() <= 12, "{} backend connections", backend.open());
        assert_eq!(metric(&proxy, "sniwalk_backend_limit_rejections_total", &slow), 4.0);
        assert_eq!(metric(&proxy, "sniwalk_backend_connections_active", &slow), 12.0);

        // Both are cut once they have taken nothing for send_timeout, and
        // their backend connections close with them.
        let first = within(Duration::from_secs(15), "the first client cut", first.task)
            .await
            .expect("join");
        let cut_after = started.elapsed();
        assert!(first.is_err(), "the connection was cut: {first:?}");
        assert!(
            cut_after >= Duration::from_secs(2),
            "not before send_timeout: {cut_after:?}"
        );
        let second = within(Duration::from_secs(15), "the second client cut", second.task)
            .await
            .expect("join");
        assert!(second.is_err(), "{second:?}");
        eventually(Duration::from_secs(10), "backend connections closed", || backend.open() == 0).await;
        assert_eq!(metric(&proxy, "sniwalk_send_timeouts_total", &slow), 2.0);
        assert_eq!(metric(&proxy, "sniwalk_backend_connections_active", &slow), 0.0);

        // An HTTP/1.1 client that asks for the download and never reads:
        // its socket fills, and it is cut too.
        let mut tls = connect(addr, Some("example.com"), &[b"http/1.1"]).await;
        tls.write_all(b"GET /big HTTP/1.1\r\nHost: example.com\r\n\r\n")
            .await
            .expect("write");
        eventually(Duration::from_secs(10), "its backend connection", || backend.open() == 1).await;
        eventually(Duration::from_secs(20), "the reader-less client cut", || backend.open() == 0).await;
        assert_eq!(metric(&proxy, "sniwalk_send_timeouts_total", &slow), 3.0);
        drop(tls);
        proxy.stop().await;
    })
    .await;
}

// ---- tls tunnels count their bytes ----------------------------------------

fn tls_listener(name: &str, backend: SocketAddr, extra: &str) -> String {
    format!(
        "  - name: {name}\n    kind: tls\n    bind: 127.0.0.1:1\n    backend: \"{backend}\"\n{extra}"
    )
}

/// Sends `message` through the tunnel and reads its echo.
async fn echo_once<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, message: &[u8]) {
    stream.write_all(message).await.expect("send");
    let mut echoed = vec![0u8; message.len()];
    within(
        Duration::from_secs(10),
        "echo",
        stream.read_exact(&mut echoed),
    )
    .await
    .expect("echo");
    assert_eq!(echoed, message);
}

const REGISTER: &[u8] =
    b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.4;branch=z9hG4bKnashds7\r\n\
    Max-Forwards: 70\r\nTo: <sip:bob@example.com>\r\nFrom: <sip:bob@example.com>;tag=456248\r\n\
    Call-ID: 843817637684230@998sdasdh09\r\nCSeq: 1826 REGISTER\r\nContent-Length: 0\r\n\r\n";

#[tokio::test]
async fn a_tunnel_closed_without_close_notify_counts_its_bytes_and_ends_closed() {
    within(Duration::from_secs(60), "test", async {
        let echo = TcpEcho::start(false).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml(
            "",
            &tls_listener("sip-no-notify", echo.addr, &access_log_in(dir.path())),
        );
        let (proxy, _reload) = TestProxy::start_with_metrics(dir.path(), &yaml).await;

        let mut tls = connect(proxy.addr(), Some("sip.example.com"), &[]).await;
        echo_once(&mut tls, REGISTER).await;
        echo_once(&mut tls, REGISTER).await;
        // As most phones do: close TCP without a TLS close_notify.
        let (mut tcp, _) = tls.into_inner();
        tcp.shutdown().await.expect("FIN");
        let mut rest = Vec::new();
        let _ = within(
            Duration::from_secs(10),
            "the proxy closes",
            tcp.read_to_end(&mut rest),
        )
        .await;

        let line = access_line(dir.path(), &["listener=sip-no-notify", "tunnel"]).await;
        let up = 2 * REGISTER.len();
        assert!(line.contains(&format!("up={up} ")), "{line}");
        assert!(
            line.contains("end=client_closed"),
            "an ordinary end: {line}"
        );
        let report = echo.next_report().await;
        assert!(
            report.saw_eof,
            "the client's close reached the backend as EOF"
        );
        let down = 2 * REGISTER.len() + common::backends::ECHO_GOODBYE.len();
        let labels = |direction| [("listener", "sip-no-notify"), ("direction", direction)];
        assert_eq!(
            metric(&proxy, "sniwalk_tunnel_bytes_total", &labels("up")),
            up as f64
        );
        // The backend's goodbye may or may not reach a client that is gone.
        let counted_down = metric(&proxy, "sniwalk_tunnel_bytes_total", &labels("down"));
        assert!(
            counted_down >= (2 * REGISTER.len()) as f64 && counted_down <= down as f64,
            "{counted_down}"
        );
        assert!(line.contains(&format!("down={counted_down} ")), "{line}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_tunnel_ended_by_the_idle_timeout_counts_its_bytes() {
    within(Duration::from_secs(60), "test", async {
        let echo = TcpEcho::start(false).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let extra = format!("    tunnel_idle_timeout: 1s\n{}", access_log_in(dir.path()));
        let yaml = proxy_yaml("", &tls_listener("sip-idle", echo.addr, &extra));
        let proxy = TestProxy::start(dir.path(), &yaml).await;

        let mut tls = connect(proxy.addr(), Some("sip.example.com"), &[]).await;
        echo_once(&mut tls, REGISTER).await;
        // Silence: the proxy ends the tunnel after 1 s.
        let mut rest = Vec::new();
        let _ = within(
            Duration::from_secs(10),
            "the proxy closes",
            tls.read_to_end(&mut rest),
        )
        .await;
        let line = access_line(dir.path(), &["listener=sip-idle", "tunnel"]).await;
        let n = REGISTER.len();
        assert!(line.contains(&format!("up={n} ")), "{line}");
        assert!(line.contains(&format!("down={n} ")), "{line}");
        assert!(line.contains("end=idle_timeout"), "{line}");
        proxy.stop().await;
    })
    .await;
}
