//! Why a configuration cannot be used: [`ConfigError`] names the file,
//! [`ConfigProblem`] says what is wrong, where and what to do. Above the
//! other files of `config/`, so each of them can report without using the
//! others back.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::acme_settings::AcmeSettingsError;
use super::drain_store::DrainStoreError;
use super::field_error::DomainNameError;
use super::listener::ListenerError;
use super::logs::LogsConfigError;
use super::names::NamesError;
use super::paths::PathError;
use super::storage::StorageConfigError;
use super::types::{ChallengeKind, MAX_TICKET_ROTATION, MIN_LOCK_LEASE, MIN_TICKET_ROTATION};

/// Why a configuration could not be used. `run` refuses to start on these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read the configuration: {source}")]
    Read {
        /// The configuration file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or a value is invalid; the message names the
    /// field and carries line and column.
    #[error("{file}: {problem}")]
    Invalid {
        /// The configuration file.
        file: PathBuf,
        /// What is wrong, where, and what to do (boxed: errors of every
        /// field are in it, and `Result<Config, ConfigError>` stays small).
        problem: Box<ConfigProblem>,
    },
    /// The drain store (backends drained through the admin API) does not
    /// read.
    #[error(transparent)]
    Drains(#[from] DrainStoreError),
}

/// What is wrong in a configuration file (or in `state_dir/domains.json`):
/// the message of [`ConfigError::Invalid`] after the file name. It names
/// the field and, when the value is found in the file, ends with
/// ` at line L column C` (the `at` of the variants).
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    /// The YAML is malformed, or a value was refused while it was read (the
    /// message names the field and the position, and hints at tabs and
    /// indentation: `yaml_hints.rs`).
    #[error("{0}")]
    Yaml(String),
    /// A listener is refused.
    #[error(transparent)]
    Listener(#[from] ListenerError),
    /// A path cannot be used.
    #[error(transparent)]
    Path(#[from] PathError),
    /// `acme.eab`, `acme.fallback_to_staging` or `acme.staging_directory`
    /// is refused.
    #[error(transparent)]
    AcmeSettings(#[from] AcmeSettingsError),
    /// The `storage:` section is refused.
    #[error(transparent)]
    Storage(#[from] StorageConfigError),
    /// The names or challenges of the domains do not fit together.
    #[error(transparent)]
    Names(#[from] NamesError),
    /// `log:` or an `access_log:` is refused.
    #[error(transparent)]
    Logs(#[from] LogsConfigError),
    /// `master_domain` is not configured under `domains`.
    #[error(
        "master_domain: `{master}` is not among `domains`; add `{master}: {{}}` under `domains`{at}"
    )]
    MasterNotAmongDomains {
        /// The master domain.
        master: String,
        /// Where `master_domain:` is.
        at: String,
    },
    /// A domain with both `certificate_pem` and `certificate_file`.
    #[error("{field}: set either `certificate_pem` or `certificate_file`, not both{at}")]
    TwoCertificateSources {
        /// The domain's field (`domains.NAME`).
        field: String,
        /// Where the domain is.
        at: String,
    },
    /// A listener with an empty `name`.
    #[error("listeners: every listener needs a non-empty `name`")]
    ListenerWithoutName,
    /// Two listeners with one name.
    #[error("{field}: the listener name `{name}` is used twice; names must be unique{at}")]
    ListenerNameTwice {
        /// The listener's field (`listeners.NAME`).
        field: String,
        /// The name.
        name: String,
        /// Where the second one is.
        at: String,
    },
    /// Two listeners with one bind.
    #[error("{field}.bind: `{bind}` is already bound by listener `{other}`{at}")]
    BindTaken {
        /// The second listener's field (`listeners.NAME`).
        field: String,
        /// The address.
        bind: SocketAddr,
        /// The listener that has it first.
        other: String,
        /// Where the second bind is.
        at: String,
    },
    /// One backend with two different `backend_tls` settings.
    #[error(
        "backend `{backend}` appears twice with different `backend_tls` settings; give every \
         use of one backend the same `backend_tls`"
    )]
    BackendTlsDiffers {
        /// The backend as configured.
        backend: String,
    },
    /// `acme.lock_lease` below [`MIN_LOCK_LEASE`].
    #[error(
        "acme.lock_lease: at least {}s (the order lock's lease is renewed every third of it){at}",
        MIN_LOCK_LEASE.as_secs()
    )]
    LockLease {
        /// Where `lock_lease:` is.
        at: String,
    },
    /// `acme.on_demand` with a challenge it cannot use, or no listener to
    /// answer its challenge.
    #[error(
        "acme.on_demand: names ordered on demand are validated with acme.challenge `{}`, {}{at}",
        challenge.as_str(),
        match challenge.listener_kind() {
            None => "which needs TXT records in the names' own zones (customers' zones sniwalk \
                     cannot update); use http-01 or tls-alpn-01 for on-demand names"
                .to_string(),
            Some(kind) => format!(
                "answered on a listener with `kind: {}`, but there is none; {}",
                kind.as_str(),
                missing_listener_fix(*challenge)
            ),
        }
    )]
    OnDemandChallenge {
        /// The global challenge.
        challenge: ChallengeKind,
        /// Where `on_demand:` is.
        at: String,
    },
    /// Domains with ACME enabled, and no listener for the challenge.
    #[error(
        "domains.{}.acme: ACME is enabled for {}, and the `{}` challenge is answered on a \
         listener with `kind: {}`, but there is none; {}{at}",
        domains.first().map_or("", String::as_str),
        listed(domains),
        challenge.as_str(),
        challenge.listener_kind().map_or("none", |k| k.as_str()),
        missing_listener_fix(*challenge)
    )]
    NoChallengeListener {
        /// The domains with ACME enabled, in configuration order.
        domains: Vec<String>,
        /// The challenge type.
        challenge: ChallengeKind,
        /// Where the first of the domains is.
        at: String,
    },
    /// `tls.ticket_rotation` out of bounds.
    #[error(
        "tls.ticket_rotation: between {}m and {}h (how often session ticket keys kept in the \
         storage are replaced by a fresh one){at}",
        MIN_TICKET_ROTATION.as_secs() / 60,
        MAX_TICKET_ROTATION.as_secs() / 3600
    )]
    TicketRotation {
        /// Where `ticket_rotation:` is.
        at: String,
    },
    /// `rescan_interval` below 1 s.
    #[error("rescan_interval: at least 1s{at}")]
    RescanInterval {
        /// Where `rescan_interval:` is.
        at: String,
    },
    /// `worker_threads: 0`.
    #[error("worker_threads: must be at least 1 (or remove it for one per CPU){at}")]
    WorkerThreads {
        /// Where `worker_threads:` is.
        at: String,
    },
    /// An admin API reachable from other machines without a token.
    #[error(
        "admin.bind: `{bind}` is reachable from other machines, so the admin API needs \
         a token: set `admin.token_file` (a file holding a long random string), or \
         bind to 127.0.0.1{at}"
    )]
    AdminWithoutToken {
        /// The bind as written.
        bind: String,
        /// Where `admin:` is.
        at: String,
    },
    /// `domains.json` is no domain store.
    #[error("{0}; fix or remove the file (it lists domains added through the admin API)")]
    StoreJson(serde_json::Error),
    /// A name in `domains.json` that is no domain name.
    #[error("domain `{name}`: {error}")]
    StoreDomain {
        /// The name as stored.
        name: String,
        /// Why it is no domain name.
        error: DomainNameError,
    },
}

/// How many domain names a message lists before "and N more".
const NAMES_SHOWN: usize = 3;

/// `` `a`, `b`, `c` and 2 more ``.
fn listed(names: &[String]) -> String {
    let mut listed = names
        .iter()
        .take(NAMES_SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMES_SHOWN {
        listed.push_str(&format!(" and {} more", names.len() - NAMES_SHOWN));
    }
    listed
}

/// What to do when no listener answers `challenge`.
fn missing_listener_fix(challenge: ChallengeKind) -> &'static str {
    match challenge {
        ChallengeKind::Http01 => {
            "add a listener with `kind: http` on port 80, or choose another challenge \
             (`tls-alpn-01`, or `dns-01` with acme.rfc2136) in acme.challenge or the domains' \
             own `acme: { challenge }`"
        }
        ChallengeKind::TlsAlpn01 => {
            "add a listener with `kind: https` on port 443, or choose another challenge \
             (`http-01`, or `dns-01` with acme.rfc2136) in acme.challenge or the domains' own \
             `acme: { challenge }`"
        }
        ChallengeKind::Dns01 => "dns-01 needs no listener",
    }
}
