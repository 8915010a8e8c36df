//! Several real `sniwalk run` processes side by side (tests/shared_state.rs,
//! tests/scale_out_etcd.rs): [`Instance`] starts one on a `proxy.yaml` of
//! its own, waits for its `https` listener, and kills it by PID when it is
//! dropped (pass or fail); it can also be paused (SIGSTOP), resumed
//! (SIGCONT) and restarted on the same configuration.
//!
//! Helpers around them: free ports on any loopback address, a handshake
//! verified up to a given root that reports the leaf served, a wait until
//! an instance serves a given leaf, and every log for failure messages.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::pebble::PebbleEnv;

/// How long [`Instance::start`] waits for the `https` listener.
const START_LIMIT: Duration = Duration::from_secs(20);

/// How long [`wait_served`] waits for the wanted leaf.
const SERVE_LIMIT: Duration = Duration::from_secs(30);

/// What instances log: info, plus the lines that show a challenge was
/// answered (HTTP-01 on `http` listeners, TLS-ALPN-01 in the certificate
/// resolver and the connection that ends after the handshake).
const RUST_LOG: &str =
    "info,sniwalk::proxy::http=debug,sniwalk::resolver=debug,sniwalk::proxy::conn=debug";

/// One `sniwalk run` process; killed (SIGKILL, by PID) on drop.
pub struct Instance {
    pub name: &'static str,
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    /// Extra environment variables of the process (kept across restarts).
    env: Vec<(String, String)>,
    pub https: SocketAddr,
}

impl Instance {
    /// Writes `yaml` to `dir/proxy.yaml` and starts `sniwalk run` on it
    /// (output to `dir/sniwalk.log`); returns once its `https` listener
    /// accepts.
    pub async fn start(name: &'static str, dir: &Path, yaml: &str, https: SocketAddr) -> Instance {
        Instance::start_with_env(name, dir, yaml, https, &[]).await
    }

    /// [`Instance::start`] with extra environment variables `env` (e.g. a
    /// test hook such as `SNIWALK_TEST_HOLD_BEFORE_STORE`).
    pub async fn start_with_env(
        name: &'static str,
        dir: &Path,
        yaml: &str,
        https: SocketAddr,
        env: &[(&str, &str)],
    ) -> Instance {
        std::fs::create_dir_all(dir).expect("instance dir");
        let config = dir.join("proxy.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let log = dir.join("sniwalk.log");
        std::fs::File::create(&log).expect("create the log file");
        let mut instance = Instance {
            name,
            child: None,
            config,
            log,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            https,
        };
        instance.spawn().await;
        instance
    }

    /// Starts the process on `self.config`, appending to the log, and
    /// waits until `self.https` accepts.
    async fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .expect("open the log file");
        let child = Command::new(super::sniwalk_bin())
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", RUST_LOG)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file handle"))
            .stderr(out)
            .spawn()
            .expect("sniwalk run starts");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(self.https).await.is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("{} exited ({status}):\n{}", self.name, self.logs());
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "{} not listening on {} within {START_LIMIT:?}:\n{}",
                self.name,
                self.https,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything it logged (across restarts).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of the log containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.logs().lines().filter(|l| l.contains(needle)).count()
    }

    /// SIGKILL, then reap. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Pauses the process (SIGSTOP): it keeps its sockets but runs no
    /// code, as a VM paused or a process stalled past its leases.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Sends `signal` (`-STOP`, `-CONT`) with `kill(1)`.
    fn signal(&self, signal: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill(1)");
        assert!(
            status.success(),
            "kill {signal} {pid} ({}): {status}",
            self.name
        );
    }

    /// Kills the process (if it runs) and starts it again on the same
    /// configuration, appending to the same log; returns once `https`
    /// accepts again.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SIGKILL ends a paused (SIGSTOP) process too.
        self.kill();
    }
}

/// A TCP port free on `ip` a moment ago.
pub fn free_port(ip: &str) -> u16 {
    StdTcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// `ip:port` as a socket address.
pub fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().expect("socket address")
}

/// A full handshake with `addr` for `sni`, verified by `client` (e.g. up
/// to Pebble's root, [`super::pebble::client_trusting`]): the leaf's
/// SHA-256.
pub async fn verified_leaf(
    addr: SocketAddr,
    sni: &str,
    client: &Arc<rustls::ClientConfig>,
) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let stream = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (_, connection) = stream.get_ref();
    let chain = connection.peer_certificates().ok_or("no certificate")?;
    Ok(sniwalk::pem::sha256_fingerprint(chain[0].as_ref()))
}

/// Waits (up to 30 s) until `instance` serves the leaf `want` for `sni`,
/// verified by `client`; panics with `context()` otherwise.
pub async fn wait_served(
    instance: &Instance,
    sni: &str,
    client: &Arc<rustls::ClientConfig>,
    want: &str,
    context: &dyn Fn() -> String,
) {
    let started = Instant::now();
    loop {
        let got = verified_leaf(instance.https, sni, client).await;
        if got.as_deref() == Ok(want) {
            return;
        }
        assert!(
            started.elapsed() < SERVE_LIMIT,
            "{} does not serve the stored certificate {want} for {sni}: {got:?}\n{}",
            instance.name,
            context()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The instances' logs and Pebble's, for failure messages.
pub fn all_logs(instances: &[&Instance], env: &PebbleEnv) -> String {
    let mut out = String::new();
    for instance in instances {
        out.push_str(&format!(
            "---- {} (pid {:?}) ----\n{}",
            instance.name,
            instance.pid(),
            instance.logs()
        ));
    }
    out.push_str(&env.logs());
    out
}
