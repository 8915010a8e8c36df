//! sniwalk run in-process with its ACME task, on sockets the test bound,
//! and what the ACME tests ask of it: the domains' ACME status (as
//! `state_dir/acme/status.json` has it) and forced orders (what
//! `sniwalk renew` does).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sniwalk::acme::control::{self, DomainStatus};
use sniwalk::state_layout::StateLayout;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A running proxy; [`AcmeProxy::stop`] ends it.
pub struct AcmeProxy {
    /// Its `state_dir`.
    pub state_dir: PathBuf,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), sniwalk::RunError>>,
}

impl AcmeProxy {
    /// Writes `yaml` to `dir/proxy.yaml` (dir created) and runs it on
    /// `sockets` (one per listener, in order).
    pub fn start(dir: &Path, yaml: &str, sockets: Vec<TcpListener>) -> AcmeProxy {
        super::install_provider();
        std::fs::create_dir_all(dir).expect("config dir");
        let path = dir.join("proxy.yaml");
        std::fs::write(&path, yaml).expect("write config");
        let config = sniwalk::config::Config::load(&path).expect("test config is valid");
        let state_dir = config.state_dir.clone();
        let (options, _reload) = sniwalk::RunOptions::new();
        let (shutdown, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sniwalk::run_with(config, sockets, options, async move {
            let _ = rx.await;
        }));
        AcmeProxy {
            state_dir,
            shutdown,
            task,
        }
    }

    /// Shuts it down and checks that it ran without error.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        super::within(Duration::from_secs(20), "proxy shutdown", self.task)
            .await
            .expect("join")
            .expect("proxy ran");
    }

    /// Waits (up to 30 s) until `domain`'s ACME status satisfies `done`.
    pub async fn wait_status(
        &self,
        domain: &str,
        done: impl Fn(&DomainStatus) -> bool,
    ) -> DomainStatus {
        self.wait_status_for(domain, Duration::from_secs(30), done)
            .await
    }

    /// [`AcmeProxy::wait_status`] with its own limit.
    pub async fn wait_status_for(
        &self,
        domain: &str,
        limit: Duration,
        done: impl Fn(&DomainStatus) -> bool,
    ) -> DomainStatus {
        let started = Instant::now();
        loop {
            let status = self.status(domain);
            if done(&status) {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "ACME status of {domain} never got there: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `domain`'s ACME status now (the default when it has none).
    pub fn status(&self, domain: &str) -> DomainStatus {
        control::read_status(&StateLayout::new(&self.state_dir))
            .domains
            .get(domain)
            .cloned()
            .unwrap_or_default()
    }

    /// What `sniwalk renew` does: asks for an order of `domain` now,
    /// whatever the backoff says.
    pub fn force_order(&self, domain: &str) {
        control::request_renewal(
            &StateLayout::new(&self.state_dir),
            domain,
            sniwalk::unix_now(),
        )
        .expect("request");
    }
}
