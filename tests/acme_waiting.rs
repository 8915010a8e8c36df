//! ACME holds an order back while nothing can answer its challenge, and
//! says so (issue 11, item 9): a domain added by a reload together with the
//! `http` listener that would answer its HTTP-01 challenge is not ordered
//! (the listener is bound only at a restart); the status file, `check`,
//! `sniwalk renew` and the log name the reason and the fix, and after the
//! restart the certificate is issued by a real Pebble and served. At start,
//! a stored retry backoff is logged with the way to skip it.
//!
//! Every proxy is a real `sniwalk run` process, killed by PID when the test
//! ends (pass or fail).

mod common;

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pebble::{PebbleEnv, PebbleOptions};
use rustls::pki_types::ServerName;
use sniwalk::acme::control::{self, DomainStatus, StatusFile};
use sniwalk::state_layout::StateLayout;
use tokio::net::TcpStream;

const SHOP: &str = "shop.example.test";
const CODE: &str = sniwalk::acme::listeners::NO_LISTENER_CODE;

/// One `sniwalk run` process; killed (SIGKILL, by PID) on drop.
struct Instance {
    child: Option<Child>,
    log: PathBuf,
}

impl Instance {
    /// Starts `sniwalk run --config CONFIG` (log to `log`); returns once
    /// `https` accepts.
    async fn start(config: &Path, log: PathBuf, https: SocketAddr) -> Instance {
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(common::sniwalk_bin())
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("sniwalk run starts");
        let mut instance = Instance {
            child: Some(child),
            log,
        };
        let started = Instant::now();
        while TcpStream::connect(https).await.is_err() {
            if let Some(Ok(Some(status))) = instance.child.as_mut().map(Child::try_wait) {
                panic!("sniwalk exited ({status}):\n{}", instance.logs());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "sniwalk not listening on {https}:\n{}",
                instance.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        instance
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of the log containing every one of `needles`.
    fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.logs()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .collect()
    }

    /// Waits (up to 20 s) for a log line containing every one of `needles`.
    async fn wait_log(&self, needles: &[&str]) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.lines_with(needles).into_iter().next() {
                return line;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no log line with {needles:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGHUP (a full reload), by PID.
    fn reload(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    StdTcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

fn status(state_dir: &Path, domain: &str) -> DomainStatus {
    control::read_status(&StateLayout::new(state_dir))
        .domains
        .get(domain)
        .cloned()
        .unwrap_or_default()
}

fn account_files(state_dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(state_dir.join("acme/accounts")) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Runs `sniwalk ARGS... --config CONFIG` off the async threads.
async fn cli(args: &[&str], config: &Path) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let config = config.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Command::new(common::sniwalk_bin())
            .args(&args)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("sniwalk runs")
    })
    .await
    .expect("join")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A handshake with SNI `name` that verifies against `client`'s roots; the
/// leaf's SHA-256.
async fn verified_leaf(
    addr: SocketAddr,
    name: &str,
    client: &Arc<rustls::ClientConfig>,
) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let stream = tokio::time::timeout(Duration::from_secs(5), connector.connect(server_name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let chain = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("certificates");
    Ok(sniwalk::pem::sha256_fingerprint(chain[0].as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_waits_for_the_http_listener_a_reload_added_until_a_restart() {
    common::within(Duration::from_secs(180), "waiting for a bound listener", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let (http_port, https_port) = (free_port(), free_port());
        let https: SocketAddr = ([127, 0, 0, 1], https_port).into();
        // Pebble validates HTTP-01 on the port the `http` listener is
        // added with.
        let env = PebbleEnv::start_with(
            &dir.join("pebble"),
            PebbleOptions {
                http_port: Some(http_port),
                ..PebbleOptions::default()
            },
        )
        .await;
        let pebble = common::pebble::client_trusting(&env.root_pem().await);
        let top = format!(
            "master_domain: example.test\nstate_dir: state\nacme:\n  directory: {}\n  ca_roots: {}\n  \
             account_email: ops@example.test\n",
            env.directory_url(),
            env.ca_pem_path().display()
        );
        let web = format!(
            "  - name: web\n    kind: https\n    bind: 127.0.0.1:{https_port}\n    access_log: false\n    \
             routes:\n      - {{ host: \"*\", respond: {{ body: hello }} }}\n"
        );
        let before = format!("{top}domains:\n  example.test: {{}}\nlisteners:\n{web}");
        let after = format!(
            "{top}domains:\n  example.test: {{}}\n  {SHOP}:\n    acme: {{ enabled: true }}\n\
             listeners:\n{web}  - name: plain\n    kind: http\n    bind: 127.0.0.1:{http_port}\n"
        );
        let config = dir.join("proxy.yaml");
        let state_dir = dir.join("state");
        std::fs::write(&config, &before).expect("write config");
        let mut proxy = Instance::start(&config, dir.join("run1.log"), https).await;

        // The domain and the `http` listener arrive by a reload.
        std::fs::write(&config, &after).expect("write config");
        proxy.reload();
        proxy
            .wait_log(&["new listener needs a restart", "plain"])
            .await;
        let started = Instant::now();
        let waiting = loop {
            if let Some(waiting) = status(&state_dir, SHOP).waiting {
                break waiting;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no waiting state for {SHOP}: {:?}\n{}",
                control::read_status(&StateLayout::new(&state_dir)),
                proxy.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!("status reads: {}", waiting.message);
        assert_eq!(waiting.code, CODE);
        for needle in [
            "http-01",
            "`kind: http`",
            &format!("restart sniwalk to bind listener `plain` (127.0.0.1:{http_port})"),
        ] {
            assert!(waiting.message.contains(needle), "{needle}: {waiting:?}");
        }
        let logged = proxy.wait_log(&["ACME: waiting: no bound", SHOP]).await;
        eprintln!("log reads: {logged}");

        // `check` shows it, as an error: the domain has no certificate.
        let out = cli(&["check"], &config).await;
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{shown}");
        assert!(
            shown.contains(CODE) && shown.contains("restart sniwalk to bind listener `plain`"),
            "check shows why:\n{shown}"
        );

        // `sniwalk renew` is refused with the same reason.
        let out = cli(&["renew", "--timeout", "30s", SHOP], &config).await;
        let said = text(&out);
        eprintln!("renew reads: {said}");
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(
            said.contains("no order placed") && said.contains("`plain`"),
            "{said}"
        );

        // Another reload re-plans: the reason is logged once, not again.
        proxy.reload();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            proxy.lines_with(&["ACME: waiting: no bound", SHOP]).len(),
            1,
            "logged once per change:\n{}",
            proxy.logs()
        );
        // Nothing reached the CA: no account, no order.
        assert!(proxy.lines_with(&["order starting"]).is_empty(), "{}", proxy.logs());
        assert!(
            account_files(&state_dir).is_empty(),
            "no account was even registered"
        );
        assert!(
            !StateLayout::new(&state_dir).stored_certificate(SHOP).exists(),
            "nothing stored"
        );
        proxy.kill();

        // A restart binds `plain`: the order proceeds, is validated through
        // it and the certificate is served.
        let proxy = Instance::start(&config, dir.join("run2.log"), https).await;
        let started = Instant::now();
        let leaf = loop {
            match verified_leaf(https, SHOP, &pebble).await {
                Ok(leaf) => break leaf,
                Err(e) => assert!(
                    started.elapsed() < Duration::from_secs(90),
                    "{SHOP} never served Pebble's certificate: {e}\n{}\n{}",
                    proxy.logs(),
                    env.logs()
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let stored =
            std::fs::read_to_string(StateLayout::new(&state_dir).stored_certificate(SHOP))
                .expect("stored");
        let parsed = sniwalk::pem::parse_certificate_pem(&stored).expect("stored parses");
        assert_eq!(parsed.leaf.sha256, leaf);
        let started = Instant::now();
        while status(&state_dir, SHOP).last_issued.is_none() {
            assert!(started.elapsed() < Duration::from_secs(20));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let after = status(&state_dir, SHOP);
        assert!(after.waiting.is_none(), "{after:?}");
        assert!(proxy.lines_with(&["ACME: waiting: no bound"]).is_empty(), "{}", proxy.logs());
        let out = cli(&["check"], &config).await;
        assert!(!text(&out).contains(CODE), "{}", text(&out));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_backoff_is_logged_at_start_with_how_to_skip_it() {
    common::within(Duration::from_secs(60), "the start-up backoff note", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let (http_port, https_port) = (free_port(), free_port());
        let https: SocketAddr = ([127, 0, 0, 1], https_port).into();
        // The CA is never reached: the backoff holds the order back.
        let config = dir.join("proxy.yaml");
        std::fs::write(
            &config,
            format!(
                "master_domain: example.test\nstate_dir: state\ndomains:\n  example.test: {{}}\n  \
                 {SHOP}:\n    acme: {{ enabled: true }}\nacme:\n  directory: https://127.0.0.1:1/dir\n\
                 listeners:\n  - name: plain\n    kind: http\n    bind: 127.0.0.1:{http_port}\n  \
                 - name: web\n    kind: https\n    bind: 127.0.0.1:{https_port}\n"
            ),
        )
        .expect("write config");
        let state_dir = dir.join("state");
        let next_attempt = sniwalk::unix_now() + 3 * 3600;
        let mut stored = StatusFile::default();
        stored.domains.insert(
            SHOP.into(),
            DomainStatus {
                failures: 4,
                next_attempt,
                ..DomainStatus::default()
            },
        );
        control::write_status(&StateLayout::new(&state_dir), &stored).expect("status");

        let proxy = Instance::start(&config, dir.join("run.log"), https).await;
        let line = proxy
            .wait_log(&["stored retry backoff", SHOP, "`sniwalk renew"])
            .await;
        eprintln!("start-up log reads: {line}");
        assert!(
            line.contains(&sniwalk::inspect::rfc3339(next_attempt)),
            "names the next attempt: {line}"
        );
        assert!(line.contains(&format!("sniwalk renew {SHOP}`")), "{line}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(proxy.lines_with(&["order starting"]).is_empty(), "{}", proxy.logs());
        assert_eq!(
            proxy.lines_with(&["stored retry backoff"]).len(),
            1,
            "one line at start"
        );
        assert_eq!(status(&state_dir, SHOP).next_attempt, next_attempt);
    })
    .await;
}
