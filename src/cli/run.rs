//! `sniwalk run`: logging, the runtime, the open file limit, and the
//! signals (SIGHUP reloads, SIGUSR1 reopens the access logs, SIGTERM and
//! SIGINT stop).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use sniwalk::config::{Config, ListenerKind, LogFormat};

/// Logs text lines to stderr, filtered by `RUST_LOG` or else `default`
/// (the commands other than `run`, which follows `log:`).
pub(crate) fn init_logging(default: &str) {
    sniwalk::logging::events::install(LogFormat::Text, default);
}

pub(crate) fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    // The configuration first: its `log:` says how to log. Its errors are
    // printed by the command line's own error path.
    let config = Config::load(config_path)?;
    sniwalk::logging::events::install(config.log.format, &config.log.level);
    raise_fd_limit(&config);
    // One worker: tokio's single-threaded scheduler, which skips the work
    // stealing and cross-thread wake-ups of the multi-threaded one (README,
    // Performance).
    let mut runtime = match config.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Some(threads) = config.worker_threads.filter(|&n| n > 1) {
        runtime.worker_threads(threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async move {
        let sockets = sniwalk::proxy::bind_all(&config).await?;
        let (options, reload) = sniwalk::RunOptions::new();
        forward_sighup(reload);
        forward_sigusr1();
        sniwalk::run_with(config, sockets, options, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    });
    // The access logs' last lines, queued by the connections that just
    // ended, are written before the process exits.
    drop(runtime);
    if !sniwalk::logging::writer::finish(sniwalk::logging::writer::FINISH_LIMIT) {
        tracing::warn!(
            "the access log writers did not finish in time; their last lines may be lost"
        );
    }
    result
}

/// Raises the soft limit on open files to the hard limit (nginx's
/// `worker_rlimit_nofile`, done for the user): every client connection is
/// a descriptor, and so is every backend connection. Logs both limits, and
/// warns when the hard limit is below what the listeners' limits can use.
pub(crate) fn raise_fd_limit(config: &Config) {
    use rlimit::Resource;
    let (soft, hard) = match rlimit::getrlimit(Resource::NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open file limit (RLIMIT_NOFILE)");
            return;
        }
    };
    let raised = if soft < hard {
        match rlimit::setrlimit(Resource::NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open file soft limit to the hard limit");
                soft
            }
        }
    } else {
        soft
    };
    // Client connections, plus one backend connection per `tls` tunnel and
    // per backend request or WebSocket of an `https` listener.
    let wanted: u64 = config
        .listeners
        .iter()
        .map(|l| {
            let clients = l.limits.max_connections as u64;
            match l.kind {
                ListenerKind::Https => clients + l.limits.max_backend_connections as u64,
                ListenerKind::Tls => 2 * clients,
                ListenerKind::Http => clients,
            }
        })
        .sum::<u64>()
        + 64;
    tracing::info!(
        soft_before = soft,
        soft = raised,
        hard,
        "open file limit (RLIMIT_NOFILE): soft raised to the hard limit"
    );
    if raised < wanted {
        tracing::warn!(
            soft = raised,
            wanted,
            "the open file limit is below what the listeners' max_connections and \
             max_backend_connections can use; raise it (systemd LimitNOFILE=, ulimit -Hn) or lower those limits"
        );
    }
}

/// Turns every SIGHUP into a full reload (configuration and certificates).
pub(crate) fn forward_sighup(reload: sniwalk::reload::ReloadHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hangup) => {
                tokio::spawn(async move {
                    while hangup.recv().await.is_some() {
                        tracing::info!(
                            "SIGHUP received: reloading the configuration and certificates"
                        );
                        reload.send(sniwalk::reload::Reload::All);
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; file changes still reload")
            }
        }
    }
    #[cfg(not(unix))]
    drop(reload);
}

/// Turns every SIGUSR1 into a reopening of the access-log files (after
/// logrotate renamed them: README, Logs).
pub(crate) fn forward_sigusr1() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::user_defined1()) {
            Ok(mut usr1) => {
                tokio::spawn(async move {
                    while usr1.recv().await.is_some() {
                        let files = sniwalk::logging::writer::reopen_files();
                        tracing::info!(files, "SIGUSR1 received: reopening the access log files");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGUSR1; access log files are not reopened")
            }
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the proxy");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
