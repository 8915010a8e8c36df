//! The snapshot's trust material besides served certificates: each TLS
//! listener's client CA (`client_auth.ca_file`) and each TLS backend's
//! roots and client certificate (`backend_tls:`). They are loaded, reused
//! while unchanged and kept when broken (last good) like certificates, and
//! reported under their own places.

use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;

use super::backend_tls::{BackendTlsClient, BackendTlsError};
use super::certificate::{LoadedCertificate, SourceKind, SourceStamp};
use super::last_good::Changes;
use super::loaders::{load_pem_file, load_source};
use super::model::{BackendTlsEntry, ClientCa, Snapshot};
use super::report::{Place, Problem, SourceReport};
use super::roots;
use crate::config::{BackendTls, Config};

/// Loads every TLS listener's client CA; one report per listener with
/// `client_auth`, appended to `reports`.
pub(super) fn client_cas(
    config: &Config,
    previous: Option<&Snapshot>,
    changes: Changes<'_>,
    reports: &mut Vec<Arc<SourceReport>>,
) -> Vec<Option<Arc<ClientCa>>> {
    let mut out = Vec::with_capacity(config.listeners.len());
    for (index, listener) in config.listeners.iter().enumerate() {
        let Some(auth) = &listener.client_auth else {
            out.push(None);
            continue;
        };
        let file = &auth.ca_file;
        let kept = previous
            .and_then(|p| p.client_cas.get(index).cloned().flatten())
            .filter(|ca| ca.file == *file && ca.stamp != SourceStamp::Unknown);
        let mut report = SourceReport::new(
            Place::ClientCa(listener.name.clone()),
            Some(SourceKind::CaFile),
            Some(file.clone()),
        );
        let ca = match kept {
            Some(ca) if !changes.may_touch(file) || SourceStamp::of_file(file) == ca.stamp => {
                Some(ca)
            }
            kept => {
                let stamp = SourceStamp::of_file(file);
                match roots::chain_verifier(file) {
                    Ok(verifier) => Some(Arc::new(ClientCa {
                        verifier,
                        file: file.clone(),
                        stamp,
                    })),
                    Err(error) => {
                        let consequence = if kept.is_some() {
                            "the previous CA keeps checking client certificates until this is fixed"
                        } else {
                            "client certificates are refused on this listener until this is fixed"
                        };
                        report
                            .problems
                            .push(Problem::error(format!("{error}; {consequence}")));
                        kept
                    }
                }
            }
        };
        reports.push(Arc::new(report));
        out.push(ca);
    }
    out
}

/// Loads every TLS backend's roots and client certificate and builds its
/// client configuration; a report for each backend that reads files.
pub(super) fn backends(
    config: &Config,
    previous: Option<&Snapshot>,
    changes: Changes<'_>,
    now: i64,
    reports: &mut Vec<Arc<SourceReport>>,
) -> Vec<BackendTlsEntry> {
    config
        .backend_tls()
        .into_iter()
        .map(|spec| {
            let (entry, report) = backend(config, spec, previous, changes, now);
            if let Some(report) = report {
                reports.push(Arc::new(report));
            }
            entry
        })
        .collect()
}

fn backend(
    config: &Config,
    spec: &BackendTls,
    previous: Option<&Snapshot>,
    changes: Changes<'_>,
    now: i64,
) -> (BackendTlsEntry, Option<SourceReport>) {
    let before = previous
        .and_then(|p| p.backend_tls_entry(&spec.backend))
        .and_then(|e| e.client.as_ref().ok())
        .filter(|c| c.spec == *spec);
    let mut report = SourceReport::new(Place::Backend(spec.backend.clone()), None, None);

    if let Some(path) = &spec.client_certificate {
        report.kind = Some(SourceKind::BackendClient);
        report.file = Some(path.clone());
        load_source(
            &mut report,
            previous,
            SourceKind::BackendClient,
            path,
            changes.may_touch(path),
            || SourceStamp::of_file(path),
            || load_pem_file(path),
            (now, config.acme.warn_days),
        );
    }

    let roots = match &spec.ca_file {
        None => Ok(None),
        Some(file) => {
            if report.kind.is_none() {
                report.kind = Some(SourceKind::CaFile);
                report.file = Some(file.clone());
            }
            let kept = before.and_then(|c| c.roots.clone());
            match kept {
                Some((roots, stamp))
                    if stamp != SourceStamp::Unknown
                        && (!changes.may_touch(file) || SourceStamp::of_file(file) == stamp) =>
                {
                    Ok(Some((roots, stamp)))
                }
                kept => {
                    let stamp = SourceStamp::of_file(file);
                    match roots::load_roots(file, "backend_tls.ca_file") {
                        Ok(roots) => Ok(Some((Arc::new(roots), stamp))),
                        Err(error) => match kept {
                            Some(kept) => {
                                report.problems.push(Problem::error(format!(
                                    "{error}; the previous CA keeps verifying the backend until this is fixed"
                                )));
                                Ok(Some(kept))
                            }
                            None => {
                                let error = BackendTlsError::Roots {
                                    error: Arc::new(error),
                                };
                                report.problems.push(Problem::error(error.to_string()));
                                Err(error)
                            }
                        },
                    }
                }
            }
        }
    };

    let client = roots.and_then(|roots| {
        let same = |c: &&Arc<BackendTlsClient>| {
            same_arc(
                &c.roots.as_ref().map(|r| &r.0),
                &roots.as_ref().map(|r| &r.0),
            ) && same_arc(&c.client_certificate.as_ref(), &report.loaded.as_ref())
        };
        match before.filter(same) {
            Some(client) => Ok(client.clone()),
            None => BackendTlsClient::build(spec, roots, report.loaded.clone())
                .map(Arc::new)
                .inspect_err(|error| report.problems.push(Problem::error(error.to_string()))),
        }
    });
    let wanted = spec.client_certificate.is_some() || spec.ca_file.is_some();
    let report = (wanted || !report.problems.is_empty()).then_some(report);
    (
        BackendTlsEntry {
            backend: spec.backend.clone(),
            client,
        },
        report,
    )
}

/// Whether two optional shared values are the very same (or both absent).
fn same_arc<T: ?Sized>(a: &Option<&Arc<T>>, b: &Option<&Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

impl Snapshot {
    /// The client CA check of listener number `listener`, if it has
    /// `client_auth` and its CA loaded (now or earlier: last good).
    pub fn client_verifier(&self, listener: usize) -> Option<&Arc<dyn ClientCertVerifier>> {
        self.client_cas
            .get(listener)
            .and_then(Option::as_ref)
            .map(|ca| &ca.verifier)
    }

    /// The loaded client CA of listener number `listener`.
    pub fn client_ca(&self, listener: usize) -> Option<&Arc<ClientCa>> {
        self.client_cas.get(listener).and_then(Option::as_ref)
    }

    /// Every TLS backend, in configuration order.
    pub fn backend_tls_entries(&self) -> &[BackendTlsEntry] {
        &self.backend_tls
    }

    /// The TLS state of `backend` (as written in the configuration).
    pub fn backend_tls_entry(&self, backend: &str) -> Option<&BackendTlsEntry> {
        self.backend_tls.iter().find(|e| e.backend == backend)
    }

    /// What a new connection to `backend` uses, or why it cannot connect
    /// (its CA file never loaded, or it is not a TLS backend of this
    /// configuration).
    pub fn backend_tls_client(
        &self,
        backend: &str,
    ) -> Result<Arc<BackendTlsClient>, BackendTlsError> {
        match self.backend_tls_entry(backend) {
            Some(entry) => entry.client.clone(),
            None => Err(BackendTlsError::NotConfigured {
                backend: backend.to_string(),
            }),
        }
    }

    /// The certificate presented to `backend`, if it has one loaded.
    pub fn backend_client_certificate(&self, backend: &str) -> Option<&Arc<LoadedCertificate>> {
        self.backend_tls_entry(backend)
            .and_then(|e| e.client.as_ref().ok())
            .and_then(|c| c.client_certificate.as_ref())
    }
}
