//! Draining (README: Redundant backends): through the admin API a backend
//! takes no new WebSockets while the 50 open on it keep exchanging
//! messages; `/status` and the metrics show it; the drain is stored and
//! outlives a restart. A reload that removes a backend drains it, and one
//! that adds a backend sends it traffic from its first good check on.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::farm::FarmBackend;
use common::{admin_call, within, ws};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const HOST: &str = "ws.example.com";

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// sniwalk in-process with one `https` listener whose one route has
/// `group` (YAML at the route's indentation) and the admin API.
struct Proxy {
    https: SocketAddr,
    admin: SocketAddr,
    reloads: sniwalk::reload::ReloadHandle,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), sniwalk::RunError>>,
}

fn yaml(group: &str) -> String {
    format!(
        "master_domain: example.com\nstate_dir: state\ndomains:\n  example.com: {{}}\n\
         admin: {{ bind: 127.0.0.1:1 }}\nlisteners:\n  - name: web\n    kind: https\n    \
         bind: 127.0.0.1:1\n    access_log: false\n    routes:\n      - host: \"*\"\n{group}"
    )
}

impl Proxy {
    async fn start(dir: &Path, group: &str) -> Proxy {
        common::install_provider();
        std::fs::write(dir.join("proxy.yaml"), yaml(group)).expect("config");
        let config = sniwalk::config::Config::load(&dir.join("proxy.yaml")).expect("valid");
        let https_socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let https = https_socket.local_addr().expect("addr");
        let admin_socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = admin_socket.local_addr().expect("addr");
        let (mut options, reloads) = sniwalk::RunOptions::new();
        options.admin_socket = Some(admin_socket);
        let (shutdown, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sniwalk::run_with(
            config,
            vec![https_socket],
            options,
            async move {
                let _ = rx.await;
            },
        ));
        Proxy {
            https,
            admin,
            reloads,
            shutdown: Some(shutdown),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = within(
            Duration::from_secs(20),
            "the proxy stopping",
            &mut self.task,
        )
        .await;
    }

    async fn status_backends(&self) -> Vec<serde_json::Value> {
        let (status, body) = admin_call(self.admin, "GET", "/status", "").await;
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        json["backends"].as_array().cloned().unwrap_or_default()
    }
}

/// The `/status` entry of `backend`.
fn entry(backends: &[serde_json::Value], backend: SocketAddr) -> Option<serde_json::Value> {
    backends
        .iter()
        .find(|b| b["backend"] == backend.to_string())
        .cloned()
}

async fn open_websocket(addr: SocketAddr) -> (Tls, String) {
    let mut stream = common::connect(addr, Some(HOST), &[b"http/1.1"]).await;
    within(
        Duration::from_secs(10),
        "WebSocket handshake",
        ws::client_handshake(&mut stream, HOST, "/ws"),
    )
    .await;
    let (_, name) = within(
        Duration::from_secs(10),
        "greeting",
        ws::read_frame(&mut stream),
    )
    .await
    .expect("greeting");
    (stream, String::from_utf8_lossy(&name).into_owned())
}

/// One message each way on every socket.
async fn exchange(sockets: &mut [(Tls, String)], round: usize) {
    for (i, (stream, name)) in sockets.iter_mut().enumerate() {
        let text = format!("round {round} socket {i} on {name}");
        ws::write_frame(stream, ws::TEXT, text.as_bytes(), Some([1, 2, 3, 4]))
            .await
            .expect("send");
        let (_, got) = within(Duration::from_secs(5), "echo", ws::read_frame(stream))
            .await
            .expect("echo");
        assert_eq!(got, text.as_bytes());
    }
}

/// `farm::tally` of `/` with this file's host.
async fn tally(addr: SocketAddr, count: usize) -> HashMap<String, usize> {
    common::farm::tally(addr, HOST, "/", count).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backend_keeps_its_websockets_takes_no_new_ones_and_stays_drained() {
    within(Duration::from_secs(120), "test", async {
        let a = FarmBackend::start("a").await;
        let b = FarmBackend::start("b").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let group = format!(
            "        backends: [\"{}\", \"{}\"]\n        balance: least_conn\n",
            a.url(),
            b.url()
        );
        let proxy = Proxy::start(dir.path(), &group).await;
        let mut sockets = Vec::new();
        for _ in 0..50 {
            sockets.push(open_websocket(proxy.https).await);
        }
        let on_a = sockets.iter().filter(|(_, n)| n == "a").count();
        assert_eq!(on_a, 25);

        let drain = format!("/backends/web/{}/drain", a.addr);
        let (status, body) = admin_call(proxy.admin, "POST", &drain, "").await;
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(answer["drain"], true);
        assert_eq!(answer["open_sessions"], 25, "{body}");

        // The 25 on a go on; new ones go to b.
        for round in 0..3 {
            exchange(&mut sockets, round).await;
        }
        for _ in 0..10 {
            let socket = open_websocket(proxy.https).await;
            assert_eq!(socket.1, "b");
            sockets.push(socket);
        }
        assert_eq!(a.open_websockets(), 25);
        let seen = tally(proxy.https, 50).await;
        assert_eq!(seen.get("b"), Some(&50), "{seen:?}");

        // /status and the metrics say so.
        let backends = proxy.status_backends().await;
        let shown = entry(&backends, a.addr).expect("a in /status");
        assert_eq!(shown["drain"], "admin", "{shown}");
        assert_eq!(shown["health"], "up");
        assert_eq!(shown["open_sessions"], 25);
        assert_eq!(shown["listener"], "web");
        let (_, metrics) = admin_call(proxy.admin, "GET", "/metrics", "").await;
        let series = format!(
            "sniwalk_backend_up{{listener=\"web\",backend=\"{}\"}} 0",
            a.addr
        );
        assert!(metrics.contains(&series), "{series} missing:\n{metrics}");
        let series = format!(
            "sniwalk_backend_open_sessions{{listener=\"web\",backend=\"{}\"}} 25",
            a.addr
        );
        assert!(metrics.contains(&series), "{series} missing:\n{metrics}");

        // Stored, 0600 like every state file.
        let stored = dir.path().join("state/shared/config/drains");
        let text = std::fs::read_to_string(&stored).expect("drain store");
        assert!(text.contains(&a.addr.to_string()), "{text}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&stored)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        // Mistakes are named.
        let (status, body) =
            admin_call(proxy.admin, "POST", "/backends/web/10.9.9.9:1/drain", "").await;
        assert_eq!(status, 404);
        assert!(body.contains("has no backend `10.9.9.9:1`"), "{body}");
        assert!(
            body.contains(&b.addr.to_string()),
            "lists the backends: {body}"
        );
        let (status, body) = admin_call(proxy.admin, "POST", "/backends/api/x:1/drain", "").await;
        assert_eq!(status, 404);
        assert!(body.contains("no listener `api`; listeners: web"), "{body}");
        let (status, _) = admin_call(proxy.admin, "GET", &drain, "").await;
        assert_eq!(status, 405);

        // Undrained: a takes new sessions again (it has the fewest).
        let (status, body) = admin_call(proxy.admin, "DELETE", &drain, "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(open_websocket(proxy.https).await.1, "a");

        // Drained again, the drain outlives a restart.
        let (status, _) = admin_call(proxy.admin, "POST", &drain, "").await;
        assert_eq!(status, 200);
        drop(sockets);
        proxy.stop().await;
        let proxy = Proxy::start(dir.path(), &group).await;
        let shown = within(Duration::from_secs(10), "a in /status", async {
            loop {
                if let Some(shown) = entry(&proxy.status_backends().await, a.addr) {
                    return shown;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert_eq!(shown["drain"], "admin", "{shown}");
        let seen = tally(proxy.https, 20).await;
        assert_eq!(seen.get("b"), Some(&20), "{seen:?}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_drains_a_removed_backend_and_adds_one_at_its_first_good_check() {
    within(Duration::from_secs(120), "test", async {
        let a = FarmBackend::start("a").await;
        let b = FarmBackend::start("b").await;
        let c = FarmBackend::start("c").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let group = |x: &FarmBackend, y: &FarmBackend| {
            format!(
                "        backends: [\"{}\", \"{}\"]\n        balance: least_conn\n        \
                 health: {{ path: /health, interval: 200ms, timeout: 150ms, fall: 1, rise: 2 }}\n",
                x.url(),
                y.url()
            )
        };
        let proxy = Proxy::start(dir.path(), &group(&a, &b)).await;
        within(Duration::from_secs(10), "a and b checked", async {
            while a.health_checks() == 0 || b.health_checks() == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let mut sockets = Vec::new();
        for _ in 0..10 {
            sockets.push(open_websocket(proxy.https).await);
        }
        assert_eq!(sockets.iter().filter(|(_, n)| n == "a").count(), 5);

        // a leaves the configuration, c joins it while its check fails.
        c.set_healthy(false);
        std::fs::write(dir.path().join("proxy.yaml"), yaml(&group(&b, &c))).expect("config");
        proxy.reloads.send(sniwalk::reload::Reload::All);
        let removed = within(Duration::from_secs(10), "the reload applied", async {
            loop {
                let backends = proxy.status_backends().await;
                if entry(&backends, c.addr).is_some() {
                    return entry(&backends, a.addr).expect("a still shown");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert_eq!(removed["drain"], "removed", "{removed}");
        assert_eq!(removed["open_sessions"], 5);
        // a's WebSockets go on.
        exchange(&mut sockets, 0).await;
        // c takes nothing while its checks fail.
        let seen = tally(proxy.https, 50).await;
        assert_eq!(seen.get("b"), Some(&50), "{seen:?}");
        let shown = entry(&proxy.status_backends().await, c.addr).expect("c");
        // Pending until its first check, down after it.
        assert!(
            shown["health"] == "pending" || shown["health"] == "down",
            "{shown}"
        );
        // From its first good check on it does.
        c.set_healthy(true);
        within(Duration::from_secs(10), "c serving", async {
            while !tally(proxy.https, 10).await.contains_key("c") {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        // a's sockets closed: it leaves /status.
        drop(sockets);
        within(Duration::from_secs(10), "a gone from /status", async {
            while entry(&proxy.status_backends().await, a.addr).is_some() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        proxy.stop().await;
    })
    .await;
}
