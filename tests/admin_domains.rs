//! The admin API's domain life cycle over real HTTP on 127.0.0.1: an
//! import whose certificate does not cover the domain is served and its
//! problems are in the answer; a domain added through the API is removed
//! again with `DELETE /domains/{name}` (with its certificate), while one
//! of the configuration file is refused; a job for a hand-managed domain
//! says so; `/status` shows ACME times in RFC 3339.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{admin_call, cert, served_leaf, within};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Proxy {
    https: SocketAddr,
    admin: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), sniwalk::RunError>>,
}

impl Proxy {
    async fn start(dir: &Path) -> Proxy {
        common::install_provider();
        // `acme.test` has ACME on, against a directory nothing answers
        // (127.0.0.1:1): its order fails at once and leaves an error with
        // times in `/status`.
        let yaml = "master_domain: example.test\nstate_dir: state\n\
             acme: { directory: \"https://127.0.0.1:1/directory\" }\n\
             domains:\n  example.test:\n    certificate_file: master.pem\n\
             \x20 acme.test: { acme: { enabled: true } }\n\
             admin: { bind: 127.0.0.1:1 }\nlisteners:\n  - name: plain\n    kind: http\n    \
             bind: 127.0.0.1:1\n    access_log: false\n  - name: web\n    kind: https\n    \
             bind: 127.0.0.1:2\n    access_log: false\n    routes:\n      - host: \"*\"\n        \
             respond: { body: hello }\n";
        std::fs::write(dir.join("proxy.yaml"), yaml).expect("config");
        let config = sniwalk::config::Config::load(&dir.join("proxy.yaml")).expect("valid");
        let http_socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let https_socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let https = https_socket.local_addr().expect("addr");
        let admin_socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = admin_socket.local_addr().expect("addr");
        let (mut options, _reloads) = sniwalk::RunOptions::new();
        options.admin_socket = Some(admin_socket);
        let (shutdown, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sniwalk::run_with(
            config,
            vec![http_socket, https_socket],
            options,
            async move {
                let _ = rx.await;
            },
        ));
        Proxy {
            https,
            admin,
            shutdown: Some(shutdown),
            task,
        }
    }

    async fn call(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let (status, text) = admin_call(self.admin, method, path, body).await;
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        (status, json)
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
}

fn is_rfc3339(value: &serde_json::Value) -> bool {
    value.as_str().is_some_and(|text| {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok()
    })
}

#[tokio::test]
async fn a_domain_added_through_the_api_is_removed_with_its_certificate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let master = cert(&["example.test", "*.example.test"]);
    master.write_pem(&tmp.path().join("master.pem"));
    let proxy = Proxy::start(tmp.path()).await;

    // A certificate for another name, imported for other.test: served (the
    // import is durable), and the answer says it does not cover the name.
    let wrong = cert(&["wrong.test"]);
    // As JSON (the test client sends application/json): a PEM block's body
    // is the base64 of its DER.
    let base64_of =
        |pem: &str| -> String { pem.lines().filter(|l| !l.starts_with("-----")).collect() };
    let body = serde_json::json!({
        "privatekey": base64_of(&wrong.key_pem),
        "certificate": base64_of(&wrong.cert_pem),
    });
    let (status, answer) = proxy
        .call("PUT", "/domains/other.test/certificate", &body.to_string())
        .await;
    assert_eq!(status, 200, "{answer}");
    let problems = answer["problems"].to_string();
    assert!(
        problems.contains("does not cover `other.test`"),
        "the import's problems: {answer:#}"
    );
    assert_eq!(
        served_leaf(proxy.https, Some("other.test")).await,
        wrong.sha256
    );

    // An ACME job for it: refused, saying why.
    let (status, job) = proxy
        .call(
            "POST",
            "/certificates",
            r#"{"hostnames": [{"hostname": "other.test"}]}"#,
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("a job id").to_string();
    let job = within(Duration::from_secs(20), "the job ending", async {
        loop {
            let (_, job) = proxy
                .call("GET", &format!("/certificates/jobs/{id}"), "")
                .await;
            if job["runtimeStatus"] == "Failed" || job["runtimeStatus"] == "Completed" {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(job["runtimeStatus"], "Failed", "{job:#}");
    let text = job.to_string();
    assert!(text.contains("managed by hand"), "{job:#}");
    assert!(!text.contains("not a configured domain"), "{job:#}");

    // The file's domains and unknown names are not removed.
    let (status, answer) = proxy.call("DELETE", "/domains/example.test", "").await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"].to_string().contains("proxy.yaml"),
        "{answer}"
    );
    let (status, answer) = proxy.call("DELETE", "/domains/nope.test", "").await;
    assert_eq!(status, 404, "{answer}");

    // The API's domain goes, with its certificate, before the answer.
    let stored = sniwalk::state_layout::StateLayout::new(tmp.path().join("state"))
        .stored_certificate("other.test");
    assert!(stored.exists());
    let (status, answer) = proxy.call("DELETE", "/domains/other.test", "").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["certificate_removed"], true, "{answer}");
    assert!(!stored.exists(), "the stored certificate is deleted");
    let store = std::fs::read_to_string(tmp.path().join("state/domains.json")).expect("store");
    assert!(!store.contains("other.test"), "{store}");
    assert_ne!(
        served_leaf(proxy.https, Some("other.test")).await,
        wrong.sha256,
        "no longer served"
    );
    let (status, _) = proxy.call("DELETE", "/domains/other.test", "").await;
    assert_eq!(status, 404, "gone");
    proxy.stop().await;
}

#[tokio::test]
async fn status_shows_acme_times_in_rfc3339() {
    let tmp = tempfile::tempdir().expect("tempdir");
    cert(&["example.test"]).write_pem(&tmp.path().join("master.pem"));
    let proxy = Proxy::start(tmp.path()).await;
    let row = within(
        Duration::from_secs(30),
        "the failed order in /status",
        async {
            loop {
                let (_, status) = proxy.call("GET", "/status", "").await;
                let row = status["certificates"]
                    .as_array()
                    .and_then(|rows| rows.iter().find(|r| r["name"] == "acme.test"))
                    .cloned();
                if let Some(row) = row
                    && row["acme"]["last_error"].is_object()
                {
                    return row;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;
    let acme = &row["acme"];
    assert!(is_rfc3339(&acme["last_error"]["at"]), "{acme:#}");
    assert!(is_rfc3339(&acme["next_attempt"]), "{acme:#}");
    let keys: Vec<&String> = acme.as_object().expect("a map").keys().collect();
    assert!(
        keys.iter()
            .all(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')),
        "snake_case names: {keys:?}"
    );
    proxy.stop().await;
}
