//! On-demand certificates against a real CA: Debian's Pebble validates
//! through sniwalk's own HTTP listener, and the `ask` endpoint is a real
//! HTTP server of the test's own (the operator's endpoint, which says which
//! tenant names may get a certificate). Every check is a real TLS
//! handshake: which certificate was served, and whether it verifies up to
//! Pebble's root.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::acme_proxy::AcmeProxy;
use common::pebble::{PebbleEnv, PebbleOptions};
use rustls::pki_types::ServerName;
use sniwalk::state_layout::StateLayout;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The operator's `ask` endpoint: 200 for names with a label `allowed`,
/// 403 for the others, 3 s late for names with a label `slow`; every
/// question is recorded.
struct AskServer {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl AskServer {
    async fn start() -> AskServer {
        let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind ask");
        let addr = socket.local_addr().expect("addr");
        let asked = Arc::new(Mutex::new(Vec::new()));
        let record = asked.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = socket.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let target = text.split(' ').nth(1).unwrap_or("").to_string();
                    let domain = target
                        .split_once("domain=")
                        .map(|(_, d)| d.to_string())
                        .unwrap_or_default();
                    let allowed = domain.split('.').any(|label| label == "allowed");
                    let slow = domain.split('.').any(|label| label == "slow");
                    record.lock().expect("lock").push(domain);
                    if slow {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                    let status = if allowed { "200 OK" } else { "403 Forbidden" };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = tcp.write_all(response.as_bytes()).await;
                });
            }
        });
        AskServer { addr, asked, task }
    }

    fn url(&self) -> String {
        format!("http://{}/allowed", self.addr)
    }

    /// How often `name` was asked about.
    fn times_asked(&self, name: &str) -> usize {
        self.asked
            .lock()
            .expect("lock")
            .iter()
            .filter(|n| *n == name)
            .count()
    }

    fn all(&self) -> Vec<String> {
        self.asked.lock().expect("lock").clone()
    }
}

impl Drop for AskServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `proxy.yaml`: master `example.test` with `master` as its certificate,
/// `acme.on_demand` as given, an http listener (Pebble's HTTP-01) and an
/// https listener answering "hello".
fn yaml(env: &PebbleEnv, master: &common::TestCert, on_demand: &str) -> String {
    format!(
        "master_domain: example.test\nstate_dir: state\ndomains:\n  example.test:\n    \
         certificate_pem: |\n{}\
         acme:\n  directory: {}\n  ca_roots: {}\n  account_email: ops@example.test\n  \
         on_demand: {on_demand}\n\
         listeners:\n  - name: plain\n    kind: http\n    bind: 127.0.0.1:1\n    access_log: false\n  \
         - name: web\n    kind: https\n    bind: 127.0.0.1:2\n    access_log: false\n    routes:\n      \
         - {{ host: \"*\", respond: {{ body: hello }} }}\n",
        master.yaml_block(6),
        env.directory_url(),
        env.ca_pem_path().display()
    )
}

async fn bind() -> (TcpListener, SocketAddr) {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    (socket, addr)
}

/// A handshake that must verify against Pebble's root: the leaf's
/// fingerprint, or why not.
async fn verified(
    addr: SocketAddr,
    name: &str,
    pebble: &Arc<rustls::ClientConfig>,
) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(pebble.clone());
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let stream = tokio::time::timeout(Duration::from_secs(10), connector.connect(server_name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let chain = stream.get_ref().1.peer_certificates().ok_or("no chain")?;
    Ok(sniwalk::pem::sha256_fingerprint(chain[0].as_ref()))
}

/// The domain store as the proxy wrote it.
fn domain_store(state_dir: &std::path::Path) -> BTreeMap<String, serde_json::Value> {
    let path = StateLayout::new(state_dir).domain_store();
    let Ok(text) = std::fs::read_to_string(&path) else {
        return BTreeMap::new();
    };
    let value: serde_json::Value = serde_json::from_str(&text).expect("domain store is JSON");
    serde_json::from_value(value["domains"].clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_name_is_issued_and_served_to_the_next_handshake() {
    common::within(Duration::from_secs(180), "an on-demand order", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (http_socket, http_addr) = bind().await;
        let (https_socket, https) = bind().await;
        let env = PebbleEnv::start_with(
            &tmp.path().join("pebble"),
            PebbleOptions {
                http_port: Some(http_addr.port()),
                ..PebbleOptions::default()
            },
        )
        .await;
        let pebble = common::pebble::client_trusting(&env.root_pem().await);
        let ask = AskServer::start().await;
        let master = common::cert(&["example.test"]);
        let config = yaml(
            &env,
            &master,
            &format!("{{ ask: \"{}\", wait: 5s }}", ask.url()),
        );
        let proxy = AcmeProxy::start(tmp.path(), &config, vec![http_socket, https_socket]);

        const NAME: &str = "phone.allowed.test";
        // Three first handshakes at once, the second and third joining the
        // first one's order (one question to ask), each held until the
        // certificate is served (well within `wait`: Pebble takes about
        // 1 s), so each gets the name's own certificate.
        let started = Instant::now();
        let firsts: Vec<_> = (0..3)
            .map(|i| {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(150 * i)).await;
                    common::try_served_leaf(https, Some(NAME)).await
                })
            })
            .collect();
        let mut first_leaves = Vec::new();
        for first in firsts {
            let leaf = first.await.expect("join");
            first_leaves.push(leaf.expect("the first handshakes are served"));
        }
        let held = started.elapsed();
        assert!(held < Duration::from_secs(12), "held {held:?}, past wait");
        // The name's own certificate, verifying up to Pebble's root.
        let issued = verified(https, NAME, &pebble)
            .await
            .unwrap_or_else(|e| panic!("{NAME} does not verify: {e}\n{}", env.logs()));
        eprintln!("first handshakes held {held:?}");
        assert_eq!(
            first_leaves,
            vec![issued.clone(); 3],
            "each first handshake got it"
        );
        assert_ne!(issued, master.sha256);
        assert_eq!(ask.times_asked(NAME), 1, "asked once: {:?}", ask.all());
        // It is a domain of its own now, stored like any issued one.
        let store = domain_store(&proxy.state_dir);
        let entry = store
            .get(NAME)
            .unwrap_or_else(|| panic!("{NAME} in {store:?}"));
        assert_eq!(entry["acme"], true);
        assert_eq!(entry["on_demand"], true);
        let stored = StateLayout::new(&proxy.state_dir).stored_certificate(NAME);
        let text = std::fs::read_to_string(&stored).expect("stored certificate");
        let parsed = sniwalk::pem::parse_certificate_pem(&text).expect("stored parses");
        assert!(parsed.markers.is_acme_issued());
        assert_eq!(parsed.leaf.sha256, issued);
        // Known now: later handshakes are not asked about.
        for _ in 0..3 {
            assert_eq!(
                verified(https, NAME, &pebble).await.as_deref(),
                Ok(issued.as_str())
            );
        }
        assert_eq!(ask.times_asked(NAME), 1, "{:?}", ask.all());
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_names_and_names_over_the_rate_are_never_ordered() {
    common::within(Duration::from_secs(180), "on-demand refusals", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (http_socket, http_addr) = bind().await;
        let (https_socket, https) = bind().await;
        let env = PebbleEnv::start_with(
            &tmp.path().join("pebble"),
            PebbleOptions {
                http_port: Some(http_addr.port()),
                ..PebbleOptions::default()
            },
        )
        .await;
        let pebble = common::pebble::client_trusting(&env.root_pem().await);
        let ask = AskServer::start().await;
        let master = common::cert(&["example.test"]);
        let config = yaml(
            &env,
            &master,
            &format!(
                "{{ ask: \"{}\", rate: 1/min, burst: 1, wait: 5s, refused_for: 1h }}",
                ask.url()
            ),
        );
        let proxy = AcmeProxy::start(tmp.path(), &config, vec![http_socket, https_socket]);
        // Refused by ask: what the tree gives (the master's certificate,
        // the last step of every walk), at once; asked once, however often
        // it comes back (remembered for refused_for).
        for _ in 0..3 {
            let started = Instant::now();
            assert_eq!(
                common::served_leaf(https, Some("tenant.example.test")).await,
                master.sha256,
                "a refused name below the master gets the master's certificate"
            );
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(
                common::served_leaf(https, Some("unknown.refused.test")).await,
                master.sha256
            );
        }
        assert_eq!(ask.times_asked("tenant.example.test"), 1, "{:?}", ask.all());
        assert_eq!(
            ask.times_asked("unknown.refused.test"),
            1,
            "{:?}",
            ask.all()
        );

        // Names that are never asked about: no dot; a domain's own name;
        // a name no CA issues for (an underscore).
        for never_asked in ["intranet", "example.test", "under_score.allowed.test"] {
            common::served_leaf(https, Some(never_asked)).await;
            assert_eq!(ask.times_asked(never_asked), 0, "{:?}", ask.all());
        }

        // Rate 1/min with a burst of 1: the first allowed name is ordered,
        // the second is over the rate, so never ordered.
        const FIRST: &str = "one.allowed.test";
        const SECOND: &str = "two.allowed.test";
        common::served_leaf(https, Some(FIRST)).await;
        let started = Instant::now();
        loop {
            match verified(https, FIRST, &pebble).await {
                Ok(_) => break,
                Err(e) if started.elapsed() > Duration::from_secs(60) => {
                    panic!("{FIRST} never issued: {e}\n{}", env.logs())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        for _ in 0..3 {
            assert_eq!(
                common::served_leaf(https, Some(SECOND)).await,
                master.sha256
            );
        }
        // The budget is spent: refused before `ask` is even asked.
        assert_eq!(ask.times_asked(SECOND), 0, "{:?}", ask.all());
        // Give a wrongly placed order time to show.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(verified(https, SECOND, &pebble).await.is_err());
        let store = domain_store(&proxy.state_dir);
        assert!(store.contains_key(FIRST), "{store:?}");
        for never in [
            SECOND,
            "tenant.example.test",
            "unknown.refused.test",
            "intranet",
        ] {
            assert!(!store.contains_key(never), "{never} in {store:?}");
            let stored = StateLayout::new(&proxy.state_dir).stored_certificate(never);
            assert!(!stored.exists(), "{} exists", stored.display());
        }
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_expire_and_an_unreachable_ask_refuses_at_once() {
    common::within(Duration::from_secs(120), "ask refusals", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (http_socket, http_addr) = bind().await;
        let (https_socket, https) = bind().await;
        let env = PebbleEnv::start_with(
            &tmp.path().join("pebble"),
            PebbleOptions {
                http_port: Some(http_addr.port()),
                ..PebbleOptions::default()
            },
        )
        .await;
        let ask = AskServer::start().await;
        let master = common::cert(&["example.test"]);
        let config = yaml(
            &env,
            &master,
            &format!("{{ ask: \"{}\", refused_for: 1s, wait: 1s }}", ask.url()),
        );
        let proxy = AcmeProxy::start(tmp.path(), &config, vec![http_socket, https_socket]);
        const REFUSED: &str = "pbx.refused.test";
        assert_eq!(
            common::served_leaf(https, Some(REFUSED)).await,
            master.sha256
        );
        assert_eq!(
            common::served_leaf(https, Some(REFUSED)).await,
            master.sha256
        );
        assert_eq!(ask.times_asked(REFUSED), 1, "{:?}", ask.all());
        // After refused_for, the name is asked about afresh.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert_eq!(
            common::served_leaf(https, Some(REFUSED)).await,
            master.sha256
        );
        assert_eq!(ask.times_asked(REFUSED), 2, "{:?}", ask.all());

        // An endpoint slower than `wait`: the handshake is held `wait`, no
        // longer, and gets what the tree gives.
        const SLOW: &str = "pbx.slow.test";
        let started = Instant::now();
        assert_eq!(common::served_leaf(https, Some(SLOW)).await, master.sha256);
        let held = started.elapsed();
        assert!(
            held >= Duration::from_millis(900) && held < Duration::from_millis(2_500),
            "held {held:?} with wait: 1s"
        );
        assert_eq!(ask.times_asked(SLOW), 1, "{:?}", ask.all());

        // The endpoint gone: refused (an allowed-looking name too), served
        // at once, nothing stored.
        let gone = ask.url();
        drop(ask);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            tokio::net::TcpStream::connect(
                gone.trim_start_matches("http://")
                    .trim_end_matches("/allowed")
            )
            .await
            .is_err(),
            "the ask endpoint still accepts"
        );
        const NAME: &str = "sip.allowed.test";
        let started = Instant::now();
        assert_eq!(common::served_leaf(https, Some(NAME)).await, master.sha256);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let store = domain_store(&proxy.state_dir);
        assert!(!store.contains_key(NAME), "{store:?}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_order_takes_the_name_out_again() {
    common::within(
        Duration::from_secs(180),
        "a failed on-demand order",
        async {
            let tmp = tempfile::tempdir().expect("tempdir");
            let (http_socket, _) = bind().await;
            let (https_socket, https) = bind().await;
            // Pebble validates HTTP-01 on a port nothing listens on: every
            // order fails at validation.
            let closed = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let env = PebbleEnv::start_with(
                &tmp.path().join("pebble"),
                PebbleOptions {
                    http_port: Some(closed),
                    ..PebbleOptions::default()
                },
            )
            .await;
            let ask = AskServer::start().await;
            let master = common::cert(&["example.test"]);
            let config = yaml(
                &env,
                &master,
                &format!("{{ ask: \"{}\", wait: 10s, refused_for: 1h }}", ask.url()),
            );
            let proxy = AcmeProxy::start(tmp.path(), &config, vec![http_socket, https_socket]);
            const NAME: &str = "broken.allowed.test";
            // Held until the order fails, then the master's certificate.
            let started = Instant::now();
            assert_eq!(common::served_leaf(https, Some(NAME)).await, master.sha256);
            let held = started.elapsed();
            assert!(held < Duration::from_secs(12), "held {held:?}");
            // Out of the domain store again, nothing stored, refused for
            // refused_for: not asked again, not held.
            let deadline = Instant::now() + Duration::from_secs(10);
            while domain_store(&proxy.state_dir).contains_key(NAME) {
                assert!(
                    Instant::now() < deadline,
                    "{NAME} stays in the domain store"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let stored = StateLayout::new(&proxy.state_dir).stored_certificate(NAME);
            assert!(!stored.exists());
            let started = Instant::now();
            assert_eq!(common::served_leaf(https, Some(NAME)).await, master.sha256);
            assert!(started.elapsed() < Duration::from_secs(3));
            assert_eq!(ask.times_asked(NAME), 1, "{:?}", ask.all());
            eprintln!("the failing order held its first handshake {held:?}");
            proxy.stop().await;
        },
    )
    .await;
}
