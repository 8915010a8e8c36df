//! The whole of `proxy.yaml`, from its raw form to [`Config`], with the
//! checks across fields.

use std::path::Path;
use std::time::Duration;

use super::domain_store::DomainStore;
use super::fields::PathList;
use super::listener::listener_from_raw;
use super::paths::PathResolver;
use super::positions::{locate, locate_entry};
use super::raw::{RawAcme, RawConfig};
use super::types::{
    AcmeConfig, AdminConfig, BackendTls, CertificateSource, ChallengeKind, Config, ConfigError,
    DEFAULT_RESCAN_INTERVAL, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_STATE_DIR, DomainConfig,
    ListenerConfig, MIN_LOCK_LEASE,
};

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
        Ok(config)
    }

    /// Validates configuration text; `path` names the file in errors and
    /// anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: path.to_path_buf(),
            message,
        };
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let paths = PathResolver {
            file: path,
            base: &base,
            aliases: &raw.paths.0,
            text,
        };

        let master = raw.master_domain.0;
        if !raw.domains.0.iter().any(|(name, _)| name.0 == master) {
            return Err(invalid(format!(
                "master_domain: `{master}` is not among `domains`; add `{master}: {{}}` under `domains`{}",
                locate(text, "master_domain:")
            )));
        }

        let mut domains = Vec::with_capacity(raw.domains.0.len());
        for (name, raw_domain) in raw.domains.0 {
            let raw_domain = raw_domain.unwrap_or_default();
            let field = format!("domains.{}", name.0);
            let certificate = match (raw_domain.certificate_pem, raw_domain.certificate_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "{field}: set either `certificate_pem` or `certificate_file`, not both{}",
                        locate_entry(text, &name.0, "", 0)
                    )));
                }
                (Some(pem), None) => CertificateSource::Inline(pem),
                (None, Some(file)) => CertificateSource::File(
                    paths.resolve(&file, &format!("{field}.certificate_file"))?,
                ),
                (None, None) => CertificateSource::None,
            };
            domains.push(DomainConfig {
                name: name.0,
                certificate,
                acme: raw_domain.acme,
            });
        }

        let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(raw.listeners.len());
        let mut raw_binds: Vec<String> = Vec::with_capacity(raw.listeners.len());
        for raw_listener in raw.listeners {
            let field = format!("listeners.{}", raw_listener.name);
            if raw_listener.name.is_empty() {
                return Err(invalid(
                    "listeners: every listener needs a non-empty `name`".into(),
                ));
            }
            if listeners.iter().any(|l| l.name == raw_listener.name) {
                return Err(invalid(format!(
                    "{field}: the listener name `{}` is used twice; names must be unique{}",
                    raw_listener.name,
                    locate_entry(text, "name", &raw_listener.name, 1)
                )));
            }
            let bind = raw_listener.bind.0;
            if let Some(other) = listeners.iter().find(|l| l.bind == bind) {
                let raw_bind = &raw_listener.bind.1;
                let earlier = raw_binds.iter().filter(|b| *b == raw_bind).count();
                return Err(invalid(format!(
                    "{field}.bind: `{bind}` is already bound by listener `{}`{}",
                    other.name,
                    locate_entry(text, "bind", raw_bind, earlier)
                )));
            }
            raw_binds.push(raw_listener.bind.1.clone());
            listeners.push(listener_from_raw(raw_listener, &field, &paths).map_err(invalid)?);
        }
        check_backend_tls(&listeners).map_err(invalid)?;

        let state_dir = paths.resolve(
            raw.state_dir.as_deref().unwrap_or(DEFAULT_STATE_DIR),
            "state_dir",
        )?;
        let default_certificate = match raw.default_certificate {
            Some(file) => Some(paths.resolve(&file, "default_certificate")?),
            None => None,
        };
        let acme = acme_from_raw(raw.acme.unwrap_or_default(), &paths)?;
        if acme.lock_lease < MIN_LOCK_LEASE {
            return Err(invalid(format!(
                "acme.lock_lease: at least {}s (the order lock's lease is renewed every third of it){}",
                MIN_LOCK_LEASE.as_secs(),
                locate(text, "lock_lease:")
            )));
        }
        check_acme_listeners(&domains, &listeners, acme.challenge, text).map_err(invalid)?;
        let rescan_interval = raw.rescan_interval.map_or(DEFAULT_RESCAN_INTERVAL, |d| d.0);
        if rescan_interval < Duration::from_secs(1) {
            return Err(invalid(format!(
                "rescan_interval: at least 1s{}",
                locate(text, "rescan_interval:")
            )));
        }
        if raw.worker_threads == Some(0) {
            return Err(invalid(format!(
                "worker_threads: must be at least 1 (or remove it for one per CPU){}",
                locate(text, "worker_threads:")
            )));
        }
        let ticket_keys_file = match raw.tls.and_then(|t| t.ticket_keys_file) {
            Some(file) => Some(paths.resolve(&file, "tls.ticket_keys_file")?),
            None => None,
        };
        let admin = match raw.admin {
            None => None,
            Some(raw_admin) => {
                let token_file = match raw_admin.token_file {
                    Some(file) => Some(paths.resolve(&file, "admin.token_file")?),
                    None => None,
                };
                if token_file.is_none() && !raw_admin.bind.0.ip().is_loopback() {
                    return Err(invalid(format!(
                        "admin.bind: `{}` is reachable from other machines, so the admin API needs \
                         a token: set `admin.token_file` (a file holding a long random string), or \
                         bind to 127.0.0.1{}",
                        raw_admin.bind.1,
                        locate(text, "admin:")
                    )));
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
        })
    }
}

/// A backend is one place in reports and metrics: the same backend
/// written twice must say the same about TLS.
fn check_backend_tls(listeners: &[ListenerConfig]) -> Result<(), String> {
    let mut seen: Vec<&BackendTls> = Vec::new();
    for tls in listeners.iter().flat_map(ListenerConfig::backend_tls) {
        match seen.iter().find(|s| s.backend == tls.backend) {
            Some(earlier) if *earlier != tls => {
                return Err(format!(
                    "backend `{}` appears twice with different `backend_tls` settings; give every \
                     use of one backend the same `backend_tls`",
                    tls.backend
                ));
            }
            Some(_) => {}
            None => seen.push(tls),
        }
    }
    Ok(())
}

/// Validates the global `acme:` block; the values were checked while being
/// read, what is left is defaults and paths.
fn acme_from_raw(raw: RawAcme, paths: &PathResolver<'_>) -> Result<AcmeConfig, ConfigError> {
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
    Ok(AcmeConfig {
        directory: raw.directory.map_or(defaults.directory, |d| d.0),
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
    })
}

/// How many domain names a message lists before "and N more".
const NAMES_SHOWN: usize = 3;

/// The CA validates a domain by connecting to a listener of the challenge's
/// kind. Without one every order would fail at validation, long after the
/// start and far from the cause, so it is refused here.
fn check_acme_listeners(
    domains: &[DomainConfig],
    listeners: &[ListenerConfig],
    challenge: ChallengeKind,
    text: &str,
) -> Result<(), String> {
    let needed = challenge.listener_kind();
    if listeners.iter().any(|l| l.kind == needed) {
        return Ok(());
    }
    let enabled: Vec<&str> = domains
        .iter()
        .filter(|d| d.acme.as_ref().is_some_and(|a| a.enabled))
        .map(|d| d.name.as_str())
        .collect();
    let Some(first) = enabled.first() else {
        return Ok(());
    };
    let mut names = enabled
        .iter()
        .take(NAMES_SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if enabled.len() > NAMES_SHOWN {
        names.push_str(&format!(" and {} more", enabled.len() - NAMES_SHOWN));
    }
    let fix = match challenge {
        ChallengeKind::Http01 => {
            "add a listener with `kind: http` on port 80, or set `acme.challenge: tls-alpn-01`"
        }
        ChallengeKind::TlsAlpn01 => {
            "add a listener with `kind: https` on port 443, or set `acme.challenge: http-01`"
        }
    };
    Err(format!(
        "domains.{first}.acme: ACME is enabled for {}, and the `{}` challenge is answered on a \
         listener with `kind: {}`, but there is none; {fix}{}",
        names,
        challenge.as_str(),
        needed.as_str(),
        locate_entry(text, first, "", 0)
    ))
}
