//! Several sniwalk processes sharing one `state_dir`, against a real Pebble
//! CA on loopback: the HTTP-01 answer of the instance that orders is served
//! by another one, exactly one order is placed for a domain both want, and
//! when the instance holding the order lock is killed mid-order the other
//! takes over once the lease has run out, issues, and serves.
//!
//! Every instance is a real `sniwalk run` process (tests/common/instances.rs),
//! killed by PID when the test ends (pass or fail).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::instances::{Instance, addr, all_logs, free_port, verified_leaf, wait_served};
use common::pebble::{PebbleEnv, PebbleOptions};
use sniwalk::state_layout::StateLayout;
use sniwalk::storage::dir_lock::LockRecord;
use tokio::net::TcpStream;

const SHOP: &str = "shop.example.test";

/// Generous bound for anything involving an order.
const ORDER_LIMIT: Duration = Duration::from_secs(90);

/// A `proxy.yaml` on the shared `state_dir`: `shop` with ACME or without,
/// an `http` listener on `http`, an `https` one on `https`.
fn yaml(
    env: &PebbleEnv,
    state_dir: &Path,
    acme: bool,
    lease: &str,
    http: SocketAddr,
    https: SocketAddr,
) -> String {
    let shop = if acme {
        "{ acme: { enabled: true } }"
    } else {
        "{}"
    };
    format!(
        "master_domain: example.test\nstate_dir: {state}\ndomains:\n  example.test: {{}}\n  {SHOP}: {shop}\n\
         acme:\n  directory: {dir}\n  ca_roots: {roots}\n  account_email: ops@example.test\n  lock_lease: {lease}\n\
         listeners:\n  - name: plain\n    kind: http\n    bind: {http}\n    access_log: false\n  \
         - name: web\n    kind: https\n    bind: {https}\n    access_log: false\n    routes:\n      \
         - {{ host: \"*\", respond: {{ body: hello }} }}\n",
        state = state_dir.display(),
        dir = env.directory_url(),
        roots = env.ca_pem_path().display(),
    )
}

/// The leaf SHA-256 of the certificate stored in `state_dir` for `SHOP`,
/// once there is one (within `limit`).
async fn stored_leaf(state_dir: &Path, limit: Duration, context: &dyn Fn() -> String) -> String {
    let path = StateLayout::new(state_dir).stored_certificate(SHOP);
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(parsed) = sniwalk::pem::parse_certificate_pem(&text)
        {
            assert!(parsed.markers.is_acme_issued(), "stored by ACME");
            return parsed.leaf.sha256;
        }
        assert!(
            started.elapsed() < limit,
            "no certificate stored for {SHOP} within {limit:?}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs JSON to challtestsrv's management API; the status code.
async fn challtestsrv_post(env: &PebbleEnv, path: &str, body: &str) -> u16 {
    let authority = env
        .challtestsrv_url()
        .trim_start_matches("http://")
        .to_string();
    let tcp = TcpStream::connect(authority.as_str())
        .await
        .expect("challtestsrv management port");
    let (mut send, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("HTTP handshake");
    tokio::spawn(connection);
    let request = hyper::Request::post(path)
        .header("host", authority)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .expect("request");
    let response = send
        .send_request(request)
        .await
        .expect("challtestsrv answers");
    response.status().as_u16()
}

/// The CA reaches only instance A, which has no ACME for the domain: the
/// answer B published in the shared state must be served by A. B places
/// the one order, and both serve the new certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_the_ca_reaches_answers_for_the_one_that_orders() {
    common::within(Duration::from_secs(180), "shared HTTP-01 answer", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = tmp.path().join("shared-state");
        let validated = free_port("127.0.0.1");
        let env = PebbleEnv::start_with(
            &tmp.path().join("pebble"),
            PebbleOptions {
                http_port: Some(validated),
                ..PebbleOptions::default()
            },
        )
        .await;
        let client = common::pebble::client_trusting(&env.root_pem().await);
        // A: where Pebble validates (every name resolves to 127.0.0.1),
        // but the domain without ACME, so it never orders.
        let a_https = addr("127.0.0.1", free_port("127.0.0.1"));
        let a = Instance::start(
            "A",
            &tmp.path().join("a"),
            &yaml(
                &env,
                &state,
                false,
                "60s",
                addr("127.0.0.1", validated),
                a_https,
            ),
            a_https,
        )
        .await;
        // B: orders; its own http listener is where the CA never looks.
        let b_https = addr("127.0.0.2", free_port("127.0.0.2"));
        let b = Instance::start(
            "B",
            &tmp.path().join("b"),
            &yaml(
                &env,
                &state,
                true,
                "60s",
                addr("127.0.0.2", free_port("127.0.0.2")),
                b_https,
            ),
            b_https,
        )
        .await;
        let context = || all_logs(&[&a, &b], &env);
        let stored = stored_leaf(&state, ORDER_LIMIT, &context).await;
        wait_served(&b, SHOP, &client, &stored, &context).await;
        wait_served(&a, SHOP, &client, &stored, &context).await;
        assert_eq!(b.count("ACME: order placed"), 1, "{}", context());
        assert_eq!(a.count("ACME: order placed"), 0, "{}", context());
        // A has the answer from the shared state: pushed by its watch of
        // the storage, or read from the file when the watch was slower.
        assert!(
            a.count("answered an ACME HTTP-01 challenge") >= 1,
            "A answered B's challenge\n{}",
            context()
        );
        assert_eq!(
            b.count("answered an ACME HTTP-01 challenge"),
            0,
            "the CA never reached B\n{}",
            context()
        );
        // The answer is withdrawn from the shared state after the order.
        let shared = StateLayout::new(&state).http01_dir();
        let left: Vec<_> = std::fs::read_dir(&shared)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "answers left in {}: {left:?}",
            shared.display()
        );
        assert!(
            !StateLayout::new(&state).lock(SHOP).exists(),
            "the order lock is released"
        );
    })
    .await;
}

/// Pebble validating HTTP-01 on 127.0.0.1 and two ACME instances sharing
/// `dir/shared-state` with order lock lease `lease`: A listens on 127.0.0.1
/// (where the CA goes), B on 127.0.0.2. Returns Pebble, a client trusting
/// its root, the shared state directory and both instances.
async fn two_acme_instances(
    dir: &Path,
    lease: &str,
) -> (
    PebbleEnv,
    Arc<rustls::ClientConfig>,
    PathBuf,
    Instance,
    Instance,
) {
    let state = dir.join("shared-state");
    let validated = free_port("127.0.0.1");
    let env = PebbleEnv::start_with(
        &dir.join("pebble"),
        PebbleOptions {
            http_port: Some(validated),
            ..PebbleOptions::default()
        },
    )
    .await;
    let client = common::pebble::client_trusting(&env.root_pem().await);
    let a_https = addr("127.0.0.1", free_port("127.0.0.1"));
    let b_https = addr("127.0.0.2", free_port("127.0.0.2"));
    let a_yaml = yaml(
        &env,
        &state,
        true,
        lease,
        addr("127.0.0.1", validated),
        a_https,
    );
    let b_yaml = yaml(
        &env,
        &state,
        true,
        lease,
        addr("127.0.0.2", validated),
        b_https,
    );
    let (a_dir, b_dir) = (dir.join("a"), dir.join("b"));
    let (a, b) = tokio::join!(
        Instance::start("A", &a_dir, &a_yaml, a_https),
        Instance::start("B", &b_dir, &b_yaml, b_https),
    );
    (env, client, state, a, b)
}

/// Both instances want a certificate for the same domain at the same time:
/// one order is placed, and both serve its certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_wanting_one_domain_place_one_order() {
    common::within(
        Duration::from_secs(180),
        "one order for two instances",
        async {
            let tmp = tempfile::tempdir().expect("tempdir");
            let (env, client, state, a, b) = two_acme_instances(tmp.path(), "60s").await;
            let context = || all_logs(&[&a, &b], &env);
            let stored = stored_leaf(&state, ORDER_LIMIT, &context).await;
            wait_served(&a, SHOP, &client, &stored, &context).await;
            wait_served(&b, SHOP, &client, &stored, &context).await;
            // Both have settled (served); give a stray second order the time
            // it would need to show up before counting.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let orders = a.count("ACME: order placed") + b.count("ACME: order placed");
            for instance in [&a, &b] {
                eprintln!(
                    "measured: {}: orders placed {}, waited for the other {}, used the other's \
                 certificate {}",
                    instance.name,
                    instance.count("ACME: order placed"),
                    instance.count("waiting for it"),
                    instance.count("renewed by another instance")
                );
            }
            assert_eq!(orders, 1, "exactly one order across both\n{}", context());
            let stored_now = stored_leaf(&state, ORDER_LIMIT, &context).await;
            assert_eq!(stored_now, stored, "the certificate was not replaced");
            for instance in [&a, &b] {
                assert_eq!(
                    verified_leaf(instance.https, SHOP, &client)
                        .await
                        .as_deref(),
                    Ok(stored.as_str()),
                    "{}",
                    instance.name
                );
            }
        },
    )
    .await;
}

/// The instance holding the order lock is killed mid-order: the other
/// waits for the lease to run out (not before the expiry recorded in the
/// lock), takes the lock over, orders, and serves the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lock_holder_is_taken_over_after_its_lease() {
    common::within(Duration::from_secs(180), "takeover after a kill", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (env, client, state, mut a, mut b) = two_acme_instances(tmp.path(), "3s").await;
        let lock = StateLayout::new(&state).lock(SHOP);

        // Kill the holder the moment the lock names it.
        let started = Instant::now();
        let held = loop {
            if let Ok(bytes) = std::fs::read(&lock)
                && let Ok(record) = serde_json::from_slice::<LockRecord>(&bytes)
            {
                break record;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no order lock appeared\n{}",
                all_logs(&[&a, &b], &env)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let (holder, survivor, survivor_ip) = if Some(held.pid) == a.pid() {
            (&mut a, &mut b, "127.0.0.2")
        } else {
            assert_eq!(Some(held.pid), b.pid(), "the lock names one of them");
            (&mut b, &mut a, "127.0.0.1")
        };
        holder.kill();
        let killed_at = Instant::now();
        let held_for = sniwalk::unix_now() - held.acquired;
        let killed_name = holder.name;
        let stored_path = StateLayout::new(&state).stored_certificate(SHOP);
        assert!(
            !stored_path.exists(),
            "{killed_name} finished before it could be killed; the test did not interrupt an order"
        );
        // What the dead holder left: the lease the survivor must respect.
        let left: LockRecord =
            serde_json::from_slice(&std::fs::read(&lock).expect("the lock outlives its holder"))
                .expect("lock JSON");
        assert_eq!(left.pid, held.pid);

        // The CA must now reach the survivor.
        let status = challtestsrv_post(
            &env,
            "/add-a",
            &format!("{{\"host\":\"{SHOP}.\",\"addresses\":[\"{survivor_ip}\"]}}"),
        )
        .await;
        assert_eq!(status, 200, "challtestsrv /add-a");

        // The survivor takes the lock over, not before the recorded expiry.
        let survivor_pid = survivor.pid().expect("survivor runs");
        let taken = loop {
            if let Ok(bytes) = std::fs::read(&lock)
                && let Ok(record) = serde_json::from_slice::<LockRecord>(&bytes)
                && record.pid == survivor_pid
            {
                break record;
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(30),
                "the survivor never took the lock over\n{}",
                all_logs(&[&*survivor], &env)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let waited = killed_at.elapsed();
        assert!(
            taken.acquired >= left.expires,
            "taken over at {} before the dead holder's lease ended at {}",
            taken.acquired,
            left.expires
        );
        eprintln!(
            "measured: lease 3s; killed {killed_name} within {held_for}s (whole seconds) of taking \
             the lock; takeover {:.2}s after the kill (lock acquired {} vs expires {})",
            waited.as_secs_f64(),
            taken.acquired,
            left.expires
        );

        let context = || all_logs(&[&*survivor], &env);
        let stored = stored_leaf(&state, ORDER_LIMIT, &context).await;
        wait_served(survivor, SHOP, &client, &stored, &context).await;
        assert_eq!(survivor.count("ACME: order placed"), 1, "{}", context());
        assert!(
            survivor.count("took over a stale lock") >= 1,
            "{}",
            context()
        );
        assert!(
            survivor.count("another instance is ordering this domain; waiting for it") >= 1,
            "{}",
            context()
        );
    })
    .await;
}
