//! The whole of `proxy.yaml`, from its raw form to [`Config`], with the
//! checks across fields.

use std::path::Path;
use std::time::Duration;

use super::acme_settings::{AcmeSettingsError, eab_from_raw, staging_from_raw};
use super::domain_store::DomainStore;
use super::drain_store::DrainStore;
use super::error::{ConfigError, ConfigProblem};
use super::fields::PathList;
use super::listener::listener_from_raw;
use super::logs::{default_access_log, listener_access_log, log_from_raw};
use super::names::{check_names, effective_challenge};
use super::paths::{PathError, PathResolver};
use super::positions::{locate, locate_entry};
use super::raw::{RawAcme, RawConfig};
use super::rfc2136::rfc2136_from_raw;
use super::storage::storage_from_raw;
use super::types::{
    AcmeConfig, AdminConfig, BackendTls, CertificateSource, ChallengeKind, Config,
    DEFAULT_RESCAN_INTERVAL, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_STATE_DIR, DEFAULT_TICKET_ROTATION,
    DomainConfig, ListenerConfig, MAX_TICKET_ROTATION, MIN_LOCK_LEASE, MIN_TICKET_ROTATION,
};
use super::yaml_hints::explain;

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        // Absolute, so paths compare equal to what the file watcher reports.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let path = absolute.as_path();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        DomainStore::read(&config.state_layout())?.merge_into(&mut config.domains);
        config.drains = DrainStore::read(&config.state_layout())?;
        Ok(config)
    }

    /// Validates configuration text; `path` names the file in errors and
    /// anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |problem: ConfigProblem| ConfigError::Invalid {
            file: path.to_path_buf(),
            problem: Box::new(problem),
        };
        let bad_path = |error: PathError| invalid(error.into());
        let raw: RawConfig = serde_yaml::from_str(text)
            .map_err(|e| invalid(ConfigProblem::Yaml(explain(&e, text))))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let paths = PathResolver {
            base: &base,
            aliases: &raw.paths.0,
            text,
        };

        let master = raw.master_domain.0;
        if !raw.domains.0.iter().any(|(name, _)| name.0 == master) {
            return Err(invalid(ConfigProblem::MasterNotAmongDomains {
                master,
                at: locate(text, "master_domain:"),
            }));
        }

        let mut domains = Vec::with_capacity(raw.domains.0.len());
        for (name, raw_domain) in raw.domains.0 {
            let raw_domain = raw_domain.unwrap_or_default();
            let field = format!("domains.{}", name.0);
            let certificate = match (raw_domain.certificate_pem, raw_domain.certificate_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(ConfigProblem::TwoCertificateSources {
                        at: locate_entry(text, &name.0, "", 0),
                        field,
                    }));
                }
                (Some(pem), None) => CertificateSource::Inline(pem),
                (None, Some(file)) => CertificateSource::File(
                    paths
                        .resolve(&file, &format!("{field}.certificate_file"))
                        .map_err(bad_path)?,
                ),
                (None, None) => CertificateSource::None,
            };
            domains.push(DomainConfig {
                name: name.0,
                certificate,
                acme: raw_domain.acme,
                names: raw_domain
                    .names
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| n.0)
                    .collect(),
                on_demand: false,
            });
        }

        let log = log_from_raw(raw.log).map_err(|e| invalid(e.into()))?;
        let default_access =
            default_access_log(raw.access_log, &log, &paths).map_err(|e| invalid(e.into()))?;
        let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(raw.listeners.len());
        let mut raw_binds: Vec<String> = Vec::with_capacity(raw.listeners.len());
        for mut raw_listener in raw.listeners {
            let field = format!("listeners.{}", raw_listener.name);
            if raw_listener.name.is_empty() {
                return Err(invalid(ConfigProblem::ListenerWithoutName));
            }
            if listeners.iter().any(|l| l.name == raw_listener.name) {
                return Err(invalid(ConfigProblem::ListenerNameTwice {
                    at: locate_entry(text, "name", &raw_listener.name, 1),
                    field,
                    name: raw_listener.name,
                }));
            }
            let bind = raw_listener.bind.0;
            if let Some(other) = listeners.iter().find(|l| l.bind == bind) {
                let raw_bind = &raw_listener.bind.1;
                let earlier = raw_binds.iter().filter(|b| *b == raw_bind).count();
                return Err(invalid(ConfigProblem::BindTaken {
                    field,
                    bind,
                    other: other.name.clone(),
                    at: locate_entry(text, "bind", raw_bind, earlier),
                }));
            }
            raw_binds.push(raw_listener.bind.1.clone());
            let access_log = listener_access_log(
                raw_listener.access_log.take(),
                default_access.as_ref(),
                &log,
                raw_listener.kind,
                &field,
                &paths,
            )
            .map_err(|e| invalid(e.into()))?;
            listeners.push(
                listener_from_raw(raw_listener, &field, &paths, access_log)
                    .map_err(|e| invalid(e.into()))?,
            );
        }
        check_backend_tls(&listeners).map_err(invalid)?;

        let state_dir = paths
            .resolve(
                raw.state_dir.as_deref().unwrap_or(DEFAULT_STATE_DIR),
                "state_dir",
            )
            .map_err(bad_path)?;
        let default_certificate = match raw.default_certificate {
            Some(file) => Some(
                paths
                    .resolve(&file, "default_certificate")
                    .map_err(bad_path)?,
            ),
            None => None,
        };
        let acme =
            acme_from_raw(raw.acme.unwrap_or_default(), &paths).map_err(|e| invalid(e.into()))?;
        if acme.lock_lease < MIN_LOCK_LEASE {
            return Err(invalid(ConfigProblem::LockLease {
                at: locate(text, "lock_lease:"),
            }));
        }
        check_names(&domains, &acme, text).map_err(|e| invalid(e.into()))?;
        check_acme_listeners(&domains, &listeners, &acme, text).map_err(invalid)?;
        check_on_demand(&listeners, &acme, text).map_err(invalid)?;
        let rescan_interval = raw.rescan_interval.map_or(DEFAULT_RESCAN_INTERVAL, |d| d.0);
        if rescan_interval < Duration::from_secs(1) {
            return Err(invalid(ConfigProblem::RescanInterval {
                at: locate(text, "rescan_interval:"),
            }));
        }
        if raw.worker_threads == Some(0) {
            return Err(invalid(ConfigProblem::WorkerThreads {
                at: locate(text, "worker_threads:"),
            }));
        }
        let raw_tls = raw.tls.unwrap_or_default();
        let ticket_keys_file = match raw_tls.ticket_keys_file {
            Some(file) => Some(
                paths
                    .resolve(&file, "tls.ticket_keys_file")
                    .map_err(bad_path)?,
            ),
            None => None,
        };
        let ticket_rotation = raw_tls
            .ticket_rotation
            .map_or(DEFAULT_TICKET_ROTATION, |d| d.0);
        if !(MIN_TICKET_ROTATION..=MAX_TICKET_ROTATION).contains(&ticket_rotation) {
            return Err(invalid(ConfigProblem::TicketRotation {
                at: locate(text, "ticket_rotation:"),
            }));
        }
        let storage = storage_from_raw(raw.storage, &paths).map_err(|e| invalid(e.into()))?;
        let admin = match raw.admin {
            None => None,
            Some(raw_admin) => {
                let token_file = match raw_admin.token_file {
                    Some(file) => Some(paths.resolve(&file, "admin.token_file").map_err(bad_path)?),
                    None => None,
                };
                if token_file.is_none() && !raw_admin.bind.0.ip().is_loopback() {
                    return Err(invalid(ConfigProblem::AdminWithoutToken {
                        bind: raw_admin.bind.1,
                        at: locate(text, "admin:"),
                    }));
                }
                Some(AdminConfig {
                    bind: raw_admin.bind.0,
                    token_file,
                })
            }
        };
        Ok(Config {
            file: path.to_path_buf(),
            master_domain: master,
            state_dir,
            default_certificate,
            domains,
            listeners,
            acme,
            worker_threads: raw.worker_threads,
            shutdown_timeout: raw
                .shutdown_timeout
                .map_or(DEFAULT_SHUTDOWN_TIMEOUT, |d| d.0),
            rescan_interval,
            admin,
            ticket_keys_file,
            ticket_rotation,
            storage,
            drains: DrainStore::default(),
            log,
        })
    }
}

/// A backend is one place in reports and metrics: the same backend
/// written twice must say the same about TLS.
fn check_backend_tls(listeners: &[ListenerConfig]) -> Result<(), ConfigProblem> {
    let mut seen: Vec<&BackendTls> = Vec::new();
    for tls in listeners.iter().flat_map(ListenerConfig::backend_tls) {
        match seen.iter().find(|s| s.backend == tls.backend) {
            Some(earlier) if *earlier != tls => {
                return Err(ConfigProblem::BackendTlsDiffers {
                    backend: tls.backend.clone(),
                });
            }
            Some(_) => {}
            None => seen.push(tls),
        }
    }
    Ok(())
}

/// Validates the global `acme:` block; the values were checked while being
/// read, what is left is defaults and paths.
fn acme_from_raw(raw: RawAcme, paths: &PathResolver<'_>) -> Result<AcmeConfig, AcmeSettingsError> {
    let defaults = AcmeConfig::default();
    let ca_roots = match raw.ca_roots {
        None => Vec::new(),
        Some(PathList::One(path)) => vec![paths.resolve(&path, "acme.ca_roots")?],
        Some(PathList::Many(list)) => list
            .iter()
            .enumerate()
            .map(|(i, path)| paths.resolve(path, &format!("acme.ca_roots[{i}]")))
            .collect::<Result<_, _>>()?,
    };
    let directory = raw.directory.map_or(defaults.directory, |d| d.0);
    let eab = match raw.eab {
        Some(eab) => Some(eab_from_raw(eab, paths)?),
        None => None,
    };
    let staging_check_directory = staging_from_raw(
        raw.fallback_to_staging.unwrap_or(false),
        raw.staging_directory,
        &directory,
        paths.text,
    )?;
    Ok(AcmeConfig {
        directory,
        ca_roots,
        account_email: raw.account_email,
        challenge: raw.challenge.unwrap_or(defaults.challenge),
        renew_at: raw.renew_at.map_or(defaults.renew_at, |r| r.0),
        warn_days: raw.warn_days.map_or(defaults.warn_days, |w| w.0),
        expected_addresses: raw
            .expected_addresses
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.0)
            .collect(),
        lock_lease: raw.lock_lease.map_or(defaults.lock_lease, |d| d.0),
        rfc2136: raw
            .rfc2136
            .map(|r| rfc2136_from_raw(r, paths))
            .transpose()?,
        eab,
        staging_check_directory,
        on_demand: raw
            .on_demand
            .map(|o| super::on_demand::on_demand_from_raw(o, paths.text))
            .transpose()?,
    })
}

/// On-demand names are validated with the global challenge: dns-01 cannot
/// reach customers' zones, and the other two need their listener.
fn check_on_demand(
    listeners: &[ListenerConfig],
    acme: &AcmeConfig,
    text: &str,
) -> Result<(), ConfigProblem> {
    if acme.on_demand.is_none() {
        return Ok(());
    }
    let answerable = acme
        .challenge
        .listener_kind()
        .is_some_and(|needed| listeners.iter().any(|l| l.kind == needed));
    if answerable {
        return Ok(());
    }
    Err(ConfigProblem::OnDemandChallenge {
        challenge: acme.challenge,
        at: locate(text, "on_demand:"),
    })
}

/// The CA validates a domain by connecting to a listener of its challenge's
/// kind (dns-01 needs none). Without one every order would fail at
/// validation, long after the start and far from the cause, so it is
/// refused here.
fn check_acme_listeners(
    domains: &[DomainConfig],
    listeners: &[ListenerConfig],
    acme: &AcmeConfig,
    text: &str,
) -> Result<(), ConfigProblem> {
    for challenge in [ChallengeKind::Http01, ChallengeKind::TlsAlpn01] {
        let Some(needed) = challenge.listener_kind() else {
            continue;
        };
        if listeners.iter().any(|l| l.kind == needed) {
            continue;
        }
        let enabled: Vec<String> = domains
            .iter()
            .filter(|d| d.acme.as_ref().is_some_and(|a| a.enabled))
            .filter(|d| effective_challenge(d, acme) == challenge)
            .map(|d| d.name.clone())
            .collect();
        if let Some(first) = enabled.first() {
            return Err(ConfigProblem::NoChallengeListener {
                at: locate_entry(text, first, "", 0),
                domains: enabled,
                challenge,
            });
        }
    }
    Ok(())
}
