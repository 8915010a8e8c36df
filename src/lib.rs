//! sniwalk: a TLS-terminating reverse proxy that picks a certificate for
//! every handshake by walking a domain tree from the SNI name up to a master
//! domain, then the listener's certdir, then a default certificate.
//!
//! # Layout
//!
//! The README's "Layout" section maps every file and the three data flows
//! (ClientHello → snapshot → key; file change → reload → swap; ACME order
//! → store → reload). This file only wires the parts together.
//!
//! [`run`] takes already-bound sockets and a shutdown future, so tests run
//! the whole proxy in-process on port 0.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acme;
pub mod admin;
pub mod balance;
pub mod challenge;
pub mod clock;
pub mod config;
pub mod expiry;
pub mod fsio;
pub mod health;
pub mod ids;
pub mod inspect;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod pem;
pub mod proxy;
pub mod reload;
pub mod resolver;
pub mod service;
pub mod snapshot;
pub mod state_layout;
pub mod storage;
pub mod tickets;
pub mod tree;

/// Now in Unix seconds (for the command line and tests; the crate itself
/// uses [`clock`]).
pub use clock::unix_now;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::challenge::ChallengeStore;
use crate::config::Config;
use crate::snapshot::Changes;

/// Why [`run`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The certificate state could not be built at all.
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    /// Serving could not start.
    #[error(transparent)]
    Serve(#[from] proxy::ServeError),
    /// The admin API could not start.
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    /// The session ticket keys file cannot be used.
    #[error("tls.ticket_keys_file: {0}")]
    Tickets(#[from] tickets::TicketKeysError),
    /// The storage (`storage:`) cannot be opened.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// The snapshot build task died.
    #[error("building the certificate snapshot failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Runs the proxy on `sockets` (one per configured listener, in order)
/// until `shutdown` completes.
///
/// Broken certificates never stop it: they are logged, and the resolution
/// rules fall through to the next certificate.
pub async fn run(
    config: Config,
    sockets: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    run_with_challenges(
        config,
        sockets,
        Arc::new(ChallengeStore::default()),
        shutdown,
    )
    .await
}

/// [`run`] with a challenge store shared with the caller (the ACME client,
/// or a test that publishes HTTP-01 answers).
pub async fn run_with_challenges(
    config: Config,
    sockets: Vec<TcpListener>,
    challenges: Arc<ChallengeStore>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let (options, _handle) = RunOptions::new();
    run_with(
        config,
        sockets,
        RunOptions {
            challenges,
            ..options
        },
        shutdown,
    )
    .await
}

/// What [`run_with`] shares with its caller.
pub struct RunOptions {
    /// Pending ACME challenge answers (the ACME client, or a test, writes).
    pub challenges: Arc<ChallengeStore>,
    /// Reload messages; keep the [`reload::ReloadHandle`] of the same
    /// channel to ask for SIGHUP-style reloads.
    pub reloads: reload::ReloadReceiver,
    /// The ACME task's clock ([`acme::manager::system_clock`] but in tests).
    pub clock: acme::manager::Clock,
    /// The metrics to count into, shared with whatever renders them; `None`
    /// makes [`run_with`] create them from the configuration.
    pub metrics: Option<Arc<metrics::Metrics>>,
    /// The admin listener's socket, already bound (tests); `None` binds
    /// `admin.bind` when the configuration has an `admin:` block.
    pub admin_socket: Option<TcpListener>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("challenges", &self.challenges)
            .field("reloads", &self.reloads)
            .finish_non_exhaustive()
    }
}

impl RunOptions {
    /// Options with a fresh challenge store and reload channel; the handle
    /// to the channel is returned beside them.
    pub fn new() -> (Self, reload::ReloadHandle) {
        let (handle, reloads) = reload::channel();
        (
            RunOptions {
                challenges: Arc::new(ChallengeStore::default()),
                reloads,
                clock: acme::manager::system_clock(),
                metrics: None,
                admin_socket: None,
            },
            handle,
        )
    }
}

/// [`run`] with the challenge store and the reload channel shared with the
/// caller. The reload task watches the configuration and every certificate
/// source and swaps certificates in without dropping anything.
pub async fn run_with(
    config: Config,
    sockets: Vec<TcpListener>,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let RunOptions {
        challenges,
        reloads,
        clock,
        metrics,
        admin_socket,
    } = options;
    // The admin API's token and socket first: a mistake there stops the
    // start, before anything listens.
    let admin = match &config.admin {
        None => None,
        Some(settings) => {
            let token = settings
                .token_file
                .as_deref()
                .map(admin::read_token)
                .transpose()?;
            let socket = match admin_socket {
                Some(socket) => socket,
                None => TcpListener::bind(settings.bind).await.map_err(|source| {
                    admin::AdminError::Bind {
                        bind: settings.bind,
                        source,
                    }
                })?,
            };
            Some((socket, token))
        }
    };
    let metrics = metrics.unwrap_or_else(|| crate::metrics::Metrics::new(&config));
    let reload_handle = reloads.handle();
    let shared = storage::open(&config).await?;
    tracing::info!(storage = %shared.engine().describe(), instance = %shared.instance(), "storage opened");
    {
        let metrics = metrics.clone();
        shared
            .health()
            .observe(Box::new(move |up| metrics.set_storage_up(up)));
    }
    let tickets = match &config.ticket_keys_file {
        Some(path) => {
            let shared = Arc::new(tickets::SharedTicketer::from_file(path)?);
            tracing::info!(file = %path.display(), "TLS session tickets use the shared keys file");
            Some((path.clone(), shared))
        }
        None => None,
    };
    // Without a keys file, a remote storage shares the ticket keys (and
    // rotates them): README, "Shared session tickets".
    let storage_tickets = match (&tickets, shared.cache()) {
        (None, Some(cache)) => {
            let ticketer = storage::ticket_keys::initial_ticketer(cache, config.ticket_rotation)?;
            tracing::info!(
                storage = %shared.engine().describe(),
                every_secs = config.ticket_rotation.as_secs(),
                "TLS session tickets use keys shared and rotated through the storage"
            );
            Some(ticketer)
        }
        _ => None,
    };
    let build_config = config.clone();
    let snapshot = tokio::task::spawn_blocking(move || {
        reload::build_snapshot(&build_config, None, Changes(None), clock::unix_now())
    })
    .await??;
    reload::log_sources(&snapshot);
    for problem in acme::credentials::problems(&config) {
        match problem.severity {
            snapshot::Severity::Error => tracing::error!("{}", problem.message),
            snapshot::Severity::Warning => tracing::warn!("{}", problem.message),
        }
    }
    for tls in config
        .backend_tls()
        .into_iter()
        .filter(|t| t.insecure_skip_verify)
    {
        tracing::warn!(
            backend = %tls.backend,
            server_name = %tls.server_name,
            "backend_tls.insecure_skip_verify: the backend's certificate is NOT verified; anyone on \
             the path can impersonate it. Use backend_tls.ca_file instead"
        );
    }
    // The one writer goes to the reload task (below); everything else reads.
    let writer_of_snapshots = snapshot::SnapshotWriter::new(snapshot);
    let store = writer_of_snapshots.reader();
    let stop_reloads = tokio_util::sync::CancellationToken::new();
    let (config_tx, config_rx) = tokio::sync::watch::channel(Arc::new(config.clone()));
    // Admin imports and ACME results write stored certificates in turn.
    let writer = fsio::StateWriter::default();
    let manager = acme::manager::Manager::new(
        acme::manager::CaIssuer::new(
            challenges.clone(),
            reload_handle.clone(),
            store.clone(),
            shared.clone(),
        )
        .with_writer(writer.clone()),
        config_rx.clone(),
        store.clone(),
        clock,
    )
    .with_metrics(metrics.clone())
    .with_shared_status(shared.clone());
    let acme_handle = manager.handle();
    // On-demand certificates follow the published configuration, so a
    // reload turns them on, off or changes them (README, "On-demand
    // certificates").
    let on_demand = acme::on_demand::OnDemand::new(acme::on_demand::OnDemandParts {
        config: config_rx.clone(),
        store: store.clone(),
        storage: shared.clone(),
        reloads: reload_handle.clone(),
        acme: acme_handle.clone(),
        writer: writer.clone(),
        metrics: metrics.clone(),
    });
    if config.acme.on_demand.is_some() {
        tokio::spawn(on_demand.clone().resume());
    }
    let admin_storage = shared.clone();
    let liveness_task = tokio::spawn(storage::liveness::keep_alive(
        shared.clone(),
        stop_reloads.clone(),
    ));
    let follow_reloads = reload_handle.clone();
    let acme_task = tokio::spawn(manager.run(stop_reloads.clone()));
    // Raised when shutdown begins; the admin API keeps answering until the
    // drain is over (it stops with the other tasks, below), with a 503 on
    // `/healthz` meanwhile.
    let draining = tokio_util::sync::CancellationToken::new();
    let admin_task = admin.map(|(socket, token)| {
        let state = admin::AdminState::new(
            config.clone(),
            store.clone(),
            metrics.clone(),
            reload_handle,
            acme_handle,
            token,
        )
        .with_draining(draining.clone())
        .with_storage(admin_storage)
        .with_writer(writer);
        tokio::spawn(admin::serve(socket, Arc::new(state), stop_reloads.clone()))
    });
    let serving = service::serving_status(
        &config.listeners,
        &sockets
            .iter()
            .map(|s| s.local_addr().ok())
            .collect::<Vec<_>>(),
    );
    let shutdown = {
        let draining = draining.clone();
        let admin_bind = config.admin.as_ref().map(|a| a.bind);
        let shutdown_secs = config.shutdown_timeout.as_secs();
        async move {
            // `proxy::serve` awaits this future once every listener's
            // accept loop runs and its TLS configuration is built; the
            // snapshot is in force since before: the proxy serves, which
            // is what `READY=1` tells systemd (README, "Install (Debian
            // package)").
            service::ready(&serving);
            shutdown.await;
            service::stopping(shutdown_secs);
            draining.cancel();
            if let Some(bind) = admin_bind {
                tracing::info!(%bind, "admin /healthz answers 503 until the drain is over");
            }
        }
    };
    let reload_task = tokio::spawn(
        reload::ReloadTask::new(config.clone(), writer_of_snapshots, reloads)
            .publish_config(config_tx)
            .with_metrics(metrics.clone())
            .with_tickets(tickets.clone())
            .run(stop_reloads.clone()),
    );
    // What other instances share reaches this one: challenge answers, and
    // with a remote storage the certificates (into the local cache).
    let follow_shared = shared.clone();
    let follow_task = {
        let reloads = follow_reloads;
        let all = reloads.clone();
        let changed: storage::follow::OnCertificate =
            Arc::new(move |domain: &str| reloads.send(reload::Reload::Domain(domain.to_string())));
        let domains_changed: storage::follow::OnDomains =
            Arc::new(move || all.send(reload::Reload::All));
        tokio::spawn(storage::follow::follow(
            shared,
            challenges.clone(),
            changed,
            domains_changed,
            stop_reloads.clone(),
        ))
    };
    let tickets_task = storage_tickets.clone().map(|ticketer| {
        tokio::spawn(storage::ticket_keys::run(
            follow_shared.clone(),
            ticketer,
            config.ticket_rotation,
            stop_reloads.clone(),
        ))
    });
    let health_task = tokio::spawn(health::supervise(store.clone(), stop_reloads.clone()));
    let monitor_task = tokio::spawn(monitor::run(
        store.clone(),
        config.acme.warn_days,
        stop_reloads.clone(),
    ));
    let handshakes = proxy::Handshakes {
        challenges,
        tickets: tickets
            .map(|(_, t)| t)
            .or(storage_tickets)
            .map(|t| t as Arc<dyn rustls::server::ProducesTickets>),
        on_demand: Some(on_demand),
    };
    let served = proxy::serve(&config, sockets, store, handshakes, metrics, shutdown).await;
    stop_reloads.cancel();
    let _ = reload_task.await;
    let _ = acme_task.await;
    let _ = monitor_task.await;
    let _ = health_task.await;
    let _ = follow_task.await;
    let _ = liveness_task.await;
    if let Some(task) = tickets_task {
        let _ = task.await;
    }
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    served?;
    Ok(())
}
