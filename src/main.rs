//! The `sniwalk` command line: run, check, resolve, renew, selfsigned, pem
//! merge, storage ls and migrate.
//!
//! This is the only place that prints to stdout and that uses `anyhow`.

#![forbid(unsafe_code)]

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use sniwalk::config::{Config, ListenerKind, normalize_domain_name};
use sniwalk::inspect::{CheckReport, Resolution};
use sniwalk::snapshot::{
    CERTDIR_CERT, CERTDIR_KEY, DefaultPolicy, Snapshot, generate_self_signed_pem,
};
use sniwalk::{fsio, pem, unix_now};

/// TLS-terminating reverse proxy that picks the certificate for every
/// handshake by walking a domain tree.
///
/// With no command, runs `sniwalk run --config proxy.yaml`.
#[derive(Parser)]
#[command(name = "sniwalk", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Run(ConfigArg),
    /// Load every certificate as `run` would and print their state;
    /// exits 1 when any has an error.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show which certificate a name gets, and why.
    Resolve {
        #[command(flatten)]
        config: ConfigArg,
        /// Listener whose certdir is the fallback (default: the first TLS listener).
        #[arg(long)]
        listener: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The SNI name to resolve; omit with --no-sni.
        name: Option<String>,
        /// Resolve a client that sends no SNI (connects by IP address).
        #[arg(long, conflicts_with = "name")]
        no_sni: bool,
    },
    /// Ask the running proxy to renew an ACME domain's certificate now, and
    /// wait for the outcome; exits 1 when it failed.
    Renew {
        #[command(flatten)]
        config: ConfigArg,
        /// How long to wait for the outcome (`90s`, `5m`, ...).
        #[arg(long, default_value = "5m")]
        timeout: String,
        /// The ACME-enabled domain.
        domain: String,
    },
    /// Print the running proxy's certificate status (admin API `/status`)
    /// as a table.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// The admin API, e.g. `http://127.0.0.1:9901` (default: `admin.bind`).
        #[arg(long)]
        admin: Option<String>,
        /// Print the JSON as received.
        #[arg(long)]
        json: bool,
    },
    /// Manage the shared TLS session ticket keys file.
    TicketKeys {
        #[command(subcommand)]
        command: TicketKeysCommand,
    },
    /// Write a self-signed server.key (0600) and server.crt for a local
    /// master domain into a certdir.
    Selfsigned {
        /// The name the certificate is for (repeat for more names).
        #[arg(long, required = true)]
        name: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 1095)]
        days: u32,
        /// RSA-2048 instead of ECDSA P-256.
        #[arg(long)]
        rsa: bool,
        /// The directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Work with certificate_pem texts.
    Pem {
        #[command(subcommand)]
        command: PemCommand,
    },
    /// What sniwalk instances share (`storage:`): list it, or copy it into
    /// another storage.
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
}

#[derive(Subcommand)]
enum StorageCommand {
    /// List every key of the configured storage: size, revision, and for a
    /// certificate its names, not-after, SHA-256 and whether it loads.
    /// Never prints a value. Exits 1 when the storage cannot be reached.
    Ls {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Copy what the configured storage holds into the storage of another
    /// configuration (locks, challenge answers, jobs and status aside),
    /// never overwriting a newer certificate or a value that differs.
    /// Exits 1 when a key failed.
    Migrate {
        #[command(flatten)]
        config: ConfigArg,
        /// The configuration whose storage receives the copy (e.g. one with
        /// `storage: { kind: etcd, ... }`).
        #[arg(long)]
        to: PathBuf,
        /// Decide and print, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum TicketKeysCommand {
    /// Add a fresh key in front (it encrypts from now on), keep the newest
    /// N; creates the file (0600) when missing. Instances re-read it.
    Rotate {
        /// The keys file (`tls.ticket_keys_file`).
        file: PathBuf,
        /// How many keys to keep (older tickets stay valid until their key
        /// drops out).
        #[arg(long, default_value_t = sniwalk::tickets::DEFAULT_KEEP)]
        keep: usize,
    },
}

#[derive(Subcommand)]
enum PemCommand {
    /// Print a validated certificate_pem (key, certificate, chain) made of
    /// separate files.
    Merge {
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
        /// The certificate file (may already hold the chain).
        #[arg(long)]
        cert: PathBuf,
        /// Chain (intermediate certificates) file.
        #[arg(long)]
        chain: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(long, short, default_value = "proxy.yaml")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(Path::new("proxy.yaml")),
        Some(Command::Run(args)) => run(&args.config),
        Some(Command::Check { config, json }) => check(&config.config, json),
        Some(Command::Resolve {
            config,
            listener,
            json,
            name,
            no_sni,
        }) => resolve(
            &config.config,
            listener.as_deref(),
            name.as_deref(),
            no_sni,
            json,
        ),
        Some(Command::Renew {
            config,
            timeout,
            domain,
        }) => renew(&config.config, &domain, &timeout),
        Some(Command::Status {
            config,
            admin,
            json,
        }) => status(&config.config, admin.as_deref(), json),
        Some(Command::TicketKeys {
            command: TicketKeysCommand::Rotate { file, keep },
        }) => sniwalk::tickets::rotate(&file, keep)
            .map(|keys| {
                println!(
                    "{}: {} key(s), a new one in front",
                    file.display(),
                    keys.len()
                );
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
        Some(Command::Selfsigned {
            name,
            days,
            rsa,
            out,
        }) => selfsigned(&name, days, rsa, &out),
        Some(Command::Pem {
            command: PemCommand::Merge { key, cert, chain },
        }) => pem_merge(&key, &cert, chain.as_deref()),
        Some(Command::Storage { command }) => storage(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sniwalk: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` or else `default`.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    init_logging("info");
    let config = Config::load(config_path)?;
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
    runtime.block_on(async move {
        let sockets = sniwalk::proxy::bind_all(&config).await?;
        let (options, reload) = sniwalk::RunOptions::new();
        forward_sighup(reload);
        sniwalk::run_with(config, sockets, options, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Raises the soft limit on open files to the hard limit (nginx's
/// `worker_rlimit_nofile`, done for the user): every client connection is
/// a descriptor, and so is every backend connection. Logs both limits, and
/// warns when the hard limit is below what the listeners' limits can use.
fn raise_fd_limit(config: &Config) {
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
fn forward_sighup(reload: sniwalk::reload::ReloadHandle) {
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

/// Completes on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
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

/// `storage ls` and `storage migrate`: exit 1 when a storage cannot be
/// opened or reached, both configurations name one, or a key failed.
/// Warnings only in the log: the proxy's own message on an etcd that is
/// unreachable at start (it would serve its cache) does not apply here.
fn storage(command: StorageCommand) -> anyhow::Result<ExitCode> {
    use sniwalk::storage;
    init_logging("warn,sniwalk::storage::open=off");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let failed = |e: storage::MigrateError| {
        eprintln!("sniwalk: {e}");
        Ok(ExitCode::from(1))
    };
    match command {
        StorageCommand::Ls { config, json } => {
            let config = Config::load(&config.config)?;
            let listed = match runtime.block_on(storage::inventory_of(&config)) {
                Ok(listed) => listed,
                Err(e) => return failed(e),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else {
                print!("{}", listed.render_text());
            }
            Ok(ExitCode::SUCCESS)
        }
        StorageCommand::Migrate {
            config,
            to,
            dry_run,
        } => {
            let (from, to) = (Config::load(&config.config)?, Config::load(&to)?);
            let print = |key: &storage::KeyReport| println!("{}", key.line(dry_run));
            match runtime.block_on(storage::migrate_configs(&from, &to, dry_run, print)) {
                Ok(report) => {
                    println!("{}", report.summary());
                    Ok(ExitCode::from(u8::from(report.failed() > 0)))
                }
                Err(e) => failed(e),
            }
        }
    }
}

/// Loads the snapshot as `run` would, without writing anything.
fn load_snapshot(config_path: &Path) -> anyhow::Result<(Config, Snapshot)> {
    let config = Config::load(config_path)?;
    let snapshot = Snapshot::build(&config, None, DefaultPolicy::InMemory, unix_now())?;
    Ok((config, snapshot))
}

fn check(config_path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    // A configuration that does not load is an error like any other: exit 1.
    let (config, snapshot) = match load_snapshot(config_path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("sniwalk: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    let acme_status = sniwalk::acme::control::read_status(&config.state_layout());
    let report = CheckReport::from_snapshot(&snapshot, unix_now()).with_acme_status(&acme_status);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let storage = runtime.block_on(sniwalk::storage::probe(&config));
    if json {
        let mut value = serde_json::to_value(&report)?;
        value["storage"] = serde_json::to_value(&storage)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", report.render_text());
        println!("{}", storage.line());
    }
    Ok(if report.has_errors() || !storage.up {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn status(config_path: &Path, admin: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let settings = config.admin.as_ref();
    let base = match (admin, settings) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(settings)) => format!("http://{}", settings.bind),
        (None, None) => bail!(
            "{} has no `admin:` block; add one (e.g. `admin: {{ bind: 127.0.0.1:9901 }}`) or pass --admin URL",
            config.file.display()
        ),
    };
    let token = match settings.and_then(|s| s.token_file.as_deref()) {
        Some(file) => Some(sniwalk::admin::read_token(file)?),
        None => None,
    };
    let authority = base
        .strip_prefix("http://")
        .with_context(|| format!("--admin {base}: give an http:// URL"))?
        .to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (code, body) = runtime.block_on(admin_get(&authority, "/status", token.as_deref()))?;
    if code != 200 {
        bail!("{base}/status answered {code}: {body}");
    }
    if json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let report: serde_json::Value =
        serde_json::from_str(&body).context("the admin API sent no JSON")?;
    print!("{}", render_status(&report));
    Ok(if report["system_state"] == "error" {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One GET to the admin API; status code and body.
async fn admin_get(
    authority: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    use http_body_util::BodyExt as _;
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| {
            format!("connecting to the admin API at {authority}: is sniwalk running?")
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, authority);
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = sender
        .send_request(request.body(http_body_util::Empty::<bytes::Bytes>::new())?)
        .await?;
    let code = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

/// `/status` JSON as a table for people.
fn render_status(report: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut rows = vec![
        [
            "PLACE",
            "NAME",
            "MANAGED",
            "NOT AFTER",
            "DAYS",
            "RENEWS",
            "STATE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut problems = Vec::new();
    for row in report["certificates"].as_array().into_iter().flatten() {
        let managed = row["managed"].as_str().unwrap_or("-");
        let renews = row["acme"]["renew_at"]
            .as_i64()
            .map(sniwalk::inspect::rfc3339)
            .unwrap_or_else(|| "-".into());
        rows.push(vec![
            text(&row["place"]),
            text(&row["name"]),
            managed.to_string(),
            text(&row["not_after"]),
            text(&row["days_left"]),
            renews,
            text(&row["state"]),
        ]);
        for problem in row["problems"].as_array().into_iter().flatten() {
            problems.push(format!(
                "  {} {}: {}",
                text(&problem["severity"]),
                text(&row["name"]),
                text(&problem["message"])
            ));
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for problem in problems {
        out.push_str(&problem);
        out.push('\n');
    }
    out.push_str(&format!(
        "\nsystem_state: {}\n",
        text(&report["system_state"])
    ));
    out
}

/// How long `renew` waits for a running proxy to pick its request up.
const RENEW_PICKUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

fn renew(config_path: &Path, domain: &str, timeout: &str) -> anyhow::Result<ExitCode> {
    use sniwalk::acme::control;
    use sniwalk::config::CertificateSource;

    let timeout =
        sniwalk::config::parse_duration(timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    let config = Config::load(config_path)?;
    let domain = normalize_domain_name(domain).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(configured) = config.domains.iter().find(|d| d.name == domain) else {
        bail!(
            "{domain} is not under `domains` in {}; add it with `acme: {{ enabled: true }}`",
            config.file.display()
        );
    };
    if !configured.acme.as_ref().is_some_and(|a| a.enabled) {
        bail!(
            "{domain} does not have `acme: {{ enabled: true }}` in {}; nothing to renew",
            config.file.display()
        );
    }
    if configured.certificate != CertificateSource::None {
        bail!(
            "{domain}'s certificate is set by hand in {} (certificate_pem or certificate_file); \
            ACME leaves it alone; remove it to let ACME manage the domain",
            config.file.display()
        );
    }
    let stored = config.state_layout().stored_certificate(&domain);
    if let Ok(text) = fsio::read_cert_text(&stored)
        && !text.contains(&format!("{}=", pem::ACME_ISSUED_MARKER))
    {
        bail!(
            "{} has no `acme_issued` marker: it is managed by hand and ACME leaves it alone; \
            remove it to let ACME issue one",
            stored.display()
        );
    }

    let state = config.state_layout();
    let id = control::request_renewal(&state, &domain, unix_now())
        .with_context(|| format!("asking the running proxy to renew {domain}"))?;
    println!("renewal of {domain} requested; waiting for the running sniwalk");
    let started = std::time::Instant::now();
    let mut last_step = None;
    loop {
        if let Some(result) = control::read_result(&state, &domain).filter(|r| r.id == id) {
            println!("{}", result.message);
            return Ok(if result.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        if control::request_pending(&state, &domain) {
            if started.elapsed() > RENEW_PICKUP_LIMIT {
                control::withdraw_request(&state, &domain);
                bail!(
                    "no running sniwalk picked the request up within {}s: start it with \
                    `sniwalk run --config {}` (only the running proxy can answer the CA's challenge)",
                    RENEW_PICKUP_LIMIT.as_secs(),
                    config.file.display()
                );
            }
        } else {
            let step = control::read_status(&state)
                .domains
                .get(&domain)
                .and_then(|s| s.in_flight);
            if step.is_some() && step != last_step {
                if let Some(step) = step {
                    println!("  {}", step.describe());
                }
                last_step = step;
            }
        }
        if started.elapsed() > timeout {
            bail!(
                "{domain}: no outcome within {}s; the renewal may still be running: see the \
                proxy's log and `sniwalk check`",
                timeout.as_secs()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn resolve(
    config_path: &Path,
    listener: Option<&str>,
    name: Option<&str>,
    no_sni: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (config, snapshot) = load_snapshot(config_path)?;
    if name.is_none() && !no_sni {
        bail!("give a NAME to resolve, or --no-sni for a client that sends none");
    }
    let index = match listener {
        Some(wanted) => Some(snapshot.listener_index(wanted).with_context(|| {
            let known: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
            format!(
                "no listener named `{wanted}` (configured: {})",
                known.join(", ")
            )
        })?),
        None => config
            .listeners
            .iter()
            .position(|l| l.kind.terminates_tls()),
    };
    let resolution = Resolution::explain(&snapshot, index, name);
    if json {
        println!("{}", serde_json::to_string_pretty(&resolution)?);
    } else {
        print!("{}", resolution.render_text());
    }
    Ok(ExitCode::SUCCESS)
}

fn selfsigned(names: &[String], days: u32, rsa: bool, out: &Path) -> anyhow::Result<ExitCode> {
    if days == 0 {
        bail!("--days must be at least 1");
    }
    let names = names
        .iter()
        .map(|n| normalize_domain_name(n).map_err(|e| anyhow::anyhow!("--name: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let text = generate_self_signed_pem(&names, days, rsa).map_err(anyhow::Error::msg)?;
    let (key_pem, cert_pem) = split_key_and_cert(&text)?;
    fsio::create_private_dir(out)?;
    let key_path = out.join(CERTDIR_KEY);
    let cert_path = out.join(CERTDIR_CERT);
    fsio::write_atomic(&key_path, key_pem.as_bytes(), true)?;
    fsio::write_atomic(&cert_path, cert_pem.as_bytes(), false)?;
    let parsed = pem::parse_key_and_chain(key_pem, cert_pem)?;
    println!(
        "wrote {} (0600) and {}",
        key_path.display(),
        cert_path.display()
    );
    println!("names:     {}", parsed.leaf.dns_names.join(", "));
    println!(
        "not after: {}",
        sniwalk::inspect::rfc3339(parsed.leaf.not_after)
    );
    println!("sha256:    {}", parsed.leaf.sha256);
    println!(
        "point a listener's `certdir:` at {} to serve it",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Splits our own generated text (key block first) into key and certificate.
fn split_key_and_cert(text: &str) -> anyhow::Result<(&str, &str)> {
    let at = text
        .find("-----BEGIN CERTIFICATE-----")
        .context("generated text has no certificate")?;
    Ok(text.split_at(at))
}

fn pem_merge(key: &Path, cert: &Path, chain: Option<&Path>) -> anyhow::Result<ExitCode> {
    let key_text = fsio::read_cert_text(key)?;
    let mut cert_text = fsio::read_cert_text(cert)?;
    if let Some(chain) = chain {
        cert_text.push('\n');
        cert_text.push_str(&fsio::read_cert_text(chain)?);
    }
    let parsed = pem::parse_key_and_chain(&key_text, &cert_text)
        .with_context(|| format!("{} + {}", key.display(), cert.display()))?;
    let key_der =
        pem::private_key_as_pkcs8(&key_text).with_context(|| key.display().to_string())?;
    let text =
        pem::render_certificate_pem(&Default::default(), &key_der, &parsed.certified_key.cert);
    print!("{text}");
    eprintln!(
        "merged: {} (names: {}; not after {}; chain of {})",
        parsed.leaf.subject,
        parsed.leaf.dns_names.join(", "),
        sniwalk::inspect::rfc3339(parsed.leaf.not_after),
        parsed.certified_key.cert.len()
    );
    Ok(ExitCode::SUCCESS)
}
