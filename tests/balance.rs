//! Redundant backends (README: Redundant backends): weights, least
//! connections and drain honoured; a killed backend costs no request
//! after it is found down and rejoins after `rise`; a request goes again
//! to another backend only when that is safe; every backend down is a 503.
//! Real backends on 127.0.0.1 (tests/common/farm.rs), real TLS clients.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::backends::{empty, full};
use common::farm::{Dropper, FarmBackend};
use common::{TestProxy, h1_client, proxy_yaml, send_h1, within, ws};
use hyper::Request;

const HOST: &str = "ws.example.com";

/// An `https` listener with `routes` (YAML, at the routes' indentation).
fn listener(extra: &str, routes: &str) -> String {
    format!(
        "  - name: web\n    kind: https\n    bind: 127.0.0.1:1\n    access_log: false\n{extra}    routes:\n{routes}"
    )
}

/// `farm::tally` with this file's host.
async fn tally(addr: SocketAddr, path: &str, count: usize) -> HashMap<String, usize> {
    common::farm::tally(addr, HOST, path, count).await
}

fn share(seen: &HashMap<String, usize>, name: &str) -> usize {
    seen.get(name).copied().unwrap_or(0)
}

/// Whether `got` is within 10 % of `expected`.
fn near(got: usize, expected: usize) -> bool {
    got.abs_diff(expected) * 10 <= expected
}

/// Opens a WebSocket on `path` and returns it with the name of the backend
/// that took it (its first message).
async fn open_websocket(
    addr: SocketAddr,
    path: &str,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    String,
) {
    let mut stream = common::connect(addr, Some(HOST), &[b"http/1.1"]).await;
    within(
        Duration::from_secs(10),
        "WebSocket handshake",
        ws::client_handshake(&mut stream, HOST, path),
    )
    .await;
    let (opcode, name) = within(
        Duration::from_secs(10),
        "the backend's greeting",
        ws::read_frame(&mut stream),
    )
    .await
    .expect("greeting");
    assert_eq!(opcode, ws::TEXT);
    (stream, String::from_utf8_lossy(&name).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_least_conn_and_drain_are_honoured() {
    within(Duration::from_secs(120), "test", async {
        let a = FarmBackend::start("a").await;
        let b = FarmBackend::start("b").await;
        let c = FarmBackend::start("c").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let routes = format!(
            "      - host: \"*\"\n        path: /rr\n        backends:\n          - {}\n          - {{ url: \"{}\", weight: 2 }}\n          - {{ url: \"{}\", drain: true }}\n\
             \x20     - host: \"*\"\n        backends: [\"{}\", {{ url: \"{}\", weight: 3 }}]\n        balance: least_conn\n",
            a.url(),
            b.url(),
            c.url(),
            a.url(),
            b.url(),
        );
        let proxy = TestProxy::start(dir.path(), &proxy_yaml("", &listener("", &routes))).await;

        // Round robin, weights 1 and 2, c drained by the configuration.
        let seen = tally(proxy.addr(), "/rr", 1200).await;
        assert!(near(share(&seen, "a"), 400), "{seen:?}");
        assert!(near(share(&seen, "b"), 800), "{seen:?}");
        assert_eq!(share(&seen, "c"), 0, "c drains: {seen:?}");

        // Least connections, weights 1 and 3, one request at a time: every
        // choice is a tie, which the weights break.
        let seen = tally(proxy.addr(), "/lc", 1000).await;
        assert!(near(share(&seen, "a"), 250), "{seen:?}");
        assert!(near(share(&seen, "b"), 750), "{seen:?}");

        // Least connections with sessions held open: 40 WebSockets, b
        // carrying three times a's.
        let mut sockets = Vec::new();
        let mut on = HashMap::new();
        for _ in 0..40 {
            let (stream, name) = open_websocket(proxy.addr(), "/ws").await;
            *on.entry(name).or_insert(0usize) += 1;
            sockets.push(stream);
        }
        assert_eq!(on.get("a"), Some(&10), "{on:?}");
        assert_eq!(on.get("b"), Some(&30), "{on:?}");
        assert_eq!(a.open_websockets() + b.open_websockets(), 40);
        drop(sockets);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_costs_nothing_after_detection_and_rejoins_after_rise() {
    within(Duration::from_secs(120), "test", async {
        let mut a = FarmBackend::start("a").await;
        let b = FarmBackend::start("b").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let routes = format!(
            "      - host: \"*\"\n        backends: [\"{}\", \"{}\"]\n        \
             health: {{ path: /health, interval: 200ms, timeout: 150ms, fall: 2, rise: 3 }}\n",
            a.url(),
            b.url(),
        );
        let proxy = TestProxy::start(dir.path(), &proxy_yaml("", &listener("", &routes))).await;
        let addr = proxy.addr();
        // Both checked and up.
        within(Duration::from_secs(5), "both backends serving", async {
            loop {
                let seen = tally(addr, "/", 10).await;
                if share(&seen, "a") > 0 && share(&seen, "b") > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;

        // Four clients keep asking while a is killed: a request that met
        // a dead connection or a refused one goes to b instead.
        let stop = tokio_util::sync::CancellationToken::new();
        let mut workers = Vec::new();
        for _ in 0..4 {
            let stop = stop.clone();
            workers.push(tokio::spawn(async move {
                let mut seen: HashMap<String, usize> = HashMap::new();
                while !stop.is_cancelled() {
                    for (name, n) in tally(addr, "/", 20).await {
                        *seen.entry(name).or_insert(0) += n;
                    }
                }
                seen
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.kill();
        let killed_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.cancel();
        let mut during: HashMap<String, usize> = HashMap::new();
        for worker in workers {
            for (name, n) in worker.await.expect("worker") {
                *during.entry(name).or_insert(0) += n;
            }
        }
        let failed: usize = during
            .iter()
            .filter(|(k, _)| k.starts_with("status"))
            .map(|(_, n)| n)
            .sum();
        // Every request here is a GET without a body, which may go again
        // to b whatever point it reached on a: so none fails, not even
        // those in flight on a when it died.
        assert_eq!(failed, 0, "failures around the kill: {during:?}");
        assert!(share(&during, "b") > 100, "{during:?}");

        // Found down (2 failed checks at 200 ms): nothing reaches a, and
        // nothing fails.
        let seen = tally(addr, "/", 200).await;
        assert_eq!(seen.get("b"), Some(&200), "{seen:?}");

        // Back: after 3 good checks, not before, it takes requests again.
        let checks_before = a.health_checks();
        let requests_before = a.requests();
        a.restart().await;
        let restarted = Instant::now();
        let rejoined = within(Duration::from_secs(10), "a back in rotation", async {
            loop {
                let seen = tally(addr, "/", 10).await;
                if share(&seen, "a") > 0 {
                    return restarted.elapsed();
                }
                assert_eq!(
                    seen.values().sum::<usize>(),
                    share(&seen, "b") + share(&seen, "a")
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            a.health_checks() - checks_before >= 3,
            "a took requests after {} checks",
            a.health_checks() - checks_before
        );
        assert!(a.requests() > requests_before);
        assert!(
            rejoined >= Duration::from_millis(350),
            "rejoined after {rejoined:?}, sooner than 3 checks 200 ms apart"
        );
        let _ = killed_at;
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_safe_requests_go_to_a_second_backend() {
    within(Duration::from_secs(60), "test", async {
        let dropper = Dropper::start().await;
        let good = FarmBackend::start("good").await;
        let closed = common::backends::closed_port().await;
        let dir = tempfile::tempdir().expect("tempdir");
        // The first member's weight makes it the first choice.
        let routes = format!(
            "      - host: \"*\"\n        path: /drop\n        backends: [{{ url: \"http://{}\", weight: 256 }}, \"{}\"]\n\
             \x20     - host: \"*\"\n        backends: [{{ url: \"http://{}\", weight: 256 }}, \"{}\"]\n",
            dropper.addr,
            good.url(),
            closed.addr(),
            good.url(),
        );
        let proxy = TestProxy::start(dir.path(), &proxy_yaml("", &listener("", &routes))).await;
        let mut send = h1_client(proxy.addr(), HOST).await;

        // A POST with a body that reached a backend which then failed is
        // never sent again: it may have been acted on.
        let post = Request::post("/drop/order")
            .header("host", HOST)
            .body(full("pay 10 EUR"))
            .expect("request");
        let response = send_h1(&mut send, post).await;
        assert_eq!(response.status, 502, "{response:?}");
        assert_eq!(good.requests(), 0, "the POST was not repeated");
        assert_eq!(dropper.request_lines(), vec!["POST /drop/order HTTP/1.1"]);

        // A GET without a body is idempotent: it goes to the other one.
        let mut send = h1_client(proxy.addr(), HOST).await;
        let get = Request::get("/drop/page")
            .header("host", HOST)
            .body(empty())
            .expect("request");
        let response = send_h1(&mut send, get).await;
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.header("x-backend"), Some("good"));
        assert_eq!(dropper.request_lines().len(), 2, "the GET met the dropper first");

        // A refused connection sent nothing: even a POST goes on.
        let post = Request::post("/order")
            .header("host", HOST)
            .body(full("pay 10 EUR"))
            .expect("request");
        let response = send_h1(&mut send, post).await;
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.header("x-backend"), Some("good"));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_down_is_a_503_that_says_so() {
    within(Duration::from_secs(60), "test", async {
        let first = common::backends::closed_port().await;
        let second = common::backends::closed_port().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let routes = format!(
            "      - host: \"*\"\n        backends: [\"http://{}\", \"http://{}\"]\n        \
             health: {{ interval: 100ms, timeout: 50ms, fall: 1 }}\n",
            first.addr(),
            second.addr(),
        );
        let proxy = TestProxy::start(dir.path(), &proxy_yaml("", &listener("", &routes))).await;
        let response = within(Duration::from_secs(5), "both found down", async {
            loop {
                let response = common::get(proxy.addr(), HOST, "/").await;
                if response.status == 503 {
                    return response;
                }
                assert_eq!(response.status, 502, "refused while not checked yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(
            response.body.contains("no backend is available"),
            "{response:?}"
        );
        assert_eq!(response.header("retry-after"), Some("5"));
        // Answered at once, not after a connect timeout.
        let started = Instant::now();
        assert_eq!(common::get(proxy.addr(), HOST, "/").await.status, 503);
        assert!(started.elapsed() < Duration::from_secs(2));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_not_sent_again_and_a_stalled_upload_is_not_the_backends_fault() {
    within(Duration::from_secs(60), "test", async {
        let silent = common::farm::Blackhole::start().await;
        let first = FarmBackend::start("first").await;
        let good = FarmBackend::start("good").await;
        let dir = tempfile::tempdir().expect("tempdir");
        // The first member's weight makes it the first choice.
        let routes = format!(
            "      - host: \"*\"\n        path: /silent\n        backends: [{{ url: \"http://{}\", weight: 256 }}, \"{}\"]\n\
             \x20     - host: \"*\"\n        backends: [{{ url: \"{}\", weight: 256 }}, \"{}\"]\n",
            silent.addr,
            good.url(),
            first.url(),
            good.url(),
        );
        let extra = "    backend_timeout: 1s\n";
        let proxy = TestProxy::start(dir.path(), &proxy_yaml("", &listener(extra, &routes))).await;

        // A GET that got no answer in time is not sent to the other
        // member: the client would wait twice, the slow one may act on it.
        let response = common::get(proxy.addr(), HOST, "/silent/report").await;
        assert_eq!(response.status, 504, "{response:?}");
        assert_eq!(good.requests(), 0, "the timed-out GET went nowhere else");

        // Clients that stall their uploads make the backend time out, but
        // that is theirs to answer for: the backend stays in the group.
        let mut uploads = Vec::new();
        for _ in 0..4 {
            let addr = proxy.addr();
            uploads.push(tokio::spawn(async move {
                let mut stream = common::connect(addr, Some(HOST), &[b"http/1.1"]).await;
                common::raw_exchange(
                    &mut stream,
                    &format!(
                        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100\r\n\
                         Connection: close\r\n\r\nten bytes."
                    ),
                )
                .await
                .status
            }));
        }
        for upload in uploads {
            assert_eq!(upload.await.expect("upload"), 504);
        }
        assert_eq!(first.requests(), 4, "the uploads reached the first member");
        let seen = tally(proxy.addr(), "/", 20).await;
        assert!(share(&seen, "first") >= 15, "still in the group: {seen:?}");
        proxy.stop().await;
    })
    .await;
}
