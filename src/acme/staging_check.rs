//! The staging check (`acme.fallback_to_staging`): once a domain's orders
//! have failed [`STAGING_CHECK_AFTER`] times in a row against the
//! configured directory, one check order runs against the staging
//! directory, so the operator learns whether the set-up (DNS, listeners,
//! challenge) works and the trouble is the CA or the account, or whether
//! the set-up itself is broken. Its certificate is never stored nor
//! served; the outcome is logged once and kept in the domain's status.
//!
//! [`due`] is the pure decision; [`plan`] and [`after`] are the manager's
//! hook around one order.

use super::AcmeError;
use super::control::{DomainStatus, StagingCheckRecord};
use super::issuer::Issuer;
use super::job::{Failure, Issued, Target};

/// Failed orders in a row after which a staging check runs, and again
/// after as many more (README, "Use staging first").
pub const STAGING_CHECK_AFTER: u32 = 3;

/// Whether a staging check is due once the failures in a row reach
/// `failures`: at [`STAGING_CHECK_AFTER`], then every
/// [`STAGING_CHECK_AFTER`] more. `last` is the previous check; it counts
/// only when it belongs to this streak, i.e. ran after the last issuance
/// (`last_issued`): once the directory has worked, a new streak starts
/// from zero.
pub fn due(failures: u32, last: Option<&StagingCheckRecord>, last_issued: Option<i64>) -> bool {
    if failures < STAGING_CHECK_AFTER {
        return false;
    }
    let this_streak = last.filter(|c| last_issued.is_none_or(|issued| c.at >= issued));
    match this_streak {
        Some(check) if check.failures <= failures => {
            failures >= check.failures.saturating_add(STAGING_CHECK_AFTER)
        }
        // A check counted at more failures than now: from an older streak.
        _ => true,
    }
}

/// A staging check to run should the order just starting fail.
pub struct Planned {
    target: Target,
    directory: String,
    failures: u32,
}

/// At the start of an order for `target`: the staging check to run if it
/// fails, when `acme.fallback_to_staging` is on and that failure makes
/// one [`due`].
pub fn plan(status: &DomainStatus, target: &Target) -> Option<Planned> {
    let directory = target.settings.staging_check_directory.clone()?;
    let failures = status.failures.saturating_add(1);
    due(failures, status.staging_check.as_ref(), status.last_issued).then(|| Planned {
        target: target.clone(),
        directory,
        failures,
    })
}

/// Whether `error` is a failure on the CA's side, the only kind that says
/// anything about the set-up a staging order would test: not an
/// unreachable storage (no order was placed), a pre-flight failure
/// (staging skips none), a dns-01 record this side could not publish
/// (staging would fail the same way), a lost lock or a failure to store.
pub fn on_the_ca_side(error: &AcmeError) -> bool {
    matches!(
        error.code(),
        "AccountFailed"
            | "OrderFailed"
            | "HostnameOwnershipValidationFailed"
            | "RateLimited"
            | "CaUnavailable"
    ) && error.step() != crate::acme::Step::WaitForOtherInstance
}

/// After the order: runs the `planned` check if the order failed (not
/// when the storage was unreachable: no order was placed), logs its
/// outcome in one line, and returns the record for the domain's status.
pub async fn after<I: Issuer>(
    issuer: &I,
    planned: Option<Planned>,
    result: &Result<Issued, Failure>,
) -> Option<StagingCheckRecord> {
    let planned = planned?;
    let Err(failure) = result else {
        return None;
    };
    if !on_the_ca_side(&failure.error) {
        return None;
    }
    let domain = planned.target.domain.clone();
    let directory = planned.directory.clone();
    tracing::info!(
        domain,
        directory,
        failures = planned.failures,
        "ACME: staging check starting (one order against the staging directory; its \
         certificate is not stored)"
    );
    let checked = issuer
        .staging_check(planned.target, planned.directory)
        .await;
    let production = failure.error.to_string();
    let error = match checked {
        Ok(()) => {
            tracing::warn!(
                domain,
                directory,
                failures = planned.failures,
                "staging check for {domain}: the set-up works (production failed: {production}); \
                 look at the CA account or the CA's limits, not at DNS or listeners"
            );
            None
        }
        Err(e) => {
            tracing::error!(
                domain,
                directory,
                failures = planned.failures,
                "staging check for {domain} fails too: {e}: fix the set-up (production failed: \
                 {production})"
            );
            Some(e.to_string())
        }
    };
    Some(StagingCheckRecord {
        at: crate::clock::unix_now(),
        ok: error.is_none(),
        directory,
        failures: planned.failures,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(at: i64, failures: u32) -> StagingCheckRecord {
        StagingCheckRecord {
            at,
            ok: false,
            directory: "https://staging.test/dir".into(),
            failures,
            error: None,
        }
    }

    #[test]
    fn first_check_after_three_failures() {
        assert!(!due(1, None, None));
        assert!(!due(2, None, None));
        assert!(due(3, None, None));
        // Failures counted before the check existed (a restart with a
        // stored streak): due at once.
        assert!(due(7, None, None));
    }

    #[test]
    fn again_only_after_three_more() {
        let last = check(100, 3);
        assert!(!due(4, Some(&last), None));
        assert!(!due(5, Some(&last), None));
        assert!(due(6, Some(&last), None));
        let last = check(200, 6);
        assert!(!due(8, Some(&last), Some(50)));
        assert!(due(9, Some(&last), Some(50)));
    }

    #[test]
    fn only_failures_on_the_cas_side_set_it_off() {
        let order = |step, problem_type: Option<&str>| AcmeError::Order {
            domain: "a.test".into(),
            step,
            problem: "x".into(),
            problem_type: problem_type.map(str::to_string),
        };
        assert!(on_the_ca_side(&order(
            crate::acme::Step::CheckOrder,
            Some("urn:ietf:params:acme:error:connection")
        )));
        assert!(on_the_ca_side(&order(crate::acme::Step::CreateOrder, None)));
        assert!(!on_the_ca_side(&AcmeError::DnsUpdate {
            domain: "a.test".into(),
            problem: "DNS server 127.0.0.1:53 did not answer".into(),
        }));
        assert!(!on_the_ca_side(&AcmeError::StorageUnavailable {
            domain: "a.test".into(),
            detail: "etcd down".into(),
        }));
    }

    #[test]
    fn a_success_starts_a_new_streak() {
        // Checked at 3 failures at t=100, issued at t=150: the next streak
        // gets its check at 3 again.
        let last = check(100, 3);
        assert!(due(3, Some(&last), Some(150)));
        assert!(!due(2, Some(&last), Some(150)));
        // A check counted at more failures than now is from an older
        // streak too.
        assert!(due(3, Some(&check(100, 9)), None));
    }
}
