//! Several sniwalk instances sharing their state through etcd
//! (`storage: { kind: etcd }`), each with a `state_dir` of its own, against
//! a real etcd (tests/common/etcd.rs) and a real Pebble CA
//! (tests/common/pebble.rs) on loopback:
//!
//! - one order for a domain several instances want, served by all, its
//!   HTTP-01 or TLS-ALPN-01 challenge answered by an instance that did not
//!   order (the only one the CA reaches); a job started through one
//!   instance's admin API polled on another until it completes;
//! - the lock holder killed mid-order: the other takes over after the
//!   lease and issues;
//! - the lock holder paused (SIGSTOP) with the issued certificate in hand,
//!   past its lease, while the other issues: once resumed its late write
//!   is refused by the fence and logged;
//! - a value in etcd that is not a certificate: the last good one stays.
//!
//! Every instance is a real `sniwalk run` process (tests/common/instances.rs)
//! on 127.0.0.1 with ports of its own, killed by PID when its test ends;
//! every test starts its own etcd and Pebble and is bounded in time. What is in etcd is read with `etcdctl`,
//! not with sniwalk's own client.
#![cfg(feature = "etcd")]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::etcd::TestEtcd;
use common::instances::{Instance, addr, all_logs, free_port, verified_leaf, wait_served};
use common::pebble::{PebbleEnv, PebbleOptions};
use common::within;
use sniwalk::state_layout::StateLayout;
use tokio::net::{TcpListener, TcpStream};

const SHOP: &str = "shop.example.test";

/// `storage.prefix` of every instance.
const PREFIX: &str = "/sniwalk/";

/// The bound of one test.
const TEST_LIMIT: Duration = Duration::from_secs(150);

/// Generous bound for anything involving an order.
const ORDER_LIMIT: Duration = Duration::from_secs(60);

/// How long the order keys (lock, challenge answers) may outlive the
/// order: the instance that waited for the lock takes it once more to
/// find the stored certificate, then releases it.
const CLEANUP_LIMIT: Duration = Duration::from_secs(15);

/// The etcd key of `SHOP`'s stored certificate.
fn certificate_key() -> String {
    certificate_key_of(SHOP)
}

/// The etcd key of `domain`'s stored certificate.
fn certificate_key_of(domain: &str) -> String {
    format!("{PREFIX}certificates/{domain}")
}

/// The etcd key of `SHOP`'s order lock.
fn lock_key() -> String {
    format!("{PREFIX}locks/orders/{SHOP}")
}

/// How an instance is configured.
struct Spec<'a> {
    env: &'a PebbleEnv,
    etcd: &'a TestEtcd,
    /// Its own `state_dir`.
    state: &'a Path,
    /// `SHOP` with ACME (else without: the instance never orders it).
    acme: bool,
    /// `acme.challenge`.
    challenge: &'a str,
    /// `storage.lease`.
    lease: &'a str,
    http: SocketAddr,
    https: SocketAddr,
    /// `admin.bind` (no admin API without it).
    admin: Option<SocketAddr>,
}

/// The instance's `proxy.yaml`: the etcd storage under [`PREFIX`], an
/// `http` and an `https` listener, and the admin API if asked for.
fn yaml(spec: &Spec) -> String {
    let shop = if spec.acme {
        "{ acme: { enabled: true } }"
    } else {
        "{}"
    };
    let admin = spec
        .admin
        .map(|admin| format!("admin: {{ bind: \"{admin}\" }}\n"))
        .unwrap_or_default();
    format!(
        "master_domain: example.test\nstate_dir: {state}\n{admin}domains:\n  example.test: {{}}\n  {SHOP}: {shop}\n\
         acme:\n  directory: {dir}\n  ca_roots: {roots}\n  account_email: ops@example.test\n  \
         challenge: {challenge}\n\
         storage:\n  kind: etcd\n  endpoints: [{endpoint}]\n  prefix: {PREFIX}\n  lease: {lease}\n\
         listeners:\n  - name: plain\n    kind: http\n    bind: {http}\n    access_log: false\n  \
         - name: web\n    kind: https\n    bind: {https}\n    access_log: false\n    routes:\n      \
         - {{ host: \"*\", respond: {{ body: hello }} }}\n",
        state = spec.state.display(),
        dir = spec.env.directory_url(),
        roots = spec.env.ca_pem_path().display(),
        challenge = spec.challenge,
        endpoint = spec.etcd.endpoint(),
        lease = spec.lease,
        http = spec.http,
        https = spec.https,
    )
}

/// Starts instance `name` on `spec`, in `dir/<name>` (its `state_dir`
/// being `dir/<name>/state`).
async fn start(name: &'static str, dir: &Path, spec: Spec<'_>) -> Instance {
    start_with_env(name, dir, spec, &[]).await
}

/// [`start`] with extra environment variables for the process.
async fn start_with_env(
    name: &'static str,
    dir: &Path,
    spec: Spec<'_>,
    env: &[(&str, &str)],
) -> Instance {
    let home = dir.join(name);
    let state = home.join("state");
    let spec = Spec {
        state: &state,
        ..spec
    };
    Instance::start_with_env(name, &home, &yaml(&spec), spec.https, env).await
}

/// The value at `key` in etcd, if there is one (without the newline
/// `etcdctl` adds).
async fn etcd_value(etcd: &TestEtcd, key: &str) -> Option<String> {
    let out = etcd.etcdctl(&["get", "--print-value-only", key]).await;
    let value = out.strip_suffix('\n').unwrap_or(&out);
    (!value.is_empty()).then(|| value.to_string())
}

/// The keys under `prefix` in etcd.
async fn etcd_keys(etcd: &TestEtcd, prefix: &str) -> Vec<String> {
    etcd.etcdctl(&["get", "--prefix", "--keys-only", prefix])
        .await
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Puts `value` at `key` in etcd behind the instances' backs.
async fn etcd_put(etcd: &TestEtcd, key: &str, value: &str) {
    // `--`: a value may start with `-` (a PEM block).
    etcd.etcdctl(&["put", "--", key, value]).await;
}

/// How many times `key` was written since it was created (etcd's
/// `version`: 1 for a key put once); `None` when it does not exist.
async fn etcd_version(etcd: &TestEtcd, key: &str) -> Option<u64> {
    let out = etcd.etcdctl(&["get", "-w", "json", key]).await;
    let answer: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("etcdctl get -w json {key}: {e}\n{out}"));
    let version = &answer["kvs"][0]["version"];
    (!version.is_null()).then(|| {
        version
            .as_u64()
            .unwrap_or_else(|| panic!("no version for {key} in {answer}"))
    })
}

/// Waits until etcd holds a certificate for `SHOP` that loads and is
/// ACME-issued: its leaf's SHA-256 and the whole value.
async fn stored_in_etcd(etcd: &TestEtcd, context: &dyn Fn() -> String) -> (String, String) {
    stored_in_etcd_for(etcd, SHOP, context).await
}

/// [`stored_in_etcd`] for `domain`.
async fn stored_in_etcd_for(
    etcd: &TestEtcd,
    domain: &str,
    context: &dyn Fn() -> String,
) -> (String, String) {
    let key = certificate_key_of(domain);
    let started = Instant::now();
    loop {
        if let Some(value) = etcd_value(etcd, &key).await
            && let Ok(parsed) = sniwalk::pem::parse_certificate_pem(&value)
        {
            assert!(
                parsed.markers.is_acme_issued(),
                "stored by ACME\n{value}\n{}",
                context()
            );
            return (parsed.leaf.sha256, value);
        }
        assert!(
            started.elapsed() < ORDER_LIMIT,
            "no certificate in etcd at {key} within {ORDER_LIMIT:?}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that `domain`'s certificate key in etcd was written exactly
/// once (its etcd `version` is 1): one certificate stored, never
/// replaced.
async fn assert_written_once(etcd: &TestEtcd, domain: &str, context: &dyn Fn() -> String) {
    let key = certificate_key_of(domain);
    assert_eq!(
        etcd_version(etcd, &key).await,
        Some(1),
        "{key} written exactly once (etcd version 1)\n{}",
        context()
    );
}

/// Waits until no order lock and no challenge answer is left in etcd (the
/// instances' liveness keys, `locks/instances/`, stay).
async fn wait_order_keys_gone(etcd: &TestEtcd, context: &dyn Fn() -> String) {
    let started = Instant::now();
    loop {
        let left: Vec<String> = etcd_keys(etcd, PREFIX)
            .await
            .into_iter()
            .filter(|key| {
                ["locks/orders/", "http-01/", "tls-alpn-01/"]
                    .iter()
                    .any(|kind| key.starts_with(&format!("{PREFIX}{kind}")))
            })
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < CLEANUP_LIMIT,
            "order keys left in etcd {CLEANUP_LIMIT:?} after the order: {left:?}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The orders placed by `instances`, all together.
fn orders(instances: &[&Instance]) -> usize {
    instances
        .iter()
        .map(|i| i.count("ACME: order placed"))
        .sum()
}

/// The orders `instance` placed for `domain`.
fn orders_for(instance: &Instance, domain: &str) -> usize {
    instance
        .logs()
        .lines()
        .filter(|l| l.contains("ACME: order placed") && l.contains(domain))
        .count()
}

/// Instances' logs, Pebble's and etcd's, for failure messages.
fn logs(instances: &[&Instance], env: &PebbleEnv, etcd: &TestEtcd) -> String {
    format!(
        "{}---- etcd ----\n{}",
        all_logs(instances, env),
        etcd.logs()
    )
}

/// Another domain, not configured anywhere: a job started through the
/// admin API adds it and orders it.
const JOB_DOMAIN: &str = "api.example.test";

/// Polls job `id` on the admin API at `admin` until it is `Completed`;
/// panics when it fails or does not complete within [`ORDER_LIMIT`].
async fn wait_job_completed(
    admin: SocketAddr,
    id: &str,
    context: &dyn Fn() -> String,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let (status, body) =
            common::admin_call(admin, "GET", &format!("/certificates/jobs/{id}"), "").await;
        // 404 until the job, shared through etcd, reached this instance.
        if status == 200 {
            let job: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("job JSON: {e}\n{body}"));
            match job["runtimeStatus"].as_str() {
                Some("Completed") => return job,
                Some("Failed") => panic!("job {id} failed: {job}\n{}", context()),
                _ => {}
            }
        }
        assert!(
            started.elapsed() < ORDER_LIMIT,
            "job {id} not completed on {admin} within {ORDER_LIMIT:?} (last answer: {status} \
             {body})\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pebble validates HTTP-01 only on A's `http` port (every name resolves
/// to 127.0.0.1, where Pebble goes to that port only); A has `SHOP`
/// without ACME, so it never orders it. B and C (127.0.0.1 too, on ports
/// of their own) both want it: one of them orders, the other waits for
/// the lock and then finds the stored certificate. A answers the challenge
/// from the answer in etcd, and all three serve the certificate stored in
/// etcd, which was written once.
///
/// Then a job started through B's admin API for a domain no configuration
/// names is polled on C's until it completes: C never saw the request,
/// only what B shared through etcd; the job's certificate is served by
/// all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_one_order_http01_answered_by_one_that_did_not_order() {
    within(TEST_LIMIT, "three instances, one HTTP-01 order", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let etcd = TestEtcd::start().await;
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
        let spec = |acme: bool, http: SocketAddr, https: SocketAddr, admin: SocketAddr| Spec {
            env: &env,
            etcd: &etcd,
            state: Path::new(""),
            acme,
            challenge: "http-01",
            lease: "15s",
            http,
            https,
            admin: Some(admin),
        };
        let local = || addr("127.0.0.1", free_port("127.0.0.1"));
        let a = start(
            "A",
            tmp.path(),
            spec(false, addr("127.0.0.1", validated), local(), local()),
        )
        .await;
        let (b_admin, c_admin) = (local(), local());
        let (b, c) = tokio::join!(
            start("B", tmp.path(), spec(true, local(), local(), b_admin)),
            start("C", tmp.path(), spec(true, local(), local(), c_admin)),
        );
        let context = || logs(&[&a, &b, &c], &env, &etcd);

        let (stored, _) = stored_in_etcd(&etcd, &context).await;
        for instance in [&a, &b, &c] {
            wait_served(instance, SHOP, &client, &stored, &context).await;
        }
        wait_order_keys_gone(&etcd, &context).await;
        // Everyone serves it and nothing is held: a stray second order would
        // have been placed by now; give its log line a moment all the same.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            orders(&[&a, &b, &c]),
            1,
            "exactly one order across all three\n{}",
            context()
        );
        assert_eq!(a.count("ACME: order placed"), 0, "{}", context());
        assert!(
            a.count("answered an ACME HTTP-01 challenge") >= 1,
            "A answered the challenge of the instance that ordered\n{}",
            context()
        );
        for instance in [&b, &c] {
            assert_eq!(
                instance.count("answered an ACME HTTP-01 challenge"),
                0,
                "the CA never reached {}\n{}",
                instance.name,
                context()
            );
        }
        assert_written_once(&etcd, SHOP, &context).await;
        for instance in [&a, &b, &c] {
            assert_eq!(
                verified_leaf(instance.https, SHOP, &client)
                    .await
                    .as_deref(),
                Ok(stored.as_str()),
                "{} still serves the stored certificate",
                instance.name
            );
        }

        // A job started on B, polled on C.
        let (status, accepted) = common::admin_call(
            b_admin,
            "POST",
            "/certificates",
            &format!(r#"{{"hostnames": [{{"hostname": "{JOB_DOMAIN}"}}]}}"#),
        )
        .await;
        assert_eq!(status, 202, "{accepted}\n{}", context());
        let accepted: serde_json::Value = serde_json::from_str(&accepted)
            .unwrap_or_else(|e| panic!("202 body JSON: {e}\n{accepted}"));
        let id = accepted["id"].as_str().expect("a job id").to_string();
        let job = wait_job_completed(c_admin, &id, &context).await;
        assert_eq!(job["id"], id.as_str(), "{job}");
        assert_eq!(job["hostnames"][0]["hostname"], JOB_DOMAIN, "{job}");
        let (issued, _) = stored_in_etcd_for(&etcd, JOB_DOMAIN, &context).await;
        for instance in [&a, &b, &c] {
            wait_served(instance, JOB_DOMAIN, &client, &issued, &context).await;
        }
        wait_order_keys_gone(&etcd, &context).await;
        assert_eq!(
            [&a, &b, &c]
                .iter()
                .map(|i| orders_for(i, JOB_DOMAIN))
                .sum::<usize>(),
            1,
            "one order for {JOB_DOMAIN}\n{}",
            context()
        );
        assert_written_once(&etcd, JOB_DOMAIN, &context).await;
        assert_eq!(
            orders(&[&a, &b, &c]),
            2,
            "no other order for {SHOP} meanwhile\n{}",
            context()
        );
    })
    .await;
}

/// TLS-ALPN-01: Pebble validates on A's `https` listener only (127.0.0.1,
/// its `tls_port`); A has `SHOP` without ACME. B (127.0.0.1, on ports of
/// its own) orders: A
/// makes the validation certificate from the digest B put in etcd and
/// presents it; both serve the certificate stored in etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_answered_by_an_instance_that_did_not_order() {
    within(
        TEST_LIMIT,
        "TLS-ALPN-01 answered by another instance",
        async {
            let tmp = tempfile::tempdir().expect("tempdir");
            let etcd = TestEtcd::start().await;
            let validated = free_port("127.0.0.1");
            let env = PebbleEnv::start_with(
                &tmp.path().join("pebble"),
                PebbleOptions {
                    tls_port: Some(validated),
                    ..PebbleOptions::default()
                },
            )
            .await;
            let client = common::pebble::client_trusting(&env.root_pem().await);
            let spec = |acme: bool, http: SocketAddr, https: SocketAddr| Spec {
                env: &env,
                etcd: &etcd,
                state: Path::new(""),
                acme,
                challenge: "tls-alpn-01",
                lease: "15s",
                http,
                https,
                admin: None,
            };
            let a_https = addr("127.0.0.1", validated);
            let a = start(
                "A",
                tmp.path(),
                spec(false, addr("127.0.0.1", free_port("127.0.0.1")), a_https),
            )
            .await;
            let b_https = addr("127.0.0.1", free_port("127.0.0.1"));
            let b = start(
                "B",
                tmp.path(),
                spec(true, addr("127.0.0.1", free_port("127.0.0.1")), b_https),
            )
            .await;
            let context = || logs(&[&a, &b], &env, &etcd);

            let (stored, _) = stored_in_etcd(&etcd, &context).await;
            wait_served(&b, SHOP, &client, &stored, &context).await;
            wait_served(&a, SHOP, &client, &stored, &context).await;
            wait_order_keys_gone(&etcd, &context).await;
            assert_eq!(b.count("ACME: order placed"), 1, "{}", context());
            assert_eq!(a.count("ACME: order placed"), 0, "{}", context());
            assert!(
                a.count("tls-alpn-01 challenge certificate chosen") >= 1,
                "A presented the validation certificate for B's order\n{}",
                context()
            );
            assert_eq!(
                b.count("tls-alpn-01 challenge certificate chosen"),
                0,
                "the CA never reached B\n{}",
                context()
            );
        },
    )
    .await;
}

/// Where the CA's HTTP-01 validations go in the lock-holder tests, and
/// after how long.
#[derive(Clone, Debug)]
struct Route {
    /// How long a new validation connection is held before it is passed on.
    hold: Duration,
    /// Tried in turn; the first that accepts gets the connection.
    targets: Vec<SocketAddr>,
}

/// A TCP relay standing where Pebble validates HTTP-01 (127.0.0.1, its
/// `http_port`), passing each connection on to the instances' `http`
/// listeners after [`Route::hold`]. It keeps the first order deterministically
/// mid-order for the hold, so the test can kill or pause the lock holder
/// before it stores anything (see [`two_ordering_instances`]), and lets
/// the test send the CA to the survivor only.
struct Relay {
    route: Arc<Mutex<Route>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(listen: SocketAddr, route: Route) -> Relay {
        let listener = TcpListener::bind(listen).await.expect("bind the relay");
        let route = Arc::new(Mutex::new(route));
        let shared = route.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                tokio::spawn(pass_on(inbound, shared.clone()));
            }
        });
        Relay { route, task }
    }

    /// From now on: hold new connections `hold`, pass them on to `targets`.
    fn set(&self, hold: Duration, targets: Vec<SocketAddr>) {
        *self.route.lock().expect("relay route") = Route { hold, targets };
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Holds `inbound` for the route's hold (as it was when the connection
/// came), then copies it both ways to the first target that accepts.
async fn pass_on(mut inbound: TcpStream, route: Arc<Mutex<Route>>) {
    let hold = route.lock().expect("relay route").hold;
    tokio::time::sleep(hold).await;
    let targets = route.lock().expect("relay route").targets.clone();
    for target in targets {
        if let Ok(Ok(mut outbound)) =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(target)).await
        {
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            return;
        }
    }
}

/// How long the relay holds the CA's validations of the first order in
/// the kill test ([`a_killed_lock_holder_is_taken_over_after_its_lease`]).
/// The
/// lock holder's order cannot become ready, let alone be stored, before
/// this much time has passed since it asked the CA to validate: far longer
/// than the test needs to see the lock in etcd and kill or pause its
/// holder (in practice the holder is then still registering its account
/// or placing the order). Without the hold, a whole order takes well under
/// a second against Pebble, and the test would race it.
///
/// Why not Pebble's own random validation delay (`PEBBLE_VA_NOSLEEP`
/// unset, `PEBBLE_VA_SLEEPTIME`): it sleeps a random whole number of
/// seconds from 0 up, so some runs would not be slowed at all, and it
/// would slow the survivor's order as well. Pebble keeps
/// `PEBBLE_VA_NOSLEEP=1` (tests/common/pebble.rs) and the hold is ours.
const FIRST_ORDER_HOLD: Duration = Duration::from_secs(4);

/// Pebble, its issuing root as a client config, the relay on 127.0.0.1
/// where Pebble validates HTTP-01 (holding validations `hold`), and two
/// instances that both want `SHOP` (`storage.lease: 3s`, extra
/// environment `env`): A and B on 127.0.0.1 with ports of their own, each
/// with its own `http` listener behind the relay. Returns also each one's
/// `http` address.
async fn two_ordering_instances(
    dir: &Path,
    etcd: &TestEtcd,
    hold: Duration,
    env_vars: &[(&str, &str)],
) -> (
    PebbleEnv,
    Arc<rustls::ClientConfig>,
    Relay,
    [(Instance, SocketAddr); 2],
) {
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
    let a_http = addr("127.0.0.1", free_port("127.0.0.1"));
    let b_http = addr("127.0.0.1", free_port("127.0.0.1"));
    let relay = Relay::start(
        addr("127.0.0.1", validated),
        Route {
            hold,
            targets: vec![a_http, b_http],
        },
    )
    .await;
    let spec = |http: SocketAddr, https: SocketAddr| Spec {
        env: &env,
        etcd,
        state: Path::new(""),
        acme: true,
        challenge: "http-01",
        lease: "3s",
        http,
        https,
        admin: None,
    };
    let a_https = addr("127.0.0.1", free_port("127.0.0.1"));
    let b_https = addr("127.0.0.1", free_port("127.0.0.1"));
    let (a, b) = tokio::join!(
        start_with_env("A", dir, spec(a_http, a_https), env_vars),
        start_with_env("B", dir, spec(b_http, b_https), env_vars),
    );
    (env, client, relay, [(a, a_http), (b, b_http)])
}

/// The pid in a lock holder's name (`<host> pid <pid>`).
fn holder_pid(holder: &str) -> Option<u32> {
    holder.rsplit_once(" pid ")?.1.trim().parse().ok()
}

/// Waits until `SHOP`'s order lock is in etcd, held by one of `instances`:
/// that one's index.
async fn lock_holder(etcd: &TestEtcd, instances: &[Instance], env: &PebbleEnv) -> usize {
    let started = Instant::now();
    loop {
        if let Some(holder) = etcd_value(etcd, &lock_key()).await {
            let pid = holder_pid(&holder);
            return instances
                .iter()
                .position(|i| pid.is_some() && i.pid() == pid)
                .unwrap_or_else(|| panic!("the lock names none of the instances: {holder:?}"));
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no order lock in etcd at {}\n{}",
            lock_key(),
            logs(&instances.iter().collect::<Vec<_>>(), env, etcd)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The instance holding the order lock is killed (SIGKILL) mid-order: its
/// lease (3 s) runs out in etcd, the other instance takes the lock over,
/// orders, stores the one certificate in etcd and serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lock_holder_is_taken_over_after_its_lease() {
    within(TEST_LIMIT, "takeover after a kill", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let etcd = TestEtcd::start().await;
        let (env, client, relay, [(a, a_http), (b, b_http)]) =
            two_ordering_instances(tmp.path(), &etcd, FIRST_ORDER_HOLD, &[]).await;
        let mut instances = [a, b];
        let https = [a_http, b_http];

        let held = lock_holder(&etcd, &instances, &env).await;
        let other = 1 - held;
        instances[held].kill();
        let killed_at = Instant::now();
        // The CA now reaches the survivor only, at once.
        relay.set(Duration::ZERO, vec![https[other]]);
        let [a, b] = &instances;
        let (holder, survivor) = if held == 0 { (a, b) } else { (b, a) };
        let context = || logs(&[a, b], &env, &etcd);
        assert_eq!(
            etcd_value(&etcd, &certificate_key()).await,
            None,
            "{} stored before it could be killed: the test did not interrupt an order\n{}",
            holder.name,
            context()
        );

        // The survivor takes the lock over once the dead holder's lease has
        // run out (renewed every second, 3 s long: at least 2 s after the
        // kill).
        let survivor_pid = survivor.pid().expect("the survivor runs");
        loop {
            let value = etcd_value(&etcd, &lock_key()).await;
            if value.as_deref().and_then(holder_pid) == Some(survivor_pid) {
                break;
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(30),
                "{} never took the lock over (lock: {value:?})\n{}",
                survivor.name,
                context()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let waited = killed_at.elapsed();
        eprintln!(
            "measured: lease 3s; {} took the lock over {:.2}s after {} was killed",
            survivor.name,
            waited.as_secs_f64(),
            holder.name
        );
        assert!(
            waited >= Duration::from_secs(1),
            "taken over {waited:?} after the kill: before the lease could have run out\n{}",
            context()
        );

        let (stored, _) = stored_in_etcd(&etcd, &context).await;
        wait_served(survivor, SHOP, &client, &stored, &context).await;
        wait_order_keys_gone(&etcd, &context).await;
        assert_written_once(&etcd, SHOP, &context).await;
        assert_eq!(survivor.count("ACME: order placed"), 1, "{}", context());
        assert!(
            survivor.count("another instance is ordering this domain; waiting for it") >= 1,
            "{}",
            context()
        );
    })
    .await;
}

/// How long an instance of the pause test waits between receiving its
/// certificate from the CA and storing it (`SNIWALK_TEST_HOLD_BEFORE_STORE`,
/// debug builds): the window in which the test sees the "test hold before
/// store" line and pauses it. Far longer than reading a log file takes,
/// even on a slow machine.
const STORE_HOLD: Duration = Duration::from_secs(6);

/// How long the paused holder may take, once resumed, to log the refusal.
const REFUSAL_LIMIT: Duration = Duration::from_secs(30);

/// Which of `instances` (if any) logged "test hold before store" for
/// `SHOP`.
fn holding_before_store(instances: &[Instance]) -> Option<usize> {
    instances.iter().position(|i| {
        i.logs()
            .lines()
            .any(|l| l.contains("test hold before store") && l.contains(SHOP))
    })
}

/// The instance holding the order lock has its certificate from the CA in
/// hand and is about to store it (`SNIWALK_TEST_HOLD_BEFORE_STORE`) when
/// it is paused (SIGSTOP). Past its lease the other instance takes the
/// lock over, orders, stores its own certificate and serves it. Resumed
/// (SIGCONT), the paused one offers
/// its late certificate to the fenced put: refused and logged, the value
/// in etcd is still the other's (written once), and both instances serve
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_lock_holder_cannot_replace_the_certificate_after_its_lease() {
    within(TEST_LIMIT, "a lock holder paused past its lease", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let etcd = TestEtcd::start().await;
        let hold = STORE_HOLD.as_millis().to_string();
        let (env, client, relay, [(a, a_http), (b, b_http)]) = two_ordering_instances(
            tmp.path(),
            &etcd,
            Duration::ZERO,
            &[("SNIWALK_TEST_HOLD_BEFORE_STORE", &hold)],
        )
        .await;
        let instances = [a, b];
        let https = [a_http, b_http];
        let context = || logs(&[&instances[0], &instances[1]], &env, &etcd);

        // Whoever got the lock orders at once and then holds its
        // certificate: pause it there.
        let started = Instant::now();
        let held = loop {
            if let Some(held) = holding_before_store(&instances) {
                break held;
            }
            assert!(
                started.elapsed() < ORDER_LIMIT,
                "no instance received a certificate within {ORDER_LIMIT:?}\n{}",
                context()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (holder, survivor) = (&instances[held], &instances[1 - held]);
        holder.pause();
        let paused_at = Instant::now();
        // The CA now reaches the survivor only (a paused process's socket
        // still accepts, and never answers).
        relay.set(Duration::ZERO, vec![https[1 - held]]);
        assert_eq!(
            etcd_value(&etcd, &certificate_key()).await,
            None,
            "{} stored before it could be paused: the test did not pause it before the store\n{}",
            holder.name,
            context()
        );
        assert_eq!(
            holder.count("ACME: order placed"),
            1,
            "the paused instance had ordered\n{}",
            context()
        );

        // The survivor takes the lock over after the holder's lease (3 s),
        // orders, holds its own certificate the same while, and stores it.
        let (stored, pem) = stored_in_etcd(&etcd, &context).await;
        eprintln!(
            "measured: lease 3s, hold {STORE_HOLD:?}; {} stored its certificate {:.2}s after {} \
             was paused",
            survivor.name,
            paused_at.elapsed().as_secs_f64(),
            holder.name
        );
        assert!(
            survivor.count("test hold before store") >= 1,
            "{} stored a certificate it ordered itself\n{}",
            survivor.name,
            context()
        );
        wait_served(survivor, SHOP, &client, &stored, &context).await;
        assert_eq!(
            holder.count("the late certificate is not stored"),
            0,
            "nothing logged while paused\n{}",
            context()
        );

        // Resumed, the holder's hold is over: it offers its certificate to
        // the fenced put, which refuses it.
        holder.resume();
        let resumed_at = Instant::now();
        while holder.count("the late certificate is not stored") == 0 {
            assert!(
                resumed_at.elapsed() < REFUSAL_LIMIT,
                "{} did not log the refusal of its late certificate within {REFUSAL_LIMIT:?}\n{}",
                holder.name,
                context()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let now = etcd_value(&etcd, &certificate_key())
            .await
            .expect("a certificate stays in etcd");
        let now_leaf = sniwalk::pem::parse_certificate_pem(&now)
            .expect("the certificate in etcd loads")
            .leaf
            .sha256;
        assert_eq!(
            now_leaf,
            stored,
            "the leaf in etcd is still {}'s\n{}",
            survivor.name,
            context()
        );
        assert_eq!(now, pem, "the value in etcd is unchanged");
        assert_written_once(&etcd, SHOP, &context).await;
        // Every instance serves the survivor's certificate, the resumed
        // one too (it follows the storage again).
        for instance in [survivor, holder] {
            wait_served(instance, SHOP, &client, &stored, &context).await;
        }
        assert_eq!(survivor.count("ACME: order placed"), 1, "{}", context());
    })
    .await;
}

/// One instance serves the certificate it ordered and stored in etcd.
/// Then etcd gets garbage at that key, then a certificate cut short: each
/// time the instance logs an error naming the key and keeps serving the
/// last good certificate (its cache is not overwritten), also after a
/// restart, which lists the bad value again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_in_etcd_leaves_the_last_good_certificate_served() {
    within(TEST_LIMIT, "a bad value in etcd", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let etcd = TestEtcd::start().await;
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
        let https = addr("127.0.0.1", free_port("127.0.0.1"));
        let mut a = start(
            "A",
            tmp.path(),
            Spec {
                env: &env,
                etcd: &etcd,
                state: Path::new(""),
                acme: true,
                challenge: "http-01",
                lease: "15s",
                http: addr("127.0.0.1", validated),
                https,
                admin: None,
            },
        )
        .await;
        let cache = StateLayout::new(tmp.path().join("A").join("state")).stored_certificate(SHOP);

        let (good, good_pem) = stored_in_etcd(&etcd, &|| logs(&[&a], &env, &etcd)).await;
        wait_served(&a, SHOP, &client, &good, &|| logs(&[&a], &env, &etcd)).await;

        let leaf_at = good_pem
            .find("-----BEGIN CERTIFICATE-----")
            .expect("the stored value has a certificate");
        let truncated = &good_pem[..leaf_at + 100];
        for (n, (what, bad)) in [
            ("garbage", "garbage"),
            ("a truncated certificate", truncated),
        ]
        .into_iter()
        .enumerate()
        {
            etcd_put(&etcd, &certificate_key(), bad).await;
            wait_refused(&a, n + 1, what, &|| logs(&[&a], &env, &etcd)).await;
            assert_eq!(
                verified_leaf(a.https, SHOP, &client).await.as_deref(),
                Ok(good.as_str()),
                "after {what}, the last good certificate is served\n{}",
                logs(&[&a], &env, &etcd)
            );
            let cached = std::fs::read_to_string(&cache).expect("the cache file stays");
            assert_eq!(cached, good_pem, "after {what}, the cache is untouched");
        }

        // A restart lists the truncated value again: refused again, and
        // the cache still serves.
        a.restart().await;
        wait_refused(&a, 3, "the truncated certificate at restart", &|| {
            logs(&[&a], &env, &etcd)
        })
        .await;
        wait_served(&a, SHOP, &client, &good, &|| logs(&[&a], &env, &etcd)).await;
        assert_eq!(
            a.count("ACME: order placed"),
            1,
            "no new order over a bad stored value\n{}",
            logs(&[&a], &env, &etcd)
        );
    })
    .await;
}

/// Waits until `instance` has logged `n` refusals of the value at
/// `SHOP`'s certificate key, each naming the key.
async fn wait_refused(instance: &Instance, n: usize, what: &str, context: &dyn Fn() -> String) {
    let key = format!("certificates/{SHOP}");
    let started = Instant::now();
    loop {
        let logs = instance.logs();
        let refusals: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("does not load"))
            .collect();
        if refusals.len() >= n {
            for line in refusals {
                assert!(line.contains(&key), "the error names the key {key}: {line}");
                assert!(line.contains("ERROR"), "logged as an error: {line}");
            }
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} did not refuse {what} within 10 s\n{}",
            instance.name,
            context()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// etcd is down when the certificate is due: the instance starts, places
/// no order and says why; once etcd is back the order is placed without a
/// restart, the certificate stored in etcd and served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_order_while_etcd_is_down_and_the_order_resumes_when_it_is_back() {
    within(TEST_LIMIT, "orders wait for etcd", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut etcd = TestEtcd::start().await;
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
        etcd.stop();
        let https = addr("127.0.0.1", free_port("127.0.0.1"));
        let a = start(
            "A",
            tmp.path(),
            Spec {
                env: &env,
                etcd: &etcd,
                state: Path::new(""),
                acme: true,
                challenge: "http-01",
                lease: "2s",
                http: addr("127.0.0.1", validated),
                https,
                admin: None,
            },
        )
        .await;
        let context = || all_logs(&[&a], &env);
        // Handshakes are answered (the default certificate) and the order
        // waits: no request to the CA while nothing could be stored.
        within(Duration::from_secs(20), "the outage seen", async {
            while a.count("storage unreachable") == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        // Long enough for the ACME task to have tried (and held back) the
        // order: it is due at once.
        tokio::time::sleep(Duration::from_secs(3)).await;
        // The handshake for SHOP succeeds with A's generated default
        // certificate (which Pebble's root does not verify).
        let default_pem = std::fs::read_to_string(
            StateLayout::new(tmp.path().join("A").join("state")).generated_default(),
        )
        .expect("A generated its default certificate");
        let default_leaf = sniwalk::pem::parse_certificate_pem(&default_pem)
            .expect("the default certificate loads")
            .leaf
            .sha256;
        assert_eq!(
            common::try_served_leaf(https, Some(SHOP)).await,
            Ok(default_leaf),
            "the default certificate is served while nothing is stored\n{}",
            context()
        );
        assert!(
            verified_leaf(https, SHOP, &client).await.is_err(),
            "no certificate from the CA yet"
        );
        assert_eq!(
            orders(&[&a]),
            0,
            "no order while etcd is down\n{}",
            context()
        );
        assert!(a.count("storage unreachable") >= 1, "{}", context());

        etcd.restart().await;
        let (stored, _) = stored_in_etcd(&etcd, &context).await;
        wait_served(&a, SHOP, &client, &stored, &context).await;
        assert_eq!(orders(&[&a]), 1, "{}", context());
        assert!(a.count("storage reachable again") >= 1, "{}", context());
    })
    .await;
}
