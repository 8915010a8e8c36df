//! The domain store: the domains added at run time through the admin API,
//! the storage key `config/domains`, which is `state_dir/domains.json`
//! (with a remote storage, its local copy).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::error::{ConfigError, ConfigProblem};
use super::fields::normalize_domain_name;
use super::types::{CertificateSource, DomainAcme, DomainConfig};
use crate::state_layout::StateLayout;

/// The domain store: domains added at run time by the admin API, kept in
/// `state_dir/domains.json` ([`StateLayout::domain_store`]) and merged into
/// the configuration's domains on every load.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct DomainStore {
    /// Added domains by name.
    #[serde(default)]
    pub domains: BTreeMap<String, StoredDomain>,
}

/// One domain added through the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct StoredDomain {
    /// Whether ACME manages its certificate.
    #[serde(default)]
    pub acme: bool,
    /// Added by on-demand certificates (README, "On-demand certificates"):
    /// taken out again when its first order fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_demand: bool,
}

impl DomainStore {
    /// Reads the store (missing file: empty).
    pub fn read(state: &StateLayout) -> Result<Self, ConfigError> {
        let path = state.domain_store();
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&bytes, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read { file: path, source }),
        }
    }

    /// The store in `bytes` (JSON), each name checked; errors name
    /// `origin` (the file, or the storage key).
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<Self, ConfigError> {
        let store: DomainStore =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::Invalid {
                file: origin.to_path_buf(),
                problem: Box::new(ConfigProblem::StoreJson(e)),
            })?;
        for name in store.domains.keys() {
            normalize_domain_name(name).map_err(|error| ConfigError::Invalid {
                file: origin.to_path_buf(),
                problem: Box::new(ConfigProblem::StoreDomain {
                    name: name.clone(),
                    error,
                }),
            })?;
        }
        Ok(store)
    }

    /// The store as written (pretty JSON).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Writes the store atomically, mode 0600 like every state file
    /// (tests; the admin API writes it through the storage,
    /// `config/domains`, with a compare-and-swap).
    #[cfg(test)]
    pub fn write(&self, state: &StateLayout) -> Result<(), crate::fsio::FsError> {
        crate::fsio::create_private_dir(state.root())?;
        crate::fsio::write_atomic(&state.domain_store(), &self.to_json(), true)
    }

    /// Adds the store's domains that the file does not configure. A stored
    /// name that a configured domain lists in its `names` is left out (the
    /// file's domain answers it): one name, one domain.
    pub(super) fn merge_into(&self, domains: &mut Vec<DomainConfig>) {
        for (name, stored) in &self.domains {
            if domains.iter().any(|d| &d.name == name) {
                continue;
            }
            if let Some(owner) = domains.iter().find(|d| d.names.contains(name)) {
                tracing::warn!(
                    domain = %name,
                    listed_by = %owner.name,
                    "domain store: {name} is listed in the names of domains.{}, which answers it; \
                     the stored entry is ignored (remove it with DELETE /domains/{name})",
                    owner.name
                );
                continue;
            }
            domains.push(DomainConfig {
                name: name.clone(),
                certificate: CertificateSource::None,
                acme: stored.acme.then_some(DomainAcme {
                    enabled: true,
                    account_email: None,
                    challenge: None,
                }),
                names: Vec::new(),
                on_demand: stored.on_demand,
            });
        }
    }
}
