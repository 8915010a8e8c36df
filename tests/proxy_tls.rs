//! `tls` listeners (SIP over TLS): the decrypted bytes to a TCP backend and
//! back, half-close passed on, PROXY protocol v2, and an unreachable
//! backend.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::backends::{ECHO_GOODBYE, TcpEcho, closed_port};
use common::{TestProxy, connect, proxy_yaml, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIP_OPTIONS: &str = "OPTIONS sip:alice@example.com SIP/2.0\r\n\
    Via: SIP/2.0/TLS client.example.com:5061;branch=z9hG4bK776asdhds\r\n\
    Max-Forwards: 70\r\n\
    To: <sip:alice@example.com>\r\n\
    From: <sip:bob@example.com>;tag=1928301774\r\n\
    Call-ID: a84b4c76e66710@client.example.com\r\n\
    CSeq: 63104 OPTIONS\r\n\
    Content-Length: 0\r\n\r\n";

fn tls_listener(backend: SocketAddr, extra: &str) -> String {
    format!(
        "  - name: sip\n    kind: tls\n    bind: 127.0.0.1:1\n    backend: \"{backend}\"\n{extra}"
    )
}

/// Sends SIP-like messages, half-closes, and checks the echo and the
/// backend's last bytes arrive; returns the client's local address.
async fn sip_exchange(proxy: SocketAddr) -> SocketAddr {
    let mut stream = connect(proxy, Some("sip.example.com"), &[]).await;
    let local = stream.get_ref().0.local_addr().expect("local addr");
    let mut sent = Vec::new();
    within(Duration::from_secs(10), "SIP echo", async {
        for i in 0..20 {
            let message = SIP_OPTIONS.replace("63104", &format!("{}", 63104 + i));
            stream
                .write_all(message.as_bytes())
                .await
                .expect("send SIP message");
            let mut echoed = vec![0u8; message.len()];
            stream.read_exact(&mut echoed).await.expect("echo");
            assert_eq!(String::from_utf8_lossy(&echoed), message);
            sent.extend_from_slice(message.as_bytes());
        }
    })
    .await;
    within(Duration::from_secs(10), "half-close", async {
        // A last message, then our half-close: the backend sees EOF after
        // it, and what it sends afterwards still reaches us.
        stream
            .write_all(b"BYE sip:alice@example.com SIP/2.0\r\n\r\n")
            .await
            .expect("send BYE");
        sent.extend_from_slice(b"BYE sip:alice@example.com SIP/2.0\r\n\r\n");
        stream.shutdown().await.expect("half-close");
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.expect("read to EOF");
        let mut expected = b"BYE sip:alice@example.com SIP/2.0\r\n\r\n".to_vec();
        expected.extend_from_slice(ECHO_GOODBYE);
        assert_eq!(
            String::from_utf8_lossy(&rest),
            String::from_utf8_lossy(&expected),
            "the echo of the last message and the backend's bytes after our EOF"
        );
    })
    .await;
    local
}

#[tokio::test]
async fn tls_listener_relays_bytes_and_passes_half_close_on() {
    within(Duration::from_secs(60), "test", async {
        let echo = TcpEcho::start(false).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml("", &tls_listener(echo.addr, ""));
        let proxy = TestProxy::start(dir.path(), &yaml).await;

        sip_exchange(proxy.addr()).await;
        let report = echo.next_report().await;
        assert!(report.proxy.is_none());
        assert!(
            report.saw_eof,
            "the client's half-close reached the backend"
        );
        assert!(
            String::from_utf8_lossy(&report.received).starts_with("OPTIONS sip:alice@example.com"),
            "no PROXY header or anything else before the client's bytes"
        );
        assert!(
            report
                .received
                .ends_with(b"BYE sip:alice@example.com SIP/2.0\r\n\r\n")
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn tls_listener_sends_a_proxy_v2_header_first() {
    within(Duration::from_secs(60), "test", async {
        let echo = TcpEcho::start(true).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml("", &tls_listener(echo.addr, "    proxy_protocol: v2\n"));
        let proxy = TestProxy::start(dir.path(), &yaml).await;

        for _ in 0..2 {
            let client = sip_exchange(proxy.addr()).await;
            let report = echo.next_report().await;
            let (source, destination) = report
                .proxy
                .expect("a PROXY header was expected")
                .expect("a valid PROXY v2 header");
            assert_eq!(source, client, "source is the client's address and port");
            assert_eq!(
                destination,
                proxy.addr(),
                "destination is the listener's address"
            );
            assert!(report.saw_eof);
            assert!(
                String::from_utf8_lossy(&report.received).starts_with("OPTIONS sip:"),
                "the client's bytes follow the header directly"
            );
        }
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn tls_listener_closes_the_client_when_the_backend_is_down() {
    within(Duration::from_secs(60), "test", async {
        let down = closed_port().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml("", &tls_listener(down.addr(), ""));
        let proxy = TestProxy::start(dir.path(), &yaml).await;

        let mut stream = connect(proxy.addr(), Some("sip.example.com"), &[]).await;
        // Writing may or may not fail depending on timing; reading must end.
        let _ = stream.write_all(SIP_OPTIONS.as_bytes()).await;
        let mut got = Vec::new();
        let ended = within(
            Duration::from_secs(5),
            "client connection closed",
            stream.read_to_end(&mut got),
        )
        .await;
        assert!(got.is_empty(), "nothing comes back: {got:?}");
        // A clean close_notify or a reset: either way the connection is over.
        if let Err(e) = ended {
            eprintln!("connection ended with {e}");
        }
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn quiet_tunnel_is_closed_after_tunnel_idle_timeout() {
    within(Duration::from_secs(60), "test", async {
        let echo = TcpEcho::start(false).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = proxy_yaml(
            "",
            &tls_listener(echo.addr, "    tunnel_idle_timeout: 2s\n"),
        );
        let proxy = TestProxy::start(dir.path(), &yaml).await;

        let mut stream = connect(proxy.addr(), Some("sip.example.com"), &[]).await;
        // Traffic keeps it open past the idle timeout...
        for _ in 0..4 {
            stream.write_all(b"ping\r\n").await.expect("send");
            let mut echoed = [0u8; 6];
            within(
                Duration::from_secs(5),
                "echo",
                stream.read_exact(&mut echoed),
            )
            .await
            .expect("echo while active");
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        // ...silence closes it.
        let quiet_since = std::time::Instant::now();
        let mut rest = Vec::new();
        let _ = within(
            Duration::from_secs(5),
            "idle tunnel closed",
            stream.read_to_end(&mut rest),
        )
        .await;
        let took = quiet_since.elapsed();
        assert!(rest.is_empty(), "{rest:?}");
        assert!(
            took >= Duration::from_millis(1000) && took < Duration::from_millis(3500),
            "closed about tunnel_idle_timeout (2 s) after the last byte, took {took:?}"
        );
        let report = echo.next_report().await;
        assert_eq!(report.received.len(), 24);
        proxy.stop().await;
    })
    .await;
}
