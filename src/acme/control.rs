//! Files under `state_dir/acme/` (paths from [`StateLayout`]) through which a running proxy and the
//! `sniwalk` command line talk, and in which the ACME state survives
//! restarts:
//!
//! - `requests/<domain>.json`: `sniwalk renew` asks for a forced renewal;
//!   the running proxy picks it up (within a second) and removes it.
//! - `results/<domain>.json`: the outcome of the last forced renewal, with
//!   the request's id so the waiting command knows it is its own.
//! - `status.json`: per domain, the step in progress, failures, the last
//!   error, the next attempt and what an order waits for; written by the
//!   proxy on every change, read back at start (so a restart does not reset
//!   the backoff) and by `check`.
//!
//! Every file is written atomically; the folder is owner-only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Step;
use crate::fsio::{self, FsError};
use crate::state_layout::StateLayout;

/// A forced-renewal request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    /// Random id, echoed in the result.
    pub id: String,
    /// When it was made (Unix seconds).
    pub requested_at: i64,
}

/// The outcome of a forced renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResult {
    /// The request's id.
    pub id: String,
    /// Whether a new certificate is being served.
    pub ok: bool,
    /// What happened, for people.
    pub message: String,
    /// Error code (`AcmeError::code`), when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When it finished (Unix seconds).
    pub finished_at: i64,
}

/// One domain's ACME state, as persisted in `status.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainStatus {
    /// The step of the order in flight, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<Step>,
    /// Failed attempts since the last success.
    #[serde(default)]
    pub failures: u32,
    /// When the next attempt may start (Unix seconds; 0: whenever due).
    #[serde(default)]
    pub next_attempt: i64,
    /// When the current certificate is to be renewed (Unix seconds), if one
    /// is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<i64>,
    /// The last failure, until a success clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorRecord>,
    /// When a certificate was last issued (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_issued: Option<i64>,
    /// Why no order is placed although one is due (no bound listener can
    /// answer the challenge), until that changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// The last check order against the staging directory
    /// (`acme.fallback_to_staging`), if one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_check: Option<StagingCheckRecord>,
}

/// The outcome of a check order against the staging directory, as
/// persisted (its certificate is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagingCheckRecord {
    /// When it ended (Unix seconds).
    pub at: i64,
    /// Whether staging issued a certificate: the set-up works.
    pub ok: bool,
    /// The staging directory URL.
    pub directory: String,
    /// Failures in a row against the configured directory when it ran.
    pub failures: u32,
    /// Why staging failed too, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An order held back by something only the operator can change, as
/// persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// A stable code (`ChallengeListenerNotBound`).
    pub code: String,
    /// Since when (Unix seconds).
    pub since: i64,
    /// Why, and what to do.
    pub message: String,
}

/// A failure as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// When (Unix seconds).
    pub at: i64,
    /// `AcmeError::code`.
    pub code: String,
    /// The step that failed.
    pub step: Step,
    /// The full message, with the CA's problem document.
    pub message: String,
}

/// One domain's ACME state as `/status` and `check --json` show it: the
/// persisted [`DomainStatus`] with every time in RFC 3339 (people and
/// log shippers read these; `status.json` keeps Unix seconds, its own
/// format) and only snake_case names, like the rest of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainStatusView {
    /// The step of the order in flight, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<Step>,
    /// Failed attempts since the last success.
    pub failures: u32,
    /// When the next attempt may start; `None` when it may start whenever
    /// it is due.
    pub next_attempt: Option<String>,
    /// When the current certificate is to be renewed, if one is served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<String>,
    /// When a certificate was last issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_issued: Option<String>,
    /// The last failure, until a success clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorView>,
    /// Why no order is placed although one is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitingView>,
    /// The last check order against the staging directory, if one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staging_check: Option<StagingCheckView>,
}

/// [`StagingCheckRecord`] with its time in RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StagingCheckView {
    /// When it ended.
    pub at: String,
    /// Whether staging issued a certificate: the set-up works.
    pub ok: bool,
    /// The staging directory URL.
    pub directory: String,
    /// Failures in a row against the configured directory when it ran.
    pub failures: u32,
    /// Why staging failed too, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// [`ErrorRecord`] with its time in RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorView {
    /// When.
    pub at: String,
    /// `AcmeError::code`.
    pub code: String,
    /// The step that failed.
    pub step: Step,
    /// The full message, with the CA's problem document.
    pub message: String,
}

/// [`Waiting`] with its time in RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitingView {
    /// A stable code (`ChallengeListenerNotBound`).
    pub code: String,
    /// Since when.
    pub since: String,
    /// Why, and what to do.
    pub message: String,
}

impl From<&DomainStatus> for DomainStatusView {
    fn from(status: &DomainStatus) -> Self {
        let time = crate::clock::rfc3339;
        DomainStatusView {
            in_flight: status.in_flight,
            failures: status.failures,
            next_attempt: (status.next_attempt > 0).then(|| time(status.next_attempt)),
            renew_at: status.renew_at.map(time),
            last_issued: status.last_issued.map(time),
            last_error: status.last_error.as_ref().map(|e| ErrorView {
                at: time(e.at),
                code: e.code.clone(),
                step: e.step,
                message: e.message.clone(),
            }),
            waiting: status.waiting.as_ref().map(|w| WaitingView {
                code: w.code.clone(),
                since: time(w.since),
                message: w.message.clone(),
            }),
            staging_check: status.staging_check.as_ref().map(|c| StagingCheckView {
                at: time(c.at),
                ok: c.ok,
                directory: c.directory.clone(),
                failures: c.failures,
                error: c.error.clone(),
            }),
        }
    }
}

/// Everything in `status.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusFile {
    /// Per domain.
    #[serde(default)]
    pub domains: BTreeMap<String, DomainStatus>,
}

/// Asks the running proxy to renew `domain` now; returns the request id.
pub fn request_renewal(state: &StateLayout, domain: &str, now: i64) -> Result<String, FsError> {
    let id = crate::ids::random_hex16();
    let request = RenewRequest {
        id: id.clone(),
        requested_at: now,
    };
    fsio::create_private_dir(&state.requests_dir())?;
    let json = serde_json::to_vec(&request).unwrap_or_default();
    fsio::write_atomic(&state.request(domain), &json, true)?;
    Ok(id)
}

/// Whether the request for `domain` is still waiting to be picked up.
pub fn request_pending(state: &StateLayout, domain: &str) -> bool {
    state.request(domain).exists()
}

/// Withdraws a request nobody picked up.
pub fn withdraw_request(state: &StateLayout, domain: &str) {
    let _ = std::fs::remove_file(state.request(domain));
}

/// Takes (reads and removes) every pending request. Unreadable requests
/// are removed and logged, never retried forever.
pub fn take_requests(state: &StateLayout) -> Vec<(String, RenewRequest)> {
    let dir = state.requests_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut taken = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(domain) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .map(str::to_string)
        else {
            continue;
        };
        let parsed = fsio::read_cert_text(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                serde_json::from_str::<RenewRequest>(&text).map_err(|e| e.to_string())
            });
        let _ = std::fs::remove_file(&path);
        match parsed {
            Ok(request) => taken.push((domain, request)),
            Err(e) => {
                tracing::warn!(domain, file = %path.display(), "ignoring an unreadable renewal request: {e}")
            }
        }
    }
    taken
}

/// Writes the outcome of a forced renewal.
pub fn write_result(
    state: &StateLayout,
    domain: &str,
    result: &RenewResult,
) -> Result<(), FsError> {
    fsio::create_private_dir(&state.results_dir())?;
    let json = serde_json::to_vec_pretty(result).unwrap_or_default();
    fsio::write_atomic(&state.result(domain), &json, true)
}

/// The last forced-renewal outcome for `domain`, if any.
pub fn read_result(state: &StateLayout, domain: &str) -> Option<RenewResult> {
    let path = state.result(domain);
    let text = fsio::read_cert_text(&path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Reads `status.json`; a missing file is an empty status, a broken one is
/// logged and treated as empty (it is rewritten on the next change).
pub fn read_status(state: &StateLayout) -> StatusFile {
    let path = state.acme_status();
    match fsio::read_cert_text(&path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), "ignoring an unreadable ACME status file: {e}");
            StatusFile::default()
        }),
        Err(_) => StatusFile::default(),
    }
}

/// Writes `status` (a failure is logged) and publishes it through
/// `shared` for the other instances (`status/<instance>`), if given.
pub fn save_status(
    state: &StateLayout,
    status: &StatusFile,
    shared: Option<&crate::storage::Shared>,
) {
    if let Err(e) = write_status(state, status) {
        tracing::warn!("cannot write the ACME status file: {e}");
    }
    if let Some(shared) = shared
        && let Ok(json) = serde_json::to_vec(status)
    {
        shared.publish_status(json);
    }
}

/// Writes `status.json`.
pub fn write_status(state: &StateLayout, status: &StatusFile) -> Result<(), FsError> {
    let path = state.acme_status();
    fsio::create_private_dir(&state.acme_dir())?;
    let json = serde_json::to_vec_pretty(status).unwrap_or_default();
    fsio::write_atomic(&path, &json, true)
}

/// A random fraction in `[0, 1)` for jitter (0 if the system RNG fails,
/// which only removes the jitter).
pub fn random_fraction() -> f64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 0.0;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_results_and_status_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = &StateLayout::new(dir.path());
        assert!(take_requests(state).is_empty());
        let id = request_renewal(state, "a.example.com", 100).expect("request");
        assert!(request_pending(state, "a.example.com"));
        std::fs::write(state.requests_dir().join("junk.json"), "{").expect("junk");
        let taken = take_requests(state);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0, "a.example.com");
        assert_eq!(taken[0].1.id, id);
        assert!(!request_pending(state, "a.example.com"));
        assert!(take_requests(state).is_empty(), "junk removed too");

        let result = RenewResult {
            id: id.clone(),
            ok: false,
            message: "no".into(),
            code: Some("OrderFailed".into()),
            finished_at: 200,
        };
        write_result(state, "a.example.com", &result).expect("result");
        assert_eq!(read_result(state, "a.example.com"), Some(result));

        let mut status = StatusFile::default();
        status.domains.insert(
            "a.example.com".into(),
            DomainStatus {
                failures: 2,
                next_attempt: 300,
                in_flight: Some(Step::CheckOrder),
                ..DomainStatus::default()
            },
        );
        write_status(state, &status).expect("status");
        assert_eq!(read_status(state), status);
        std::fs::write(state.acme_status(), "not json").expect("break");
        assert_eq!(read_status(state), StatusFile::default());
    }

    #[test]
    fn fractions_are_in_range() {
        for _ in 0..1000 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f), "{f}");
        }
    }
}
