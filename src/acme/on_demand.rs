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
pub mod refused;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use self::ask::{Answer, Asker};
use self::rate::TokenBucket;
use self::refused::RefusedNames;
use super::manager::{ManagerHandle, OrderEvent};
use crate::config::{Config, OnDemandConfig, StoredDomain, normalize_domain_name};
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

/// Why a name gets no order now; remembered as refused.
struct Refusal {
    outcome: OnDemandOutcome,
    reason: String,
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

    /// Whether `acme.on_demand` is set now (a read of the configuration's
    /// watch, once per connection).
    pub fn is_on(&self) -> bool {
        self.parts.config.borrow().acme.on_demand.is_some()
    }

    /// Whether a handshake for `sni` on `listener` is one to [`hold`]:
    /// `acme.on_demand` is on and [`wanted`] says so. No allocation.
    ///
    /// [`hold`]: OnDemand::hold
    pub fn wants(&self, listener: usize, sni: &str) -> bool {
        self.is_on() && wanted(&self.parts.store.load(), listener, sni)
    }

    /// Called with the name of a ClientHello that [`OnDemand::wants`]:
    /// asks about it (or joins the question already asked) and
    /// returns once it is decided, issued, or `on_demand.wait` has passed;
    /// at once for known names, refused ones, and when all `ask` slots are
    /// busy. The handshake then goes on with whatever the snapshot gives.
    ///
    /// Callers ask [`OnDemand::wants`] first, which costs no allocation.
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
        let mut decided = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            if state.refused.is_refused(&name, Instant::now()) {
                self.parts.metrics.on_demand(OnDemandOutcome::RefusedBefore);
                return;
            }
            match state.pending.get(&name) {
                Some(decided) => decided.clone(),
                None => {
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
                    let admission = Admission {
                        name,
                        settings: settings.clone(),
                        expected,
                    };
                    tokio::spawn(self.clone().admit(admission, permit, tx));
                    rx
                }
            }
        };
        let _ = tokio::time::timeout(settings.wait, decided.wait_for(|done| *done)).await;
    }

    /// Decides about one name and, if it may, orders it; the waiting
    /// handshakes are told once it is decided.
    async fn admit(
        self: Arc<Self>,
        admission: Admission,
        permit: OwnedSemaphorePermit,
        decided: watch::Sender<bool>,
    ) {
        let started = Instant::now();
        let name = admission.name.clone();
        let result = self.try_admit(&admission, permit, &decided, started).await;
        if let Ok(mut state) = self.state.lock() {
            if let Err(refusal) = &result {
                let now = Instant::now();
                state
                    .refused
                    .refuse(&name, now + admission.settings.refused_for, now);
                // A flood of unknown names must not flood the log: one
                // `info` line per 10 s says how many, the others `debug`.
                match self.refusals.admit() {
                    Some(count) if refusal.outcome == OnDemandOutcome::AskFailed => tracing::warn!(
                        domain = %name,
                        outcome = refusal.outcome.as_str(),
                        refused_since_last_line = count,
                        "acme.on_demand: no certificate for {name}: {}",
                        refusal.reason
                    ),
                    Some(count) => tracing::info!(
                        domain = %name,
                        outcome = refusal.outcome.as_str(),
                        refused_for_secs = admission.settings.refused_for.as_secs(),
                        refused_since_last_line = count,
                        "acme.on_demand: no certificate for {name}: {}",
                        refusal.reason
                    ),
                    None => tracing::debug!(
                        domain = %name,
                        outcome = refusal.outcome.as_str(),
                        "acme.on_demand: no certificate for {name}: {}",
                        refusal.reason
                    ),
                }
            }
            state.pending.remove(&name);
        }
        if let Err(refusal) = result {
            self.parts.metrics.on_demand(refusal.outcome);
        }
        let _ = decided.send(true);
    }

    /// The checks, the domain store and the order, in turn; the first that
    /// says no is the refusal.
    async fn try_admit(
        &self,
        admission: &Admission,
        permit: OwnedSemaphorePermit,
        decided: &watch::Sender<bool>,
        started: Instant,
    ) -> Result<(), Refusal> {
        let name = admission.name.as_str();
        let settings = &admission.settings;
        let refuse = |outcome, reason: String| Refusal { outcome, reason };
        // Over the rate already: no order could follow, so `ask` is not
        // bothered (a flood of names costs it nothing once the budget is
        // spent); the token itself is taken only once `ask` allows.
        self.budget(settings, false)
            .map_err(|reason| refuse(OnDemandOutcome::RateLimited, reason))?;
        let answer = match &self.asker {
            Some(asker) => asker.ask(&settings.ask, name).await,
            None => Err(ask::AskError::Tls("no TLS client".into())),
        };
        drop(permit);
        match answer {
            Ok(Answer::Allowed) => {}
            Ok(Answer::Refused(status)) => {
                return Err(refuse(
                    OnDemandOutcome::RefusedByAsk,
                    format!("the ask endpoint answered {status}"),
                ));
            }
            Err(e) => return Err(refuse(OnDemandOutcome::AskFailed, e.to_string())),
        }
        self.budget(settings, true)
            .map_err(|reason| refuse(OnDemandOutcome::RateLimited, reason))?;
        super::preflight::check(name, &admission.expected)
            .await
            .map_err(|e| refuse(OnDemandOutcome::PreflightFailed, e.to_string()))?;
        self.store_and_load(name)
            .await
            .map_err(|reason| refuse(OnDemandOutcome::StoreFailed, reason))?;
        tracing::info!(domain = %name, "acme.on_demand: allowed by ask; ordering a certificate");
        self.parts.metrics.on_demand(OnDemandOutcome::Ordered);
        match self.order(name).await {
            Ok(()) => {
                tracing::info!(
                    domain = %name,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "acme.on_demand: certificate issued and served"
                );
                let _ = decided.send(true);
                Ok(())
            }
            Err(reason) => {
                // Out of the domain store again, so a name that cannot be
                // validated is not retried forever: after `refused_for`, a
                // handshake asks about it afresh.
                let _writer = self.parts.writer.lock().await;
                let removed =
                    crate::storage::document::remove_domain(&self.parts.storage, name, |entry| {
                        entry.on_demand
                    })
                    .await;
                if let Err(e) = &removed {
                    tracing::warn!(domain = %name, "acme.on_demand: the failed name stays in the domain store: {e}");
                }
                self.parts.reloads.send(Reload::All);
                Err(refuse(OnDemandOutcome::OrderFailed, reason))
            }
        }
    }

    /// Whether the order budget has one order left (and takes it when
    /// `take`), or says when the next one comes.
    fn budget(&self, settings: &OnDemandConfig, take: bool) -> Result<(), String> {
        let Ok(mut state) = self.state.lock() else {
            return Err("internal error (a lock was poisoned)".into());
        };
        let now = Instant::now();
        let bucket = match &mut state.bucket {
            Some(bucket) if bucket.is_for(settings.rate, settings.burst) => bucket,
            slot => slot.insert(TokenBucket::new(settings.rate, settings.burst, now)),
        };
        let there = if take {
            bucket.take(now)
        } else {
            bucket.has_token(now)
        };
        if there {
            return Ok(());
        }
        Err(format!(
            "over acme.on_demand.rate ({}/{}s, burst {}); the next order is possible in {}s",
            settings.rate.count,
            settings.rate.per.as_secs(),
            settings.burst,
            bucket.next_token_in(now).as_secs() + 1
        ))
    }

    /// Adds the name to the domain store as an ACME domain (on demand) and
    /// waits until this instance has loaded it.
    async fn store_and_load(&self, name: &str) -> Result<(), String> {
        {
            let _writer = self.parts.writer.lock().await;
            let entry = StoredDomain {
                acme: true,
                on_demand: true,
            };
            crate::storage::document::add_domains(&self.parts.storage, &[name.to_string()], entry)
                .await
                .map_err(|e| format!("adding it to the domain store: {e}"))?;
        }
        self.parts.reloads.send(Reload::All);
        let place = Place::Domain(name.to_string());
        self.parts
            .store
            .wait_for(LOAD_TIMEOUT, |snapshot| snapshot.report(&place).is_some())
            .await
            .map(|_| ())
            .map_err(|_| {
                format!(
                    "it was added to the domain store but not loaded within {}s; see the log",
                    LOAD_TIMEOUT.as_secs()
                )
            })
    }

    /// Asks the ACME task for the order and follows it to its end.
    async fn order(&self, name: &str) -> Result<(), String> {
        let mut events = self.parts.acme.order(name);
        while let Some(event) = events.recv().await {
            if let OrderEvent::Done(outcome) = event {
                if outcome.ok {
                    self.parts.metrics.on_demand(OnDemandOutcome::Issued);
                    return Ok(());
                }
                return Err(format!("the order failed: {}", outcome.message));
            }
        }
        Err("the ACME task stopped before the order ended".into())
    }
}

/// One name being decided, and the settings it is decided with.
struct Admission {
    name: String,
    settings: OnDemandConfig,
    expected: Vec<IpAddr>,
}

/// Whether a handshake for `sni` on `listener` is one on-demand
/// certificates are for: a name with a dot, not an IP address, that no
/// domain answers (not a domain, not a listed name) and whose certificate
/// from the tree does not cover it. No allocation, no lock: the cost every
/// unknown name pays.
pub fn wanted(snapshot: &Snapshot, listener: usize, sni: &str) -> bool {
    let name = sni.strip_suffix('.').unwrap_or(sni);
    if !name.contains('.') || name.len() > 253 || name.parse::<IpAddr>().is_ok() {
        return false;
    }
    let choice = snapshot.choose(listener, Some(name));
    if matches!(choice.step, Step::Exact | Step::Listed) || choice.certificate.facts.covers(name) {
        return false;
    }
    // A configured domain without its certificate yet (an order in
    // flight) is not unknown.
    let tree = snapshot.tree();
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        tree.id(&name.to_ascii_lowercase()).is_none()
    } else {
        tree.id(name).is_none()
    }
}
