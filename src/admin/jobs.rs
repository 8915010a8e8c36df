//! Issuance jobs: `POST /certificates` starts an ACME order per hostname
//! and `GET /certificates/jobs/{id}` follows them (README, "Admin API").

use std::sync::{Arc, Mutex};

use hyper::StatusCode;
use serde::Deserialize;

use super::job_list::{CustomStatus, HostJob, Job, Jobs, MAX_JOBS, summarize};
use super::job_share;
use super::reply::{Reply, error, json};
use super::state::{APPLY_TIMEOUT, AdminState, add_to_store};
use crate::acme::Step;
use crate::acme::manager::{ManagerHandle, OrderEvent};
use crate::config::{DomainNameError, normalize_domain_name};
use crate::reload::Reload;
use crate::snapshot::Place;
use crate::snapshot::SnapshotReader;
use crate::storage::StorageError;

/// Hostnames in one issuance job.
pub const MAX_HOSTNAMES: usize = 100;

/// Why a `POST /certificates` body is refused (the 400 answer's message).
#[derive(Debug, thiserror::Error)]
pub enum HostnamesError {
    /// Not the JSON shape asked for.
    #[error("the body must be JSON {{\"hostnames\":[{{\"hostname\":\"a.example.com\"}}]}}: {0}")]
    Json(serde_json::Error),
    /// No entry, or more than [`MAX_HOSTNAMES`].
    #[error("`hostnames` must list 1 to {} entries", MAX_HOSTNAMES)]
    Count,
    /// An entry that is no domain name.
    #[error("hostname `{hostname}`: {error}")]
    Hostname {
        /// The entry as sent.
        hostname: String,
        /// Why it is no domain name.
        error: DomainNameError,
    },
}

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

/// The job step name of an ACME step (README, "Admin API": job steps).
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
/// [`super::fuzz::certificates_body`]).
pub(super) fn requested_hostnames(bytes: &[u8]) -> Result<Vec<String>, HostnamesError> {
    let request: CertificatesRequest =
        serde_json::from_slice(bytes).map_err(HostnamesError::Json)?;
    if request.hostnames.is_empty() || request.hostnames.len() > MAX_HOSTNAMES {
        return Err(HostnamesError::Count);
    }
    let mut names = Vec::with_capacity(request.hostnames.len());
    for entry in &request.hostnames {
        let name =
            normalize_domain_name(&entry.hostname).map_err(|error| HostnamesError::Hostname {
                hostname: entry.hostname.clone(),
                error,
            })?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// `POST /certificates`: adds the names that are not configured to the
/// domain store, starts one order per name and answers 202 with the job.
pub(super) async fn post_certificates(state: &AdminState, bytes: &[u8]) -> Reply {
    let names = match requested_hostnames(bytes) {
        Ok(names) => names,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if let Some((name, owner)) = names
        .iter()
        .find_map(|n| crate::config::listed_by(&state.config.domains, n).map(|o| (n, o)))
    {
        return error(
            StatusCode::CONFLICT,
            format!(
                "{name} is listed in the names of domains.{owner}, whose certificate covers it; \
                 order that domain instead (POST /certificates with {owner})"
            ),
        );
    }
    let challenge = state.config.acme.challenge;
    if challenge == crate::config::ChallengeKind::Dns01 && state.config.acme.rfc2136.is_none() {
        return error(
            StatusCode::CONFLICT,
            "acme.challenge is dns-01 but acme.rfc2136 is not set: add the DNS server that \
             takes the TXT records (README, \"DNS-01 and wildcards\")"
                .to_string(),
        );
    }
    if let Some(needed) = challenge.listener_kind()
        && !state.config.listeners.iter().any(|l| l.kind == needed)
    {
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
        if let Err(e) = add_to_store(&state.storage, &new, true).await {
            tracing::error!(domains = %new.join(","), "admin: {e}");
            return error(e.status(), e.to_string());
        }
        tracing::info!(domains = %new.join(","), "admin: domains added to the domain store for ACME");
        state.reloads.send(Reload::All);
    }

    let now = crate::clock::rfc3339(crate::clock::unix_now());
    let id = crate::ids::random_hex16();
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
        copy: None,
    };
    // Shared from the first state on, so any instance can answer for it
    // once the 202 is sent (README, "Admin API").
    let mut job = job;
    if let Ok(first) = serde_json::to_vec(&job) {
        match job_share::start_copy(state.storage.clone(), id.clone(), first).await {
            Ok(copy) => job.copy = Some(copy),
            Err(e) => {
                tracing::error!(job = %id, "admin: cannot share the new job: {e}");
                let status = match e {
                    StorageError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                return error(
                    status,
                    format!(
                        "no job started: it could not be shared through the storage ({e}); try again"
                    ),
                );
            }
        }
    }
    tokio::spawn(job_share::sweep(state.storage.clone()));
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

/// `GET /certificates/jobs/{id}`: this instance's jobs, then those other
/// instances shared.
pub(super) async fn job(state: &AdminState, id: &str) -> Reply {
    let job = state
        .jobs
        .lock()
        .ok()
        .and_then(|jobs| jobs.by_id.get(id).cloned());
    if let Some(job) = job {
        return json(StatusCode::OK, &job);
    }
    let missing = || {
        error(
            StatusCode::NOT_FOUND,
            format!(
                "no job `{id}` (jobs are kept for the last {MAX_JOBS} here, and for {} days in the \
                 storage)",
                job_share::JOB_KEEP.as_secs() / 86_400
            ),
        )
    };
    if !job_share::is_job_id(id) {
        return missing();
    }
    match job_share::stored_job(&state.storage, id).await {
        Ok(Some(job)) => json(StatusCode::OK, &job),
        Ok(None) => missing(),
        Err(e) => {
            tracing::warn!(job = id, "admin: {e}");
            let status = match e {
                job_share::StoredJobError::Storage(StorageError::Unreachable { .. }) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, format!("job `{id}`: {e}"))
        }
    }
}

/// Follows one hostname's order and keeps its job up to date.
async fn run_host_job(
    store: SnapshotReader,
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
    let place = Place::Domain(name.clone());
    let loaded = store
        .wait_for(APPLY_TIMEOUT, |snapshot| snapshot.report(&place).is_some())
        .await;
    if loaded.is_err() {
        update(
            "Failed",
            format!("{name} was added to the domain store but never loaded; see the proxy's log"),
            Some("DomainNotLoaded".into()),
            true,
        );
        return;
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
