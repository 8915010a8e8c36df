//! The proxy's lifecycle: graceful shutdown, the shutdown timeout, and the
//! connection limit.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::backends::{HttpBackend, empty};
use common::{TestProxy, client_config, connect, h1_client, proxy_yaml, send_h1, within};
use hyper::Request;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

fn https_listener(extra: &str, backend: &HttpBackend) -> String {
    format!(
        "  - name: web\n    kind: https\n    bind: 127.0.0.1:1\n    access_log: false\n{extra}    routes:\n      \
         - {{ host: \"*\", backend: \"{}\" }}\n",
        backend.url()
    )
}

/// Connects until the kernel refuses (the listening socket is closed);
/// returns how long that took.
async fn until_refused(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    within(Duration::from_secs(2), "the listener closes", async {
        loop {
            match TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                // Accepted into the queue just before the socket closed
                // (later reset), or reset while it closed: try again.
                Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await;
    started.elapsed()
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    within(Duration::from_secs(60), "test", async {
        let backend = HttpBackend::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml("", &https_listener("", &backend));
        let mut proxy = TestProxy::start(dir.path(), &yaml).await;
        let addr = proxy.addr();

        let mut send = h1_client(addr, "app.example.com").await;
        let request = Request::get("/slow?ms=1500")
            .header("host", "app.example.com")
            .body(empty())
            .expect("request");
        let in_flight = tokio::spawn(async move { send_h1(&mut send, request).await });
        assert_eq!(backend.next_arrival().await, "/slow?ms=1500");

        let shutdown_started = Instant::now();
        proxy.begin_shutdown();
        let refused_after = until_refused(addr).await;
        assert!(
            !in_flight.is_finished(),
            "the listener closed while the request was still in flight"
        );
        assert!(
            refused_after < Duration::from_millis(500),
            "new connections refused right after shutdown started (took {refused_after:?})"
        );

        let response = within(Duration::from_secs(10), "request in flight", in_flight)
            .await
            .expect("request task");
        assert_eq!(
            (response.status, response.body.as_str()),
            (200, "slow done")
        );
        assert_eq!(
            response.header("connection"),
            Some("close"),
            "the connection is told to close"
        );
        proxy
            .finish(Duration::from_secs(10))
            .await
            .expect("run returns Ok");
        assert!(
            shutdown_started.elapsed() < Duration::from_secs(5),
            "run returned once the request was done, not at the 30 s shutdown timeout"
        );
    })
    .await;
}

#[tokio::test]
async fn shutdown_timeout_cuts_what_is_still_open() {
    within(Duration::from_secs(60), "test", async {
        let backend = HttpBackend::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml("shutdown_timeout: 1s\n", &https_listener("", &backend));
        let mut proxy = TestProxy::start(dir.path(), &yaml).await;

        let mut send = h1_client(proxy.addr(), "app.example.com").await;
        let request = Request::get("/slow?ms=5000")
            .header("host", "app.example.com")
            .body(empty())
            .expect("request");
        let in_flight = tokio::spawn(async move {
            send.ready().await.expect("ready");
            send.send_request(request).await.map(|r| r.status())
        });
        assert_eq!(backend.next_arrival().await, "/slow?ms=5000");

        let started = Instant::now();
        proxy.begin_shutdown();
        proxy
            .finish(Duration::from_secs(5))
            .await
            .expect("run returns Ok");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
            "run returns at the 1 s shutdown timeout, took {took:?}"
        );
        let outcome = within(Duration::from_secs(5), "cut request", in_flight)
            .await
            .expect("request task");
        assert!(
            outcome.is_err(),
            "the request was cut, not answered: {outcome:?}"
        );
    })
    .await;
}

/// Connections with nothing in flight do not hold shutdown up: an HTTP/2
/// connection whose client never sent its preface, and an HTTP/1.1 one
/// that never sent a request, both close at once.
#[tokio::test]
async fn connections_without_requests_do_not_delay_shutdown() {
    within(Duration::from_secs(60), "test", async {
        let backend = HttpBackend::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml("shutdown_timeout: 30s\n", &https_listener("", &backend));
        let mut proxy = TestProxy::start(dir.path(), &yaml).await;
        let silent_h2 = connect(proxy.addr(), Some("app.example.com"), &[b"h2"]).await;
        assert_eq!(silent_h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let silent_h1 = connect(proxy.addr(), Some("app.example.com"), &[b"http/1.1"]).await;

        let started = Instant::now();
        proxy.begin_shutdown();
        proxy
            .finish(Duration::from_secs(10))
            .await
            .expect("run returns Ok");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "shutdown did not wait for the 30 s timeout, took {took:?}"
        );
        drop((silent_h2, silent_h1));
    })
    .await;
}

#[tokio::test]
async fn connections_beyond_max_connections_wait_for_a_free_slot() {
    within(Duration::from_secs(60), "test", async {
        let backend = HttpBackend::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml("", &https_listener("    max_connections: 2\n", &backend));
        let proxy = TestProxy::start(dir.path(), &yaml).await;
        let addr = proxy.addr();

        let first = connect(addr, Some("one.example.com"), &[b"http/1.1"]).await;
        let second = connect(addr, Some("two.example.com"), &[b"http/1.1"]).await;

        // The kernel accepts the third connection into its queue...
        let tcp = within(
            Duration::from_secs(5),
            "TCP connect",
            TcpStream::connect(addr),
        )
        .await
        .expect("the kernel accepts the connection");
        let connector = tokio_rustls::TlsConnector::from(client_config(&[b"http/1.1"]));
        let name = ServerName::try_from("three.example.com").expect("name");
        let mut third = tokio::spawn(async move { connector.connect(name, tcp).await });
        // ...but no handshake happens while both slots are taken.
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), &mut third)
                .await
                .is_err(),
            "the third handshake completed with both slots taken"
        );

        // Closing one frees a slot: the waiting connection gets its turn.
        drop(first);
        let third = within(Duration::from_secs(5), "third handshake", third)
            .await
            .expect("handshake task")
            .expect("third TLS handshake");
        let (mut send, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(third))
                .await
                .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        let request = Request::get("/third")
            .header("host", "three.example.com")
            .body(empty())
            .expect("request");
        let response = send_h1(&mut send, request).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["target"], "/third");
        drop(second);
        proxy.stop().await;
    })
    .await;
}
