//! ACME certificate issuance and renewal.
//!
//! - `schedule` decides *when* (renewal points, retry backoff, expiry
//!   warnings) as pure functions of the times it is given.
//! - `client` is the HTTP client to the CA (extra trust roots, the CA's
//!   `Retry-After`).
//! - `account` keeps the ACME account: created once, then restored from its
//!   stored credentials.
//! - `preflight` checks, before any order, that a name resolves to us.
//! - `dns01` publishes and withdraws dns-01 answers (TXT records) through
//!   `acme.rfc2136`.
//! - `listeners` decides whether a bound listener can answer the
//!   challenge; no order is placed while none can.
//! - `order` runs one issuance, the RFC 8555 checklist, and stores it.
//! - `lock` is the order lock with a lease that lets several instances
//!   share one `state_dir`: one of them orders a domain at a time.
//! - `decide` is the pure decision for one domain: leave it alone, wait,
//!   or order now, and why.
//! - `issuer` is the real issuer: lock → order → store → activate.
//! - `job` holds what the task and the issuer hand each other (target,
//!   job, issued, failure, renewal information, the clock).
//! - `handle` is how the admin API and `sniwalk renew` ask for an order
//!   and hear how it ended.
//! - `staging_check` is `acme.fallback_to_staging`: after failures in a
//!   row, one check order against the staging directory, never stored.
//! - `manager` is the task that runs it all: which domain is due, at most
//!   one order per domain, retries, forced renewals, the status file.
//! - `control` is how `sniwalk renew` reaches a running proxy: request and
//!   result files under `state_dir/acme/`.
//! - `on_demand` orders certificates for names no domain answers, when
//!   the operator's `ask` endpoint allows them, within a rate
//!   (`acme.on_demand`).
//! - `rfc2136` adds and removes DNS-01 TXT records at a zone's primary
//!   server with RFC 2136 updates signed with TSIG.

pub mod account;
pub mod client;
pub mod control;
pub mod credentials;
pub mod decide;
pub mod dns01;
pub mod handle;
pub mod issuer;
pub mod job;
pub mod listeners;

pub mod manager;
pub mod on_demand;
pub mod order;
pub mod preflight;
pub mod rfc2136;
pub mod schedule;
pub mod staging_check;

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The steps of an issuance, in order, for errors, logs and job status
/// (README, "Admin API": the steps a job reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Pre-flight: does the name resolve to one of `expected_addresses`?
    CheckDnsResolution,
    /// Another instance holds the domain's order lock: waiting for it to
    /// finish (or for its lease to run out). Also the step of a failure to
    /// take or keep that lock (the storage unreachable, the lease lost).
    WaitForOtherInstance,
    /// Restoring or registering the ACME account.
    Account,
    /// Placing the order with the CA.
    CreateOrder,
    /// Fetching authorizations and picking the challenge.
    GetChallenge,
    /// Publishing the answer and telling the CA it is ready.
    AnswerChallenge,
    /// Waiting for the CA to validate.
    CheckOrder,
    /// New key, CSR, finalize and download.
    CreateCertificate,
    /// Writing the result to the storage (fenced by the order lock).
    StoreCertificate,
    /// Waiting for the running proxy to serve it.
    Activate,
}

impl Step {
    /// The snake_case name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::CheckDnsResolution => "check_dns_resolution",
            Step::WaitForOtherInstance => "wait_for_other_instance",
            Step::Account => "account",
            Step::CreateOrder => "create_order",
            Step::GetChallenge => "get_challenge",
            Step::AnswerChallenge => "answer_challenge",
            Step::CheckOrder => "check_order",
            Step::CreateCertificate => "create_certificate",
            Step::StoreCertificate => "store_certificate",
            Step::Activate => "activate",
        }
    }

    /// What the step does, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Step::CheckDnsResolution => "checking that the name resolves to this proxy",
            Step::WaitForOtherInstance => {
                "waiting for another instance that is ordering this domain"
            }
            Step::Account => "restoring or registering the ACME account",
            Step::CreateOrder => "placing the order with the CA",
            Step::GetChallenge => "getting the ownership challenge from the CA",
            Step::AnswerChallenge => "answering the ownership challenge",
            Step::CheckOrder => "waiting for the CA to validate ownership",
            Step::CreateCertificate => "creating the certificate (key, CSR, finalize, download)",
            Step::StoreCertificate => "storing the certificate",
            Step::Activate => "waiting for the proxy to serve the new certificate",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Our own problem type for a CA that could not be reached at all
/// (connection refused, TLS or HTTP failure): no problem document exists.
pub const CA_UNAVAILABLE: &str = "sniwalk:ca-unavailable";

/// The ACME problem type of rate limiting (RFC 8555 §6.7).
pub const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";

/// Why an ACME operation failed. Every variant names the domain or
/// directory and the step, and CA errors keep the CA's problem document.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcmeError {
    /// The account could not be loaded, created or stored.
    #[error("ACME account at {directory}: {step}: {problem}")]
    Account {
        /// The ACME directory URL.
        directory: String,
        /// What was being done.
        step: &'static str,
        /// The error, with the CA's problem document if there was one.
        problem: String,
        /// The CA's problem type, if it sent one.
        problem_type: Option<String>,
    },
    /// An issuance step for `domain` failed.
    #[error("ACME order for {domain}: {step}: {problem}")]
    Order {
        /// The domain being issued for.
        domain: String,
        /// The step that failed.
        step: Step,
        /// The error, with the CA's problem document if there was one.
        problem: String,
        /// The CA's problem type (`urn:ietf:params:acme:error:...`), if any.
        problem_type: Option<String>,
    },
    /// The dns-01 answer could not be published through `acme.rfc2136`: a
    /// problem of this side (settings, secret file, DNS server), not the
    /// CA's, so it never sets off the staging check.
    #[error("ACME order for {domain}: publishing the dns-01 answer: {problem}")]
    DnsUpdate {
        /// The domain being issued for.
        domain: String,
        /// What went wrong, naming the setting, file, server or record.
        problem: String,
    },
    /// Pre-flight: the name does not resolve to any expected address, so
    /// the CA could not reach us; no order was placed.
    #[error(
        "HostnameNotResolvingToProxy: {domain} {}, none of acme.expected_addresses ({}); \
         point its DNS A/AAAA records at this proxy, or fix expected_addresses; no order was placed",
        resolution(resolved, lookup_error.as_deref()),
        list_or(expected, "none")
    )]
    HostnameNotResolvingToProxy {
        /// The domain.
        domain: String,
        /// What it resolved to.
        resolved: Vec<IpAddr>,
        /// Why it did not resolve at all, if it did not.
        lookup_error: Option<String>,
        /// `acme.expected_addresses`.
        expected: Vec<IpAddr>,
    },
    /// The storage cannot be reached: no order is placed until it is back
    /// (not a failure of the domain: no backoff).
    #[error(
        "no order for {domain}: the storage is unreachable ({detail}); tried again once it is back"
    )]
    StorageUnavailable {
        /// The domain.
        domain: String,
        /// What the storage said.
        detail: String,
    },
    /// The issued certificate could not be stored.
    #[error("storing the certificate of {domain} in {place}: {problem}")]
    Store {
        /// The domain the certificate is for.
        domain: String,
        /// Where it was to be written (the storage and key).
        place: String,
        /// The error.
        problem: String,
    },
}

impl AcmeError {
    /// A stable code for machines (README, "ACME": the error codes).
    pub fn code(&self) -> &'static str {
        match self {
            AcmeError::Account { problem_type, .. } | AcmeError::Order { problem_type, .. }
                if problem_type.as_deref() == Some(CA_UNAVAILABLE) =>
            {
                "CaUnavailable"
            }
            AcmeError::Account { .. } => "AccountFailed",
            AcmeError::Order { problem_type, .. } if is_rate_limited(problem_type) => "RateLimited",
            AcmeError::Order {
                step: Step::CheckOrder | Step::AnswerChallenge,
                ..
            } => "HostnameOwnershipValidationFailed",
            AcmeError::Order {
                step: Step::Activate,
                ..
            } => "ActivationFailed",
            AcmeError::Order { .. } => "OrderFailed",
            AcmeError::DnsUpdate { .. } => "DnsUpdateFailed",
            AcmeError::HostnameNotResolvingToProxy { .. } => "HostnameNotResolvingToProxy",
            AcmeError::Store { .. } => "StoreFailed",
            AcmeError::StorageUnavailable { .. } => "StorageUnavailable",
        }
    }

    /// The step that failed.
    pub fn step(&self) -> Step {
        match self {
            AcmeError::Account { .. } => Step::Account,
            AcmeError::Order { step, .. } => *step,
            AcmeError::DnsUpdate { .. } => Step::AnswerChallenge,
            AcmeError::HostnameNotResolvingToProxy { .. } => Step::CheckDnsResolution,
            AcmeError::Store { .. } => Step::StoreCertificate,
            AcmeError::StorageUnavailable { .. } => Step::WaitForOtherInstance,
        }
    }

    /// Whether the CA said we are rate limited.
    pub fn is_rate_limited(&self) -> bool {
        match self {
            AcmeError::Account { problem_type, .. } | AcmeError::Order { problem_type, .. } => {
                is_rate_limited(problem_type)
            }
            _ => false,
        }
    }
}

fn is_rate_limited(problem_type: &Option<String>) -> bool {
    problem_type.as_deref() == Some(RATE_LIMITED)
}

fn resolution(resolved: &[IpAddr], lookup_error: Option<&str>) -> String {
    match lookup_error {
        Some(error) => format!("does not resolve ({error})"),
        None => format!("resolves to {}", list_or(resolved, "no address")),
    }
}

fn list_or(addresses: &[IpAddr], empty: &str) -> String {
    if addresses.is_empty() {
        return empty.to_string();
    }
    addresses
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text of an instant-acme error and the CA's problem type. A problem
/// document's `Display` already carries its detail, type and
/// sub-problems, so nothing is lost.
pub(crate) fn problem_of(error: &instant_acme::Error) -> (String, Option<String>) {
    let problem_type = match error {
        instant_acme::Error::Api(problem) if problem.status == Some(503) => {
            Some(CA_UNAVAILABLE.to_string())
        }
        instant_acme::Error::Api(problem) => problem.r#type.clone(),
        instant_acme::Error::Other(_)
        | instant_acme::Error::Hyper(_)
        | instant_acme::Error::Http(_) => Some(CA_UNAVAILABLE.to_string()),
        _ => None,
    };
    (error.to_string(), problem_type)
}
