//! The admin API over real HTTP on 127.0.0.1: auth, every endpoint, bad
//! input, imports that are served at once (and refused ones that change
//! nothing), issuance jobs against a real Pebble CA, `sniwalk status`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::pebble::{PebbleEnv, PebbleOptions};
use http_body_util::BodyExt as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use sniwalk::state_layout::StateLayout;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const TOKEN: &str = "s3cret-token-for-tests";

struct Admin {
    admin: SocketAddr,
    https: SocketAddr,
    dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), sniwalk::RunError>>,
}

impl Admin {
    /// sniwalk with an `http` and an `https` listener and the admin API;
    /// `extra` goes at the top level of the configuration.
    async fn start(dir: &Path, extra: &str, http: Option<TcpListener>) -> Admin {
        Self::start_routed(dir, extra, http, "respond: { body: hello }").await
    }

    /// [`Admin::start`] with `route` (YAML flow mapping content) as the
    /// `https` listener's one route.
    async fn start_routed(
        dir: &Path,
        extra: &str,
        http: Option<TcpListener>,
        route: &str,
    ) -> Admin {
        common::install_provider();
        std::fs::write(dir.join("token"), format!("  {TOKEN}\n")).expect("token");
        let yaml = format!(
            "master_domain: example.test\nstate_dir: state\ndomains:\n  example.test: {{}}\n{extra}\
             admin: {{ bind: 127.0.0.1:1, token_file: token }}\n\
             listeners:\n  - name: plain\n    kind: http\n    bind: 127.0.0.1:1\n    access_log: false\n  \
             - name: web\n    kind: https\n    bind: 127.0.0.1:2\n    access_log: false\n    routes:\n      \
             - {{ host: \"*\", {route} }}\n"
        );
        std::fs::write(dir.join("proxy.yaml"), yaml).expect("config");
        let config = sniwalk::config::Config::load(&dir.join("proxy.yaml")).expect("valid");
        let http = match http {
            Some(socket) => socket,
            None => TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        };
        let https_socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let https = https_socket.local_addr().expect("addr");
        let admin_socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = admin_socket.local_addr().expect("addr");
        let (mut options, _reload) = sniwalk::RunOptions::new();
        options.admin_socket = Some(admin_socket);
        let (shutdown, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sniwalk::run_with(
            config,
            vec![http, https_socket],
            options,
            async move {
                let _ = rx.await;
            },
        ));
        Admin {
            admin,
            https,
            dir: dir.to_path_buf(),
            shutdown: Some(shutdown),
            task,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, String) {
        let tcp = TcpStream::connect(self.admin).await.expect("connect admin");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.admin.to_string());
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .expect("request");
        let response = common::within(Duration::from_secs(20), path, sender.send_request(request))
            .await
            .expect("response");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(&self, path: &str) -> (u16, String) {
        self.call("GET", path, Some(TOKEN), None, Vec::new()).await
    }

    async fn json(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let (status, text) = self
            .call(
                method,
                path,
                Some(TOKEN),
                Some("application/json"),
                body.to_string().into_bytes(),
            )
            .await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// Starts shutdown (as SIGTERM does) and returns at once.
    fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    async fn stop(mut self) {
        self.begin_shutdown();
        common::within(Duration::from_secs(20), "shutdown", self.task)
            .await
            .expect("join")
            .expect("ran");
    }
}

fn parse(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A self-signed `certificate_pem` for `name`, and its fingerprint.
fn certificate(name: &str) -> (String, String) {
    let pem = sniwalk::snapshot::generate_self_signed_pem(&[name.to_string()], 30, false)
        .expect("self-signed");
    let sha = sniwalk::pem::parse_certificate_pem(&pem)
        .expect("parses")
        .leaf
        .sha256;
    (pem, sha)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_auth_bad_input_and_imports() {
    common::within(Duration::from_secs(120), "admin endpoints", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let admin = Admin::start(tmp.path(), "", None).await;

        // No auth needed.
        let (status, body) = admin.call("GET", "/healthz", None, None, Vec::new()).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = admin.call("GET", "/metrics", None, None, Vec::new()).await;
        assert_eq!(status, 200);
        assert!(body.contains("sniwalk_tls_handshakes_total"), "{body}");

        // Auth: missing and wrong tokens.
        for token in [None, Some("wrong")] {
            let (status, body) = admin.call("GET", "/status", token, None, Vec::new()).await;
            assert_eq!(status, 401, "{token:?}: {body}");
            assert!(parse(&body)["error"].as_str().is_some_and(|e| e.contains("Bearer")));
        }
        let (status, body) = admin.get("/status").await;
        assert_eq!(status, 200, "{body}");
        let report = parse(&body);
        assert!(report["system_state"].is_string(), "{report}");
        assert!(report["certificates"].as_array().is_some_and(|c| !c.is_empty()));

        // Resolve.
        let (status, body) = admin.get("/resolve?name=a.example.test&listener=web").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("example.test"), "{body}");
        assert_eq!(admin.get("/resolve").await.0, 400);
        assert_eq!(admin.get("/resolve?name=a&listener=nope").await.0, 400);

        // Bad input.
        let (status, body) = admin
            .call("POST", "/certificates", Some(TOKEN), Some("application/json"), b"{not json".to_vec())
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(parse(&body)["error"].as_str().is_some_and(|e| e.contains("hostnames")));
        let (status, _) = admin
            .json("POST", "/certificates", serde_json::json!({"hostnames": [{"hostname": "bad name!"}]}))
            .await;
        assert_eq!(status, 400);
        let huge = vec![b'x'; sniwalk::admin::MAX_BODY + 1];
        let (status, body) = admin.call("POST", "/certificates", Some(TOKEN), None, huge).await;
        assert_eq!(status, 413, "{body}");
        let (status, body) = admin.get("/certificates/jobs/nope").await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(admin.get("/nowhere").await.0, 404);
        assert_eq!(admin.call("DELETE", "/status", Some(TOKEN), None, Vec::new()).await.0, 405);

        // Import as certificate_pem text for a domain not configured yet:
        // added to the domain store, served at once.
        let (pem, sha) = certificate("shop.example.test");
        let (status, body) = admin
            .call("PUT", "/domains/shop.example.test/certificate", Some(TOKEN), Some("text/plain"), pem.into_bytes())
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(parse(&body)["sha256"], sha.as_str());
        assert_eq!(common::served_leaf(admin.https, Some("shop.example.test")).await, sha);
        let stored = StateLayout::new(admin.dir.join("state")).stored_certificate("shop.example.test");
        let stored_before = std::fs::read_to_string(&stored).expect("stored");

        // Import as JSON (base64 DER, README "Admin API") for another domain.
        let (json_pem, json_sha) = certificate("api.example.test");
        let parsed = sniwalk::pem::parse_certificate_pem(&json_pem).expect("parses");
        let key_der = sniwalk::pem::private_key_as_pkcs8(&json_pem).expect("key");
        let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
        let chain = parsed.certified_key.cert.clone();
        let (status, body) = admin
            .json(
                "PUT",
                "/domains/api.example.test/certificate",
                serde_json::json!({"privatekey": b64(&key_der), "certificate": b64(chain[0].as_ref()), "chain": []}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(common::served_leaf(admin.https, Some("api.example.test")).await, json_sha);

        // A mismatched pair (another key): refused, nothing changes.
        let (other, _) = certificate("shop.example.test");
        let other_key = other.split("-----BEGIN CERTIFICATE-----").next().expect("key part");
        let cert_part = format!(
            "-----BEGIN CERTIFICATE-----{}",
            stored_before.split("-----BEGIN CERTIFICATE-----").nth(1).expect("cert part")
        );
        let mismatched = format!("{other_key}{cert_part}");
        let (status, body) = admin
            .call("PUT", "/domains/shop.example.test/certificate", Some(TOKEN), None, mismatched.into_bytes())
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(parse(&body)["error"].as_str().is_some_and(|e| e.contains("nothing changed")), "{body}");
        assert_eq!(std::fs::read_to_string(&stored).expect("stored"), stored_before);
        assert_eq!(common::served_leaf(admin.https, Some("shop.example.test")).await, sha);
        let (status, _) = admin
            .call("PUT", "/domains/shop.example.test/certificate", Some(TOKEN), None, b"garbage".to_vec())
            .await;
        assert_eq!(status, 400);

        // /status shows the imported one as managed by hand.
        let report = parse(&admin.get("/status").await.1);
        let row = report["certificates"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == "shop.example.test"))
            .cloned()
            .expect("row");
        assert_eq!(row["sha256"], sha.as_str());
        assert_eq!(row["acme_issued"], false);

        // `sniwalk status` prints it for people.
        let config = admin.dir.join("proxy.yaml");
        let url = format!("http://{}", admin.admin);
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(common::sniwalk_bin())
                .args(["status", "--admin", &url, "--config"])
                .arg(config)
                .output()
                .expect("runs")
        })
        .await
        .expect("join");
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{out}{}", String::from_utf8_lossy(&output.stderr));
        assert!(out.contains("shop.example.test") && out.contains("hand"), "{out}");
        assert!(out.contains("system_state:"), "{out}");
        admin.stop().await;
    })
    .await;
}

async fn wait_job(admin: &Admin, id: &str, limit: Duration) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let (status, body) = admin.get(&format!("/certificates/jobs/{id}")).await;
        assert_eq!(status, 200, "{body}");
        let job = parse(&body);
        if matches!(job["runtimeStatus"].as_str(), Some("Completed" | "Failed")) {
            return job;
        }
        assert!(started.elapsed() < limit, "job never ended: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_job_completes_against_pebble_and_is_served() {
    common::within(Duration::from_secs(120), "a Pebble job", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let env = PebbleEnv::start_with(
            &tmp.path().join("pebble"),
            PebbleOptions {
                http_port: Some(http.local_addr().expect("addr").port()),
                ..PebbleOptions::default()
            },
        )
        .await;
        let extra = format!(
            "acme:\n  directory: {}\n  ca_roots: {}\n",
            env.directory_url(),
            env.ca_pem_path().display()
        );
        let admin = Admin::start(tmp.path(), &extra, Some(http)).await;
        let (status, accepted) = admin
            .json(
                "POST",
                "/certificates",
                serde_json::json!({"hostnames": [{"hostname": "new.example.test"}]}),
            )
            .await;
        assert_eq!(status, 202, "{accepted}");
        let uri = accepted["statusQueryGetUri"].as_str().expect("uri");
        let id = accepted["id"].as_str().expect("id");
        assert_eq!(uri, format!("/certificates/jobs/{id}"));
        let job = wait_job(&admin, id, Duration::from_secs(90)).await;
        assert_eq!(job["runtimeStatus"], "Completed", "{job}\n{}", env.logs());
        assert_eq!(job["customStatus"]["status"], "Completed");
        assert!(job["createdTime"].is_string() && job["lastUpdatedTime"].is_string());

        // Served, verifying up to Pebble's root.
        let mut roots = rustls::RootCertStore::empty();
        let root = env.root_pem().await;
        roots
            .add(CertificateDer::from_pem_slice(root.as_bytes()).expect("root"))
            .expect("add");
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(admin.https).await.expect("connect");
        let name = ServerName::try_from("new.example.test").expect("name");
        tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .expect("the issued certificate verifies");
        let store = sniwalk::config::DomainStore::read(&StateLayout::new(tmp.path().join("state")))
            .expect("store");
        assert!(
            store.domains["new.example.test"].acme,
            "added as an ACME domain"
        );
        admin.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_job_names_code_and_step() {
    common::within(Duration::from_secs(60), "a failing job", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        // Pre-flight fails before any request to the CA (none runs here).
        let extra =
            "acme:\n  directory: https://127.0.0.1:1/dir\n  expected_addresses: [192.0.2.1]\n";
        let admin = Admin::start(tmp.path(), extra, None).await;
        let (status, accepted) = admin
            .json(
                "POST",
                "/certificates",
                serde_json::json!({"hostnames": [{"hostname": "shop.example.test"}]}),
            )
            .await;
        assert_eq!(status, 202, "{accepted}");
        let job = wait_job(
            &admin,
            accepted["id"].as_str().expect("id"),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(job["runtimeStatus"], "Failed", "{job}");
        assert_eq!(job["customStatus"]["status"], "Failed", "{job}");
        assert_eq!(
            job["customStatus"]["error"], "HostnameNotResolvingToProxy",
            "{job}"
        );
        assert_eq!(job["hostnames"][0]["status"], "CheckDnsResolution", "{job}");
        assert!(
            job["customStatus"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("shop.example.test"))
        );
        admin.stop().await;
    })
    .await;
}

/// Issue 11, item 3: concurrent writers of the domain store and of one
/// stored certificate. Every request gets its 2xx, and every 2xx is on
/// disk when it is answered: the names are in `domains.json` (mode 0600),
/// the domain serves the certificate last stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_posts_and_puts_are_all_durable() {
    common::within(Duration::from_secs(170), "parallel admin writes", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        // Pre-flight fails before any request to a CA: the jobs end at
        // once, the domain store is what is tested.
        let extra =
            "acme:\n  directory: https://127.0.0.1:1/dir\n  expected_addresses: [192.0.2.1]\n";
        let admin = Arc::new(Admin::start(tmp.path(), extra, None).await);
        let store_file = tmp.path().join("state").join("domains.json");

        let posts: Vec<_> = (0..50)
            .map(|i| {
                let admin = admin.clone();
                tokio::spawn(async move {
                    let name = format!("n{i}.example.test");
                    let body = serde_json::json!({"hostnames": [{"hostname": name}]});
                    let (status, reply) = admin.json("POST", "/certificates", body).await;
                    (name, status, reply)
                })
            })
            .collect();
        let mut accepted = Vec::new();
        for post in posts {
            let (name, status, reply) = post.await.expect("task");
            assert_eq!(status, 202, "POST for {name}: {reply}");
            accepted.push(name);
        }
        // Read at once: a 202 means the name is on disk already.
        let store: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&store_file).expect("domains.json"))
                .expect("domains.json is JSON");
        for name in &accepted {
            assert_eq!(
                store["domains"][name]["acme"], true,
                "{name} missing: {store}"
            );
        }
        assert_mode_0600(&store_file);

        // 50 imports of different certificates for one new domain.
        let certificates: Vec<(String, String)> =
            (0..50).map(|_| certificate("put.example.test")).collect();
        let puts: Vec<_> = certificates
            .iter()
            .cloned()
            .map(|(pem, sha)| {
                let admin = admin.clone();
                tokio::spawn(async move {
                    let (status, reply) = admin
                        .call(
                            "PUT",
                            "/domains/put.example.test/certificate",
                            Some(TOKEN),
                            Some("text/plain"),
                            pem.into_bytes(),
                        )
                        .await;
                    (sha, status, reply)
                })
            })
            .collect();
        for put in puts {
            let (sha, status, reply) = put.await.expect("task");
            assert_eq!(status, 200, "PUT: {reply}");
            assert_eq!(parse(&reply)["sha256"], sha.as_str(), "{reply}");
        }
        let store: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&store_file).expect("domains.json"))
                .expect("domains.json is JSON");
        assert_eq!(
            store["domains"]["put.example.test"]["acme"], false,
            "{store}"
        );
        for name in &accepted {
            assert!(store["domains"][name].is_object(), "{name} lost: {store}");
        }
        assert_mode_0600(&store_file);
        let stored =
            StateLayout::new(tmp.path().join("state")).stored_certificate("put.example.test");
        assert_mode_0600(&stored);
        let stored_sha = sniwalk::pem::parse_certificate_pem(
            &std::fs::read_to_string(&stored).expect("stored certificate"),
        )
        .expect("a whole certificate_pem")
        .leaf
        .sha256;
        assert!(
            certificates.iter().any(|(_, sha)| sha == &stored_sha),
            "one of the imports"
        );
        assert_eq!(
            common::served_leaf(admin.https, Some("put.example.test")).await,
            stored_sha,
            "the last stored import serves"
        );
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("state"))
            .expect("state_dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        let Ok(admin) = Arc::try_unwrap(admin) else {
            panic!("every request task has ended");
        };
        admin.stop().await;
    })
    .await;
}

fn assert_mode_0600(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "{} has mode {:o}",
        path.display(),
        mode & 0o777
    );
}

/// Issue 11, item 8: once shutdown begins `/healthz` answers 503 (the
/// admin API keeps answering while connections drain, so load balancers
/// see it), 200 before; the admin listener closes when the drain is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_503_while_draining() {
    common::within(Duration::from_secs(60), "healthz during drain", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let backend = common::backends::HttpBackend::start().await;
        let route = format!("backend: \"{}\"", backend.url());
        let mut admin = Admin::start_routed(tmp.path(), "", None, &route).await;
        let (status, body) = admin.call("GET", "/healthz", None, None, Vec::new()).await;
        assert_eq!(
            (status, parse(&body)["status"].clone()),
            (200, "ok".into()),
            "{body}"
        );

        // A request in flight keeps the drain going for seconds.
        let mut send = common::h1_client(admin.https, "app.example.test").await;
        let request = hyper::Request::get("/slow?ms=4000")
            .header("host", "app.example.test")
            .body(common::backends::empty())
            .expect("request");
        let in_flight = tokio::spawn(async move { common::send_h1(&mut send, request).await });
        assert_eq!(backend.next_arrival().await, "/slow?ms=4000");

        admin.begin_shutdown();
        let body = common::within(Duration::from_secs(3), "healthz turns 503", async {
            loop {
                let (status, body) = admin.call("GET", "/healthz", None, None, Vec::new()).await;
                if status == 503 {
                    return body;
                }
                assert_eq!(status, 200, "{body}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            !in_flight.is_finished(),
            "503 seen while the request was still draining"
        );
        let health = parse(&body);
        assert_eq!(health["status"], "draining", "{health}");
        assert!(
            health["error"]
                .as_str()
                .is_some_and(|e| e.contains("shutting down")),
            "{health}"
        );
        // Other endpoints still answer during the drain.
        assert_eq!(admin.get("/status").await.0, 200);

        let response = common::within(Duration::from_secs(10), "request in flight", in_flight)
            .await
            .expect("request task");
        assert_eq!(
            (response.status, response.body.as_str()),
            (200, "slow done")
        );
        let admin_addr = admin.admin;
        admin.stop().await;
        assert!(
            TcpStream::connect(admin_addr).await.is_err(),
            "the admin listener is closed once the drain is over"
        );
    })
    .await;
}
