//! Shared session ticket keys: a session from one instance resumes on
//! another that reads the same `tls.ticket_keys_file`, not on one with a
//! different file, and a rotation keeps older tickets valid until their key
//! drops out. Resumption is checked on the client side.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::TestProxy;
use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// An instance in its own folder (own state_dir) reading `keys`.
async fn instance(dir: &Path, keys: &Path) -> TestProxy {
    std::fs::create_dir_all(dir).expect("dir");
    let yaml = common::proxy_yaml(
        &format!("tls:\n  ticket_keys_file: {}\n", keys.display()),
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
    common::within(
        Duration::from_secs(5),
        "response",
        stream.read_to_end(&mut response),
    )
    .await
    .ok();
    assert!(String::from_utf8_lossy(&response).contains("hello"));
    kind == Some(rustls::HandshakeKind::Resumed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_across_instances_sharing_the_keys_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let keys = tmp.path().join("ticket.keys");
    let other_keys = tmp.path().join("other.keys");
    sniwalk::tickets::rotate(&keys, 3).expect("keys");
    sniwalk::tickets::rotate(&other_keys, 3).expect("other keys");
    let a = instance(&tmp.path().join("a"), &keys).await;
    let b = instance(&tmp.path().join("b"), &keys).await;
    let c = instance(&tmp.path().join("c"), &other_keys).await;

    // Same file: a session from A resumes on B.
    let client = resuming_client();
    assert!(!resumed(a.addr(), &client).await, "first handshake is full");
    assert!(resumed(b.addr(), &client).await, "B opens A's ticket");

    // Different file: no resumption, a full handshake instead.
    let client = resuming_client();
    assert!(!resumed(a.addr(), &client).await);
    assert!(
        !resumed(c.addr(), &client).await,
        "C cannot open A's ticket"
    );

    // Rotation: B picks up the new file; A's old tickets stay valid while
    // their key is among the kept ones, and not once it dropped out.
    let client = resuming_client();
    assert!(!resumed(a.addr(), &client).await);
    sniwalk::tickets::rotate(&keys, 2).expect("rotate");
    assert_eq!(sniwalk::tickets::read_keys(&keys).expect("read").len(), 2);
    // Give the watchers (250 ms debounce) time to re-read the file.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        resumed(b.addr(), &client).await,
        "an older key still decrypts after rotation"
    );
    let client = resuming_client();
    assert!(!resumed(a.addr(), &client).await);
    // Two more rotations keeping two keys: the ticket's key is gone.
    sniwalk::tickets::rotate(&keys, 2).expect("rotate again");
    sniwalk::tickets::rotate(&keys, 2).expect("and again");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !resumed(b.addr(), &client).await,
        "the ticket's key dropped out: full handshake"
    );
    drop((a, b, c));
}
