//! Active health checks (README: Redundant backends): a backend whose
//! check is slow, failing or never answered takes no traffic, and comes
//! back when its checks pass; a `tls` listener's backends are checked
//! with send/expect, fail over, and keep a client on its backend.
//! Real backends on 127.0.0.1 (tests/common/farm.rs), real TLS clients.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::farm::{Blackhole, FarmBackend, NamedEcho};
use common::{TestProxy, proxy_yaml, within};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const HOST: &str = "app.example.com";

/// `farm::tally` with this file's host.
async fn tally(addr: SocketAddr, path: &str, count: usize) -> HashMap<String, usize> {
    common::farm::tally(addr, HOST, path, count).await
}

/// Waits (up to 10 s) until `count` requests all reach exactly `names`.
async fn until_served_by(addr: SocketAddr, names: &[&str]) -> HashMap<String, usize> {
    within(
        Duration::from_secs(10),
        "the expected backends serving",
        async {
            loop {
                let seen = tally(addr, "/", 30).await;
                let mut got: Vec<&str> = seen.keys().map(String::as_str).collect();
                got.sort_unstable();
                if got == names {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_failing_and_silent_backends_are_taken_out_by_their_checks() {
    within(Duration::from_secs(90), "test", async {
        let good = FarmBackend::start("good").await;
        let slow = FarmBackend::start("slow").await;
        let sick = FarmBackend::start("sick").await;
        let silent = Blackhole::start().await;
        // Another one alone on its own route: a backend has one health
        // state, so it cannot be checked on one route and not on another.
        let lone = Blackhole::start().await;
        slow.set_health_delay(Duration::from_millis(600));
        sick.set_healthy(false);
        let dir = tempfile::tempdir().expect("tempdir");
        let routes = format!(
            "      - host: \"*\"\n        path: /silent-only\n        backend: \"http://{lone}\"\n\
             \x20     - host: \"*\"\n        backends: [\"{}\", \"{}\", \"{}\", \"http://{silent}\"]\n        \
             health: {{ path: /health, interval: 200ms, timeout: 150ms, fall: 1, rise: 2 }}\n",
            good.url(),
            slow.url(),
            sick.url(),
            silent = silent.addr,
            lone = lone.addr,
        );
        let listener = format!(
            "  - name: web\n    kind: https\n    bind: 127.0.0.1:1\n    access_log: false\n    backend_timeout: 1s\n    routes:\n{routes}"
        );
        let proxy = TestProxy::start(dir.path(), &proxy_yaml("", &listener)).await;
        let addr = proxy.addr();

        // Only `good` passes its checks: a 200 too slow, a 503 and a
        // connection that never answers all fail theirs.
        let seen = until_served_by(addr, &["good"]).await;
        assert_eq!(seen.get("good"), Some(&30));
        let seen = tally(addr, "/", 200).await;
        assert_eq!(seen.get("good"), Some(&200), "{seen:?}");
        assert_eq!(slow.requests() + sick.requests(), 0);

        // Fixed, they come back after `rise` good checks.
        slow.set_health_delay(Duration::ZERO);
        sick.set_healthy(true);
        until_served_by(addr, &["good", "sick", "slow"]).await;
        // Then a whole tally shares the load: counted afresh (the tally that
        // first saw all three may have begun before the last was back), and
        // again should a check time out on a loaded machine (`fall: 1`).
        within(Duration::from_secs(10), "all three sharing the load", async {
            loop {
                let seen = tally(addr, "/", 30).await;
                if seen.len() == 3 && seen.values().all(|n| *n >= 5) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;

        // A backend that accepts and never answers, alone on its route: a
        // 504 after `backend_timeout`, not a hang.
        let started = Instant::now();
        let response = common::get(addr, HOST, "/silent-only").await;
        assert_eq!(response.status, 504, "{response:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{took:?}"
        );
        proxy.stop().await;
    })
    .await;
}

/// Opens a SIP-over-TLS connection through the proxy and returns it with
/// the name its backend greeted with.
async fn sip_connect(
    addr: SocketAddr,
) -> (
    BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    String,
) {
    let stream = common::connect(addr, Some("sip.example.com"), &[]).await;
    let mut reader = BufReader::new(stream);
    let mut name = String::new();
    within(
        Duration::from_secs(5),
        "the backend's greeting",
        reader.read_line(&mut name),
    )
    .await
    .expect("greeting");
    (reader, name.trim().to_string())
}

/// Sends a SIP OPTIONS on `stream` and reads its echo.
async fn sip_ping(
    stream: &mut BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    n: usize,
) {
    let line = format!("OPTIONS sip:alice@example.com SIP/2.0 CSeq: {n}\r\n");
    stream
        .get_mut()
        .write_all(line.as_bytes())
        .await
        .expect("send");
    let mut echoed = String::new();
    within(
        Duration::from_secs(5),
        "the echo",
        stream.read_line(&mut echoed),
    )
    .await
    .expect("echo");
    assert_eq!(echoed, line.trim_end_matches('\n').to_string() + "\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_fails_over_and_keeps_a_client_on_its_backend() {
    within(Duration::from_secs(90), "test", async {
        let mut a = NamedEcho::start("a").await;
        let mut b = NamedEcho::start("b").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = format!(
            "  - name: sip\n    kind: tls\n    bind: 127.0.0.1:1\n    access_log: false\n    \
             backends: [\"{}\", \"{}\"]\n    balance: client_ip\n    \
             health: {{ send: \"PING\\r\\n\", expect: PING, interval: 200ms, timeout: 150ms, fall: 1, rise: 2 }}\n",
            a.addr, b.addr
        );
        let proxy = TestProxy::start(dir.path(), &proxy_yaml("", &listener)).await;
        let addr = proxy.addr();
        // Until its first good check a backend takes connections only
        // while no other is up: let both be checked (the first check runs
        // within 250 ms of the start) before relying on the hash.
        tokio::time::sleep(Duration::from_millis(600)).await;

        // One client address: every connection on the same backend.
        let (mut first, home) = sip_connect(addr).await;
        for _ in 0..5 {
            assert_eq!(sip_connect(addr).await.1, home);
        }
        sip_ping(&mut first, 1).await;
        let (home_echo, other_echo) = if home == "a" {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let other = if home == "a" { "b" } else { "a" };

        // The other backend dies: the open call goes on, new ones stay home.
        other_echo.kill();
        sip_ping(&mut first, 2).await;
        assert_eq!(sip_connect(addr).await.1, home);
        other_echo.restart().await;

        // Home dies: its calls end (they were on it), new ones go to the
        // other at once, even before its checks notice.
        home_echo.kill();
        for _ in 0..5 {
            let (mut moved, name) = sip_connect(addr).await;
            assert_eq!(name, other);
            sip_ping(&mut moved, 3).await;
        }
        drop(first);

        // Home is back: after `rise` good checks its client returns to it.
        home_echo.restart().await;
        within(Duration::from_secs(10), "the client back home", async {
            while sip_connect(addr).await.1 != home {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failing_its_check_leaves_though_it_still_serves_requests() {
    within(Duration::from_secs(60), "test", async {
        let a = FarmBackend::start("a").await;
        let b = FarmBackend::start("b").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = format!(
            "  - name: web\n    kind: https\n    bind: 127.0.0.1:1\n    access_log: false\n    routes:\n      \
             - host: \"*\"\n        backends: [\"{}\", \"{}\"]\n        \
             health: {{ path: /health, interval: 200ms, timeout: 150ms, fall: 3, rise: 2 }}\n",
            a.url(),
            b.url()
        );
        let proxy = TestProxy::start(dir.path(), &proxy_yaml("", &listener)).await;
        until_served_by(proxy.addr(), &["a", "b"]).await;
        // The operator fails a's check to take it out; a still answers
        // every request it gets meanwhile (which must not undo the
        // failed checks), and it leaves after `fall` (3) of them.
        a.set_healthy(false);
        let started = Instant::now();
        until_served_by(proxy.addr(), &["b"]).await;
        assert!(started.elapsed() >= Duration::from_millis(350), "not before 3 checks");
        let seen = tally(proxy.addr(), "/", 100).await;
        assert_eq!(seen.get("b"), Some(&100), "{seen:?}");
        proxy.stop().await;
    })
    .await;
}
