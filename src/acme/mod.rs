//! ACME certificate issuance and renewal.
//!
//! `schedule` decides *when* (renewal points, retry backoff, expiry
//! warnings) as pure functions of the times it is given, so the client that
//! talks to the CA only has to do what it says. `account` keeps the ACME
//! account (created once, then reused from its stored credentials) and
//! `order` runs one HTTP-01 issuance (RFC 8555) and stores the result.

pub mod account;
pub mod order;
pub mod schedule;

use std::path::PathBuf;

/// Why an ACME operation failed. Every variant names what it was doing, and
/// CA errors keep the text of the CA's problem document.
#[derive(Debug, thiserror::Error)]
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
    },
    /// An issuance step for `domain` failed.
    #[error("ACME order for {domain}: {step}: {problem}")]
    Order {
        /// The domain being issued for.
        domain: String,
        /// What was being done.
        step: &'static str,
        /// The error, with the CA's problem document if there was one.
        problem: String,
    },
    /// The issued certificate could not be stored.
    #[error("storing the certificate of {domain} at {}: {problem}", path.display())]
    Store {
        /// The domain the certificate is for.
        domain: String,
        /// Where it was to be written.
        path: PathBuf,
        /// The error.
        problem: String,
    },
}

/// The text of an instant-acme error. A CA problem document's `Display`
/// already carries its detail, type and sub-problems, so nothing is lost.
pub(crate) fn problem_text(error: &instant_acme::Error) -> String {
    error.to_string()
}
