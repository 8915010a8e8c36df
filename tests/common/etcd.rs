//! A real etcd for tests: Debian's etcd 3.4 (`etcd-server`) run as a child
//! process on two free 127.0.0.1 ports, its data in a temporary folder, and
//! `etcdctl` (`etcd-client`) for what a test does behind sniwalk's back:
//! enabling users, compacting, revoking a lease.
//!
//! Fast ticks (`--heartbeat-interval=10 --election-timeout=100`) make it
//! ready in about 0.1 s and lower etcd's minimum lease to 1 s;
//! `--bcrypt-cost=4` makes a user's login take milliseconds. It logs only
//! errors, into `etcd.log` in its folder ([`TestEtcd::logs`]). No `ETCD_*`
//! variable reaches it (etcd reads each as a flag).
//!
//! [`TestEtcd::start_tls`] serves clients over HTTPS only and requires a
//! client certificate; readiness is then read from a plain-HTTP metrics
//! listener (`--listen-metrics-urls`, which serves `/health` too).
//!
//! The process is killed by PID on [`TestEtcd::stop`] and on drop, before
//! the folder goes.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::net::TcpListener as StdTcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long [`TestEtcd::start`] waits for `/health`.
const START_LIMIT: Duration = Duration::from_secs(15);

/// How long one `etcdctl` call may take.
const ETCDCTL_LIMIT: Duration = Duration::from_secs(10);

/// The password [`TestEtcd::enable_auth`] gives etcd's `root` user.
pub const ROOT_PASSWORD: &str = "root-pw";

/// The certificates of an etcd that serves clients over TLS, as PEM.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// The CA that signed the server's certificate and the clients' ones.
    pub ca_pem: String,
    /// The server's certificate (for 127.0.0.1) and its key.
    pub cert_pem: String,
    pub key_pem: String,
}

impl EtcdTls {
    /// A fresh CA, etcd's server certificate for `localhost` and
    /// 127.0.0.1 and a client certificate (`app`), both signed by it: the
    /// server side, then the client's certificate and key (PEM).
    pub fn with_client() -> (EtcdTls, String, String) {
        let (ca_pem, issuer) = super::test_ca("sniwalk test etcd CA");
        let leaf = |name: &str, usage| {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
            params.subject_alt_names.push(rcgen::SanType::IpAddress(
                std::net::Ipv4Addr::LOCALHOST.into(),
            ));
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).expect("signed");
            (cert.pem(), key.serialize_pem())
        };
        let (cert_pem, key_pem) = leaf("localhost", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf("app", rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        (
            EtcdTls {
                ca_pem,
                cert_pem,
                key_pem,
            },
            client_cert,
            client_key,
        )
    }
}

/// A single-member etcd; killed when this is dropped.
pub struct TestEtcd {
    /// Holds `data/` and `etcd.log`; removed after the process is gone.
    dir: tempfile::TempDir,
    /// The client port (`http://127.0.0.1:<port>`, or `https://`).
    pub client_port: u16,
    /// The peer port (unused by the tests, but etcd binds it).
    pub peer_port: u16,
    /// Where `/health` is asked: the client port, or with TLS a plain-HTTP
    /// metrics port.
    health_port: u16,
    /// Clients must use TLS with a client certificate.
    tls: bool,
    child: Option<Child>,
    /// `root:<password>` once authentication is on.
    root: Option<String>,
}

impl TestEtcd {
    /// Starts etcd on fresh ports and waits until `/health` says true
    /// (panics, with the log, after 15 s).
    pub async fn start() -> TestEtcd {
        Self::launch(None).await
    }

    /// [`TestEtcd::start`] serving clients over HTTPS with `tls`, requiring
    /// a client certificate signed by its CA.
    pub async fn start_tls(tls: &EtcdTls) -> TestEtcd {
        Self::launch(Some(tls)).await
    }

    async fn launch(tls: Option<&EtcdTls>) -> TestEtcd {
        let dir = tempfile::Builder::new()
            .prefix("sniwalk-etcd-")
            .tempdir()
            .expect("temporary folder for etcd");
        let [client_port, peer_port, metrics_port] = free_ports();
        let health_port = match tls {
            Some(tls) => {
                for (name, text) in [
                    ("ca.pem", &tls.ca_pem),
                    ("server.pem", &tls.cert_pem),
                    ("server-key.pem", &tls.key_pem),
                ] {
                    std::fs::write(dir.path().join(name), text).expect("write etcd TLS file");
                }
                metrics_port
            }
            None => client_port,
        };
        let mut etcd = TestEtcd {
            dir,
            client_port,
            peer_port,
            health_port,
            tls: tls.is_some(),
            child: None,
            root: None,
        };
        etcd.spawn();
        etcd.wait_ready().await;
        etcd
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// What etcd logged (errors only).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn(&mut self) {
        let p = self.peer_port;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open etcd.log");
        let client_url = self.endpoint();
        let mut command = Command::new("etcd");
        command
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{p}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{p}"
            ))
            .arg(format!("--initial-cluster=test=http://127.0.0.1:{p}"))
            .args([
                "--initial-cluster-state=new",
                "--initial-cluster-token=test",
            ])
            .args(["--heartbeat-interval=10", "--election-timeout=100"])
            .arg("--bcrypt-cost=4")
            .args(["--logger=zap", "--log-level=error", "--log-outputs=stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if self.tls {
            let file = |name: &str| self.dir.path().join(name).display().to_string();
            command
                .arg(format!("--cert-file={}", file("server.pem")))
                .arg(format!("--key-file={}", file("server-key.pem")))
                .arg(format!("--trusted-ca-file={}", file("ca.pem")))
                .arg("--client-cert-auth")
                .arg(format!(
                    "--listen-metrics-urls=http://127.0.0.1:{}",
                    self.health_port
                ));
        }
        without_etcd_variables(&mut command);
        let child = command
            .spawn()
            .expect("spawn etcd (apt-get install etcd-server; scripts/test.sh does)");
        self.child = Some(child);
    }

    /// Polls `GET /health` every 20 ms until it answers `"health":"true"`;
    /// panics with the log if etcd exits or [`START_LIMIT`] passes.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait etcd"))
            {
                panic!("etcd exited early ({status})\n{}", self.logs());
            }
            let last = match self.health().await {
                Ok(true) => return,
                Ok(false) => "not healthy yet".to_string(),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                panic!(
                    "etcd not ready within {START_LIMIT:?} (last: {last})\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One plain HTTP/1.1 `GET /health`: whether it said true.
    async fn health(&self) -> Result<bool, String> {
        let attempt = async {
            let mut stream = TcpStream::connect(("127.0.0.1", self.health_port))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let request = format!(
                "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.health_port
            );
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| format!("send: {e}"))?;
            let mut answer = Vec::new();
            stream
                .read_to_end(&mut answer)
                .await
                .map_err(|e| format!("read: {e}"))?;
            let answer = String::from_utf8_lossy(&answer);
            Ok(answer.starts_with("HTTP/1.1 200") && answer.contains(r#""health":"true""#))
        };
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .unwrap_or_else(|_| Err("no answer within 2 s".into()))
    }

    /// Kills etcd (SIGKILL, by PID) and waits for it. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills etcd and starts it again on the same data and ports (what was
    /// written stays), waiting until it is ready.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn();
        self.wait_ready().await;
    }

    /// Runs `etcdctl` against this etcd (as root once authentication is
    /// on; not with TLS) and returns its standard output; panics if it
    /// fails.
    pub async fn etcdctl<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let mut command = Command::new("etcdctl");
        command
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg("--command-timeout=5s");
        if let Some(root) = &self.root {
            command.arg(format!("--user={root}"));
        }
        command.args(args).stdin(Stdio::null());
        without_etcd_variables(&mut command);
        let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
        let shown = format!("etcdctl {}", shown.join(" "));
        let run = tokio::task::spawn_blocking(move || command.output());
        let output = tokio::time::timeout(ETCDCTL_LIMIT, run)
            .await
            .unwrap_or_else(|_| panic!("{shown}: not done within {ETCDCTL_LIMIT:?}"))
            .expect("etcdctl task")
            .unwrap_or_else(|e| panic!("{shown}: {e} (apt-get install etcd-client)"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{shown}: {}\n{stdout}{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.logs()
        );
        stdout
    }

    /// Turns authentication on: user `root` (password [`ROOT_PASSWORD`])
    /// and `user`/`password` with read and write access to keys starting
    /// with `prefix`. Later [`TestEtcd::etcdctl`] calls run as root.
    pub async fn enable_auth(&mut self, user: &str, password: &str, prefix: &str) {
        self.etcdctl(&["user", "add", &format!("root:{ROOT_PASSWORD}")])
            .await;
        self.etcdctl(&["auth", "enable"]).await;
        self.root = Some(format!("root:{ROOT_PASSWORD}"));
        self.add_user(user, password, prefix).await;
    }

    /// Adds `user`/`password` (authentication on) with read and write
    /// access to keys starting with `prefix` only.
    pub async fn add_user(&self, user: &str, password: &str, prefix: &str) {
        let role = format!("{user}-role");
        self.etcdctl(&["user", "add", &format!("{user}:{password}")])
            .await;
        self.etcdctl(&["role", "add", &role]).await;
        self.etcdctl(&[
            "role",
            "grant-permission",
            &role,
            "--prefix=true",
            "readwrite",
            prefix,
        ])
        .await;
        self.etcdctl(&["user", "grant-role", user, &role]).await;
    }

    /// The store's current revision.
    pub async fn revision(&self) -> u64 {
        let status = self.etcdctl(&["endpoint", "status", "-w", "json"]).await;
        let status: serde_json::Value =
            serde_json::from_str(&status).unwrap_or_else(|e| panic!("status JSON: {e}\n{status}"));
        status[0]["Status"]["header"]["revision"]
            .as_u64()
            .unwrap_or_else(|| panic!("no revision in {status}"))
    }

    /// Compacts the history up to the current revision, which it returns:
    /// a watch from before it can no longer be served.
    pub async fn compact(&self) -> u64 {
        let revision = self.revision().await;
        self.etcdctl(&["compaction", "--physical", &revision.to_string()])
            .await;
        revision
    }

    /// Revokes the lease `id` (as `HeldLock::lease` gives it) behind the
    /// holder's back: its keys go at once.
    pub async fn revoke_lease(&self, id: i64) {
        self.etcdctl(&["lease", "revoke", &format!("{id:x}")]).await;
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Distinct ports on 127.0.0.1 that were free a moment ago (all bound at
/// once), never etcd's well-known 2379/2380.
fn free_ports<const N: usize>() -> [u16; N] {
    loop {
        let listeners: Vec<StdTcpListener> = (0..N)
            .map(|_| StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
            .collect();
        let ports: [u16; N] =
            std::array::from_fn(|i| listeners[i].local_addr().expect("local addr").port());
        if !ports.iter().any(|p| *p == 2379 || *p == 2380) {
            return ports;
        }
    }
}

/// Removes every `ETCD_*`/`ETCDCTL_*` variable from the child's
/// environment: etcd and etcdctl read them as flags.
fn without_etcd_variables(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ETCD") {
            command.env_remove(name);
        }
    }
}
