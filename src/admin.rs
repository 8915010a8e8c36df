//! The admin API: a small plain-HTTP/1.1 listener (`admin:` in
//! `proxy.yaml`) for operators and their tooling.
//!
//! | endpoint | auth | what |
//! | --- | --- | --- |
//! | `GET /healthz` | no | 200 while serving, 503 while draining |
//! | `GET /metrics` | no | Prometheus/OpenMetrics text |
//! | `GET /status` | yes | every certificate in use and its state |
//! | `GET /resolve?name=N&listener=L` | yes | the walk, as `sniwalk resolve` |
//! | `POST /certificates` | yes | issuance job for hostnames (seed 002) → 202 |
//! | `GET /certificates/jobs/{id}` | yes | the job's status and step |
//! | `PUT /domains/{name}/certificate` | yes | import a certificate (by hand) |
//!
//! Auth is `Authorization: Bearer <token>`, the token being the content of
//! `admin.token_file` (whitespace trimmed). Errors are JSON
//! `{"error": "..."}` saying what to do.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::acme::Step;
use crate::acme::manager::{ManagerHandle, OrderEvent};
use crate::config::{Config, DomainStore, ListenerKind, StoredDomain, normalize_domain_name};
use crate::inspect::{CheckReport, Resolution};
use crate::metrics::Metrics;
use crate::reload::{Reload, ReloadHandle};
use crate::resolver::SnapshotStore;
use crate::snapshot::{Place, SourceKind, stored_certificate_path};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// Jobs kept for inspection; the oldest finished ones go first.
pub const MAX_JOBS: usize = 1000;

/// Hostnames in one issuance job.
pub const MAX_HOSTNAMES: usize = 100;

/// How long an import or a new domain may take to be served.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The token file could not be read or is empty.
    #[error("admin.token_file {}: {problem}", file.display())]
    Token {
        /// The file.
        file: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The admin address could not be bound.
    #[error("admin.bind {bind}: {source}; is another process using it?")]
    Bind {
        /// The address.
        bind: std::net::SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// Reads the bearer token from `file`: its content, whitespace trimmed.
pub fn read_token(file: &Path) -> Result<String, AdminError> {
    let fail = |problem: String| AdminError::Token {
        file: file.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(file).map_err(|e| fail(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(fail(
            "the file is empty; put a long random string in it (e.g. `openssl rand -hex 32`)"
                .into(),
        ));
    }
    Ok(token.to_string())
}

/// What the admin API works with.
pub struct AdminState {
    /// The configuration at start (listeners, state_dir, acme settings).
    pub config: Config,
    /// The certificate state.
    pub store: SnapshotStore,
    /// Counters to render.
    pub metrics: Arc<Metrics>,
    /// To apply imports and new domains.
    pub reloads: ReloadHandle,
    /// To start orders.
    pub acme: ManagerHandle,
    /// The bearer token, if one is required.
    pub token: Option<String>,
    jobs: Arc<Mutex<Jobs>>,
    /// The one writer of the domain store and of stored certificates:
    /// every read-modify-write of `domains.json` and every import happens
    /// while holding it, so concurrent requests neither lose each other's
    /// names nor see each other's half-done work.
    writer: crate::fsio::StateWriter,
    /// Cancelled once shutdown has begun: `/healthz` answers 503 from then
    /// on, while connections drain, so load balancers stop sending.
    draining: CancellationToken,
}

impl AdminState {
    /// State for the admin API.
    pub fn new(
        config: Config,
        store: SnapshotStore,
        metrics: Arc<Metrics>,
        reloads: ReloadHandle,
        acme: ManagerHandle,
        token: Option<String>,
    ) -> Self {
        AdminState {
            config,
            store,
            metrics,
            reloads,
            acme,
            token,
            jobs: Arc::new(Mutex::new(Jobs::default())),
            writer: crate::fsio::StateWriter::default(),
            draining: CancellationToken::new(),
        }
    }

    /// Makes `/healthz` answer 503 once `draining` is cancelled (when
    /// shutdown begins).
    pub fn with_draining(mut self, draining: CancellationToken) -> Self {
        self.draining = draining;
        self
    }

    /// Shares the state writer with the ACME issuer (see
    /// [`crate::fsio::StateWriter`]).
    pub fn with_writer(mut self, writer: crate::fsio::StateWriter) -> Self {
        self.writer = writer;
        self
    }
}

/// Serves the admin API on `socket` until `stop` is cancelled.
pub async fn serve(socket: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    tracing::info!(
        bind = %socket.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        auth = state.token.is_some(),
        "admin API listening"
    );
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, "admin connection: {e}");
                    }
                }
                _ = stop.cancelled() => connection.as_mut().graceful_shutdown(),
            }
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn json<T: Serialize>(status: StatusCode, body: &T) -> Reply {
    let text = serde_json::to_vec_pretty(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    json(status, &serde_json::json!({ "error": message.into() }))
}

async fn handle(state: &AdminState, request: Request<Incoming>) -> Reply {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) if state.draining.is_cancelled() => {
            // Not ready: a load balancer (or a Kubernetes readiness probe)
            // takes this instance out while what is open finishes.
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({
                    "status": "draining",
                    "error": "shutting down: no new connections are accepted; \
                              connections in flight may finish (shutdown_timeout)",
                }),
            );
        }
        (&Method::GET, ["healthz"]) => {
            return json(StatusCode::OK, &serde_json::json!({"status": "ok"}));
        }
        (&Method::GET, ["metrics"]) => {
            let text = state.metrics.render(&state.store.load());
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            return response;
        }
        _ => {}
    }
    if let Some(token) = &state.token
        && !authorized(&request, token)
    {
        let mut reply = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer <content of admin.token_file>`",
        );
        reply.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return reply;
    }
    match (&method, segments.as_slice()) {
        (&Method::GET, ["status"]) => status(state),
        (&Method::GET, ["resolve"]) => resolve(state, request.uri().query().unwrap_or("")),
        (&Method::POST, ["certificates"]) => match body(request).await {
            Ok((_, bytes)) => post_certificates(state, &bytes).await,
            Err(reply) => reply,
        },
        (&Method::GET, ["certificates", "jobs", id]) => job(state, id),
        (&Method::PUT, ["domains", name, "certificate"]) => {
            let name = name.to_string();
            match body(request).await {
                Ok((content_type, bytes)) => {
                    import(state, &name, content_type.as_deref(), &bytes).await
                }
                Err(reply) => reply,
            }
        }
        (_, ["healthz" | "metrics" | "status" | "resolve" | "certificates"])
        | (_, ["certificates", "jobs", _])
        | (_, ["domains", _, "certificate"]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            format!(
                "no endpoint {path}; see /healthz, /metrics, /status, /resolve, /certificates, \
                 /certificates/jobs/ID, /domains/NAME/certificate"
            ),
        ),
    }
}

/// Constant-time comparison of the bearer token.
fn authorized(request: &Request<Incoming>, token: &str) -> bool {
    let Some(given) = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The request body (at most [`MAX_BODY`]) and its content type.
async fn body(request: Request<Incoming>) -> Result<(Option<String>, Bytes), Reply> {
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok((content_type, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes"),
        )),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("reading the body: {e}"),
        )),
    }
}

fn status(state: &AdminState) -> Reply {
    let snapshot = state.store.load();
    let acme = crate::acme::control::read_status(&state.config.state_dir);
    let report = CheckReport::from_snapshot(&snapshot, crate::unix_now()).with_acme_status(&acme);
    json(StatusCode::OK, &report)
}

fn resolve(state: &AdminState, query: &str) -> Reply {
    let params: BTreeMap<String, String> = url_params(query);
    let snapshot = state.store.load();
    let listener = match params.get("listener") {
        Some(name) => match snapshot.listener_index(name) {
            Some(index) => Some(index),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "no listener `{name}`; listeners: {}",
                        snapshot.listener_names().join(", ")
                    ),
                );
            }
        },
        None => None,
    };
    let name = params
        .get("name")
        .map(String::as_str)
        .filter(|n| !n.is_empty());
    if name.is_none() && !params.contains_key("no_sni") {
        return error(
            StatusCode::BAD_REQUEST,
            "give `name=` (the SNI name), or `no_sni` for a client that sends none",
        );
    }
    json(
        StatusCode::OK,
        &Resolution::explain(&snapshot, listener, name),
    )
}

/// `a=1&b=2` with percent-decoding of `%XX` and `+`.
fn url_params(query: &str) -> BTreeMap<String, String> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

// ---- issuance jobs (seed 002) -------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificatesRequest {
    hostnames: Vec<HostnameEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostnameEntry {
    hostname: String,
}

/// One job as `GET /certificates/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Job {
    id: String,
    runtime_status: &'static str,
    custom_status: CustomStatus,
    created_time: String,
    last_updated_time: String,
    hostnames: Vec<HostJob>,
}

#[derive(Debug, Clone, Serialize)]
struct CustomStatus {
    status: &'static str,
    message: String,
    error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct HostJob {
    hostname: String,
    status: &'static str,
    message: String,
    error: Option<String>,
    done: bool,
}

#[derive(Default)]
struct Jobs {
    by_id: BTreeMap<String, Job>,
    order: std::collections::VecDeque<String>,
}

impl Jobs {
    fn insert(&mut self, job: Job) {
        self.order.push_back(job.id.clone());
        self.by_id.insert(job.id.clone(), job);
        while self.by_id.len() > MAX_JOBS {
            // The oldest finished job goes; running ones are kept.
            let Some(position) = self.order.iter().position(|id| {
                self.by_id
                    .get(id)
                    .is_none_or(|j| matches!(j.runtime_status, "Completed" | "Failed"))
            }) else {
                break;
            };
            if let Some(id) = self.order.remove(position) {
                self.by_id.remove(&id);
            }
        }
    }
}

/// The job step name of an ACME step (seed 002 style).
fn step_name(step: Step) -> &'static str {
    match step {
        Step::CheckDnsResolution => "CheckDnsResolution",
        Step::WaitForOtherInstance => "WaitForOtherInstance",
        Step::Account => "GetAcmeAccount",
        Step::CreateOrder => "GetAcmeOrder",
        Step::GetChallenge => "GetAcmeChallenge",
        Step::AnswerChallenge => "AnswerAcmeChallenge",
        Step::CheckOrder => "CheckAcmeOrder",
        Step::CreateCertificate => "CreateCertificate",
        Step::StoreCertificate => "StoreCertificate",
        Step::Activate => "ActivateCertificate",
    }
}

/// The names a `POST /certificates` body asks for: its JSON shape, 1 to
/// [`MAX_HOSTNAMES`] entries, each a valid domain name, normalised and
/// without duplicates; or why the answer is 400. Pure (fuzzed through
/// [`fuzz::certificates_body`]).
fn requested_hostnames(bytes: &[u8]) -> Result<Vec<String>, String> {
    let request: CertificatesRequest = serde_json::from_slice(bytes).map_err(|e| {
        format!("the body must be JSON {{\"hostnames\":[{{\"hostname\":\"a.example.com\"}}]}}: {e}")
    })?;
    if request.hostnames.is_empty() || request.hostnames.len() > MAX_HOSTNAMES {
        return Err(format!(
            "`hostnames` must list 1 to {MAX_HOSTNAMES} entries"
        ));
    }
    let mut names = Vec::with_capacity(request.hostnames.len());
    for entry in &request.hostnames {
        let name = normalize_domain_name(&entry.hostname)
            .map_err(|e| format!("hostname `{}`: {e}", entry.hostname))?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

async fn post_certificates(state: &AdminState, bytes: &[u8]) -> Reply {
    let names = match requested_hostnames(bytes) {
        Ok(names) => names,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let needed = match state.config.acme.challenge {
        crate::config::ChallengeKind::Http01 => ListenerKind::Http,
        crate::config::ChallengeKind::TlsAlpn01 => ListenerKind::Https,
    };
    if !state.config.listeners.iter().any(|l| l.kind == needed) {
        return error(
            StatusCode::CONFLICT,
            format!(
                "acme.challenge is {} but no listener of kind {} exists to answer it; add one",
                state.config.acme.challenge.as_str(),
                needed.as_str()
            ),
        );
    }
    // Names that are not configured join the domain store as ACME domains,
    // on disk before the 202 (under the writer, so none is lost to a
    // concurrent request).
    let new: Vec<String> = names
        .iter()
        .filter(|n| {
            state
                .store
                .load()
                .report(&Place::Domain((*n).clone()))
                .is_none()
        })
        .cloned()
        .collect();
    if !new.is_empty() {
        let _writer = state.writer.lock().await;
        if let Err(e) = add_to_store(&state.config.state_dir, &new, true) {
            tracing::error!(domains = %new.join(","), "admin: {e}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, e);
        }
        tracing::info!(domains = %new.join(","), "admin: domains added to the domain store for ACME");
        state.reloads.send(Reload::All);
    }

    let now = crate::inspect::rfc3339(crate::unix_now());
    let id = random_id();
    let job = Job {
        id: id.clone(),
        runtime_status: "Pending",
        custom_status: CustomStatus {
            status: "Pending",
            message: "queued".into(),
            error: None,
        },
        created_time: now.clone(),
        last_updated_time: now,
        hostnames: names
            .iter()
            .map(|name| HostJob {
                hostname: name.clone(),
                status: "Pending",
                message: "queued".into(),
                error: None,
                done: false,
            })
            .collect(),
    };
    if let Ok(mut jobs) = state.jobs.lock() {
        jobs.insert(job);
    }
    tracing::info!(job = %id, hostnames = %names.join(","), "admin: issuance job created");
    for (index, name) in names.into_iter().enumerate() {
        tokio::spawn(run_host_job(
            state.store.clone(),
            state.acme.clone(),
            state.jobs.clone(),
            id.clone(),
            index,
            name,
        ));
    }
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({
            "id": id,
            "statusQueryGetUri": format!("/certificates/jobs/{id}"),
        }),
    )
}

fn job(state: &AdminState, id: &str) -> Reply {
    let job = state
        .jobs
        .lock()
        .ok()
        .and_then(|jobs| jobs.by_id.get(id).cloned());
    match job {
        Some(job) => json(StatusCode::OK, &job),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no job `{id}` (jobs are kept for the last {MAX_JOBS})"),
        ),
    }
}

/// Follows one hostname's order and keeps its job up to date.
async fn run_host_job(
    store: SnapshotStore,
    acme: ManagerHandle,
    jobs: Arc<Mutex<Jobs>>,
    id: String,
    index: usize,
    name: String,
) {
    let update = |status: &'static str, message: String, error: Option<String>, done: bool| {
        let Ok(mut jobs) = jobs.lock() else {
            return;
        };
        let Some(job) = jobs.by_id.get_mut(&id) else {
            return;
        };
        if let Some(host) = job.hostnames.get_mut(index) {
            *host = HostJob {
                hostname: host.hostname.clone(),
                status,
                message,
                error,
                done,
            };
        }
        summarize(job);
    };
    // A name just added to the domain store is ordered once it is loaded.
    let deadline = tokio::time::Instant::now() + APPLY_TIMEOUT;
    while store.load().report(&Place::Domain(name.clone())).is_none() {
        if tokio::time::Instant::now() > deadline {
            update(
                "Failed",
                format!(
                    "{name} was added to the domain store but never loaded; see the proxy's log"
                ),
                Some("DomainNotLoaded".into()),
                true,
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut events = acme.order(&name);
    while let Some(event) = events.recv().await {
        match event {
            OrderEvent::Step(step) => {
                update(step_name(step), step.describe().to_string(), None, false)
            }
            OrderEvent::Done(outcome) if outcome.ok => {
                update("Completed", outcome.message, None, true);
                return;
            }
            OrderEvent::Done(outcome) => {
                let status = outcome.step.map_or("Failed", step_name);
                update(
                    status,
                    outcome.message,
                    outcome.code.or(Some("Failed".into())),
                    true,
                );
                return;
            }
        }
    }
    update(
        "Failed",
        "the ACME task stopped before the order ended".into(),
        Some("Stopped".into()),
        true,
    );
}

/// The job's overall status from its hostnames: Failed once every
/// hostname is done and one failed; Completed when all succeeded; else
/// Running (Pending until the first step).
fn summarize(job: &mut Job) {
    job.last_updated_time = crate::inspect::rfc3339(crate::unix_now());
    let failed = job.hostnames.iter().find(|h| h.done && h.error.is_some());
    let all_done = job.hostnames.iter().all(|h| h.done);
    let (runtime, custom) = if all_done {
        match failed {
            Some(host) => (
                "Failed",
                CustomStatus {
                    status: "Failed",
                    message: format!("{}: {} ({})", host.hostname, host.message, host.status),
                    error: host.error.clone(),
                },
            ),
            None => (
                "Completed",
                CustomStatus {
                    status: "Completed",
                    message: format!(
                        "certificates served for {}",
                        job.hostnames
                            .iter()
                            .map(|h| h.hostname.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    error: None,
                },
            ),
        }
    } else {
        let current = job.hostnames.iter().find(|h| !h.done);
        let started = job.hostnames.iter().any(|h| h.status != "Pending");
        (
            if started { "Running" } else { "Pending" },
            CustomStatus {
                status: current.map_or("Pending", |h| h.status),
                message: current
                    .map_or_else(String::new, |h| format!("{}: {}", h.hostname, h.message)),
                error: None,
            },
        )
    };
    job.runtime_status = runtime;
    job.custom_status = custom;
}

/// Adds `names` to the domain store (ACME-managed when `acme`): a
/// read-modify-write, so the caller holds [`AdminState::writer`]. Names
/// already there keep their entry; nothing is written when all are.
fn add_to_store(state_dir: &Path, names: &[String], acme: bool) -> Result<(), String> {
    let mut store = DomainStore::read(state_dir).map_err(|e| e.to_string())?;
    let before = store.domains.len();
    for name in names {
        store
            .domains
            .entry(name.clone())
            .or_insert(StoredDomain { acme });
    }
    if store.domains.len() == before {
        return Ok(());
    }
    store
        .write(state_dir)
        .map_err(|e| format!("writing the domain store: {e}"))
}

/// 16 random hex digits.
fn random_id() -> String {
    let mut bytes = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- import (seed 002) ---------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportJson {
    privatekey: String,
    certificate: String,
    #[serde(default)]
    chain: Vec<String>,
}

/// The body as `certificate_pem` text: JSON with base64 DER, or the text.
fn import_text(content_type: Option<&str>, bytes: &[u8]) -> Result<String, String> {
    let is_json = content_type.is_some_and(|c| c.starts_with("application/json"))
        || bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !is_json {
        return String::from_utf8(bytes.to_vec())
            .map_err(|_| "the body is neither JSON nor certificate_pem text (not UTF-8)".into());
    }
    let body: ImportJson = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "JSON body must be {{\"privatekey\": base64 DER, \"certificate\": base64 DER, \"chain\": [base64 DER, ...]}}: {e}"
        )
    })?;
    let decode = |field: &str, value: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|e| format!("`{field}` is not base64: {e}"))
    };
    let key = decode("privatekey", &body.privatekey)?;
    let label = match rustls_pki_types::PrivateKeyDer::try_from(key.as_slice()) {
        Ok(rustls_pki_types::PrivateKeyDer::Pkcs1(_)) => "RSA PRIVATE KEY",
        Ok(rustls_pki_types::PrivateKeyDer::Sec1(_)) => "EC PRIVATE KEY",
        Ok(_) => "PRIVATE KEY",
        Err(e) => return Err(format!("`privatekey` is not a DER private key: {e}")),
    };
    let mut text = pem_block(label, &key);
    text.push_str(&pem_block(
        "CERTIFICATE",
        &decode("certificate", &body.certificate)?,
    ));
    for (i, link) in body.chain.iter().enumerate() {
        text.push_str(&pem_block(
            "CERTIFICATE",
            &decode(&format!("chain[{i}]"), link)?,
        ));
    }
    Ok(text)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

async fn import(state: &AdminState, name: &str, content_type: Option<&str>, bytes: &[u8]) -> Reply {
    let name = match normalize_domain_name(name) {
        Ok(name) => name,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("domain `{name}`: {e}")),
    };
    let text = match import_text(content_type, bytes) {
        Ok(text) => text,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // Validated before anything is written: parse, key match.
    let parsed = match crate::pem::parse_certificate_pem(&text) {
        Ok(parsed) => parsed,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("certificate for {name} refused, nothing changed: {e}"),
            );
        }
    };
    // One import at a time, from the look at what serves the domain until
    // the new certificate serves: a concurrent import of the same domain
    // would otherwise replace this one before it is served, and this
    // request would wait for a certificate that never comes.
    let _writer = state.writer.lock().await;
    let snapshot = state.store.load();
    let report = snapshot.report(&Place::Domain(name.clone())).cloned();
    if let Some(kind) = report
        .as_ref()
        .and_then(|r| r.kind)
        .filter(|k| matches!(k, SourceKind::Inline | SourceKind::File))
    {
        return error(
            StatusCode::CONFLICT,
            format!(
                "{name}'s certificate is set in the configuration file ({}); change it there",
                kind.as_str()
            ),
        );
    }
    let state_dir = &state.config.state_dir;
    if report.is_none()
        && let Err(e) = add_to_store(state_dir, std::slice::from_ref(&name), false)
    {
        tracing::error!(domain = %name, "admin: {e}");
        return error(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    let path = stored_certificate_path(state_dir, &name);
    let written = path
        .parent()
        .map_or(Ok(()), crate::fsio::create_private_dir)
        .and_then(|()| crate::fsio::write_atomic(&path, text.as_bytes(), true));
    if let Err(e) = written {
        tracing::error!(domain = %name, file = %path.display(), "admin: import failed: {e}");
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    tracing::info!(domain = %name, file = %path.display(), sha256 = %parsed.leaf.sha256, "admin: certificate imported");
    state.reloads.send(if report.is_none() {
        Reload::All
    } else {
        Reload::Domain(name.clone())
    });
    let deadline = tokio::time::Instant::now() + APPLY_TIMEOUT;
    loop {
        let served = state
            .store
            .load()
            .report(&Place::Domain(name.clone()))
            .and_then(|r| r.loaded.as_ref().map(|l| l.facts.sha256.clone()));
        if served.as_deref() == Some(parsed.leaf.sha256.as_str()) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "stored at {}, but not served within 10s; see `sniwalk check`",
                    path.display()
                ),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    json(
        StatusCode::OK,
        &serde_json::json!({
            "domain": name,
            "managed": "hand",
            "file": path.display().to_string(),
            "subject": parsed.leaf.subject,
            "names": parsed.leaf.dns_names,
            "not_after": crate::inspect::rfc3339(parsed.leaf.not_after),
            "sha256": parsed.leaf.sha256,
        }),
    )
}

/// The request-body parsing of the handlers, callable without a server, for
/// the fuzz targets in `fuzz/`.
pub mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        let params = url_params("name=a.example.com&listener=web%20x&no_sni&x=1+2");
        assert_eq!(params["name"], "a.example.com");
        assert_eq!(params["listener"], "web x");
        assert_eq!(params["no_sni"], "");
        assert_eq!(params["x"], "1 2");
        assert_eq!(url_params("bad=%zz%")["bad"], "%zz%");
    }

    #[test]
    fn jobs_are_bounded_keeping_running_ones() {
        let mut jobs = Jobs::default();
        let job = |id: usize, status| Job {
            id: id.to_string(),
            runtime_status: status,
            custom_status: CustomStatus {
                status,
                message: String::new(),
                error: None,
            },
            created_time: String::new(),
            last_updated_time: String::new(),
            hostnames: Vec::new(),
        };
        jobs.insert(job(0, "Running"));
        for i in 1..=MAX_JOBS + 5 {
            jobs.insert(job(i, "Completed"));
        }
        assert_eq!(jobs.by_id.len(), MAX_JOBS);
        assert!(jobs.by_id.contains_key("0"), "running job kept");
        assert!(!jobs.by_id.contains_key("1"), "oldest finished dropped");
    }
}
