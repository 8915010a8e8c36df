//! ACME against a real CA: Debian's Pebble validates challenges through
//! sniwalk's own listeners, and sniwalk's ACME task does everything by
//! itself from `proxy.yaml` — account, order, storing, serving, restart,
//! forced renewal, failures. Each test checks what a client sees with a real
//! TLS handshake that verifies up to Pebble's root.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::acme_proxy::AcmeProxy;
use common::pebble::{PebbleEnv, PebbleOptions};
use rustls::pki_types::ServerName;
use sniwalk::acme::control;
use sniwalk::state_layout::StateLayout;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const SHOP: &str = "shop.example.test";
const HAND: &str = "hand.example.test";

/// The `proxy.yaml` of these tests: `domains` entries and `acme` lines as
/// given, an `http` listener and an `https` listener answering "hello".
fn yaml(env: &PebbleEnv, domains: &str, acme: &str) -> String {
    format!(
        "master_domain: example.test\nstate_dir: state\ndomains:\n  example.test: {{}}\n{domains}\
         acme:\n  directory: {}\n  ca_roots: {}\n  account_email: ops@example.test\n{acme}\
         listeners:\n  - name: plain\n    kind: http\n    bind: 127.0.0.1:1\n    access_log: false\n  \
         - name: web\n    kind: https\n    bind: 127.0.0.1:2\n    access_log: false\n    routes:\n      \
         - {{ host: \"*\", respond: {{ body: hello }} }}\n",
        env.directory_url(),
        env.ca_pem_path().display()
    )
}

async fn bind() -> (TcpListener, SocketAddr) {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    (socket, addr)
}

/// A real handshake with SNI `name` that must verify against `client`'s
/// roots; the TLS stream.
async fn connect(
    addr: SocketAddr,
    name: &str,
    client: &Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(5), connector.connect(server_name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())
}

fn leaf_sha256(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> String {
    let (_, connection) = stream.get_ref();
    let chain = connection.peer_certificates().expect("certificates");
    sniwalk::pem::sha256_fingerprint(chain[0].as_ref())
}

/// Waits (up to `limit`) for a handshake to `name` that verifies.
async fn served_verified(
    addr: SocketAddr,
    name: &str,
    client: &Arc<rustls::ClientConfig>,
    limit: Duration,
    env: &PebbleEnv,
) -> String {
    let started = Instant::now();
    loop {
        match connect(addr, name, client).await {
            Ok(stream) => return leaf_sha256(&stream),
            Err(e) if started.elapsed() > limit => {
                panic!(
                    "{name} never served a certificate from Pebble: {e}\n{}",
                    env.logs()
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// One HTTP/1.1 request on an open connection; the response text.
async fn get(stream: &mut tokio_rustls::client::TlsStream<TcpStream>, host: &str) -> String {
    let request = format!("GET / HTTP/1.1\r\nhost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.ends_with(b"hello") {
        let n = common::within(Duration::from_secs(5), "response", stream.read(&mut buf))
            .await
            .expect("read");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

/// Runs `sniwalk renew --config CONFIG DOMAIN`; exit code and output.
async fn renew_cli(config: &Path, domain: &str) -> (Option<i32>, String) {
    let (config, domain) = (config.to_path_buf(), domain.to_string());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::sniwalk_bin())
            .args(["renew", "--timeout", "90s", "--config"])
            .arg(&config)
            .arg(&domain)
            .output()
            .expect("sniwalk renew runs")
    })
    .await
    .expect("join");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
}

fn account_files(state_dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(state_dir.join("acme/accounts")) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issue_restart_renew_and_ca_down() {
    common::within(Duration::from_secs(240), "the HTTP-01 lifecycle", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (http_socket, http_addr) = bind().await;
        let (https_socket, https) = bind().await;
        let mut env = PebbleEnv::start_with(
            &tmp.path().join("pebble"),
            PebbleOptions {
                http_port: Some(http_addr.port()),
                ..PebbleOptions::default()
            },
        )
        .await;
        let pebble = common::pebble::client_trusting(&env.root_pem().await);

        // A certificate placed by hand where ACME would store its own: no
        // marker, so ACME must leave it alone although enabled.
        let hand_pem =
            sniwalk::snapshot::generate_self_signed_pem(&[HAND.to_string()], 30, false)
                .expect("self-signed");
        let hand_path = StateLayout::new(tmp.path().join("state")).stored_certificate(HAND);
        std::fs::create_dir_all(hand_path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&hand_path, &hand_pem).expect("hand pem");

        let config = yaml(
            &env,
            &format!(
                "  {SHOP}:\n    acme: {{ enabled: true }}\n  {HAND}:\n    acme: {{ enabled: true }}\n"
            ),
            "",
        );

        // 1. Start: the ACME task issues for SHOP on its own.
        let started = Instant::now();
        let proxy = AcmeProxy::start(tmp.path(), &config, vec![http_socket, https_socket]);
        let first = served_verified(https, SHOP, &pebble, Duration::from_secs(90), &env).await;
        eprintln!("start -> first issued certificate served: {:?}", started.elapsed());

        let stored = StateLayout::new(&proxy.state_dir).stored_certificate(SHOP);
        let text = std::fs::read_to_string(&stored).expect("stored");
        let parsed = sniwalk::pem::parse_certificate_pem(&text).expect("stored parses");
        assert!(parsed.markers.is_acme_issued(), "{:?}", parsed.markers);
        assert_eq!(
            parsed.markers.value("acme_directory"),
            Some(env.directory_url().as_str())
        );
        assert_eq!(parsed.leaf.sha256, first);
        assert_eq!(mode(&stored), 0o600, "stored key is private");
        let accounts = account_files(&proxy.state_dir);
        assert_eq!(accounts.len(), 1, "{accounts:?}");
        assert_eq!(mode(&accounts[0]), 0o600, "account key is private");
        // The ACME task records the success once the job is done.
        let status = proxy
            .wait_status(SHOP, |s| s.last_issued.is_some() && s.renew_at.is_some())
            .await;
        assert_eq!(status.failures, 0);
        assert!(status.in_flight.is_none(), "{status:?}");

        // The hand-managed PEM is untouched and served.
        assert_eq!(std::fs::read_to_string(&hand_path).expect("hand"), hand_pem);
        let hand_leaf = common::served_leaf(https, Some(HAND)).await;
        let hand_parsed = sniwalk::pem::parse_certificate_pem(&hand_pem).expect("hand parses");
        assert_eq!(hand_leaf, hand_parsed.leaf.sha256);
        proxy.stop().await;

        // 2. Restart: the account and the certificate are reused, no order.
        let issued_text = std::fs::read_to_string(&stored).expect("stored");
        let status_before = control::read_status(&StateLayout::new(tmp.path().join("state")));
        let http_socket = TcpListener::bind(http_addr).await.expect("rebind http");
        let (https_socket, https) = bind().await;
        let proxy = AcmeProxy::start(tmp.path(), &config, vec![http_socket, https_socket]);
        let served = served_verified(https, SHOP, &pebble, Duration::from_secs(10), &env).await;
        assert_eq!(served, first, "the stored certificate serves at once");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            std::fs::read_to_string(&stored).expect("stored"),
            issued_text,
            "no new order after a restart"
        );
        assert_eq!(account_files(&proxy.state_dir), accounts, "no new account");
        assert_eq!(
            proxy.status(SHOP).last_issued,
            status_before.domains[SHOP].last_issued
        );

        // 3. Forced renewal (what `sniwalk renew` does) with a connection
        //    open: the new certificate serves, the old connection lives on.
        let mut open = connect(https, SHOP, &pebble).await.expect("connect");
        assert!(get(&mut open, SHOP).await.contains("200 OK"));
        let (code, out) = renew_cli(&tmp.path().join("proxy.yaml"), SHOP).await;
        assert_eq!(code, Some(0), "sniwalk renew: {out}\n{}", env.logs());
        assert!(out.contains("new certificate served"), "{out}");
        let renewed = served_verified(https, SHOP, &pebble, Duration::from_secs(5), &env).await;
        assert_ne!(renewed, first, "a new certificate after the forced renewal");
        assert_eq!(leaf_sha256(&open), first);
        assert!(
            get(&mut open, SHOP).await.contains("200 OK"),
            "the connection opened before the swap still works"
        );

        // 4. CA down: the renewal fails, the certificate keeps serving, a
        //    retry is scheduled and the error is visible.
        env.stop();
        let (code, out) = renew_cli(&tmp.path().join("proxy.yaml"), SHOP).await;
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("ACME account at"), "{out}");
        eprintln!("CA down reads: {out}");
        let status = proxy.status(SHOP);
        assert_eq!(status.failures, 1, "{status:?}");
        let error = status.last_error.clone().expect("error kept");
        assert_eq!(error.code, "CaUnavailable");
        assert!(
            status.next_attempt > error.at,
            "retry scheduled: {status:?}"
        );
        let still = served_verified(https, SHOP, &pebble, Duration::from_secs(5), &env).await;
        assert_eq!(still, renewed, "the old certificate keeps serving");
        let check = std::process::Command::new(common::sniwalk_bin())
            .args(["check", "--config"])
            .arg(tmp.path().join("proxy.yaml"))
            .output()
            .expect("check runs");
        let out = String::from_utf8_lossy(&check.stdout);
        assert!(out.contains("CaUnavailable"), "check shows the ACME error:\n{out}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_through_the_https_listener() {
    common::within(Duration::from_secs(120), "TLS-ALPN-01 issuance", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (http_socket, _) = bind().await;
        let (https_socket, https) = bind().await;
        // Pebble validates TLS-ALPN-01 on the https listener's port; there
        // is nothing on its HTTP-01 port.
        let env = PebbleEnv::start_with(
            &tmp.path().join("pebble"),
            PebbleOptions {
                tls_port: Some(https.port()),
                ..PebbleOptions::default()
            },
        )
        .await;
        let pebble = common::pebble::client_trusting(&env.root_pem().await);
        let config = yaml(
            &env,
            &format!("  {SHOP}:\n    acme: {{ enabled: true }}\n"),
            "  challenge: tls-alpn-01\n",
        );
        let started = Instant::now();
        let proxy = AcmeProxy::start(tmp.path(), &config, vec![http_socket, https_socket]);
        let leaf = served_verified(https, SHOP, &pebble, Duration::from_secs(90), &env).await;
        eprintln!("tls-alpn-01: start -> served {:?}", started.elapsed());
        let stored =
            std::fs::read_to_string(StateLayout::new(&proxy.state_dir).stored_certificate(SHOP))
                .expect("stored");
        let parsed = sniwalk::pem::parse_certificate_pem(&stored).expect("parses");
        assert_eq!(parsed.leaf.sha256, leaf);
        // Ordinary clients still get h2/http1.1 on that listener.
        let stream = connect(https, SHOP, &pebble).await.expect("connect");
        assert_ne!(stream.get_ref().1.alpn_protocol(), Some(&b"acme-tls/1"[..]));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_validation_names_the_domain_and_the_step() {
    common::within(Duration::from_secs(120), "a failing validation", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (http_socket, _) = bind().await;
        let (https_socket, https) = bind().await;
        // Pebble validates HTTP-01 on a port nobody listens on.
        let (closed, closed_addr) = bind().await;
        drop(closed);
        let env = PebbleEnv::start_with(
            &tmp.path().join("pebble"),
            PebbleOptions {
                http_port: Some(closed_addr.port()),
                ..PebbleOptions::default()
            },
        )
        .await;
        let config = yaml(
            &env,
            &format!("  {SHOP}:\n    acme: {{ enabled: true }}\n"),
            "",
        );
        let proxy = AcmeProxy::start(tmp.path(), &config, vec![http_socket, https_socket]);
        let status = proxy
            .wait_status_for(SHOP, Duration::from_secs(90), |s| s.last_error.is_some())
            .await;
        let error = status.last_error.clone().expect("error");
        eprintln!("failed validation reads: {}", error.message);
        assert_eq!(error.code, "HostnameOwnershipValidationFailed", "{error:?}");
        assert_eq!(error.step, sniwalk::acme::Step::CheckOrder, "{error:?}");
        assert!(error.message.contains(SHOP), "{}", error.message);
        assert!(
            error.message.contains("urn:ietf:params:acme:error:"),
            "the CA's problem is kept: {}",
            error.message
        );
        assert_eq!(status.failures, 1);
        assert!(
            status.next_attempt >= error.at + 45,
            "retry in about a minute: {status:?}"
        );
        assert!(
            !StateLayout::new(&proxy.state_dir)
                .stored_certificate(SHOP)
                .exists(),
            "nothing stored"
        );
        // The domain still gets a certificate: its parent's (here the
        // generated default).
        let leaf = common::served_leaf(https, Some(SHOP)).await;
        let default =
            std::fs::read_to_string(proxy.state_dir.join("default.pem")).expect("default");
        let default = sniwalk::pem::parse_certificate_pem(&default).expect("default parses");
        assert_eq!(
            leaf, default.leaf.sha256,
            "the parent chain serves meanwhile"
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_failure_places_no_order() {
    common::within(Duration::from_secs(60), "pre-flight", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (http_socket, http_addr) = bind().await;
        let (https_socket, _) = bind().await;
        let env = PebbleEnv::start_with(
            &tmp.path().join("pebble"),
            PebbleOptions {
                http_port: Some(http_addr.port()),
                ..PebbleOptions::default()
            },
        )
        .await;
        // The name does not resolve to 192.0.2.1 (TEST-NET-1): pre-flight
        // stops before anything reaches the CA.
        let config = yaml(
            &env,
            &format!("  {SHOP}:\n    acme: {{ enabled: true }}\n"),
            "  expected_addresses: [192.0.2.1]\n",
        );
        let proxy = AcmeProxy::start(tmp.path(), &config, vec![http_socket, https_socket]);
        let error = proxy
            .wait_status(SHOP, |s| s.last_error.is_some())
            .await
            .last_error
            .expect("error");
        eprintln!("pre-flight reads: {}", error.message);
        assert_eq!(error.code, "HostnameNotResolvingToProxy");
        assert_eq!(error.step, sniwalk::acme::Step::CheckDnsResolution);
        assert!(error.message.contains(SHOP), "{}", error.message);
        assert!(error.message.contains("192.0.2.1"), "{}", error.message);
        assert!(
            account_files(&proxy.state_dir).is_empty(),
            "nothing reached the CA: no account was even registered"
        );
        proxy.stop().await;
    })
    .await;
}
