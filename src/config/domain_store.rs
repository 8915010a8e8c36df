//! The domain store: `state_dir/domains.json`, the domains added at run
//! time through the admin API.

use std::collections::BTreeMap;

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
}

impl DomainStore {
    /// Reads the store (missing file: empty).
    pub fn read(state: &StateLayout) -> Result<Self, ConfigError> {
        let path = state.domain_store();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(ConfigError::Read { file: path, source }),
        };
        let store: DomainStore = serde_json::from_str(&text).map_err(|e| ConfigError::Invalid {
            file: path.clone(),
            problem: Box::new(ConfigProblem::StoreJson(e)),
        })?;
        for name in store.domains.keys() {
            normalize_domain_name(name).map_err(|error| ConfigError::Invalid {
                file: path.clone(),
                problem: Box::new(ConfigProblem::StoreDomain {
                    name: name.clone(),
                    error,
                }),
            })?;
        }
        Ok(store)
    }

    /// Writes the store atomically, mode 0600 like every state file. A
    /// read-modify-write needs one writer at a time (the admin API
    /// serializes its own).
    pub fn write(&self, state: &StateLayout) -> Result<(), crate::fsio::FsError> {
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        crate::fsio::create_private_dir(state.root())?;
        crate::fsio::write_atomic(&state.domain_store(), &json, true)
    }

    /// Adds the store's domains that the file does not configure.
    pub(super) fn merge_into(&self, domains: &mut Vec<DomainConfig>) {
        for (name, stored) in &self.domains {
            if domains.iter().any(|d| &d.name == name) {
                continue;
            }
            domains.push(DomainConfig {
                name: name.clone(),
                certificate: CertificateSource::None,
                acme: stored.acme.then_some(DomainAcme {
                    enabled: true,
                    account_email: None,
                }),
            });
        }
    }
}
