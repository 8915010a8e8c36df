//! What systemd hears (`Type=notify`, sd_notify(3)): the real `sniwalk run`
//! with `NOTIFY_SOCKET` naming a datagram socket of the test. `READY=1`
//! once it serves, `RELOADING=1` then `READY=1` around a SIGHUP (also when
//! the new configuration is refused, with the reason in `STATUS=`), and
//! `STOPPING=1` on SIGTERM, after which it exits 0.

mod common;

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{https_get, proxy_yaml, sniwalk_bin};
use tokio::net::UnixDatagram;

/// How long any one notification may take to arrive (a start builds the
/// default certificate; a debug build is slow).
const NOTIFY_LIMIT: Duration = Duration::from_secs(30);

/// The test's end of `NOTIFY_SOCKET`.
struct Notifications {
    socket: UnixDatagram,
}

impl Notifications {
    fn bind(path: &Path) -> Notifications {
        Notifications {
            socket: UnixDatagram::bind(path).expect("bind the notification socket"),
        }
    }

    /// The next datagram, as text; fails the test (with the proxy's log)
    /// when none comes in time.
    async fn next(&self, proxy: &Proxy, waiting_for: &str) -> String {
        let mut buffer = vec![0u8; 4096];
        match tokio::time::timeout(NOTIFY_LIMIT, self.socket.recv(&mut buffer)).await {
            Ok(Ok(n)) => String::from_utf8_lossy(&buffer[..n]).into_owned(),
            Ok(Err(e)) => panic!("reading the notification socket: {e}"),
            Err(_) => panic!(
                "no notification within {NOTIFY_LIMIT:?} while waiting for {waiting_for}; log:\n{}",
                proxy.log()
            ),
        }
    }
}

/// One `sniwalk run` process, killed by its PID when dropped.
struct Proxy {
    child: Child,
    log: PathBuf,
}

impl Proxy {
    fn start(config: &Path, notify_socket: &Path, log: PathBuf) -> Proxy {
        let out = std::fs::File::create(&log).expect("create the log file");
        let child = Command::new(sniwalk_bin())
            .args(["run", "--config"])
            .arg(config)
            .env("NOTIFY_SOCKET", notify_socket)
            .env("RUST_LOG", "info,sniwalk::service=debug")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file handle"))
            .stderr(out)
            .spawn()
            .expect("sniwalk run starts");
        Proxy { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`-HUP`, `-TERM`) with kill(1).
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill {signal}: {status}");
    }

    /// Waits for the process to exit (at most 20 s): its exit status.
    async fn exit(&mut self) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "still running 20 s after SIGTERM; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_addr() -> SocketAddr {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn config_yaml(addr: SocketAddr) -> String {
    proxy_yaml(
        "shutdown_timeout: 2s\n",
        &format!(
            "  - name: web\n    kind: https\n    bind: {addr}\n    access_log: false\n    routes:\n      \
             - {{ host: \"*\", respond: {{ body: \"up\\n\" }} }}\n"
        ),
    )
}

#[tokio::test]
async fn ready_reloading_and_stopping_reach_the_service_manager() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let config = dir.path().join("proxy.yaml");
    std::fs::write(&config, config_yaml(addr)).expect("write proxy.yaml");
    let socket_path = dir.path().join("notify");
    let notifications = Notifications::bind(&socket_path);
    let mut proxy = Proxy::start(&config, &socket_path, dir.path().join("sniwalk.log"));

    // Start-up: the first word is READY=1, naming the listener, and the
    // listener serves by then.
    let ready = notifications.next(&proxy, "READY=1 at start").await;
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready.contains(&format!("STATUS=serving: web (https) on {addr}")),
        "{ready:?}"
    );
    let (status, body) = https_get(addr, Some("example.com"), "example.com", "/").await;
    assert_eq!((status, body.as_str()), (200, "up\n"));

    // SIGHUP on a good configuration: RELOADING=1, then READY=1.
    proxy.signal("-HUP");
    let reloading = notifications.next(&proxy, "RELOADING=1").await;
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    let reloaded = notifications.next(&proxy, "READY=1 after a reload").await;
    assert!(reloaded.lines().any(|l| l == "READY=1"), "{reloaded:?}");
    assert!(reloaded.contains("reloaded"), "{reloaded:?}");

    // SIGHUP on a broken configuration: still READY=1 (the running one
    // serves on), and STATUS= names what is wrong.
    let broken = format!("{}listners: []\n", config_yaml(addr));
    std::fs::write(&config, broken).expect("break proxy.yaml");
    proxy.signal("-HUP");
    let reloading = notifications.next(&proxy, "RELOADING=1 (broken)").await;
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    let refused = notifications
        .next(&proxy, "READY=1 after a refused reload")
        .await;
    assert!(refused.lines().any(|l| l == "READY=1"), "{refused:?}");
    assert!(
        refused.contains("STATUS=serving the previous configuration")
            && refused.contains("listners"),
        "{refused:?}"
    );
    let (status, _) = https_get(addr, Some("example.com"), "example.com", "/").await;
    assert_eq!(status, 200, "the running configuration serves on");

    // SIGTERM: STOPPING=1, then a clean exit.
    proxy.signal("-TERM");
    let stopping = notifications.next(&proxy, "STOPPING=1").await;
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(stopping.contains("STATUS=draining"), "{stopping:?}");
    let status = proxy.exit().await;
    assert!(status.success(), "exit {status}; log:\n{}", proxy.log());
}

#[tokio::test]
async fn without_notify_socket_nothing_changes() {
    // The variable unset (a shell): the proxy starts, serves and stops as
    // always, and logs nothing about a service manager.
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let config = dir.path().join("proxy.yaml");
    std::fs::write(&config, config_yaml(addr)).expect("write proxy.yaml");
    let log = dir.path().join("sniwalk.log");
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(sniwalk_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file handle"))
        .stderr(out)
        .spawn()
        .expect("sniwalk run starts");
    let mut proxy = Proxy { child, log };
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < NOTIFY_LIMIT,
            "not listening; log:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = https_get(addr, Some("example.com"), "example.com", "/").await;
    assert_eq!(status, 200);
    proxy.signal("-HUP");
    proxy.signal("-TERM");
    let status = proxy.exit().await;
    assert!(status.success(), "exit {status}; log:\n{}", proxy.log());
    let log = proxy.log();
    assert!(!log.contains("service manager"), "{log}");
}
