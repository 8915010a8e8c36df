//! Building a snapshot from a configuration: every source loaded (or
//! reused while unchanged, or kept as last good), the domain tree, the
//! trust material and the default certificate, with a report per source.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::certificate::{SourceKind, SourceStamp};
use super::default_cert::{DefaultPolicy, build_default};
use super::last_good::{Attempt, Changes, settle, unchanged};
use super::loaders::{
    certdir_stamp, load_certdir, load_pem_file, load_pem_text, load_source, text_hash,
};
use super::model::{Snapshot, SnapshotError};
use super::report::{Place, Problem, SourceReport, check_key, check_validity, names_or_none};
use super::trust;
use crate::balance::ListenerBackends;
use crate::config::{CertificateSource, Config, DEFAULT_ACME_DIRECTORY, ListenerConfig};
use crate::state_layout::StateLayout;
use crate::tree::{DomainSpec, DomainTree};

impl Snapshot {
    /// Loads every certificate source of `config` and builds the snapshot.
    ///
    /// `previous` supplies last-good certificates for sources that fail now;
    /// `now` (Unix seconds) dates expiry checks.
    pub fn build(
        config: &Config,
        previous: Option<&Snapshot>,
        policy: DefaultPolicy,
        now: i64,
    ) -> Result<Self, SnapshotError> {
        Self::build_changed(config, previous, Changes(None), policy, now)
    }

    /// [`Snapshot::build`] when the caller knows which files changed: a
    /// source the changes do not touch keeps the previous snapshot's
    /// certificate without being read again (a rebuild of 100,000 domains
    /// for one changed file stays cheap). Without that knowledge, each file
    /// is compared by size, modification time and inode instead.
    pub fn build_changed(
        config: &Config,
        previous: Option<&Snapshot>,
        changes: Changes<'_>,
        policy: DefaultPolicy,
        now: i64,
    ) -> Result<Self, SnapshotError> {
        let mut reports: Vec<Arc<SourceReport>> =
            Vec::with_capacity(config.domains.len() + config.listeners.len() + 1);
        let mut domain_certificates = Vec::with_capacity(config.domains.len());
        // When only some files changed (the configuration did not), domains
        // whose source those files do not touch keep their previous report
        // as it is: a rebuild of 100,000 domains then reads one file.
        let same_domains = match (changes.0, previous) {
            (Some(_), Some(prev)) => prev.domain_certificates.len() == config.domains.len(),
            _ => false,
        };
        let mut tree_unchanged = same_domains;
        // Once for all domains: a rebuild of 100,000 domains asks it for
        // every stored certificate's path.
        let state = config.state_layout();
        for (i, domain) in config.domains.iter().enumerate() {
            if same_domains
                && let Some(prev) = previous
                && !domain_touched(&state, domain, changes)
                && let Some(report) = prev.reports.get(i)
                && matches!(&report.place, Place::Domain(name) if *name == domain.name)
            {
                domain_certificates.push(prev.domain_certificates[i].clone());
                reports.push(report.clone());
                continue;
            }
            let report = domain_report(config, &state, domain, previous, changes, now);
            if let Some(prev) = previous.filter(|_| same_domains) {
                tree_unchanged &= prev.domain_certificates[i].is_some() == report.loaded.is_some();
            }
            domain_certificates.push(report.loaded.clone());
            reports.push(Arc::new(report));
        }

        let specs: Vec<DomainSpec<'_>> = config
            .domains
            .iter()
            .zip(&domain_certificates)
            .map(|(d, c)| DomainSpec {
                name: &d.name,
                has_certificate: c.is_some(),
                names: &d.names,
            })
            .collect();
        let tree = match previous {
            Some(prev) if tree_unchanged => prev.tree.clone(),
            _ => Arc::new(DomainTree::build(&specs, &config.master_domain)?),
        };

        let mut certdirs = Vec::with_capacity(config.listeners.len());
        let mut listener_names = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            listener_names.push(listener.name.clone());
            let Some(dir) = &listener.certdir else {
                certdirs.push(None);
                continue;
            };
            let mut report = SourceReport::new(
                Place::Certdir(listener.name.clone()),
                Some(SourceKind::Certdir),
                Some(dir.clone()),
            );
            load_source(
                &mut report,
                previous,
                SourceKind::Certdir,
                dir,
                changes.may_touch_dir(dir),
                || certdir_stamp(dir),
                || load_certdir(dir),
                (now, config.acme.warn_days),
            );
            if let Some(loaded) = &report.loaded {
                check_key(&mut report.problems, loaded);
            }
            certdirs.push(report.loaded.clone());
            reports.push(Arc::new(report));
        }

        let client_cas = trust::client_cas(config, previous, changes, &mut reports);
        let backend_tls = trust::backends(config, previous, changes, now, &mut reports);

        let (default, default_report) = build_default(config, previous, policy, now)?;
        reports.push(Arc::new(default_report));
        let report_index = match previous {
            Some(prev) if same_domains && prev.reports.len() == reports.len() => {
                prev.report_index.clone()
            }
            _ => Arc::new(index_reports(&reports)),
        };

        let backends: Vec<Arc<ListenerBackends>> = config
            .listeners
            .iter()
            .map(|listener| listener_backends(listener, previous))
            .collect();
        for (listener, groups) in config.listeners.iter().zip(&backends) {
            for state in &groups.states {
                state.set_admin_drain(config.drains.drains(&listener.name, state.address()));
            }
        }

        Ok(Snapshot {
            tree,
            domain_certificates,
            certdirs,
            listener_names,
            backends,
            listeners: config.listeners.iter().cloned().map(Arc::new).collect(),
            client_cas,
            backend_tls,
            default,
            report_index,
            reports,
            master_domain: config.master_domain.clone(),
        })
    }
}

/// The backend groups of `listener`: the previous snapshot's when the
/// listener did not change (a certificate reload touches no backend), else
/// new groups that keep the state of every backend they share with it.
fn listener_backends(
    listener: &ListenerConfig,
    previous: Option<&Snapshot>,
) -> Arc<ListenerBackends> {
    let before = previous.and_then(|p| {
        let index = p.listener_names.iter().position(|n| n == &listener.name)?;
        Some((p.listeners.get(index)?, p.backends.get(index)?))
    });
    match before {
        Some((config, backends)) if **config == *listener => backends.clone(),
        _ => Arc::new(ListenerBackends::build(
            listener,
            before.map(|(_, backends)| &**backends),
        )),
    }
}

fn index_reports(reports: &[Arc<SourceReport>]) -> HashMap<Place, usize> {
    reports
        .iter()
        .enumerate()
        .map(|(i, r)| (r.place.clone(), i))
        .collect()
}

/// Loads one domain's certificate and records its problems.
fn domain_report(
    config: &Config,
    state: &StateLayout,
    domain: &crate::config::DomainConfig,
    previous: Option<&Snapshot>,
    changes: Changes<'_>,
    now: i64,
) -> SourceReport {
    let place = Place::Domain(domain.name.clone());
    let acme_enabled = domain.acme.as_ref().is_some_and(|a| a.enabled);
    let file_attempt = |kind: SourceKind, path: &Path| match unchanged(
        previous,
        &place,
        kind,
        Some(path),
        !changes.may_touch(path),
        || SourceStamp::of_file(path),
    ) {
        Some(loaded) => Attempt::Reused(loaded),
        None => Attempt::from(load_pem_file(path)),
    };
    let (kind, file, attempt) = match &domain.certificate {
        CertificateSource::Inline(text) => {
            let attempt = match unchanged(previous, &place, SourceKind::Inline, None, false, || {
                SourceStamp::Text(text_hash(text))
            }) {
                Some(loaded) => Attempt::Reused(loaded),
                None => Attempt::from(load_pem_text(text)),
            };
            (Some(SourceKind::Inline), None, Some(attempt))
        }
        CertificateSource::File(path) => (
            Some(SourceKind::File),
            Some(path.clone()),
            Some(file_attempt(SourceKind::File, path)),
        ),
        // Stored in state_dir: ACME results, and imports through the admin
        // API (which may be for domains without ACME).
        CertificateSource::None => {
            let path = state.stored_certificate(&domain.name);
            match file_attempt(SourceKind::Stored, &path) {
                Attempt::Failed(e) if e.not_found && acme_enabled => {
                    (Some(SourceKind::Stored), Some(path), None)
                }
                Attempt::Failed(e) if e.not_found => (None, None, None),
                other => (Some(SourceKind::Stored), Some(path), Some(other)),
            }
        }
    };
    let mut report = SourceReport {
        acme_enabled,
        ..SourceReport::new(place.clone(), kind, file.clone())
    };
    if let (Some(kind), Some(attempt)) = (kind, attempt) {
        report.loaded = settle(&mut report.problems, &place, previous, kind, file, attempt);
    } else if acme_enabled {
        report.problems.push(Problem::warning(
            "ACME is enabled but no certificate has been issued yet; \
             names under this domain use its parent's certificate meanwhile",
        ));
        // Not for names ordered on demand: the operator chose production
        // for them all once, not for each tenant's name.
        if config.acme.directory == DEFAULT_ACME_DIRECTORY && !domain.on_demand {
            report
                .problems
                .push(Problem::warning(production_first_warning(&domain.name)));
        }
    }
    if let Some(loaded) = &report.loaded {
        report.expiry = Some(check_validity(
            &mut report.problems,
            &loaded.facts,
            now,
            config.acme.warn_days,
        ));
        check_key(&mut report.problems, loaded);
        if !loaded.facts.covers(&domain.name) {
            report.problems.push(Problem::warning(format!(
                "the certificate does not cover `{}` (its names: {}); it is served anyway, \
                 as the resolution rules say",
                domain.name,
                names_or_none(&loaded.facts)
            )));
        }
        if acme_enabled && !loaded.acme_issued {
            report.problems.push(Problem::warning(
                "ACME is enabled, but this certificate is managed by hand (no `acme_issued` \
                 marker), so ACME leaves it alone; remove it to let ACME take over",
            ));
        }
    }
    report
}

/// Whether `changes` may touch the certificate source of `domain`.
fn domain_touched(
    state: &StateLayout,
    domain: &crate::config::DomainConfig,
    changes: Changes<'_>,
) -> bool {
    match &domain.certificate {
        CertificateSource::Inline(_) => false,
        CertificateSource::File(path) => changes.may_touch(path),
        CertificateSource::None => changes.may_touch(&state.stored_certificate(&domain.name)),
    }
}

/// The warning for a domain never issued whose first order goes to Let's
/// Encrypt production: a set-up mistake there costs rate limits.
fn production_first_warning(domain: &str) -> String {
    format!(
        "{domain} has never been issued and acme.directory is Let's Encrypt production, which \
         has strict rate limits (5 failed validations per account per hostname per hour); try \
         `acme.directory: staging` first, then switch to production once `sniwalk check` shows \
         it issued"
    )
}
