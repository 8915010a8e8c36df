//! The ACME task: decides which domain needs a certificate, runs at most one
//! order per domain, retries failures on the capped, jittered schedule of
//! [`super::schedule`], honours forced renewals from `sniwalk renew`, and
//! keeps `state_dir/acme/status.json` current.
//!
//! It only ever *adds* certificates: an order that fails leaves the one
//! being served alone, and a domain whose certificate is set by hand
//! (inline, a file, or a stored PEM without the `acme_issued=` marker) is
//! never touched.
//!
//! The decision for one domain is the pure [`decide`] (in `decide.rs`), and
//! whether a bound listener can answer its challenge the pure
//! [`listeners::challenge_listener`]; [`Manager::run`] is the loop around
//! them. Talking to the CA sits behind [`Issuer`] (in `issuer.rs`), so the
//! scheduler can be tested on a paused clock. What they share is in
//! `job.rs`, how requesters are answered in `handle.rs`; the public names
//! stay reachable here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::control::{self, DomainStatus, ErrorRecord, StatusFile, Waiting};
pub use super::decide::{
    Decision, DomainView, Reason, ServedView, StoredFile, decide, names_match,
    usable_instead_of_ordering,
};
pub use super::handle::{ManagerHandle, OrderEvent, OrderOutcome};
use super::handle::{Waiter, answer, not_answerable, not_managed};
pub use super::issuer::{CaIssuer, Issuer};
use super::job::{ARI_MAX_REFRESH, ARI_MIN_REFRESH};
pub use super::job::{
    AriAnswer, AriQuery, Clock, Failure, Issued, Job, MAX_CONCURRENT_ORDERS, Target, Timing,
    system_clock,
};
use super::listeners::{self, BoundListener, NO_LISTENER_CODE};
use super::schedule::{self, RenewalWindow};
use super::{AcmeError, Step, staging_check};

/// When an order that found the storage unreachable is tried again
/// (seconds).
const STORAGE_RETRY: i64 = 15;
use crate::config::{CertificateSource, Config};
use crate::snapshot::SnapshotReader;
use crate::snapshot::{Place, Severity, Snapshot};

/// What a finished background task reports.
enum Done {
    Order {
        domain: String,
        result: Result<Issued, Failure>,
        started: i64,
        staging: Option<control::StagingCheckRecord>,
    },
    Ari {
        domain: String,
        sha256: String,
        answer: AriAnswer,
    },
}

/// The CA's last word on one certificate's renewal.
struct AriEntry {
    sha256: String,
    window: Option<RenewalWindow>,
    ask_again_at: i64,
}

/// The manager's own state for one domain.
#[derive(Default)]
struct Entry {
    status: DomainStatus,
    /// Forced-renewal requests waiting for the next result.
    waiting: Vec<Waiter>,
    forced: bool,
    /// Picks the point inside an ARI window; fixed per domain so the point
    /// does not move on every plan.
    jitter: f64,
    ari: Option<AriEntry>,
    ari_asking: bool,
    /// Logged once that it is managed by hand.
    noted_hand: bool,
}

/// The ACME task.
pub struct Manager<I: Issuer> {
    issuer: Arc<I>,
    config: watch::Receiver<Arc<Config>>,
    store: SnapshotReader,
    clock: Clock,
    entries: HashMap<String, Entry>,
    jobs: JoinSet<Done>,
    /// Which domain each order task is for, to account for a task that
    /// panics.
    order_tasks: HashMap<tokio::task::Id, String>,
    orders_running: usize,
    progress_tx: mpsc::UnboundedSender<(String, Step)>,
    progress_rx: mpsc::UnboundedReceiver<(String, Step)>,
    commands_tx: mpsc::UnboundedSender<(String, mpsc::UnboundedSender<OrderEvent>)>,
    commands_rx: mpsc::UnboundedReceiver<(String, mpsc::UnboundedSender<OrderEvent>)>,
    ari_supported: bool,
    planned_against: Option<Arc<Snapshot>>,
    next_plan: i64,
    status_dirty: bool,
    timing: Timing,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The listeners this process has bound: only they answer challenges.
    bound: Vec<BoundListener>,
    /// No plan has run yet (the start-up notes are logged in the first).
    first_plan: bool,
    /// Where this instance's status is shared with the others.
    shared_status: Option<crate::storage::Shared>,
}

impl<I: Issuer> Manager<I> {
    /// A manager for the configuration `config` publishes, the certificates
    /// in `store`, reaching the CA through `issuer`.
    pub fn new(
        issuer: I,
        config: watch::Receiver<Arc<Config>>,
        store: SnapshotReader,
        clock: Clock,
    ) -> Self {
        let (progress_tx, progress_rx) = mpsc::unbounded_channel();
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let state = config.borrow().state_layout();
        let bound = BoundListener::of(&config.borrow().listeners);
        let persisted = control::read_status(&state);
        // What is reset below is rewritten at once, so `check` does not
        // show it from a previous run.
        let stale = persisted
            .domains
            .values()
            .any(|s| s.in_flight.is_some() || s.waiting.is_some());
        let entries = persisted
            .domains
            .into_iter()
            .map(|(domain, mut status)| {
                // An order in flight when we stopped is not any more, and
                // what it waited for is looked at again (and logged).
                status.in_flight = None;
                status.waiting = None;
                let entry = Entry {
                    status,
                    jitter: control::random_fraction(),
                    ..Entry::default()
                };
                (domain, entry)
            })
            .collect();
        Manager {
            issuer: Arc::new(issuer),
            config,
            store,
            clock,
            entries,
            jobs: JoinSet::new(),
            order_tasks: HashMap::new(),
            orders_running: 0,
            progress_tx,
            progress_rx,
            commands_tx,
            commands_rx,
            ari_supported: true,
            planned_against: None,
            next_plan: 0,
            // Nothing to write until a domain is managed (a proxy without
            // ACME never creates the file).
            status_dirty: stale,
            timing: Timing::default(),
            metrics: None,
            bound,
            first_plan: true,
            shared_status: None,
        }
    }

    /// The listeners this process has bound (by default those of the
    /// configuration it starts with, one socket each, as
    /// [`crate::run_with`] binds them). A listener added by a reload is not
    /// among them until a restart.
    pub fn with_bound_listeners(mut self, bound: Vec<BoundListener>) -> Self {
        self.bound = bound;
        self
    }

    /// A handle to ask this manager for orders.
    pub fn handle(&self) -> ManagerHandle {
        ManagerHandle {
            tx: self.commands_tx.clone(),
        }
    }

    /// Counts orders in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Publishes every status written also through `shared` (its
    /// `status/<instance>` key in a remote storage).
    pub fn with_shared_status(mut self, shared: crate::storage::Shared) -> Self {
        self.shared_status = Some(shared);
        self
    }

    /// Replaces the default [`Timing`] (tests on a paused clock).
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Runs until `stop` is cancelled. Orders in flight are abandoned then
    /// (their answers are withdrawn as their futures drop).
    pub async fn run(mut self, stop: CancellationToken) {
        self.sweep_shared_answers();
        // The other instances see this one's status from the start.
        if self.shared_status.is_some() {
            self.status_dirty = true;
        }
        let mut poll = tokio::time::interval(self.timing.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max_sleep = i64::try_from(self.timing.max_sleep.as_secs()).unwrap_or(i64::MAX);
        let mut config_open = true;
        loop {
            self.take_requests();
            let snapshot = self.store.load_full();
            let snapshot_changed = self
                .planned_against
                .as_ref()
                .is_none_or(|p| !Arc::ptr_eq(p, &snapshot));
            if snapshot_changed || (self.clock)() >= self.next_plan {
                self.plan(&snapshot);
                self.planned_against = Some(snapshot);
            }
            self.write_status();
            let until_plan = self
                .next_plan
                .saturating_sub((self.clock)())
                .clamp(0, max_sleep);
            let plan_timer = tokio::time::sleep(Duration::from_secs(until_plan.unsigned_abs()));
            tokio::select! {
                // Progress first: a job's steps are sent before it ends, so
                // they are never applied after its result.
                biased;
                _ = stop.cancelled() => break,
                Some((domain, step)) = self.progress_rx.recv() => {
                    if let Some(entry) = self.entries.get_mut(&domain).filter(|e| e.status.in_flight.is_some()) {
                        tracing::info!(domain, step = step.as_str(), "ACME: {}", step.describe());
                        entry.status.in_flight = Some(step);
                        self.status_dirty = true;
                        for waiter in &entry.waiting {
                            if let Waiter::Watch(tx) = waiter {
                                let _ = tx.send(OrderEvent::Step(step));
                            }
                        }
                    }
                }
                Some((domain, watcher)) = self.commands_rx.recv() => {
                    let config = self.config.borrow().clone();
                    self.request(&config, &domain, Waiter::Watch(watcher));
                }
                Some(done) = self.jobs.join_next_with_id(), if !self.jobs.is_empty() => {
                    match done {
                        Ok((id, done)) => {
                            self.order_tasks.remove(&id);
                            self.finish(done);
                        }
                        // A task that panicked: count it as a failed order
                        // (ARI questions just end).
                        Err(e) => {
                            if let Some(domain) = self.order_tasks.remove(&e.id()) {
                                let step = self
                                    .entries
                                    .get(&domain)
                                    .and_then(|entry| entry.status.in_flight)
                                    .unwrap_or(Step::CreateOrder);
                                let error = AcmeError::Order {
                                    domain: domain.clone(),
                                    step,
                                    problem: format!("internal error, the order stopped: {e}"),
                                    problem_type: None,
                                };
                                let started = (self.clock)();
                                self.finish(Done::Order {
                                    domain,
                                    result: Err(Failure { error, retry_after: None }),
                                    started,
                                    staging: None,
                                });
                            }
                        }
                    }
                    self.next_plan = 0;
                }
                changed = self.config.changed(), if config_open => {
                    // Once the publisher is gone, the last configuration stays.
                    config_open = changed.is_ok();
                    self.next_plan = 0;
                }
                _ = poll.tick() => {}
                _ = plan_timer => {}
            }
        }
        self.jobs.abort_all();
    }

    /// Deletes shared challenge answers left by instances killed mid-order
    /// (day-old files only; synchronous: two small folders, once).
    fn sweep_shared_answers(&self) {
        let state = self.config.borrow().state_layout();
        let swept = crate::challenge::sweep_shared_answers(&state, SystemTime::now());
        if swept > 0 {
            let state_dir = state.root().display();
            tracing::info!(%state_dir, files = swept, "ACME: removed day-old shared challenge answers");
        }
    }

    /// Picks up `sniwalk renew` requests.
    fn take_requests(&mut self) {
        let config = self.config.borrow().clone();
        for (domain, request) in control::take_requests(&config.state_layout()) {
            self.request(&config, &domain, Waiter::File(request.id));
        }
    }

    /// Asks for an order for `domain` on behalf of `waiter`.
    fn request(&mut self, config: &Config, domain: &str, waiter: Waiter) {
        let refusal = match config.domains.iter().find(|d| d.name == domain) {
            None => Some(format!(
                "{domain} is not a configured domain; add it under `domains:` \
                with `acme: {{ enabled: true }}`"
            )),
            Some(d) if !d.acme.as_ref().is_some_and(|a| a.enabled) => Some(format!(
                "{domain} is managed by hand (ACME is not enabled for it); ACME leaves it alone"
            )),
            Some(d) if d.certificate != CertificateSource::None => Some(format!(
                "{domain}'s certificate is set by hand in the configuration; ACME leaves it alone"
            )),
            Some(_) => None,
        };
        if let Some(message) = refusal {
            answer(
                &config.state_layout(),
                domain,
                waiter,
                &not_managed(message),
                &self.clock,
            );
            return;
        }
        let challenge = listeners::challenge_of(config, domain);
        if let Err(no_listener) =
            listeners::challenge_listener(challenge, &self.bound, &config.listeners)
        {
            tracing::warn!(
                domain,
                code = NO_LISTENER_CODE,
                "ACME: order requested, but none is placed: {no_listener}"
            );
            let outcome = not_answerable(domain, &no_listener);
            answer(
                &config.state_layout(),
                domain,
                waiter,
                &outcome,
                &self.clock,
            );
            return;
        }
        tracing::info!(domain, "ACME: order requested");
        let entry = self.entry(domain);
        // An order already in flight answers the request; otherwise the
        // next plan starts one, whatever the schedule and backoff say.
        if entry.status.in_flight.is_none() {
            entry.forced = true;
        }
        entry.waiting.push(waiter);
        self.next_plan = 0;
    }

    fn entry(&mut self, domain: &str) -> &mut Entry {
        self.entries
            .entry(domain.to_string())
            .or_insert_with(|| Entry {
                jitter: control::random_fraction(),
                ..Entry::default()
            })
    }

    /// Looks at every ACME domain and starts what is due.
    fn plan(&mut self, snapshot: &Snapshot) {
        let config = self.config.borrow().clone();
        let now = (self.clock)();
        let settings = Arc::new(config.acme.clone());
        let mut wake =
            now.saturating_add(i64::try_from(self.timing.max_sleep.as_secs()).unwrap_or(i64::MAX));
        let mut managed = std::collections::HashSet::new();
        let mut answers = Vec::new();
        let mut refusals = Vec::new();
        let known = self.entries.len();
        let answerable = listeners::Answerable::new(&self.bound, &config.listeners);
        let first_plan = std::mem::replace(&mut self.first_plan, false);
        for domain in &config.domains {
            let Some(acme) = domain.acme.as_ref().filter(|a| a.enabled) else {
                continue;
            };
            managed.insert(domain.name.clone());
            let report = snapshot.report(&Place::Domain(domain.name.clone()));
            let served = report.and_then(|r| r.loaded.as_deref());
            let stored = if served.is_none() && domain.certificate == CertificateSource::None {
                StoredFile::read(&config.state_layout().stored_certificate(&domain.name))
            } else {
                StoredFile::Missing
            };
            let names = crate::config::order_names(domain);
            let view = DomainView {
                configured_by_hand: domain.certificate != CertificateSource::None,
                served: served.map(|l| ServedView {
                    not_before: l.facts.not_before,
                    not_after: l.facts.not_after,
                    acme_issued: l.acme_issued,
                    directory: l.acme_directory.as_deref(),
                    names_match: names_match(&l.facts.dns_names, &names),
                }),
                stored,
                broken: report.is_some_and(|r| r.worst() == Some(Severity::Error)),
            };
            let target = Target {
                domain: domain.name.clone(),
                names,
                challenge: crate::config::effective_challenge(domain, &settings),
                email: acme
                    .account_email
                    .clone()
                    .or_else(|| settings.account_email.clone()),
                settings: settings.clone(),
                state: config.state_layout(),
            };
            let ari_supported = self.ari_supported;
            let entry = self
                .entries
                .entry(domain.name.clone())
                .or_insert_with(|| Entry {
                    jitter: control::random_fraction(),
                    ..Entry::default()
                });
            if entry.status.in_flight.is_some() {
                continue;
            }
            let ari = served.and_then(|l| {
                entry
                    .ari
                    .as_ref()
                    .filter(|a| a.sha256 == l.facts.sha256)
                    .and_then(|a| a.window)
            });
            let decision = decide(
                view,
                entry.forced,
                &settings.directory,
                ari,
                now,
                settings.renew_at,
                entry.jitter,
            );
            if !matches!(decision, Decision::Issue(_)) && entry.status.waiting.take().is_some() {
                self.status_dirty = true;
            }
            match decision {
                Decision::LeaveAlone => {
                    if !entry.noted_hand {
                        entry.noted_hand = true;
                        tracing::info!(
                            domain = %domain.name,
                            "ACME is enabled, but the certificate is managed by hand; ACME leaves it alone"
                        );
                    }
                    entry.forced = false;
                    for waiter in std::mem::take(&mut entry.waiting) {
                        answers.push((domain.name.clone(), waiter));
                    }
                }
                Decision::WaitUntil(at) => {
                    if entry.status.renew_at != Some(at) {
                        entry.status.renew_at = Some(at);
                        self.status_dirty = true;
                    }
                    wake = wake.min(at);
                    // Ask the CA whether to renew earlier (ARI).
                    if let Some(loaded) = served {
                        let stale = entry.ari.as_ref().is_none_or(|a| {
                            a.sha256 != loaded.facts.sha256 || a.ask_again_at <= now
                        });
                        if ari_supported && stale && !entry.ari_asking {
                            entry.ari_asking = true;
                            let query = AriQuery {
                                target: target.clone(),
                                leaf: loaded
                                    .certified_key
                                    .end_entity_cert()
                                    .map(|c| c.as_ref().to_vec())
                                    .unwrap_or_default(),
                            };
                            let sha256 = loaded.facts.sha256.clone();
                            let issuer = self.issuer.clone();
                            self.jobs.spawn(async move {
                                let domain = query.target.domain.clone();
                                let answer = issuer.renewal_info(query).await;
                                Done::Ari {
                                    domain,
                                    sha256,
                                    answer,
                                }
                            });
                        }
                    }
                }
                Decision::Issue(reason) => {
                    if let Err(no_listener) = answerable.get(target.challenge) {
                        let message = format!("waiting: {no_listener}");
                        if entry.status.waiting.as_ref().map(|w| &w.message) != Some(&message) {
                            tracing::warn!(
                                domain = %domain.name,
                                reason = reason.as_str(),
                                code = NO_LISTENER_CODE,
                                "ACME: {message}"
                            );
                            entry.status.waiting = Some(Waiting {
                                code: NO_LISTENER_CODE.to_string(),
                                since: now,
                                message,
                            });
                            self.status_dirty = true;
                        }
                        // A renewal asked for before the challenge changed.
                        if std::mem::take(&mut entry.forced) {
                            let outcome = not_answerable(&domain.name, no_listener);
                            for waiter in std::mem::take(&mut entry.waiting) {
                                refusals.push((domain.name.clone(), waiter, outcome.clone()));
                            }
                        }
                        // Nothing changes until the configuration does
                        // (which re-plans at once).
                        continue;
                    }
                    if entry.status.waiting.take().is_some() {
                        tracing::info!(
                            domain = %domain.name,
                            challenge = target.challenge.as_str(),
                            "ACME: a bound listener can answer the challenge now; ordering proceeds"
                        );
                        self.status_dirty = true;
                    }
                    let forced = entry.forced;
                    if !forced && now < entry.status.next_attempt {
                        if first_plan {
                            tracing::info!(
                                domain = %domain.name,
                                failures = entry.status.failures,
                                next_attempt = %crate::clock::rfc3339(entry.status.next_attempt),
                                "ACME: the stored retry backoff holds this domain back until its \
                                 next attempt; `sniwalk renew {}` skips the wait",
                                domain.name
                            );
                        }
                        wake = wake.min(entry.status.next_attempt);
                        continue;
                    }
                    if self.orders_running >= MAX_CONCURRENT_ORDERS {
                        // Re-planned when a running order finishes.
                        continue;
                    }
                    entry.forced = false;
                    entry.status.in_flight = Some(Step::CheckDnsResolution);
                    self.status_dirty = true;
                    self.orders_running += 1;
                    tracing::info!(
                        domain = %domain.name,
                        reason = reason.as_str(),
                        attempt = entry.status.failures + 1,
                        directory = %settings.directory,
                        challenge = target.challenge.as_str(),
                        "ACME: order starting"
                    );
                    let staging = staging_check::plan(&entry.status, &target);
                    let progress_tx = self.progress_tx.clone();
                    let name = domain.name.clone();
                    let job = Job {
                        target,
                        progress: Arc::new(move |step| {
                            let _ = progress_tx.send((name.clone(), step));
                        }),
                    };
                    let issuer = self.issuer.clone();
                    let name = domain.name.clone();
                    let task = self.jobs.spawn(async move {
                        let result = issuer.issue(job).await;
                        let staging = staging_check::after(&*issuer, staging, &result).await;
                        Done::Order {
                            domain: name,
                            result,
                            started: now,
                            staging,
                        }
                    });
                    self.order_tasks.insert(task.id(), domain.name.clone());
                }
            }
        }
        let by_hand = answers.into_iter().map(|(domain, waiter)| {
            let outcome = not_managed(format!(
                "{domain}'s certificate is managed by hand (no `acme_issued` marker); ACME leaves it alone"
            ));
            (domain, waiter, outcome)
        });
        let state = config.state_layout();
        for (domain, waiter, outcome) in by_hand.chain(refusals) {
            answer(&state, &domain, waiter, &outcome, &self.clock);
        }
        // Domains no longer managed drop out of the status (unless busy).
        let before = self.entries.len();
        if before != known {
            self.status_dirty = true;
        }
        self.entries
            .retain(|name, e| managed.contains(name) || e.status.in_flight.is_some());
        if self.entries.len() != before {
            self.status_dirty = true;
        }
        self.next_plan = wake;
    }

    /// Records a finished order or ARI question.
    fn finish(&mut self, done: Done) {
        let now = (self.clock)();
        let state = self.config.borrow().state_layout();
        match done {
            Done::Ari {
                domain,
                sha256,
                answer,
            } => {
                let Some(entry) = self.entries.get_mut(&domain) else {
                    return;
                };
                entry.ari_asking = false;
                match answer {
                    AriAnswer::Unsupported => {
                        if self.ari_supported {
                            tracing::info!(
                                "ACME: the CA offers no renewal information (ARI); renewing by lifetime"
                            );
                        }
                        self.ari_supported = false;
                    }
                    AriAnswer::Window(window, again) => {
                        tracing::debug!(
                            domain,
                            start = window.start,
                            end = window.end,
                            "ACME: renewal window from the CA"
                        );
                        entry.ari = Some(AriEntry {
                            sha256,
                            window: Some(window),
                            ask_again_at: now
                                .saturating_add(again.clamp(ARI_MIN_REFRESH, ARI_MAX_REFRESH)),
                        });
                    }
                    AriAnswer::Failed => {
                        entry.ari = Some(AriEntry {
                            sha256,
                            window: None,
                            ask_again_at: now.saturating_add(ARI_MIN_REFRESH),
                        });
                    }
                }
            }
            Done::Order {
                domain,
                result,
                started,
                staging,
            } => {
                self.orders_running = self.orders_running.saturating_sub(1);
                let Some(entry) = self.entries.get_mut(&domain) else {
                    return;
                };
                entry.status.in_flight = None;
                entry.status.staging_check = staging.or(entry.status.staging_check.take());
                self.status_dirty = true;
                let waiting = std::mem::take(&mut entry.waiting);
                let placed = !matches!(&result, Err(f) if f.error.code() == "StorageUnavailable");
                let outcome = match result {
                    Ok(issued) => {
                        entry.status.failures = 0;
                        entry.status.next_attempt = 0;
                        entry.status.last_error = None;
                        entry.status.last_issued = Some(now);
                        entry.ari = None;
                        tracing::info!(
                            domain,
                            not_after = %crate::clock::rfc3339(issued.not_after),
                            seconds = now.saturating_sub(started),
                            "ACME: certificate issued and served"
                        );
                        OrderOutcome {
                            ok: true,
                            message: format!(
                                "{domain}: new certificate served, valid until {}",
                                crate::clock::rfc3339(issued.not_after)
                            ),
                            code: None,
                            step: None,
                        }
                    }
                    Err(failure) => {
                        // An unreachable storage is not the domain's failure:
                        // no backoff, no line per try (README, "On etcd").
                        let delay = if !placed {
                            STORAGE_RETRY
                        } else {
                            entry.status.failures = entry.status.failures.saturating_add(1);
                            schedule::retry_delay(
                                entry.status.failures,
                                control::random_fraction(),
                                failure.retry_after,
                            )
                        };
                        entry.status.next_attempt = now.saturating_add(delay);
                        let message = failure.error.to_string();
                        if placed {
                            tracing::error!(
                                domain,
                                step = failure.error.step().as_str(),
                                code = failure.error.code(),
                                failures = entry.status.failures,
                                retry_in_secs = delay,
                                retry_at = %crate::clock::rfc3339(entry.status.next_attempt),
                                "{message}; the current certificate (if any) keeps serving"
                            );
                            entry.status.last_error = Some(ErrorRecord {
                                at: now,
                                code: failure.error.code().to_string(),
                                step: failure.error.step(),
                                message: message.clone(),
                            });
                        } else {
                            tracing::debug!(domain, "{message}");
                        }
                        OrderOutcome {
                            ok: false,
                            message,
                            code: Some(failure.error.code().to_string()),
                            step: Some(failure.error.step()),
                        }
                    }
                };
                if let Some(metrics) = &self.metrics
                    && placed
                {
                    metrics.acme_order(outcome.ok);
                }
                // The status first: whoever the answer wakes (`sniwalk
                // renew`, a job) then reads a status that holds this order.
                self.write_status();
                for waiter in waiting {
                    answer(&state, &domain, waiter, &outcome, &self.clock);
                }
            }
        }
    }

    fn write_status(&mut self) {
        if !self.status_dirty {
            return;
        }
        self.status_dirty = false;
        let status = StatusFile {
            domains: self
                .entries
                .iter()
                .map(|(name, entry)| (name.clone(), entry.status.clone()))
                .collect(),
        };
        let state = self.config.borrow().state_layout();
        control::save_status(&state, &status, self.shared_status.as_ref());
    }
}

#[cfg(test)]
mod tests;
