//! `https` listeners end to end: HTTP/1.1 and HTTP/2 through sniwalk to a
//! real backend on 127.0.0.1, routing, WebSocket tunnels, backend failures,
//! request timeouts and the 421 rule.

mod common;

use std::time::{Duration, Instant};

use common::backends::{HttpBackend, closed_port, empty, full};
use common::{
    TestProxy, cert, get, h1_client, h2_client, proxy_yaml, send_h1, send_h2, within, ws,
};
use hyper::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One `https` listener named `web` with `extra` listener fields and the
/// given routes (each a YAML flow mapping).
fn https_listener(extra: &str, routes: &[String]) -> String {
    let routes: String = routes.iter().map(|r| format!("      - {r}\n")).collect();
    format!(
        "  - name: web\n    kind: https\n    bind: 127.0.0.1:1\n    access_log: false\n{extra}    routes:\n{routes}"
    )
}

fn backend_route(host: &str, backend: &HttpBackend) -> String {
    format!("{{ host: \"{host}\", backend: \"{}\" }}", backend.url())
}

fn header_values(seen: &serde_json::Value, name: &str) -> Vec<String> {
    seen["headers"][name]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn header_value(seen: &serde_json::Value, name: &str) -> Option<String> {
    let values = header_values(seen, name);
    assert!(values.len() <= 1, "{name} sent more than once: {values:?}");
    values.into_iter().next()
}

#[tokio::test]
async fn http1_request_reaches_the_backend_with_forwarding_headers() {
    within(Duration::from_secs(60), "test", async {
        let backend = HttpBackend::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml("", &https_listener("", &[backend_route("*", &backend)]));
        let proxy = TestProxy::start(dir.path(), &yaml).await;

        let mut send = h1_client(proxy.addr(), "app.example.com").await;
        let request = Request::post("/some/path?q=1&r=two")
            .header("host", "app.example.com")
            .header("x-forwarded-for", "203.0.113.9")
            .header("connection", "x-drop")
            .header("x-drop", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("proxy-connection", "keep-alive")
            .header("x-keep", "kept")
            .body(full("request body"))
            .expect("request");
        let response = send_h1(&mut send, request).await;
        assert_eq!(response.status, 200, "{response:?}");
        let seen = response.json();
        assert_eq!(seen["method"], "POST");
        assert_eq!(seen["target"], "/some/path?q=1&r=two");
        assert_eq!(seen["version"], "HTTP/1.1");
        assert_eq!(seen["body"], "request body");
        assert_eq!(
            header_value(&seen, "host").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(
            header_value(&seen, "x-forwarded-for").as_deref(),
            Some("203.0.113.9, 127.0.0.1"),
            "the client address is appended to the existing value"
        );
        assert_eq!(
            header_value(&seen, "x-forwarded-proto").as_deref(),
            Some("https")
        );
        assert_eq!(
            header_value(&seen, "x-forwarded-host").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(header_value(&seen, "x-keep").as_deref(), Some("kept"));
        for hop in [
            "connection",
            "x-drop",
            "keep-alive",
            "te",
            "proxy-connection",
        ] {
            assert_eq!(
                header_value(&seen, hop),
                None,
                "hop-by-hop `{hop}` reached the backend: {seen}"
            );
        }

        // The same connection again (keep-alive), without X-Forwarded-For:
        // the backend sees only the client address.
        let request = Request::get("/second")
            .header("host", "app.example.com")
            .body(empty())
            .expect("request");
        let response = send_h1(&mut send, request).await;
        assert_eq!(response.status, 200);
        let seen = response.json();
        assert_eq!(seen["target"], "/second");
        assert_eq!(
            header_value(&seen, "x-forwarded-for").as_deref(),
            Some("127.0.0.1")
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn http2_request_takes_host_from_the_authority() {
    within(Duration::from_secs(60), "test", async {
        let backend = HttpBackend::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml("", &https_listener("", &[backend_route("*", &backend)]));
        let proxy = TestProxy::start(dir.path(), &yaml).await;
        let port = proxy.addr().port();

        let mut send = h2_client(proxy.addr(), "app.example.com").await;
        for i in 0..3 {
            let request = Request::post(format!("https://app.example.com:{port}/h2/{i}?x=1"))
                .header("te", "trailers")
                .header("x-keep", "kept")
                .body(full(format!("body {i}")))
                .expect("request");
            let response = send_h2(&mut send, request).await;
            assert_eq!(response.status, 200, "{response:?}");
            let seen = response.json();
            assert_eq!(seen["method"], "POST");
            assert_eq!(seen["target"], format!("/h2/{i}?x=1"));
            assert_eq!(
                seen["version"], "HTTP/1.1",
                "backends are spoken to in HTTP/1.1"
            );
            assert_eq!(seen["body"], format!("body {i}"));
            let authority = format!("app.example.com:{port}");
            assert_eq!(
                header_value(&seen, "host").as_deref(),
                Some(authority.as_str()),
                "Host is the :authority the client used"
            );
            assert_eq!(
                header_value(&seen, "x-forwarded-host").as_deref(),
                Some(authority.as_str())
            );
            assert_eq!(
                header_value(&seen, "x-forwarded-for").as_deref(),
                Some("127.0.0.1")
            );
            assert_eq!(
                header_value(&seen, "x-forwarded-proto").as_deref(),
                Some("https")
            );
            assert_eq!(header_value(&seen, "x-keep").as_deref(), Some("kept"));
            assert_eq!(header_value(&seen, "te"), None, "TE is hop-by-hop");
        }
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_stripped() {
    within(Duration::from_secs(60), "test", async {
        let backend = HttpBackend::start().await;
        // The backend really sends them (else this test could not fail).
        let direct = {
            let tcp = tokio::net::TcpStream::connect(backend.addr)
                .await
                .expect("connect backend");
            let (mut send, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .expect("handshake");
            tokio::spawn(connection);
            let request = Request::get("/hop")
                .header("host", "direct")
                .body(empty())
                .expect("request");
            send_h1(&mut send, request).await
        };
        assert_eq!(direct.header("x-backend-hop"), Some("1"));
        assert_eq!(direct.header("keep-alive"), Some("timeout=5"));
        assert_eq!(direct.header("connection"), Some("x-backend-hop"));

        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml("", &https_listener("", &[backend_route("*", &backend)]));
        let proxy = TestProxy::start(dir.path(), &yaml).await;
        let response = get(proxy.addr(), "app.example.com", "/hop").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, "hop");
        assert_eq!(response.header("x-backend-keep"), Some("yes"));
        assert_eq!(response.header("x-backend-hop"), None, "{response:?}");
        assert_eq!(response.header("keep-alive"), None, "{response:?}");
        assert_eq!(response.header("proxy-connection"), None, "{response:?}");
        assert!(
            !response
                .header("connection")
                .unwrap_or_default()
                .contains("x-backend-hop"),
            "{response:?}"
        );

        let mut send = h2_client(proxy.addr(), "app.example.com").await;
        let request = Request::get("https://app.example.com/hop")
            .body(empty())
            .expect("request");
        let response = send_h2(&mut send, request).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-backend-keep"), Some("yes"));
        assert_eq!(response.header("x-backend-hop"), None, "{response:?}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn routes_match_exact_suffix_any_and_path_prefix_first_match_wins() {
    within(Duration::from_secs(60), "test", async {
        let backend = HttpBackend::start().await;
        let routes = [
            format!(
                "{{ host: exact.example.com, path: /api/, backend: \"{}\" }}",
                backend.url()
            ),
            "{ host: exact.example.com, respond: { body: exact } }".to_string(),
            "{ host: exact.example.com, respond: { body: never } }".to_string(),
            "{ host: \"*.wild.example.com\", path: /special/, respond: { status: 201, body: wild-special } }".to_string(),
            "{ host: \"*.wild.example.com\", respond: { status: 202, body: wild } }".to_string(),
            "{ host: \"*\", path: /any/, respond: { status: 203, body: any } }".to_string(),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml("", &https_listener("", &routes));
        let proxy = TestProxy::start(dir.path(), &yaml).await;
        let addr = proxy.addr();

        let api = get(addr, "exact.example.com", "/api/users?id=7").await;
        assert_eq!(api.status, 200);
        assert_eq!(api.json()["target"], "/api/users?id=7", "path prefix to the backend");

        let cases: &[(&str, &str, u16, &str)] = &[
            ("exact.example.com", "/", 200, "exact"),
            ("exact.example.com", "/apix", 200, "exact"),
            ("EXACT.example.com", "/", 200, "exact"),
            ("x.wild.example.com", "/", 202, "wild"),
            ("a.b.wild.example.com", "/x", 202, "wild"),
            ("x.wild.example.com", "/special/1", 201, "wild-special"),
            ("x.wild.example.com", "/any/1", 202, "wild"),
            ("wild.example.com", "/any/", 203, "any"),
            ("other.example.org", "/any/thing", 203, "any"),
            ("other.example.org", "/", 404, "404 no route for this host and path\n"),
            ("wild.example.com", "/", 404, "404 no route for this host and path\n"),
        ];
        for &(host, path, status, body) in cases {
            let response = get(addr, host, path).await;
            assert_eq!(
                (response.status, response.body.as_str()),
                (status, body),
                "{host}{path}"
            );
        }
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn respond_and_redirect_routes() {
    within(Duration::from_secs(60), "test", async {
        let routes = [
            "{ host: teapot.example.com, respond: { status: 418, body: \"short and stout\\n\" } }"
                .to_string(),
            "{ host: moved.example.com, redirect: { to: \"https://new.example.net\" } }"
                .to_string(),
            "{ host: moved.example.com, redirect: { to: \"https://never.example.net\" } }"
                .to_string(),
            "{ host: fixed.example.com, redirect: { to: \"https://new.example.net/landing\", status: 302 } }"
                .to_string(),
            "{ host: port.example.com, redirect: { to: \"http://new.example.net:8080\", status: 307 } }"
                .to_string(),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml("", &https_listener("", &routes));
        let proxy = TestProxy::start(dir.path(), &yaml).await;
        let addr = proxy.addr();

        let teapot = get(addr, "teapot.example.com", "/").await;
        assert_eq!(teapot.status, 418);
        assert_eq!(teapot.body, "short and stout\n");
        assert_eq!(
            teapot.header("content-type"),
            Some("text/plain; charset=utf-8")
        );

        let moved = get(addr, "moved.example.com", "/a/b?c=d&e").await;
        assert_eq!(moved.status, 308, "default redirect status");
        assert_eq!(
            moved.header("location"),
            Some("https://new.example.net/a/b?c=d&e"),
            "path and query appended when `to` has no path"
        );

        let fixed = get(addr, "fixed.example.com", "/a/b?c=d").await;
        assert_eq!(fixed.status, 302);
        assert_eq!(
            fixed.header("location"),
            Some("https://new.example.net/landing")
        );

        let port = get(addr, "port.example.com", "/x?y").await;
        assert_eq!(port.status, 307);
        assert_eq!(
            port.header("location"),
            Some("http://new.example.net:8080/x?y")
        );

        // Over HTTP/2 as well.
        let mut send = h2_client(addr, "moved.example.com").await;
        let request = Request::get("https://moved.example.com/h2?z=1")
            .body(empty())
            .expect("request");
        let moved = send_h2(&mut send, request).await;
        assert_eq!(moved.status, 308);
        assert_eq!(
            moved.header("location"),
            Some("https://new.example.net/h2?z=1")
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn websocket_echo_outlives_request_timeouts() {
    within(Duration::from_secs(60), "test", async {
        let backend = HttpBackend::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let extra = "    header_timeout: 1s\n    idle_timeout: 2s\n";
        let yaml = proxy_yaml("", &https_listener(extra, &[backend_route("*", &backend)]));
        let proxy = TestProxy::start(dir.path(), &yaml).await;

        let mut stream =
            common::connect(proxy.addr(), Some("ws.example.com"), &[b"http/1.1"]).await;
        within(
            Duration::from_secs(10),
            "WebSocket handshake",
            ws::client_handshake(&mut stream, "ws.example.com", "/ws"),
        )
        .await;

        let mask = Some([0x12, 0x34, 0x56, 0x78]);
        let exchange = async {
            for i in 0..300usize {
                let (opcode, payload) = match i % 3 {
                    0 => (ws::TEXT, format!("message {i}").into_bytes()),
                    1 => (ws::BINARY, vec![(i % 251) as u8; 200 + i]),
                    _ => (ws::BINARY, vec![(i % 13) as u8; 70_000 + i]),
                };
                ws::write_frame(&mut stream, opcode, &payload, mask)
                    .await
                    .expect("send frame");
                let (got_opcode, got) = ws::read_frame(&mut stream).await.expect("echo");
                assert_eq!(got_opcode, opcode, "message {i}");
                assert!(got == payload, "message {i} came back different");
            }
            // Several in flight at once, then their echoes in order.
            for i in 0..50 {
                ws::write_frame(&mut stream, ws::TEXT, format!("burst {i}").as_bytes(), mask)
                    .await
                    .expect("send burst");
            }
            for i in 0..50 {
                let (_, got) = ws::read_frame(&mut stream).await.expect("burst echo");
                assert_eq!(got, format!("burst {i}").as_bytes());
            }
        };
        within(Duration::from_secs(30), "echo of 350 messages", exchange).await;

        // Quiet for longer than both the header and the idle timeout of
        // HTTP requests: a tunnel is not a request.
        tokio::time::sleep(Duration::from_secs(3)).await;
        within(Duration::from_secs(5), "echo after 3 s of silence", async {
            ws::write_frame(&mut stream, ws::TEXT, b"still there?", mask)
                .await
                .expect("send after silence");
            let (opcode, got) = ws::read_frame(&mut stream)
                .await
                .expect("echo after silence");
            assert_eq!((opcode, got.as_slice()), (ws::TEXT, &b"still there?"[..]));
        })
        .await;

        within(Duration::from_secs(5), "close handshake", async {
            ws::write_frame(&mut stream, ws::CLOSE, &1000u16.to_be_bytes(), mask)
                .await
                .expect("send close");
            let (opcode, payload) = ws::read_frame(&mut stream).await.expect("close echoed");
            assert_eq!(opcode, ws::CLOSE);
            assert_eq!(payload, 1000u16.to_be_bytes());
            // Then the proxy closes the connection.
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            assert!(rest.is_empty(), "bytes after the close: {rest:?}");
            // Close our side too: a tunnel lives until both sides closed.
            let _ = stream.shutdown().await;
        })
        .await;
        drop(stream);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn backend_down_is_502_and_slow_backend_is_504() {
    within(Duration::from_secs(60), "test", async {
        let backend = HttpBackend::start().await;
        let down = closed_port().await;
        let routes = [
            format!("{{ host: down.example.com, backend: \"http://{down}\" }}"),
            backend_route("*", &backend),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let extra = "    backend_timeout: 1s\n";
        let yaml = proxy_yaml("", &https_listener(extra, &routes));
        let proxy = TestProxy::start(dir.path(), &yaml).await;
        let addr = proxy.addr();

        let bad = get(addr, "down.example.com", "/").await;
        assert_eq!(bad.status, 502);
        assert_eq!(bad.body, "502 Bad Gateway\n");
        assert_eq!(
            bad.header("content-type"),
            Some("text/plain; charset=utf-8")
        );

        let started = Instant::now();
        let slow = get(addr, "slow.example.com", "/slow?ms=3000").await;
        let took = started.elapsed();
        assert_eq!(slow.status, 504);
        assert_eq!(slow.body, "504 Gateway Timeout\n");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
            "504 after the 1 s backend_timeout, took {took:?}"
        );

        // The same backend within the timeout is fine.
        let quick = get(addr, "slow.example.com", "/slow?ms=100").await;
        assert_eq!((quick.status, quick.body.as_str()), (200, "slow done"));

        // Over HTTP/2 too.
        let mut send = h2_client(addr, "down.example.com").await;
        let request = Request::get("https://down.example.com/")
            .body(empty())
            .expect("request");
        let bad = send_h2(&mut send, request).await;
        assert_eq!((bad.status, bad.body.as_str()), (502, "502 Bad Gateway\n"));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn slowloris_is_cut_by_header_timeout_while_idle_keepalive_survives() {
    within(Duration::from_secs(60), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let extra = "    header_timeout: 2s\n    idle_timeout: 10s\n";
        let routes = ["{ host: \"*\", respond: { body: ok } }".to_string()];
        let yaml = proxy_yaml("", &https_listener(extra, &routes));
        let proxy = TestProxy::start(dir.path(), &yaml).await;
        let addr = proxy.addr();

        // A request head sent one byte per second.
        let slowloris = async {
            let stream = common::connect(addr, Some("slow.example.com"), &[b"http/1.1"]).await;
            let (mut reader, mut writer) = tokio::io::split(stream);
            let head = b"GET / HTTP/1.1\r\nHost: slow.example.com\r\nX-Padding: aaaaaaaaaa\r\n\r\n";
            let started = Instant::now();
            let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let sent_by_writer = sent.clone();
            let dribble = tokio::spawn(async move {
                for byte in head {
                    if writer.write_all(&[*byte]).await.is_err() || writer.flush().await.is_err() {
                        return;
                    }
                    sent_by_writer.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
            let mut got = Vec::new();
            let ended = within(Duration::from_secs(8), "slowloris cut off", async {
                let mut buf = [0u8; 1024];
                loop {
                    match reader.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
            });
            ended.await;
            let took = started.elapsed();
            let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
            dribble.abort();
            assert!(
                !String::from_utf8_lossy(&got).contains(" 200 "),
                "the slow request was answered: {:?}",
                String::from_utf8_lossy(&got)
            );
            assert!(
                sent < head.len(),
                "cut while still sending ({sent} of {} bytes)",
                head.len()
            );
            assert!(
                took >= Duration::from_millis(1500) && took <= Duration::from_millis(4000),
                "cut about header_timeout (2 s) after the first byte, took {took:?}"
            );
        };

        // A keep-alive connection: one request, then silence longer than
        // header_timeout, then another request on the same connection.
        let after_a_request = async {
            let mut send = h1_client(addr, "idle.example.com").await;
            let request = Request::get("/one")
                .header("host", "idle.example.com")
                .body(empty())
                .expect("request");
            assert_eq!(send_h1(&mut send, request).await.body, "ok");
            tokio::time::sleep(Duration::from_secs(4)).await;
            let request = Request::get("/two")
                .header("host", "idle.example.com")
                .body(empty())
                .expect("request");
            let response = send_h1(&mut send, request).await;
            assert_eq!((response.status, response.body.as_str()), (200, "ok"));
        };

        // A connection that sends nothing at all for longer than
        // header_timeout, then a request.
        let silent_from_the_start = async {
            let mut send = h1_client(addr, "quiet.example.com").await;
            tokio::time::sleep(Duration::from_secs(4)).await;
            let request = Request::get("/late")
                .header("host", "quiet.example.com")
                .body(empty())
                .expect("request");
            let response = send_h1(&mut send, request).await;
            assert_eq!((response.status, response.body.as_str()), (200, "ok"));
        };

        tokio::join!(slowloris, after_a_request, silent_from_the_start);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn host_outside_the_certificate_is_421() {
    within(Duration::from_secs(60), "test", async {
        let a = cert(&["a.example.com"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let routes = ["{ host: \"*\", respond: { body: hello } }".to_string()];
        let listener = https_listener("", &routes);
        let yaml = format!(
            "master_domain: example.com\nstate_dir: state\ndomains:\n  example.com: {{}}\n  \
             a.example.com:\n    certificate_pem: |\n{}listeners:\n{listener}",
            a.yaml_block(6)
        );
        let proxy = TestProxy::start(dir.path(), &yaml).await;
        let addr = proxy.addr();
        assert_eq!(
            common::served_leaf(addr, Some("a.example.com")).await,
            a.sha256
        );

        let mut send = h1_client(addr, "a.example.com").await;
        let request = Request::get("/")
            .header("host", "b.example.com")
            .body(empty())
            .expect("request");
        let misdirected = send_h1(&mut send, request).await;
        assert_eq!(misdirected.status, 421, "{misdirected:?}");
        let request = Request::get("/")
            .header("host", "a.example.com")
            .body(empty())
            .expect("request");
        let fine = send_h1(&mut send, request).await;
        assert_eq!((fine.status, fine.body.as_str()), (200, "hello"));

        // HTTP/2 reuses connections across names: the same rule by :authority.
        let mut send = h2_client(addr, "a.example.com").await;
        let request = Request::get("https://b.example.com/")
            .body(empty())
            .expect("request");
        assert_eq!(send_h2(&mut send, request).await.status, 421);
        let request = Request::get("https://a.example.com/")
            .body(empty())
            .expect("request");
        assert_eq!(send_h2(&mut send, request).await.status, 200);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn idle_keepalive_connection_is_closed_after_idle_timeout() {
    within(Duration::from_secs(60), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let extra = "    header_timeout: 1s\n    idle_timeout: 3s\n";
        let routes = ["{ host: \"*\", respond: { body: ok } }".to_string()];
        let yaml = proxy_yaml("", &https_listener(extra, &routes));
        let proxy = TestProxy::start(dir.path(), &yaml).await;

        let tls = common::connect(proxy.addr(), Some("idle.example.com"), &[b"http/1.1"]).await;
        let (mut send, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .expect("HTTP/1.1 handshake");
        let mut connection = tokio::spawn(connection);
        let request = Request::get("/")
            .header("host", "idle.example.com")
            .body(empty())
            .expect("request");
        assert_eq!(send_h1(&mut send, request).await.body, "ok");
        let answered = Instant::now();
        // Still open past the header timeout...
        assert!(
            tokio::time::timeout(Duration::from_millis(2000), &mut connection)
                .await
                .is_err(),
            "an idle keep-alive connection was closed before idle_timeout"
        );
        // ...and closed by the server at the idle timeout.
        within(
            Duration::from_secs(4),
            "idle connection closed",
            &mut connection,
        )
        .await
        .expect("connection task")
        .expect("clean close");
        let took = answered.elapsed();
        assert!(
            took >= Duration::from_millis(2500) && took < Duration::from_millis(4500),
            "closed about idle_timeout (3 s) after the last response, took {took:?}"
        );
        proxy.stop().await;
    })
    .await;
}
