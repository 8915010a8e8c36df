//! A real HAProxy (Debian's `haproxy`) in front of sniwalk, for the PROXY
//! protocol tests: `haproxy -f CFG -db` as a child process (in the
//! foreground; the system service, if any, is never used), its
//! configuration in a temporary folder, one `mode tcp` frontend per route
//! on a free 127.0.0.1 port, each passing connections to one target with
//! the server options given (`send-proxy`, `send-proxy-v2`).
//!
//! HAProxy connects to the targets from 127.0.0.1 (`source 127.0.0.1`),
//! so a test client bound to another loopback address (127.0.0.2) is told
//! apart from the load balancer. Readiness is read from one more frontend
//! that closes every connection at once, so waiting for it sends nothing
//! to the targets. The process is killed by PID on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::instances::free_port;

/// How long [`HaProxy::start`] waits for every frontend to accept.
const START_LIMIT: Duration = Duration::from_secs(15);

/// One frontend: where it sends connections and how.
pub struct Route {
    /// The target (sniwalk's listener).
    pub target: SocketAddr,
    /// HAProxy `server` options: `send-proxy`, `send-proxy-v2`.
    pub options: &'static str,
}

/// A running HAProxy.
pub struct HaProxy {
    /// The frontends, in the order of the routes given.
    pub frontends: Vec<SocketAddr>,
    /// The frontend that only says HAProxy is up.
    ready: SocketAddr,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl HaProxy {
    /// Writes the configuration and starts HAProxy; returns once every
    /// frontend accepts connections (panics with HAProxy's output if it
    /// exits or is not ready within 15 s).
    pub async fn start(routes: &[Route]) -> HaProxy {
        let dir = tempfile::tempdir().expect("tempdir for haproxy");
        let mut config = String::from(
            "global\n    maxconn 200\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    \
             timeout server 60s\n",
        );
        let mut frontends = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            let front = SocketAddr::from(([127, 0, 0, 1], free_port("127.0.0.1")));
            config.push_str(&format!(
                "frontend front{index}\n    bind {front}\n    default_backend back{index}\n\
                 backend back{index}\n    server target{index} {} {} source 127.0.0.1\n",
                route.target, route.options
            ));
            frontends.push(front);
        }
        let ready = SocketAddr::from(([127, 0, 0, 1], free_port("127.0.0.1")));
        config.push_str(&format!(
            "frontend ready\n    bind {ready}\n    tcp-request connection reject\n"
        ));
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, &config).expect("write haproxy.cfg");
        let mut haproxy = HaProxy {
            frontends,
            ready,
            child: None,
            dir,
        };
        haproxy.spawn(&file);
        haproxy.wait_ready().await;
        haproxy
    }

    fn spawn(&mut self, file: &std::path::Path) {
        let output = |name: &str| {
            std::fs::File::create(self.dir.path().join(name)).expect("haproxy output file")
        };
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(file)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(output("stdout.log"))
            .stderr(output("stderr.log"))
            .spawn()
            .expect(
                "start haproxy (Debian's `haproxy` package; scripts/test.sh installs it when \
                 missing)",
            );
        self.child = Some(child);
    }

    /// Waits until the `ready` frontend accepts: HAProxy binds every
    /// frontend before it accepts on any.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("haproxy exited ({status}) at start:\n{}", self.output());
            }
            if TcpStream::connect(self.ready).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy not accepting within {START_LIMIT:?}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What HAProxy printed (both streams), and its configuration.
    pub fn output(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "{}{}--- haproxy.cfg:\n{}",
            read("stdout.log"),
            read("stderr.log"),
            read("haproxy.cfg")
        )
    }

    /// The folder holding the configuration and output.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
