//! On-demand certificates (`acme.on_demand`, README "On-demand
//! certificates"): a handshake for a name that no domain answers makes
//! sniwalk order a certificate for it, when the operator's `ask` endpoint
//! allows the name, within a rate.
//!
//! The flow, one way: handshake ([`OnDemand::hold`], called by
//! `proxy/conn.rs` with the ClientHello's name) → refused memory →
//! `ask` → rate → pre-flight → domain store (`config/domains`, shared
//! with the other instances, like a name added through the admin API) →
//! reload → the ACME task orders → stored and served like any issued
//! certificate. The handshake that triggered it is held at most
//! `on_demand.wait`, then gets whatever the snapshot gives.
//!
//! - `ask`: the HTTP question; `rate`: the order budget (a token bucket);
//!   `refused`: names refused for a while.

pub mod ask;
pub mod rate;
pub mod refusal;
pub mod refused;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use self::ask::{Answer, AskError, Asker};
use self::rate::TokenBucket;
use self::refusal::Refusal;
use self::refused::RefusedNames;
use super::manager::{ManagerHandle, OrderEvent};
use crate::config::{Config, DomainStore, OnDemandConfig, StoredDomain, normalize_domain_name};
use crate::fsio::StateWriter;
use crate::metrics::{Metrics, OnDemandOutcome};
use crate::reload::{Reload, ReloadHandle};
use crate::snapshot::{Place, Snapshot, SnapshotReader};
use crate::storage::Shared;
use crate::tree::Step;

/// Most `ask` questions in flight at once. A handshake that finds them all
/// busy gets what the tree gives, unasked, and the name is not remembered:
/// a flood of random names costs the `ask` endpoint at most this many
/// requests at a time.
pub const MAX_ASKS_IN_FLIGHT: usize = 8;

/// Longest wait for a name added to the domain store to be loaded.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What on-demand certificates work with.
pub struct OnDemandParts {
    /// The configuration as reloads publish it (`acme.on_demand` may
    /// change; `None` there turns it off).
    pub config: watch::Receiver<Arc<Config>>,
    /// The certificate state.
    pub store: SnapshotReader,
    /// Where the domain store is (shared with the other instances).
    pub storage: Shared,
    /// To load a name once stored.
    pub reloads: ReloadHandle,
    /// To order it.
    pub acme: ManagerHandle,
    /// The one writer of the domain store in this process (shared with
    /// the admin API).
    pub writer: StateWriter,
    /// `sniwalk_acme_on_demand_total`.
    pub metrics: Arc<Metrics>,
}

/// On-demand certificates for every TLS listener of the process.
pub struct OnDemand {
    parts: OnDemandParts,
    asker: Option<Asker>,
    asks: Arc<Semaphore>,
    state: Mutex<State>,
    refusals: crate::proxy::log_limit::LogLimit,
}

impl std::fmt::Debug for OnDemand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDemand").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    refused: RefusedNames,
    /// Names being asked about or ordered; the handshakes for one wait on
    /// its flag (true once decided).
    pending: HashMap<String, watch::Receiver<bool>>,
    bucket: Option<TokenBucket>,
}

/// What a handshake's name is to on-demand certificates ([`classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A domain (or a listed name) answers it, the certificate the tree
    /// gives covers it, or it is no name to order (an IP address, no dot,
    /// too long).
    Answered,
    /// A domain without a certificate yet: held only while on-demand
    /// certificates are ordering it.
    Loading,
    /// No domain answers it: asked about.
    Unknown,
}

/// What `sni` is on `listener` in `snapshot`. No allocation (but for an
/// upper-case name, which rustls never passes), no lock: the cost every
/// handshake pays while `acme.on_demand` is on.
pub fn classify(snapshot: &Snapshot, listener: usize, sni: &str) -> NameKind {
    let name = sni.strip_suffix('.').unwrap_or(sni);
    if !name.contains('.') || name.len() > 253 || name.parse::<IpAddr>().is_ok() {
        return NameKind::Answered;
    }
    let choice = snapshot.choose(listener, Some(name));
    if matches!(choice.step, Step::Exact | Step::Listed) || choice.certificate.facts.covers(name) {
        return NameKind::Answered;
    }
    let tree = snapshot.tree();
    let known = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        tree.id(&name.to_ascii_lowercase()).is_some()
    } else {
        tree.id(name).is_some()
    };
    if known {
        NameKind::Loading
    } else {
        NameKind::Unknown
    }
}

/// Whether a CA can issue for `name` (lower case, no trailing dot): host
/// name labels of letters, digits and inner hyphens, at most 63 bytes
/// each (RFC 1123 §2.1), a last label that is not all digits. Anything
/// else is never asked about, so it costs no `ask` question or order.
pub fn orderable(name: &str) -> bool {
    let mut labels = name.split('.').peekable();
    let mut count = 0;
    while let Some(label) = labels.next() {
        count += 1;
        let bytes = label.as_bytes();
        let ldh = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if bytes.is_empty()
            || bytes.len() > 63
            || !ldh
            || bytes.first() == Some(&b'-')
            || bytes.last() == Some(&b'-')
        {
            return false;
        }
        if labels.peek().is_none() && bytes.iter().all(u8::is_ascii_digit) {
            return false;
        }
    }
    count >= 2 && name.len() <= 253
}

/// Takes a name out of `pending` and wakes its handshakes however its
/// admission ends (a refusal, success, or a panic).
struct Pending {
    on_demand: Arc<OnDemand>,
    name: String,
    decided: watch::Sender<bool>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.on_demand.state().pending.remove(&self.name);
        let _ = self.decided.send(true);
    }
}

impl OnDemand {
    /// On-demand certificates with `parts`.
    pub fn new(parts: OnDemandParts) -> Arc<Self> {
        let asker = match Asker::new() {
            Ok(asker) => Some(asker),
            Err(e) => {
                tracing::error!("{e}; on-demand certificates refuse every name");
                None
            }
        };
        Arc::new(OnDemand {
            parts,
            asker,
            asks: Arc::new(Semaphore::new(MAX_ASKS_IN_FLIGHT)),
            state: Mutex::new(State::default()),
            refusals: Default::default(),
        })
    }

    /// The state; a panic elsewhere never locks it for good.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `acme.on_demand` is set now (a read of the configuration's
    /// watch, once per connection).
    pub fn is_on(&self) -> bool {
        self.parts.config.borrow().acme.on_demand.is_some()
    }

    /// Whether a handshake for `sni` on `listener` is one to [`hold`]:
    /// `acme.on_demand` is on and the name is unknown, or being ordered on
    /// demand. No allocation for the names a domain answers.
    ///
    /// [`hold`]: OnDemand::hold
    pub fn wants(&self, listener: usize, sni: &str) -> bool {
        if !self.is_on() {
            return false;
        }
        match classify(&self.parts.store.load(), listener, sni) {
            NameKind::Answered => false,
            NameKind::Unknown => true,
            NameKind::Loading => {
                let name = sni.strip_suffix('.').unwrap_or(sni);
                self.state()
                    .pending
                    .contains_key(name.to_ascii_lowercase().as_str())
            }
        }
    }

    /// Called with the name of a ClientHello that [`OnDemand::wants`]:
    /// asks about it (or joins the question or order already under way)
    /// and returns once it is decided, issued, or `on_demand.wait` has
    /// passed; at once for refused names and when all `ask` slots are
    /// busy. The handshake then goes on with whatever the snapshot gives.
    pub async fn hold(self: &Arc<Self>, sni: &str) {
        let (settings, expected) = {
            let config = self.parts.config.borrow();
            match &config.acme.on_demand {
                Some(settings) => (settings.clone(), config.acme.expected_addresses.clone()),
                None => return,
            }
        };
        let Ok(name) = normalize_domain_name(sni) else {
            return;
        };
        if !orderable(&name) {
            return;
        }
        let (mut decided, start) = {
            let mut state = self.state();
            if state.refused.is_refused(&name, Instant::now()) {
                self.parts.metrics.on_demand(OnDemandOutcome::RefusedBefore);
                return;
            }
            if let Some(decided) = state.pending.get(&name) {
                (decided.clone(), None)
            } else {
                // Looked at again under the lock: an admission that ended
                // between `wants` and here has served the certificate
                // before leaving `pending` (no second order for it).
                if self.has_certificate(&name) {
                    return;
                }
                let Ok(permit) = self.asks.clone().try_acquire_owned() else {
                    self.parts.metrics.on_demand(OnDemandOutcome::AskBusy);
                    tracing::debug!(
                        domain = %name,
                        "acme.on_demand: all {MAX_ASKS_IN_FLIGHT} ask slots busy; served unasked"
                    );
                    return;
                };
                let (tx, rx) = watch::channel(false);
                state.pending.insert(name.clone(), rx.clone());
                let pending = Pending {
                    on_demand: self.clone(),
                    name: name.clone(),
                    decided: tx,
                };
                let admission = Admission {
                    name,
                    settings: settings.clone(),
                    expected,
                };
                (rx, Some((admission, permit, pending)))
            }
        };
        // Spawned with the state unlocked: a runtime that is shutting down
        // drops the task at once, and `Pending::drop` locks the state.
        if let Some((admission, permit, pending)) = start {
            tokio::spawn(self.clone().admit(admission, permit, pending));
        }
        let _ = tokio::time::timeout(settings.wait, decided.wait_for(|done| *done)).await;
    }

    /// Decides about one name and, if it may, orders it; `pending` wakes
    /// the waiting handshakes when this ends, however it ends.
    async fn admit(
        self: Arc<Self>,
        admission: Admission,
        permit: OwnedSemaphorePermit,
        pending: Pending,
    ) {
        let started = Instant::now();
        let name = admission.name.as_str();
        let result = self.try_admit(&admission, permit).await;
        match result {
            Ok(()) => tracing::info!(
                domain = %name,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "acme.on_demand: certificate issued and served"
            ),
            Err(refusal) => {
                if refusal.after_storing() {
                    self.forget_stored(name).await;
                }
                let remembered = refusal.remembered_for(admission.settings.refused_for);
                let now = Instant::now();
                self.state().refused.refuse(name, now + remembered, now);
                self.parts.metrics.on_demand(refusal.outcome());
                self.log_refusal(name, &refusal, remembered);
            }
        }
        drop(pending);
    }

    /// One line per refusal, at most one `info` (or `warn`) line per 10 s
    /// saying how many came since: a flood of unknown names must not flood
    /// the log; the others at `debug`.
    fn log_refusal(&self, name: &str, refusal: &Refusal, remembered: Duration) {
        let outcome = refusal.outcome().as_str();
        let refused_for_secs = remembered.as_secs();
        match self.refusals.admit() {
            Some(count) if matches!(refusal, Refusal::AskFailed(_)) => tracing::warn!(
                domain = %name, outcome, refused_for_secs, refused_since_last_line = count,
                "acme.on_demand: no certificate for {name}: {refusal}"
            ),
            Some(count) => tracing::info!(
                domain = %name, outcome, refused_for_secs, refused_since_last_line = count,
                "acme.on_demand: no certificate for {name}: {refusal}"
            ),
            None => tracing::debug!(
                domain = %name, outcome, refused_for_secs,
                "acme.on_demand: no certificate for {name}: {refusal}"
            ),
        }
    }

    /// The checks, the domain store and the order, in turn; the first that
    /// says no is the refusal.
    async fn try_admit(
        &self,
        admission: &Admission,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), Refusal> {
        let name = admission.name.as_str();
        // Issued meanwhile (by another instance, or through the admin API):
        // nothing to ask or order.
        if self.has_certificate(name) {
            return Ok(());
        }
        // Over the rate already: no order could follow, so `ask` is not
        // bothered (a flood of names costs it nothing once the budget is
        // spent); the token itself is taken only once `ask` allows.
        self.budget(&admission.settings, false)?;
        let answer = match &self.asker {
            Some(asker) => asker.ask(&admission.settings.ask, name).await,
            None => Err(AskError::Tls("no TLS client could be made".into())),
        };
        drop(permit);
        match answer.map_err(Refusal::AskFailed)? {
            Answer::Allowed => {}
            Answer::Refused(status) => return Err(Refusal::RefusedByAsk(status)),
        }
        self.budget(&admission.settings, true)?;
        super::preflight::check(name, &admission.expected)
            .await
            .map_err(Refusal::Preflight)?;
        self.store_and_load(name).await?;
        tracing::info!(domain = %name, "acme.on_demand: allowed by ask; ordering a certificate");
        self.parts.metrics.on_demand(OnDemandOutcome::Ordered);
        self.order(name).await
    }

    /// Whether the order budget has one order left (and takes it when
    /// `take`). The budget follows the current `rate` and `burst` (a
    /// reload keeps the orders left, never hands out a fresh burst).
    fn budget(&self, admitted_with: &OnDemandConfig, take: bool) -> Result<(), Refusal> {
        let current = self.parts.config.borrow().acme.on_demand.clone();
        let settings = current.as_ref().unwrap_or(admitted_with);
        let now = Instant::now();
        let mut state = self.state();
        let bucket = state
            .bucket
            .get_or_insert_with(|| TokenBucket::new(settings.rate, settings.burst, now));
        bucket.retune(settings.rate, settings.burst, now);
        let there = if take {
            bucket.take(now)
        } else {
            bucket.has_token(now)
        };
        if there {
            return Ok(());
        }
        Err(Refusal::OverRate {
            count: settings.rate.count,
            per_secs: settings.rate.per.as_secs(),
            burst: settings.burst,
            next_secs: bucket.next_token_in(now).as_secs() + 1,
        })
    }

    /// Adds the name to the domain store as an ACME domain (on demand) and
    /// waits until this instance has loaded it.
    async fn store_and_load(&self, name: &str) -> Result<(), Refusal> {
        {
            let _writer = self.parts.writer.lock().await;
            let entry = StoredDomain {
                acme: true,
                on_demand: true,
            };
            crate::storage::document::add_domains(&self.parts.storage, &[name.to_string()], entry)
                .await
                .map_err(Refusal::Store)?;
        }
        self.parts.reloads.send(Reload::All);
        let place = Place::Domain(name.to_string());
        self.parts
            .store
            .wait_for(LOAD_TIMEOUT, |snapshot| snapshot.report(&place).is_some())
            .await
            .map(|_| ())
            .map_err(|_| Refusal::NotLoaded(LOAD_TIMEOUT.as_secs()))
    }

    /// Asks the ACME task for the order and follows it to its end.
    async fn order(&self, name: &str) -> Result<(), Refusal> {
        let mut events = self.parts.acme.order(name);
        while let Some(event) = events.recv().await {
            if let OrderEvent::Done(outcome) = event {
                if outcome.ok {
                    self.parts.metrics.on_demand(OnDemandOutcome::Issued);
                    return Ok(());
                }
                return Err(Refusal::OrderFailed(outcome.message));
            }
        }
        Err(Refusal::Stopped)
    }

    /// Whether the domain `name` has a certificate in the snapshot.
    fn has_certificate(&self, name: &str) -> bool {
        let snapshot = self.parts.store.load();
        snapshot
            .tree()
            .id(name)
            .is_some_and(|id| snapshot.domain_certificate(id).is_some())
    }

    /// Takes a name that never got its certificate out of the domain store
    /// again (only if on-demand certificates put it there, and only if it
    /// has no certificate by now: a late load, or another instance's
    /// order), so it is not retried forever: after its refusal, a
    /// handshake asks afresh.
    async fn forget_stored(&self, name: &str) {
        if self.has_certificate(name) {
            return;
        }
        let removed = {
            let _writer = self.parts.writer.lock().await;
            crate::storage::document::remove_domain(&self.parts.storage, name, |entry| {
                entry.on_demand
            })
            .await
        };
        match removed {
            Ok(true) => {
                tracing::info!(domain = %name, "acme.on_demand: taken out of the domain store again");
                self.parts.reloads.send(Reload::All);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(
                domain = %name,
                "acme.on_demand: {name} stays in the domain store ({e}); remove it with \
                 DELETE /domains/{name}, or it is retried at the next start"
            ),
        }
    }

    /// At start: names that on-demand certificates stored but that have no
    /// certificate (the process stopped during their order) are followed
    /// to the end of an order again, and taken out when it fails, as if
    /// their first order had never been cut off.
    pub async fn resume(self: Arc<Self>) {
        let stored = match self
            .parts
            .storage
            .engine()
            .get(crate::storage::keys::DOMAINS)
            .await
        {
            Ok(Some(stored)) => stored.value,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(
                    "acme.on_demand: cannot read the domain store to resume orders: {e}"
                );
                return;
            }
        };
        let origin = std::path::Path::new(crate::storage::keys::DOMAINS);
        let Ok(store) = DomainStore::parse(&stored, origin) else {
            return;
        };
        let snapshot = self.parts.store.load_full();
        let unfinished: Vec<String> = store
            .domains
            .iter()
            .filter(|(_, entry)| entry.on_demand)
            .map(|(name, _)| name.clone())
            .filter(|name| {
                snapshot
                    .tree()
                    .id(name)
                    .is_none_or(|id| snapshot.domain_certificate(id).is_none())
            })
            .collect();
        drop(snapshot);
        for name in unfinished {
            let (tx, rx) = watch::channel(false);
            self.state().pending.insert(name.clone(), rx);
            let pending = Pending {
                on_demand: self.clone(),
                name: name.clone(),
                decided: tx,
            };
            let on_demand = self.clone();
            tokio::spawn(async move {
                tracing::info!(domain = %name, "acme.on_demand: resuming the order cut off by a stop");
                if let Err(refusal) = on_demand.order(&name).await {
                    if refusal.after_storing() {
                        on_demand.forget_stored(&name).await;
                    }
                    let refused_for = on_demand
                        .parts
                        .config
                        .borrow()
                        .acme
                        .on_demand
                        .as_ref()
                        .map_or(crate::config::DEFAULT_REFUSED_FOR, |o| o.refused_for);
                    let now = Instant::now();
                    on_demand.state().refused.refuse(
                        &name,
                        now + refusal.remembered_for(refused_for),
                        now,
                    );
                    on_demand.parts.metrics.on_demand(refusal.outcome());
                    tracing::info!(domain = %name, "acme.on_demand: no certificate for {name}: {refusal}");
                }
                drop(pending);
            });
        }
    }
}

/// One name being decided, and the settings it is decided with.
struct Admission {
    name: String,
    settings: OnDemandConfig,
    expected: Vec<IpAddr>,
}
