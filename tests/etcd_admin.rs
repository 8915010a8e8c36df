//! The admin API on etcd storage: a certificate imported on instance A for
//! a domain no configuration names is stored in etcd (with the domain in
//! the shared domain store) before A answers 200, and instance B serves it
//! without being told; while etcd is down an import is refused with a 503
//! and nothing changes. A backend drained on one instance is drained on
//! the other.
//!
//! Real etcd (tests/common/etcd.rs), two in-process proxies with their
//! admin APIs on free loopback ports, real handshakes.
#![cfg(feature = "etcd")]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::etcd::TestEtcd;
use common::{TestProxy, cert, raw_exchange, try_served_leaf, within};
use tokio::net::TcpStream;

const NEW: &str = "new.example.com";

/// The bound of one test.
const TEST_LIMIT: Duration = Duration::from_secs(60);

/// How long a change may take to reach the other instance.
const CHANGE_LIMIT: Duration = Duration::from_secs(10);

fn free_admin() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// A proxy on etcd `endpoint` with only the master domain configured and
/// the admin API on `admin`.
fn yaml(endpoint: &str, admin: SocketAddr) -> String {
    yaml_with(endpoint, admin, "")
}

/// [`yaml`] with `extra` top-level settings.
fn yaml_with(endpoint: &str, admin: SocketAddr, extra: &str) -> String {
    format!(
        "master_domain: example.com\nstate_dir: state\n{extra}\
         storage:\n  kind: etcd\n  endpoints: [\"{endpoint}\"]\n  prefix: /sniwalk/\n  lease: 2s\n\
         admin: {{ bind: \"{admin}\" }}\n\
         domains:\n  example.com: {{}}\n\
         listeners:\n  - name: web\n    kind: https\n    bind: 127.0.0.1:0\n    access_log: false\n    \
         routes:\n      - {{ host: \"*\", respond: {{ body: hello }} }}\n  \
         - name: plain\n    kind: http\n    bind: 127.0.0.1:1\n    access_log: false\n"
    )
}

/// A connection to the admin API, once it listens (it starts with the
/// proxy, a moment after the test's call returns).
async fn connect_admin(admin: SocketAddr) -> TcpStream {
    within(CHANGE_LIMIT, "the admin API listening", async {
        loop {
            if let Ok(tcp) = TcpStream::connect(admin).await {
                return tcp;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// `PUT /domains/{domain}/certificate` with `pem`: status and body.
async fn import(admin: SocketAddr, domain: &str, pem: &str) -> (u16, String) {
    let mut tcp = connect_admin(admin).await;
    let response = raw_exchange(
        &mut tcp,
        &format!(
            "PUT /domains/{domain}/certificate HTTP/1.1\r\nHost: admin\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{pem}",
            pem.len()
        ),
    )
    .await;
    (response.status, response.body)
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_on_one_instance_is_served_by_the_other() {
    within(TEST_LIMIT, "import shared through etcd", async {
        let mut etcd = TestEtcd::start().await;
        let (dir_a, dir_b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let (admin_a, admin_b) = (free_admin(), free_admin());
        let (a, _ra) =
            TestProxy::start_with_metrics(dir_a.path(), &yaml(&etcd.endpoint(), admin_a)).await;
        let (b, _rb) =
            TestProxy::start_with_metrics(dir_b.path(), &yaml(&etcd.endpoint(), admin_b)).await;
        let imported = cert(&[NEW]);
        let (status, body) = import(admin_a, NEW, &imported.pem).await;
        assert_eq!(status, 200, "{body}");
        // Durable before the 200: in etcd, with the domain in the store.
        let stored = etcd
            .etcdctl(&[
                "get",
                "--print-value-only",
                &format!("/sniwalk/certificates/{NEW}"),
            ])
            .await;
        assert_eq!(stored.trim_end(), imported.pem.trim_end());
        let domains = etcd
            .etcdctl(&["get", "--print-value-only", "/sniwalk/config/domains"])
            .await;
        let domains: serde_json::Value = serde_json::from_str(&domains).expect("domain store");
        assert_eq!(domains["domains"][NEW]["acme"], false, "{domains}");
        assert_eq!(
            try_served_leaf(a.addr(), Some(NEW)).await.as_deref(),
            Ok(imported.sha256.as_str())
        );
        // B learns the new domain and its certificate by watching etcd.
        eventually("B serves the import", || async {
            try_served_leaf(b.addr(), Some(NEW)).await.ok().as_deref()
                == Some(imported.sha256.as_str())
        })
        .await;
        let copy = std::fs::read_to_string(dir_b.path().join("state/domains.json"))
            .expect("B's copy of the domain store");
        assert!(copy.contains(NEW), "{copy}");

        // With etcd down, nothing is stored and the answer says so.
        etcd.stop();
        let second = cert(&[NEW]);
        let (status, body) = import(admin_a, NEW, &second.pem).await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("not stored"), "{body}");
        assert_eq!(
            try_served_leaf(a.addr(), Some(NEW)).await.as_deref(),
            Ok(imported.sha256.as_str()),
            "nothing changed"
        );
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_started_on_one_instance_is_polled_on_the_other() {
    within(TEST_LIMIT, "job shared through etcd", async {
        let etcd = TestEtcd::start().await;
        let (dir_a, dir_b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let (admin_a, admin_b) = (free_admin(), free_admin());
        // Pre-flight fails before any request to a CA: the job ends soon,
        // with a step and a code to compare.
        let acme =
            "acme:\n  directory: https://127.0.0.1:1/dir\n  expected_addresses: [192.0.2.1]\n";
        let (a, _ra) = TestProxy::start_with_metrics(
            dir_a.path(),
            &yaml_with(&etcd.endpoint(), admin_a, acme),
        )
        .await;
        let (b, _rb) = TestProxy::start_with_metrics(
            dir_b.path(),
            &yaml_with(&etcd.endpoint(), admin_b, acme),
        )
        .await;
        let (status, accepted) = common::admin_call(
            admin_a,
            "POST",
            "/certificates",
            r#"{"hostnames": [{"hostname": "shop.example.test"}]}"#,
        )
        .await;
        assert_eq!(status, 202, "{accepted}");
        let accepted: serde_json::Value = serde_json::from_str(&accepted).expect("JSON");
        let id = accepted["id"].as_str().expect("id").to_string();
        // B never saw the POST: it answers from what A shared, up to the
        // job's end.
        let job = within(CHANGE_LIMIT, "the job's end seen on B", async {
            loop {
                let (status, body) =
                    common::admin_call(admin_b, "GET", &format!("/certificates/jobs/{id}"), "")
                        .await;
                if status == 200 {
                    let job: serde_json::Value = serde_json::from_str(&body).expect("job JSON");
                    if job["runtimeStatus"] == "Failed" {
                        return job;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert_eq!(job["id"], id.as_str(), "{job}");
        assert_eq!(
            job["customStatus"]["error"], "HostnameNotResolvingToProxy",
            "{job}"
        );
        assert_eq!(
            job["hostnames"][0]["hostname"], "shop.example.test",
            "{job}"
        );
        // Unknown ids stay 404 on both, and what is no job id is never
        // looked up.
        let (status, _) =
            common::admin_call(admin_b, "GET", "/certificates/jobs/0123456789abcdef", "").await;
        assert_eq!(status, 404);
        let (status, _) =
            common::admin_call(admin_b, "GET", "/certificates/jobs/..%2Flocks", "").await;
        assert_eq!(status, 404);
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_on_one_instance_drains_the_backend_on_the_other() {
    within(TEST_LIMIT, "drain shared through etcd", async {
        let etcd = TestEtcd::start().await;
        let a_backend = common::farm::FarmBackend::start("a").await;
        let b_backend = common::farm::FarmBackend::start("b").await;
        let (dir_a, dir_b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let (admin_a, admin_b) = (free_admin(), free_admin());
        let with_group = |admin| {
            yaml(&etcd.endpoint(), admin).replace(
                "respond: { body: hello }",
                &format!(
                    "backends: [\"{}\", \"{}\"]",
                    a_backend.url(),
                    b_backend.url()
                ),
            )
        };
        let (a, _ra) = TestProxy::start_with_metrics(dir_a.path(), &with_group(admin_a)).await;
        let (b, _rb) = TestProxy::start_with_metrics(dir_b.path(), &with_group(admin_b)).await;
        let path = format!("/backends/web/{}/drain", a_backend.addr);
        let (status, body) = common::admin_call(admin_a, "POST", &path, "").await;
        assert_eq!(status, 200, "{body}");
        // Durable before the 200: in etcd.
        let stored = etcd
            .etcdctl(&["get", "--print-value-only", "/sniwalk/config/drains"])
            .await;
        assert!(stored.contains(&a_backend.addr.to_string()), "{stored}");
        // B follows: its /status shows the drain, and it sends a nothing.
        let drained_on_b = || async {
            let (_, body) = common::admin_call(admin_b, "GET", "/status", "").await;
            let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            json["backends"].as_array().is_some_and(|all| {
                all.iter()
                    .any(|x| x["backend"] == a_backend.addr.to_string() && x["drain"] == "admin")
            })
        };
        eventually("the drain on instance B", drained_on_b).await;
        let before = a_backend.requests();
        for _ in 0..20 {
            let response = common::get(b.addr(), "www.example.com", "/").await;
            assert_eq!(response.header("x-backend"), Some("b"));
        }
        assert_eq!(a_backend.requests(), before);
        // Ended on B, it ends on A.
        let (status, body) = common::admin_call(admin_b, "DELETE", &path, "").await;
        assert_eq!(status, 200, "{body}");
        let undrained_on_a = || async {
            let (_, body) = common::admin_call(admin_a, "GET", "/status", "").await;
            let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            json["backends"].as_array().is_some_and(|all| {
                all.iter()
                    .any(|x| x["backend"] == a_backend.addr.to_string() && x["drain"].is_null())
            })
        };
        eventually("the drain ended on instance A", undrained_on_a).await;
        a.stop().await;
        b.stop().await;
    })
    .await;
}
