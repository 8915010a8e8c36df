//! sniwalk on etcd storage when etcd goes away (README, "Running several
//! instances"): handshakes keep succeeding with what the instance has,
//! `/status` and `sniwalk_storage_up` say so, and once etcd is back a
//! certificate stored there is served without a restart; an instance
//! started while etcd is down serves its local cache; a refused password
//! stops the start with a message naming the setting.
//!
//! Real etcd (tests/common/etcd.rs), real handshakes, the proxy in-process
//! with its admin API on a free loopback port.
#![cfg(feature = "etcd")]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::etcd::{EtcdTls, TestEtcd};
use common::{TestProxy, cert, raw_exchange, try_served_leaf, within};
use tokio::net::TcpStream;

const SHOP: &str = "shop.example.com";

/// The bound of one test.
const TEST_LIMIT: Duration = Duration::from_secs(60);

/// How long a change may take to show (push, reload, lease).
const CHANGE_LIMIT: Duration = Duration::from_secs(10);

/// How long one `sniwalk run` that must stop at once, or one
/// `sniwalk check`, may take (check waits at most 5 s for the storage).
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A proxy on etcd `endpoint` (lease 2 s) with `SHOP` as a domain, an
/// https listener and the admin API on `admin`; `auth` adds a user and
/// its password file.
fn yaml(dir: &Path, endpoint: &str, admin: SocketAddr, auth: Option<(&str, &str)>) -> String {
    let auth = match auth {
        Some((user, password)) => {
            let file = dir.join("etcd.password");
            std::fs::write(&file, format!("{password}\n")).expect("password file");
            format!("  username: {user}\n  password_file: {}\n", file.display())
        }
        None => String::new(),
    };
    yaml_with_storage(endpoint, admin, &auth)
}

/// [`yaml`] with `storage` lines (indented by two spaces) added to the
/// `storage` section.
fn yaml_with_storage(endpoint: &str, admin: SocketAddr, storage: &str) -> String {
    format!(
        "master_domain: example.com\nstate_dir: state\n\
         storage:\n  kind: etcd\n  endpoints: [\"{endpoint}\"]\n  prefix: /sniwalk/\n  lease: 2s\n{storage}\
         admin: {{ bind: \"{admin}\" }}\n\
         domains:\n  example.com: {{}}\n  {SHOP}: {{}}\n\
         listeners:\n  - name: web\n    kind: https\n    bind: 127.0.0.1:0\n    access_log: false\n    \
         routes:\n      - {{ host: \"*\", respond: {{ body: hello }} }}\n"
    )
}

/// `GET path` on the admin API: status and body.
async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(admin).await.expect("admin API");
    let response = raw_exchange(
        &mut tcp,
        &format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"),
    )
    .await;
    (response.status, response.body)
}

/// `sniwalk_storage_up` as the admin API's `/metrics` shows it.
async fn storage_up(admin: SocketAddr) -> Option<f64> {
    let (_, text) = admin_get(admin, "/metrics").await;
    let scrape = common::scrape::parse(&text);
    common::scrape::value(&scrape, "sniwalk_storage_up", &[])
}

/// Waits until `check` holds, polling every 50 ms, at most [`CHANGE_LIMIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(CHANGE_LIMIT, what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Stores `pem` for `SHOP` in etcd the way sniwalk does (one put).
async fn store(etcd: &TestEtcd, pem: &str) {
    etcd.etcdctl(&["put", "--", &format!("/sniwalk/certificates/{SHOP}"), pem])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_serving_is_reported_and_ends_without_a_restart() {
    within(TEST_LIMIT, "etcd outage", async {
        let mut etcd = TestEtcd::start().await;
        let first = cert(&[SHOP]);
        store(&etcd, &first.pem).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let (proxy, _reloads) = TestProxy::start_with_metrics(
            dir.path(),
            &yaml(dir.path(), &etcd.endpoint(), admin, None),
        )
        .await;
        let https = proxy.addr();
        // Pushed from etcd into the cache, then served.
        eventually("the stored certificate served", || async {
            try_served_leaf(https, Some(SHOP)).await.ok().as_deref() == Some(first.sha256.as_str())
        })
        .await;
        let cached = dir
            .path()
            .join("state/certificates")
            .join(format!("{SHOP}.pem"));
        assert_eq!(std::fs::read_to_string(&cached).expect("cache"), first.pem);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&cached)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the cache holds a private key");
        }
        assert_eq!(storage_up(admin).await, Some(1.0));
        // Its status and liveness keys, on its lease.
        let status = within(CHANGE_LIMIT, "the status key", async {
            loop {
                let keys = etcd
                    .etcdctl(&["get", "--prefix", "--print-value-only", "/sniwalk/status/"])
                    .await;
                if !keys.trim().is_empty() {
                    return keys;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let status: serde_json::Value = serde_json::from_str(status.trim()).expect("status JSON");
        assert!(
            status["instance"]
                .as_str()
                .is_some_and(|i| i.contains("pid")),
            "{status}"
        );
        assert!(status["acme"]["domains"].is_object(), "{status}");

        etcd.stop();
        eventually("the outage reported", || async {
            storage_up(admin).await == Some(0.0)
        })
        .await;
        let (status, body) = admin_get(admin, "/status").await;
        assert_eq!(status, 200);
        let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
        assert_eq!(status["storage"]["up"], false, "{status}");
        assert!(
            status["storage"]["engine"]
                .as_str()
                .is_some_and(|e| e.starts_with("etcd ")),
            "{status}"
        );
        assert!(status["storage"]["error"].is_string(), "{status}");
        // Handshakes go on with what the instance has.
        for _ in 0..5 {
            assert_eq!(
                try_served_leaf(https, Some(SHOP)).await.as_deref(),
                Ok(first.sha256.as_str())
            );
        }

        etcd.restart().await;
        eventually("the storage up again", || async {
            storage_up(admin).await == Some(1.0)
        })
        .await;
        // A certificate stored now reaches the instance without a restart.
        let second = cert(&[SHOP]);
        store(&etcd, &second.pem).await;
        eventually("the new certificate served", || async {
            try_served_leaf(https, Some(SHOP)).await.ok().as_deref() == Some(second.sha256.as_str())
        })
        .await;
        let (_, body) = admin_get(admin, "/status").await;
        let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
        assert_eq!(status["storage"]["up"], true, "{status}");
        proxy.stop().await;
        // A stopped instance leaves no status and no liveness key behind.
        let left = etcd
            .etcdctl(&["get", "--prefix", "--keys-only", "/sniwalk/"])
            .await;
        assert!(
            !left.contains("/sniwalk/status/") && !left.contains("/sniwalk/locks/"),
            "{left}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_while_etcd_is_down_serves_its_cache() {
    within(TEST_LIMIT, "start during an outage", async {
        let mut etcd = TestEtcd::start().await;
        etcd.enable_auth("sniwalk", "pw-1", "/sniwalk/").await;
        let stored = cert(&[SHOP]);
        store(&etcd, &stored.pem).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let config = yaml(
            dir.path(),
            &etcd.endpoint(),
            admin,
            Some(("sniwalk", "pw-1")),
        );
        let (proxy, _reloads) = TestProxy::start_with_metrics(dir.path(), &config).await;
        let https = proxy.addr();
        eventually("the stored certificate served", || async {
            try_served_leaf(https, Some(SHOP)).await.ok().as_deref() == Some(stored.sha256.as_str())
        })
        .await;
        proxy.stop().await;

        // The user authenticates at start, which cannot happen now: the
        // instance starts all the same and serves its cache.
        etcd.stop();
        let (proxy, _reloads) = TestProxy::start_with_metrics(dir.path(), &config).await;
        let https = proxy.addr();
        eventually("the cached certificate served", || async {
            try_served_leaf(https, Some(SHOP)).await.ok().as_deref() == Some(stored.sha256.as_str())
        })
        .await;
        eventually("the outage reported", || async {
            storage_up(admin).await == Some(0.0)
        })
        .await;

        etcd.restart().await;
        eventually("connected once etcd is back", || async {
            storage_up(admin).await == Some(1.0)
        })
        .await;
        let newer = cert(&[SHOP]);
        store(&etcd, &newer.pem).await;
        eventually("the newer certificate served", || async {
            try_served_leaf(https, Some(SHOP)).await.ok().as_deref() == Some(newer.sha256.as_str())
        })
        .await;
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_stops_the_start_with_its_setting_named() {
    within(TEST_LIMIT, "refused password", async {
        let mut etcd = TestEtcd::start().await;
        etcd.enable_auth("sniwalk", "right", "/sniwalk/").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let config = yaml(
            dir.path(),
            &etcd.endpoint(),
            admin,
            Some(("sniwalk", "wrong")),
        );
        let path = dir.path().join("proxy.yaml");
        std::fs::write(&path, &config).expect("config");
        let mut run = std::process::Command::new(common::sniwalk_bin());
        run.args(["run", "--config"]).arg(&path);
        // A start that does not stop (the refusal missed) is killed at the
        // deadline and fails the test.
        let output = common::run_bounded(run, RUN_LIMIT).await;
        assert!(!output.status.success(), "the start fails");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("refused access") && stderr.contains("storage.username"),
            "{stderr}"
        );
    })
    .await;
}

/// Runs `sniwalk check` (text, then `--json`) on `config`: exit code,
/// standard output of the text run and the JSON report.
async fn check(config: &Path) -> (Option<i32>, String, serde_json::Value) {
    let run = |json: bool| {
        let mut command = std::process::Command::new(common::sniwalk_bin());
        command.args(["check", "--config"]).arg(config);
        if json {
            command.arg("--json");
        }
        common::run_bounded(command, RUN_LIMIT)
    };
    let text = run(false).await;
    let json = run(true).await;
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json prints JSON: {e}\n{}",
            String::from_utf8_lossy(&json.stdout)
        )
    });
    (
        text.status.code(),
        String::from_utf8_lossy(&text.stdout).into_owned(),
        report,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_whether_the_storage_answers() {
    within(TEST_LIMIT, "check and the storage", async {
        let mut etcd = TestEtcd::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let path = dir.path().join("proxy.yaml");
        std::fs::write(&path, yaml(dir.path(), &etcd.endpoint(), admin, None)).expect("config");
        let (code, text, report) = check(&path).await;
        assert_eq!(code, Some(0), "{text}");
        assert!(
            text.contains("storage: etcd") && text.contains("reachable, 0 instance(s) alive"),
            "{text}"
        );
        assert_eq!(report["storage"]["up"], true, "{report}");
        etcd.stop();
        let (code, text, report) = check(&path).await;
        assert_eq!(code, Some(1), "an unreachable storage is an error\n{text}");
        assert!(text.contains("UNREACHABLE"), "{text}");
        assert_eq!(report["storage"]["up"], false, "{report}");
        assert!(report["storage"]["error"].is_string(), "{report}");
    })
    .await;
}

/// etcd serves TLS with a certificate the configured `storage.tls.ca_file`
/// did not sign: `check` says the handshake failed on etcd's certificate,
/// names `storage.tls.ca_file`, and exits 1 (text and JSON). The same
/// configuration with the right CA answers, so the CA is what differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_ca_file_when_etcd_certificate_does_not_verify() {
    within(TEST_LIMIT, "check with a wrong CA", async {
        let (tls, client_cert, client_key) = EtcdTls::with_client();
        let etcd = TestEtcd::start_tls(&tls).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let right_ca = file("etcd-ca.pem", &tls.ca_pem);
        let wrong_ca = file("other-ca.pem", &common::test_ca("another CA").0);
        let client_cert = file("client.pem", &client_cert);
        let client_key = file("client-key.pem", &client_key);
        let config = |name: &str, ca: &Path| {
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let storage = format!(
                "  tls: {{ ca_file: {}, client_certificate: {}, client_key: {} }}\n",
                ca.display(),
                client_cert.display(),
                client_key.display()
            );
            file(name, &yaml_with_storage(&etcd.endpoint(), admin, &storage))
        };

        let (code, text, report) = check(&config("right.yaml", &right_ca)).await;
        assert_eq!(
            code,
            Some(0),
            "the right CA answers\n{text}\n{}",
            etcd.logs()
        );
        assert_eq!(report["storage"]["up"], true, "{report}");

        let (code, text, report) = check(&config("wrong.yaml", &wrong_ca)).await;
        assert_eq!(
            code,
            Some(1),
            "a CA that did not sign etcd's certificate is an error\n{text}"
        );
        for said in [
            "UNREACHABLE",
            "server certificate does not verify",
            "storage.tls.ca_file",
        ] {
            assert!(text.contains(said), "{said:?} in\n{text}");
        }
        assert_eq!(report["storage"]["up"], false, "{report}");
        let error = report["storage"]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("storage.tls.ca_file") && error.contains("does not verify"),
            "{report}"
        );
    })
    .await;
}
