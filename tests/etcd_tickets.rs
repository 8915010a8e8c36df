//! Session ticket keys shared and rotated through etcd: instances without a
//! `tls.ticket_keys_file` get the keys one of them wrote, a session from
//! one resumes on the other, and after a rotation (one instance, under a
//! lock) an older ticket still resumes while new ones use the new key.
//! A value that is not ticket keys is replaced at the next rotation and
//! named in the log. Resumption is checked on the client side.
#![cfg(feature = "etcd")]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::etcd::TestEtcd;
use common::{TestProxy, within};
use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const KEY: &str = "/sniwalk/tickets/keys";

/// An instance on `etcd` rotating the ticket keys every minute (checked
/// every 6 s).
async fn instance(dir: &Path, etcd: &TestEtcd) -> TestProxy {
    std::fs::create_dir_all(dir).expect("dir");
    let yaml = common::proxy_yaml(
        &format!(
            "storage:\n  kind: etcd\n  endpoints: [\"{}\"]\n  prefix: /sniwalk/\n  lease: 2s\n\
             tls:\n  ticket_rotation: 1m\n",
            etcd.endpoint()
        ),
        "  - name: web\n    kind: https\n    bind: 127.0.0.1:1\n    access_log: false\n    routes:\n      \
         - { host: \"*\", respond: { body: hello } }\n",
    );
    TestProxy::start(dir, &yaml).await
}

/// A client that keeps its sessions (TLS 1.3 tickets) across connections.
fn resuming_client() -> Arc<rustls::ClientConfig> {
    let mut config = (*common::client_config(&[b"http/1.1"])).clone();
    config.resumption = Resumption::store(Arc::new(ClientSessionMemoryCache::new(64)));
    Arc::new(config)
}

/// One handshake and one request (so the server's tickets arrive);
/// whether the handshake resumed a session.
async fn resumed(addr: SocketAddr, client: &Arc<rustls::ClientConfig>) -> bool {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("example.com").expect("name");
    let mut stream = tokio_rustls::TlsConnector::from(client.clone())
        .connect(name, tcp)
        .await
        .expect("handshake");
    let kind = stream.get_ref().1.handshake_kind();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    within(
        Duration::from_secs(5),
        "response",
        stream.read_to_end(&mut response),
    )
    .await
    .ok();
    assert!(String::from_utf8_lossy(&response).contains("hello"));
    kind == Some(rustls::HandshakeKind::Resumed)
}

/// The stored value as JSON.
async fn stored(etcd: &TestEtcd) -> serde_json::Value {
    let text = etcd.etcdctl(&["get", "--print-value-only", KEY]).await;
    serde_json::from_str(text.trim()).unwrap_or(serde_json::Value::Null)
}

/// The stored key lines, newest first (comments dropped).
fn key_lines(value: &serde_json::Value) -> Vec<String> {
    value["keys"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Waits until `check` holds on the stored value (at most 15 s).
async fn wait_stored(
    etcd: &TestEtcd,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    within(Duration::from_secs(15), what, async {
        loop {
            let value = stored(etcd).await;
            if check(&value) {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotated_in_etcd_resume_sessions_across_instances() {
    within(Duration::from_secs(90), "ticket keys through etcd", async {
        let etcd = TestEtcd::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let a = instance(&dir.path().join("a"), &etcd).await;
        let b = instance(&dir.path().join("b"), &etcd).await;
        // One of them writes the first key; both take it from their watch.
        let first = wait_stored(&etcd, "the first key stored", |v| key_lines(v).len() == 1).await;
        let client = resuming_client();
        within(Duration::from_secs(10), "B has the shared key", async {
            loop {
                let fresh = resuming_client();
                let _ = resumed(a.addr(), &fresh).await;
                if resumed(b.addr(), &fresh).await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(!resumed(a.addr(), &client).await, "first handshake is full");
        assert!(resumed(b.addr(), &client).await, "B opens A's ticket");

        // Due now: one instance rotates (a new key in front, the old one
        // kept), the other follows.
        let mut aged = first.clone();
        aged["rotated_at"] = serde_json::json!(first["rotated_at"].as_i64().unwrap_or(0) - 3600);
        let aged_text = aged.to_string();
        etcd.etcdctl(&["put", "--", KEY, &aged_text]).await;
        let rotated = wait_stored(&etcd, "rotated", |v| key_lines(v).len() == 2).await;
        let lines = key_lines(&rotated);
        assert_eq!(
            lines[1],
            key_lines(&first)[0],
            "the old key is kept, behind the new one"
        );
        // Wait until both instances are on the rotated keys: a fresh
        // session made on either resumes on the other both ways (the
        // rotating instance seals with the new key, which the other opens
        // only once its watch brought the new keys). Fresh clients leave
        // `client`'s old ticket untouched.
        within(
            Duration::from_secs(15),
            "both instances on the rotated keys",
            async {
                loop {
                    let (from_a, from_b) = (resuming_client(), resuming_client());
                    let _ = resumed(a.addr(), &from_a).await;
                    let _ = resumed(b.addr(), &from_b).await;
                    if resumed(b.addr(), &from_a).await && resumed(a.addr(), &from_b).await {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        )
        .await;
        // The client's ticket, sealed with the old key, still resumes on
        // both.
        assert!(
            resumed(b.addr(), &client).await,
            "an older ticket still resumes"
        );
        assert!(resumed(a.addr(), &client).await);

        // A value that is not ticket keys: replaced at the next rotation.
        etcd.etcdctl(&["put", "--", KEY, "garbage"]).await;
        wait_stored(&etcd, "garbage replaced", |v| key_lines(v).len() == 1).await;
        a.stop().await;
        b.stop().await;
    })
    .await;
}
