//! What differs between the running snapshot and a new one, and the log
//! lines that say so: the reload publishes a new snapshot only when
//! [`differences`] finds something (or the configuration changed), and logs
//! each difference with [`log_change`]. At start, [`log_sources`] logs
//! every source once.

use std::sync::Arc;

use crate::snapshot::{Place, Severity, Snapshot, SourceReport};

/// One difference between the running snapshot and a new one.
#[derive(Debug)]
pub(super) enum Change<'a> {
    /// A source now serves another certificate.
    Swapped(&'a SourceReport),
    /// A source that served a certificate serves none now.
    Gone(&'a SourceReport),
    /// A problem a source did not have before.
    NewProblem(&'a SourceReport, &'a crate::snapshot::Problem),
    /// A source's problems changed in another way (one went away, or an
    /// expiry warning's text moved on): published, not logged.
    ProblemsChanged,
    /// A place no longer in the configuration.
    Removed(&'a Place),
    /// A listener's client CA was read anew.
    ClientCaLoaded(&'a str, &'a std::path::Path),
    /// A listener's client CA is gone.
    ClientCaGone,
    /// The set of TLS backends changed.
    BackendsChanged,
    /// A TLS backend's settings were read anew (`loaded`: they work).
    BackendTls(&'a str, bool),
}

/// Everything that differs between `previous` and `next` (pure: the reload
/// publishes `next` only when this is not empty or the configuration
/// changed, and logs each change with [`log_change`]).
pub(super) fn differences<'a>(previous: &'a Snapshot, next: &'a Snapshot) -> Vec<Change<'a>> {
    let mut changes = Vec::new();
    for report in next.reports() {
        let before = previous.report(&report.place);
        // An unchanged source keeps the very same report: skip it cheaply.
        if before.is_some_and(|b| Arc::ptr_eq(b, report)) {
            continue;
        }
        source_changes(before.map(|b| &**b), report, &mut changes);
    }
    if !Arc::ptr_eq(previous.reports_index(), next.reports_index()) {
        for before in previous.reports() {
            if next.report(&before.place).is_none() {
                changes.push(Change::Removed(&before.place));
            }
        }
    }
    for (index, name) in next.listener_names().iter().enumerate() {
        match (previous.client_ca(index), next.client_ca(index)) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {}
            (None, None) => {}
            (_, Some(ca)) => changes.push(Change::ClientCaLoaded(name, &ca.file)),
            (Some(_), None) => changes.push(Change::ClientCaGone),
        }
    }
    let entries = next.backend_tls_entries();
    if entries.len() != previous.backend_tls_entries().len() {
        changes.push(Change::BackendsChanged);
    }
    for entry in entries {
        let before = previous.backend_tls_entry(&entry.backend);
        let same = match (before.map(|b| &b.client), &entry.client) {
            (Some(Ok(a)), Ok(b)) => Arc::ptr_eq(a, b),
            // Still failing. Whether the reason changed shows in the
            // backend's report, which holds the error's message as a
            // problem and is compared above (a new one is a `NewProblem`).
            (Some(Err(_)), Err(_)) => true,
            _ => false,
        };
        if !same {
            changes.push(Change::BackendTls(&entry.backend, entry.client.is_ok()));
        }
    }
    changes
}

/// The changes of one source whose report is new.
fn source_changes<'a>(
    before: Option<&'a SourceReport>,
    now: &'a SourceReport,
    changes: &mut Vec<Change<'a>>,
) {
    let old_sha = before
        .and_then(|b| b.loaded.as_ref())
        .map(|l| l.facts.sha256.as_str());
    let new_sha = now.loaded.as_ref().map(|l| l.facts.sha256.as_str());
    if old_sha != new_sha {
        changes.push(match now.loaded {
            Some(_) => Change::Swapped(now),
            None => Change::Gone(now),
        });
    }
    let mut new_problems = false;
    for problem in &now.problems {
        if !before.is_some_and(|b| b.problems.contains(problem)) {
            new_problems = true;
            changes.push(Change::NewProblem(now, problem));
        }
    }
    if !new_problems && before.is_some_and(|b| b.problems != now.problems) {
        changes.push(Change::ProblemsChanged);
    }
}

/// Logs one line per certificate source and one per problem.
pub fn log_sources(snapshot: &Snapshot) {
    for report in snapshot.reports() {
        let place = report.place.to_string();
        let source = report.kind.map(|k| k.as_str()).unwrap_or("none");
        let file = report
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "-".into());
        if let Some(loaded) = &report.loaded {
            tracing::info!(
                place = %place,
                source,
                file = %file,
                subject = %loaded.facts.subject,
                not_after = %crate::clock::rfc3339(loaded.facts.not_after),
                "certificate loaded"
            );
        }
        // Expiry is logged by the monitor, once a day per certificate.
        for problem in report.problems.iter().filter(|p| !p.expiry) {
            match problem.severity {
                Severity::Error => {
                    tracing::error!(place = %place, source, file = %file, "{}", problem.message)
                }
                Severity::Warning => {
                    tracing::warn!(place = %place, source, file = %file, "{}", problem.message)
                }
            }
        }
    }
}

/// One log line for `change` (none for the silent ones).
pub(super) fn log_change(change: &Change<'_>) {
    let describe = |report: &SourceReport| {
        let file = report
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "-".into());
        (
            report.place.to_string(),
            report.kind.map_or("none", |k| k.as_str()),
            file,
        )
    };
    match change {
        Change::Swapped(report) => {
            let (place, source, file) = describe(report);
            if let Some(loaded) = &report.loaded {
                tracing::info!(
                    place = %place, source, file = %file,
                    subject = %loaded.facts.subject,
                    not_after = %crate::clock::rfc3339(loaded.facts.not_after),
                    sha256 = %loaded.facts.sha256,
                    "certificate swapped in"
                );
            }
        }
        Change::Gone(report) => {
            let (place, source, file) = describe(report);
            let fallback = match report.place {
                Place::Domain(_) => "names under it get the next certificate up the chain",
                Place::Certdir(_) => "the default certificate serves instead",
                Place::Default => "a generated default serves",
                Place::ClientCa(_) => "client certificates are refused",
                Place::Backend(_) => "no client certificate is presented to the backend",
            };
            tracing::warn!(place = %place, source, file = %file, "certificate no longer configured or deleted; {fallback}");
        }
        Change::NewProblem(report, problem) => {
            // Its text changes daily; the expiry monitor logs it once a day.
            if problem.expiry {
                return;
            }
            let (place, source, file) = describe(report);
            match problem.severity {
                Severity::Error => {
                    tracing::error!(place = %place, source, file = %file, "{}", problem.message)
                }
                Severity::Warning => {
                    tracing::warn!(place = %place, source, file = %file, "{}", problem.message)
                }
            }
        }
        Change::Removed(place) => {
            tracing::info!(place = %place, "removed from the configuration");
        }
        Change::ClientCaLoaded(listener, file) => {
            tracing::info!(listener = %listener, file = %file.display(), "client CA loaded");
        }
        Change::BackendTls(backend, true) => {
            tracing::info!(backend = %backend, "backend TLS settings loaded");
        }
        Change::ProblemsChanged
        | Change::ClientCaGone
        | Change::BackendsChanged
        | Change::BackendTls(_, false) => {}
    }
}
