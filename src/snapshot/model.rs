//! The immutable certificate state every handshake reads ([`Snapshot`]) and
//! the lookup on it ([`Snapshot::choose`]). Building one lives in
//! `build.rs`; this file only holds it and reads it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;

use super::backend_tls::{BackendTlsClient, BackendTlsError};
use super::certificate::{LoadedCertificate, SourceStamp};
use super::report::{Place, Severity, SourceReport};
use crate::balance::ListenerBackends;
use crate::config::{ListenerConfig, Route};
use crate::tree::{DomainId, DomainSpec, DomainTree, Step, TreeError};

/// A listener's client CA, ready to check client certificates.
#[derive(Debug)]
pub struct ClientCa {
    /// Checks a client certificate's chain against the CA file.
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// The CA file.
    pub file: PathBuf,
    /// What the file looked like when it was read.
    pub stamp: SourceStamp,
}

/// One TLS backend as of a snapshot.
#[derive(Debug, Clone)]
pub struct BackendTlsEntry {
    /// The backend as configured (`https://HOST:PORT` or `HOST:PORT`).
    pub backend: String,
    /// Ready to connect, or why not (requests to it then fail with 502).
    pub client: Result<Arc<BackendTlsClient>, BackendTlsError>,
}

/// The certificate chosen for a handshake and how.
#[derive(Debug, Clone, Copy)]
pub struct Choice<'a> {
    /// The certificate.
    pub certificate: &'a Arc<LoadedCertificate>,
    /// How it was reached.
    pub step: Step,
    /// The domain that owns it, for the domain-tree steps.
    pub domain: Option<&'a str>,
}

/// Why a snapshot could not be built at all (only a broken configuration
/// gets here; certificate problems are recorded instead).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The domain tree is inconsistent.
    #[error("domain tree: {0}")]
    Tree(#[from] TreeError),
    /// No default certificate could be generated.
    #[error("cannot generate the default certificate: {0}")]
    Generate(rcgen::Error),
    /// The generated default certificate does not read back.
    #[error("cannot generate the default certificate: {0}")]
    Generated(crate::pem::PemError),
    /// The generated default certificate could not be written to
    /// `state_dir`.
    #[error("cannot store the generated default certificate: {0}")]
    StoreDefault(crate::fsio::FsError),
}

/// The immutable certificate state.
#[derive(Debug)]
pub struct Snapshot {
    pub(super) tree: Arc<DomainTree>,
    pub(super) domain_certificates: Vec<Option<Arc<LoadedCertificate>>>,
    pub(super) certdirs: Vec<Option<Arc<LoadedCertificate>>>,
    pub(super) listener_names: Vec<String>,
    pub(super) listeners: Vec<Arc<ListenerConfig>>,
    pub(super) backends: Vec<Arc<ListenerBackends>>,
    pub(super) client_cas: Vec<Option<Arc<ClientCa>>>,
    pub(super) backend_tls: Vec<BackendTlsEntry>,
    pub(super) default: Arc<LoadedCertificate>,
    pub(super) reports: Vec<Arc<SourceReport>>,
    pub(super) report_index: Arc<HashMap<Place, usize>>,
    pub(super) master_domain: String,
}

impl Snapshot {
    /// Chooses the certificate for a handshake on listener number
    /// `listener` (its position in the configuration) with SNI `name`.
    ///
    /// No I/O, no lock, no allocation: one hash probe per label at most.
    pub fn choose(&self, listener: usize, name: Option<&str>) -> Choice<'_> {
        if let Some(name) = name {
            let walk = self.tree.walk(name);
            if let Some(owner) = walk.owner
                && let Some(certificate) = &self.domain_certificates[owner as usize]
            {
                return Choice {
                    certificate,
                    step: walk.step,
                    domain: Some(self.tree.name(owner)),
                };
            }
        }
        match self.certdirs.get(listener).and_then(Option::as_ref) {
            Some(certificate) => Choice {
                certificate,
                step: Step::Certdir,
                domain: None,
            },
            None => Choice {
                certificate: &self.default,
                step: Step::Default,
                domain: None,
            },
        }
    }

    /// The position of a listener by name.
    pub fn listener_index(&self, name: &str) -> Option<usize> {
        self.listener_names.iter().position(|n| n == name)
    }

    /// The routes of listener number `listener` (empty for unknown ones).
    pub fn routes(&self, listener: usize) -> &[Route] {
        self.listeners
            .get(listener)
            .map_or(&[], |l| l.routes.as_slice())
    }

    /// The settings of listener number `listener` as of this snapshot
    /// (limits, routes, backends: what a configuration reload may change).
    pub fn listener(&self, listener: usize) -> Option<&Arc<ListenerConfig>> {
        self.listeners.get(listener)
    }

    /// The backend groups of listener number `listener`, with their health
    /// and open sessions (README: Redundant backends).
    pub fn backends(&self, listener: usize) -> Option<&Arc<ListenerBackends>> {
        self.backends.get(listener)
    }

    /// Every listener's backend groups, in configuration order.
    pub fn all_backends(&self) -> &[Arc<ListenerBackends>] {
        &self.backends
    }

    /// Listener names in configuration order.
    pub fn listener_names(&self) -> &[String] {
        &self.listener_names
    }

    /// The domain tree.
    pub fn tree(&self) -> &DomainTree {
        &self.tree
    }

    /// A domain's own certificate, if it loaded.
    pub fn domain_certificate(&self, id: DomainId) -> Option<&Arc<LoadedCertificate>> {
        self.domain_certificates
            .get(id as usize)
            .and_then(Option::as_ref)
    }

    /// A listener's certdir certificate, if it loaded.
    pub fn certdir_certificate(&self, listener: usize) -> Option<&Arc<LoadedCertificate>> {
        self.certdirs.get(listener).and_then(Option::as_ref)
    }

    /// The default certificate.
    pub fn default_certificate(&self) -> &Arc<LoadedCertificate> {
        &self.default
    }

    /// Every certificate source with its state: domains, certdirs, default.
    pub fn reports(&self) -> &[Arc<SourceReport>] {
        &self.reports
    }

    /// The index of places to reports, shared between snapshots of the same
    /// configuration (comparing it tells whether the set of places changed).
    pub fn reports_index(&self) -> &Arc<HashMap<Place, usize>> {
        &self.report_index
    }

    /// The report of one place, if it is configured.
    pub fn report(&self, place: &Place) -> Option<&Arc<SourceReport>> {
        self.report_index.get(place).map(|&i| &self.reports[i])
    }

    /// The master domain.
    pub fn master_domain(&self) -> &str {
        &self.master_domain
    }

    /// Whether any source has an error.
    pub fn has_errors(&self) -> bool {
        self.reports
            .iter()
            .any(|r| r.worst() == Some(Severity::Error))
    }

    /// Builds a snapshot from certificates already in memory, without
    /// reading files: for benchmarks and tests of the lookup itself.
    /// `domains` pairs each name with its own certificate, if any.
    pub fn from_parts(
        master: &str,
        domains: Vec<(String, Option<Arc<LoadedCertificate>>)>,
        certdirs: Vec<(String, Option<Arc<LoadedCertificate>>)>,
        default: Arc<LoadedCertificate>,
    ) -> Result<Self, SnapshotError> {
        let specs: Vec<DomainSpec<'_>> = domains
            .iter()
            .map(|(name, cert)| DomainSpec {
                name,
                has_certificate: cert.is_some(),
                names: &[],
            })
            .collect();
        let tree = DomainTree::build(&specs, master)?;
        let domain_certificates = domains.into_iter().map(|(_, c)| c).collect();
        let (listener_names, certdirs): (Vec<String>, Vec<_>) = certdirs.into_iter().unzip();
        Ok(Snapshot {
            tree: Arc::new(tree),
            domain_certificates,
            certdirs,
            listener_names,
            listeners: Vec::new(),
            backends: Vec::new(),
            client_cas: Vec::new(),
            backend_tls: Vec::new(),
            default,
            reports: Vec::new(),
            report_index: Arc::default(),
            master_domain: master.to_string(),
        })
    }
}
