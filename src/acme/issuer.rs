//! The real issuer: pre-flight, then the domain's order lock (shared with
//! other instances through the storage), the order with the CA, storing
//! the certificate and waiting until the proxy serves it (lock → order →
//! store → activate). The [`Issuer`] trait is the seam the ACME task's
//! tests replace with a scripted CA.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::decide::{ServedView, usable_instead_of_ordering};
use super::dns01::{Dns01, Dns01Error};
use super::job::{ARI_MAX_REFRESH, AriAnswer, AriQuery, Failure, Issued, Job, Target};
use super::schedule::RenewalWindow;
use super::{AcmeError, Step, account, client, order, preflight};
use crate::challenge::ChallengeStore;
use crate::config::{AcmeConfig, ChallengeKind};
use crate::reload::{Reload, ReloadHandle};
use crate::snapshot::Place;
use crate::snapshot::SnapshotReader;
use crate::storage::{HeldLock, Shared, StorageError, StoreError, keys};

/// How often a lock held by another instance is looked at again.
const LOCK_POLL: Duration = Duration::from_millis(500);

/// Longest wait for another instance's order: orders end within minutes
/// (each CA poll gives up after one), and a holder keeps its lease alive
/// only while it works, so this is only reached if it hangs.
const LOCK_WAIT_LIMIT: Duration = Duration::from_secs(600);

/// How long a new certificate may take to be served after it is stored.
const ACTIVATE_TIMEOUT: Duration = Duration::from_secs(15);

/// A stored certificate the proxy did not serve in time, with the
/// problems of the domain's report (why, most likely).
#[derive(Debug, thiserror::Error)]
#[error(
    "stored, but the proxy did not serve it within {}s{}",
    within.as_secs(),
    listed_problems(problems)
)]
struct NotServed {
    within: Duration,
    problems: Vec<String>,
}

/// `: first; second` (nothing when there is nothing to say).
fn listed_problems(problems: &[String]) -> String {
    let joined = problems.join("; ");
    if joined.is_empty() {
        joined
    } else {
        format!(": {joined}")
    }
}

/// Test builds only: waits `SNIWALK_TEST_HOLD_BEFORE_STORE` milliseconds
/// between receiving a certificate and storing it, after logging
/// "test hold before store", so the fencing test can pause the process
/// (SIGSTOP) exactly there. Release builds compile none of this.
#[cfg(debug_assertions)]
async fn hold_before_store(domain: &str) {
    let Some(millis) = std::env::var("SNIWALK_TEST_HOLD_BEFORE_STORE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    tracing::warn!(domain, millis, "test hold before store");
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

#[cfg(not(debug_assertions))]
async fn hold_before_store(_domain: &str) {}

/// Talks to the CA on the manager's behalf.
pub trait Issuer: Send + Sync + 'static {
    /// Obtains a certificate for `job.domain`, stores it and waits until it
    /// is served.
    fn issue(&self, job: Job) -> impl Future<Output = Result<Issued, Failure>> + Send;

    /// Asks the CA when to renew `query.leaf`.
    fn renewal_info(&self, query: AriQuery) -> impl Future<Output = AriAnswer> + Send;

    /// Runs one check order for `target.domain` against the staging
    /// `directory` (`acme.fallback_to_staging`): account, order,
    /// validation and download, and drops the certificate (never stored,
    /// never served). Issuers that cannot say no.
    fn staging_check(
        &self,
        target: Target,
        directory: String,
    ) -> impl Future<Output = Result<(), AcmeError>> + Send {
        async move {
            Err(AcmeError::Order {
                domain: target.domain,
                step: Step::CreateOrder,
                problem: format!("this issuer runs no check order against {directory}"),
                problem_type: None,
            })
        }
    }
}

/// The real [`Issuer`]: pre-flight, account, order, store, reload.
pub struct CaIssuer {
    challenges: Arc<ChallengeStore>,
    reloads: ReloadHandle,
    store: SnapshotReader,
    writer: crate::fsio::StateWriter,
    shared: Shared,
}

impl CaIssuer {
    /// An issuer answering challenges through `challenges` (and `shared`,
    /// for the other instances), taking order locks and storing results in
    /// `shared`, telling the reload task about results through `reloads`,
    /// and watching `store` until they are served.
    pub fn new(
        challenges: Arc<ChallengeStore>,
        reloads: ReloadHandle,
        store: SnapshotReader,
        shared: Shared,
    ) -> Self {
        CaIssuer {
            challenges,
            reloads,
            store,
            writer: crate::fsio::StateWriter::default(),
            shared,
        }
    }

    /// Stores certificates in turn with the admin API's imports (see
    /// [`crate::fsio::StateWriter`]).
    pub fn with_writer(mut self, writer: crate::fsio::StateWriter) -> Self {
        self.writer = writer;
        self
    }

    async fn account(
        &self,
        settings: &AcmeConfig,
        email: Option<&str>,
        domain: &str,
    ) -> Result<(instant_acme::Account, client::RetryAfter), AcmeError> {
        let (http, retry_after) =
            client::ca_client(&settings.ca_roots).map_err(|e| AcmeError::Account {
                directory: settings.directory.clone(),
                step: "setting up the HTTP client",
                problem: e.to_string(),
                problem_type: None,
            })?;
        let account = account::load_or_create(
            self.shared.engine(),
            &settings.directory,
            email,
            http,
            settings.eab.as_ref(),
            domain,
        )
        .await?;
        Ok((account, retry_after))
    }

    /// SHA-256 of the certificate this instance serves for `domain` itself.
    fn served_sha256(&self, domain: &str) -> Option<String> {
        let snapshot = self.store.load();
        snapshot
            .report(&Place::Domain(domain.to_string()))
            .and_then(|r| r.loaded.as_ref())
            .map(|l| l.facts.sha256.clone())
    }

    /// Takes `domain`'s order lock, waiting while another instance holds
    /// it (at most [`LOCK_WAIT_LIMIT`]).
    async fn lock(
        &self,
        domain: &str,
        lease: Duration,
        progress: &(dyn Fn(Step) + Send + Sync),
    ) -> Result<HeldLock, AcmeError> {
        let name = keys::order_lock(domain);
        let engine = self.shared.engine();
        let fail = |problem: String| AcmeError::Order {
            domain: domain.to_string(),
            step: Step::WaitForOtherInstance,
            problem,
            problem_type: None,
        };
        let started = tokio::time::Instant::now();
        let mut logged_holder: Option<String> = None;
        loop {
            let taken = match engine.try_lock(&name, self.shared.instance(), lease).await {
                Ok(taken) => taken,
                Err(e @ StorageError::Unreachable { .. }) => {
                    self.shared.health().set_down(&e.to_string());
                    return Err(AcmeError::StorageUnavailable {
                        domain: domain.to_string(),
                        detail: e.to_string(),
                    });
                }
                Err(e) => return Err(fail(format!("order lock {name}: {e}"))),
            };
            if let Some(lock) = taken {
                tracing::debug!(domain, lock = %name, fence = lock.fence, "ACME: order lock taken");
                return Ok(lock);
            }
            if logged_holder.is_none() {
                progress(Step::WaitForOtherInstance);
            }
            let holder = engine
                .lock_holder(&name)
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| "another instance".into());
            if logged_holder.as_ref() != Some(&holder) {
                tracing::info!(
                    domain,
                    lock = %name,
                    holder = %holder,
                    "ACME: another instance is ordering this domain; waiting for it"
                );
                logged_holder = Some(holder);
            }
            if started.elapsed() >= LOCK_WAIT_LIMIT {
                return Err(fail(format!(
                    "another instance has held the order lock {name} in {} for over {} min ({}); \
                     if none is working on it, stop it (its lease then ends)",
                    engine.describe(),
                    LOCK_WAIT_LIMIT.as_secs() / 60,
                    logged_holder.unwrap_or_default()
                )));
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    /// Account, order and store, for [`Issuer::issue`] while it holds the
    /// lock; the stored certificate's facts.
    async fn order_and_store(
        &self,
        target: &Target,
        lock: &HeldLock,
        progress: &(dyn Fn(Step) + Send + Sync),
    ) -> Result<crate::pem::CertificateFacts, Failure> {
        let domain = target.domain.as_str();
        let settings = &*target.settings;
        let fail = |error: AcmeError| Failure {
            error,
            retry_after: None,
        };
        // The order stops when the lock is lost (its lease could not be
        // kept alive): another instance may be ordering by now. Once the
        // certificate is in hand it is always offered to the storage: the
        // fenced put decides (README, "Running several instances").
        let ordered = async {
            progress(Step::Account);
            let (account, retry_after) = self
                .account(settings, target.email.as_deref(), domain)
                .await
                .map_err(fail)?;
            self.order(&account, target, &settings.directory, lock, progress)
                .await
                .map_err(|error| Failure {
                    error,
                    retry_after: retry_after.take_secs(SystemTime::now()),
                })
        };
        let pem = tokio::select! {
            pem = ordered => pem?,
            () = lock.lost() => return Err(fail(self.lost_lock(domain))),
        };
        hold_before_store(domain).await;
        let facts = crate::pem::parse_certificate_pem(&pem)
            .map_err(|e| {
                fail(AcmeError::Order {
                    domain: domain.to_string(),
                    step: Step::CreateCertificate,
                    problem: format!("the issued certificate does not load: {e}"),
                    problem_type: None,
                })
            })?
            .leaf;
        progress(Step::StoreCertificate);
        let _turn = self.writer.lock().await;
        match self.shared.store_certificate(domain, &pem, lock).await {
            Ok(()) => Ok(facts),
            Err(StoreError::Fenced) => {
                tracing::error!(
                    domain,
                    lock = %keys::order_lock(domain),
                    "ACME: the order lock was lost before storing (lease ended: paused or cut off \
                     from the storage); the late certificate is not stored, so a newer one of \
                     another instance stays"
                );
                Err(fail(AcmeError::Store {
                    domain: domain.to_string(),
                    place: self.shared.describe_certificate(domain),
                    problem: StoreError::Fenced.to_string(),
                }))
            }
            Err(e) => Err(fail(AcmeError::Store {
                domain: domain.to_string(),
                place: self.shared.describe_certificate(domain),
                problem: e.to_string(),
            })),
        }
    }

    /// Tells the reload task about `domain`'s stored certificate and waits
    /// until it is served.
    async fn activate(
        &self,
        domain: &str,
        facts: crate::pem::CertificateFacts,
        progress: &(dyn Fn(Step) + Send + Sync),
    ) -> Result<Issued, AcmeError> {
        progress(Step::Activate);
        self.reloads.send(Reload::Domain(domain.to_string()));
        self.activated(domain, &facts.sha256)
            .await
            .map_err(|e| AcmeError::Order {
                domain: domain.to_string(),
                step: Step::Activate,
                problem: e.to_string(),
                problem_type: None,
            })?;
        Ok(Issued {
            not_after: facts.not_after,
            sha256: facts.sha256,
        })
    }

    /// Waits until the snapshot serves `sha256` for `domain`.
    async fn activated(&self, domain: &str, sha256: &str) -> Result<(), NotServed> {
        let place = Place::Domain(domain.to_string());
        let served = |snapshot: &crate::snapshot::Snapshot| {
            snapshot
                .report(&place)
                .and_then(|r| r.loaded.as_ref())
                .is_some_and(|l| l.facts.sha256 == sha256)
        };
        match self.store.wait_for(ACTIVATE_TIMEOUT, served).await {
            Ok(_) => Ok(()),
            Err(last) => Err(NotServed {
                within: ACTIVATE_TIMEOUT,
                problems: last
                    .report(&place)
                    .map(|r| r.problems.iter().map(|p| p.message.clone()).collect())
                    .unwrap_or_default(),
            }),
        }
    }
}

impl Issuer for CaIssuer {
    async fn issue(&self, job: Job) -> Result<Issued, Failure> {
        let Job { target, progress } = job;
        let domain = target.domain.clone();
        let settings = target.settings.clone();
        let fail = |error: AcmeError| Failure {
            error,
            retry_after: None,
        };
        // While the storage is down nothing ordered could be stored or
        // shared: no order (README, "Running several instances").
        let health = self.shared.health();
        if !health.is_up() {
            return Err(fail(AcmeError::StorageUnavailable {
                domain: domain.clone(),
                detail: health.view().error.unwrap_or_default(),
            }));
        }
        progress(Step::CheckDnsResolution);
        // dns-01 is checked in the DNS: the CA never connects to us. A
        // wildcard has no address of its own; its base name is checked.
        let checked: &[String] = if target.challenge == ChallengeKind::Dns01 {
            &[]
        } else {
            &target.names
        };
        for name in checked {
            let name = name.strip_prefix("*.").unwrap_or(name);
            preflight::check(name, &settings.expected_addresses)
                .await
                .map_err(fail)?;
        }
        // What this instance serves now: what the decision to order was
        // based on. A different certificate stored once we hold the lock
        // was issued by another instance meanwhile.
        let baseline = self.served_sha256(&domain);
        let lease = self.shared.lease_or(settings.lock_lease);
        let lock = self.lock(&domain, lease, &*progress).await.map_err(fail)?;
        if let Some(facts) = self
            .renewed_elsewhere(&domain, baseline.as_deref(), &settings, &target.names)
            .await
        {
            self.release(&domain, lock).await;
            tracing::info!(
                domain,
                sha256 = %facts.sha256,
                not_after = %crate::clock::rfc3339(facts.not_after),
                "ACME: renewed by another instance; serving its certificate instead of ordering"
            );
            return self
                .activate(&domain, facts, &*progress)
                .await
                .map_err(fail);
        }
        let ordered = self.order_and_store(&target, &lock, &*progress).await;
        // Stored (or failed): the next instance to take the lock finds the
        // result in the storage.
        self.release(&domain, lock).await;
        let facts = ordered?;
        self.activate(&domain, facts, &*progress)
            .await
            .map_err(fail)
    }

    async fn renewal_info(&self, query: AriQuery) -> AriAnswer {
        let target = &query.target;
        let Ok((account, _)) = self
            .account(&target.settings, target.email.as_deref(), &target.domain)
            .await
        else {
            return AriAnswer::Failed;
        };
        let leaf = rustls_pki_types::CertificateDer::from(query.leaf);
        let Ok(id) = instant_acme::CertificateIdentifier::try_from(&leaf) else {
            return AriAnswer::Failed;
        };
        match account.renewal_info(&id).await {
            Ok((info, again)) => AriAnswer::Window(
                RenewalWindow {
                    start: info.suggested_window.start.unix_timestamp(),
                    end: info.suggested_window.end.unix_timestamp(),
                },
                i64::try_from(again.as_secs()).unwrap_or(ARI_MAX_REFRESH),
            ),
            Err(instant_acme::Error::Unsupported(_)) => AriAnswer::Unsupported,
            Err(e) => {
                tracing::debug!(domain = %target.domain, "renewal information: {e}");
                AriAnswer::Failed
            }
        }
    }

    async fn staging_check(&self, target: Target, directory: String) -> Result<(), AcmeError> {
        self.check_staging(target, directory).await
    }
}

impl CaIssuer {
    /// One order for `target`'s names from `account` at `directory`, its
    /// challenge answers shared under `lock`; the `certificate_pem` text.
    async fn order(
        &self,
        account: &instant_acme::Account,
        target: &Target,
        directory: &str,
        lock: &HeldLock,
        progress: &(dyn Fn(Step) + Send + Sync),
    ) -> Result<String, AcmeError> {
        let dns = self.dns01(target).await?;
        order::issue(
            account,
            order::Issue {
                domain: &target.domain,
                names: &target.names,
                challenge: target.challenge,
                challenges: &self.challenges,
                dns: dns.as_ref(),
                shared: Some((self.shared.engine(), lock)),
                directory,
                progress,
            },
        )
        .await
    }

    /// The dns-01 publisher of `target`, when it uses dns-01: the secret
    /// file is read for each order, so a rotated one is picked up.
    async fn dns01(&self, target: &Target) -> Result<Option<Dns01>, AcmeError> {
        if target.challenge != ChallengeKind::Dns01 {
            return Ok(None);
        }
        let fail = |e: Dns01Error| AcmeError::DnsUpdate {
            domain: target.domain.clone(),
            problem: e.to_string(),
        };
        let config = target
            .settings
            .rfc2136
            .as_ref()
            .ok_or_else(|| fail(Dns01Error::NotConfigured))?;
        Dns01::from_config(config).await.map(Some).map_err(fail)
    }

    /// [`Issuer::staging_check`]: under the domain's order lock (the
    /// challenge answers are shared like a real order's), with an account
    /// of its own at the staging directory (stored like any account,
    /// registered without `acme.eab`: staging CAs do not bind accounts).
    async fn check_staging(&self, target: Target, directory: String) -> Result<(), AcmeError> {
        let domain = target.domain.as_str();
        let mut settings = (*target.settings).clone();
        settings.directory = directory;
        settings.eab = None;
        let lease = self.shared.lease_or(settings.lock_lease);
        let lock = self.lock(domain, lease, &|_| {}).await?;
        let checked = async {
            let (account, _) = self
                .account(&settings, target.email.as_deref(), domain)
                .await?;
            self.order(&account, &target, &settings.directory, &lock, &|_| {})
                .await
        };
        // The certificate is dropped here: staging's are for the check only.
        let result = tokio::select! {
            checked = checked => checked.map(drop),
            () = lock.lost() => Err(self.lost_lock(domain)),
        };
        self.release(domain, lock).await;
        result
    }

    /// The error of an order whose lock was lost: the storage is
    /// unreachable, or the lease ended another way.
    fn lost_lock(&self, domain: &str) -> AcmeError {
        let health = self.shared.health();
        if !health.is_up() {
            return AcmeError::StorageUnavailable {
                domain: domain.to_string(),
                detail: health.view().error.unwrap_or_default(),
            };
        }
        AcmeError::Order {
            domain: domain.to_string(),
            step: Step::WaitForOtherInstance,
            problem: format!(
                "the order lock {} was lost (its lease could not be kept alive in {}); \
                 the order is abandoned and tried again later",
                keys::order_lock(domain),
                self.shared.engine().describe()
            ),
            problem_type: None,
        }
    }

    /// Releases `domain`'s order lock (what was shared for its challenges
    /// goes with it); a failure is logged: the lease ends by itself.
    async fn release(&self, domain: &str, lock: HeldLock) {
        if let Err(e) = self.shared.engine().unlock(lock).await {
            tracing::warn!(
                domain,
                "cannot release the order lock ({e}); its lease ends by itself"
            );
        }
    }

    /// The certificate another instance stored for `domain` since this one
    /// decided to order (its served one was `baseline`), if it can be used
    /// instead of ordering: loadable, ours, of the configured directory and
    /// not due for renewal.
    async fn renewed_elsewhere(
        &self,
        domain: &str,
        baseline: Option<&str>,
        settings: &AcmeConfig,
        names: &[String],
    ) -> Option<crate::pem::CertificateFacts> {
        let stored = self
            .shared
            .engine()
            .get(&keys::certificate(domain))
            .await
            .ok()??;
        let text = String::from_utf8(stored.value).ok()?;
        let parsed = crate::pem::parse_certificate_pem(&text).ok()?;
        let view = ServedView {
            not_before: parsed.leaf.not_before,
            not_after: parsed.leaf.not_after,
            acme_issued: parsed.markers.is_acme_issued(),
            directory: parsed.markers.value(crate::pem::ACME_DIRECTORY_MARKER),
            names_match: super::decide::names_match(&parsed.leaf.dns_names, names),
        };
        if !usable_instead_of_ordering(
            view,
            &parsed.leaf.sha256,
            baseline,
            &settings.directory,
            crate::clock::unix_now(),
            settings.renew_at,
        ) {
            return None;
        }
        // With a remote engine the cache may not have it yet.
        if let Some(cache) = self.shared.cache() {
            let _turn = self.writer.lock().await;
            if let Err(e) = crate::storage::write_cache(cache, domain, text.as_bytes()).await {
                tracing::warn!(domain, "{e}");
            }
        }
        Some(parsed.leaf)
    }
}
