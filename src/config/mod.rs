//! `proxy.yaml`: raw serde structures, then validated types.
//!
//! Every YAML call of the crate lives here. Values that can be checked on
//! their own (domain names, binds, status codes) are checked while
//! deserialising, so the YAML parser's error carries the line and column of
//! the bad value. Checks across fields (the master domain among the domains,
//! unknown `alias://` names, duplicate listeners) run afterwards and find
//! their position by looking the offending text up in the file.
//!
//! The files, from the bottom up (each uses only those above it;
//! `tests/structure.rs` checks that no two use each other):
//! - `field_error`: why a single value is refused;
//! - `fields`: parsers of single values (durations, binds, domain names,
//!   pins, ACME settings) and the serde wrappers that run them while the
//!   YAML is read;
//! - `positions`: ` at line L column C` for text found in the file;
//! - `address_range`: an IP address range of `accept_proxy_protocol.from`;
//! - `types`: the validated configuration the rest of the crate reads;
//! - `raw`: the serde structures as written in `proxy.yaml`;
//! - `paths`: `alias://` expansion and relative paths;
//! - `accept_proxy`: a listener's `accept_proxy_protocol:` validated;
//! - `log_settings`: the settings of `log:` and `access_log:`;
//! - `logs`: `log:` and `access_log:` (top level and per listener) checked;
//! - `listener`: one raw listener to a validated one;
//! - `storage`: the raw `storage:` section to a validated one;
//! - `error`: `ConfigError` and `ConfigProblem`, which name the errors of
//!   `paths`, `listener` and `storage`;
//! - `domain_store`: `state_dir/domains.json`, the domains added at run time;
//! - `build`: `Config::load` and `Config::parse`, the whole file.

mod accept_proxy;
mod acme_settings;
mod address_range;
mod backend_list;
mod backend_raw;
mod backends;
mod build;
mod domain_store;
mod drain_store;
mod eab;
mod error;
mod field_error;
mod fields;
mod listener;
mod log_settings;
mod logs;
mod names;
mod on_demand;
mod paths;
mod positions;
mod raw;
mod rfc2136;
mod schema;
mod storage;
mod types;
mod yaml_hints;

pub use accept_proxy::AcceptProxyError;
pub use acme_settings::AcmeSettingsError;
pub use address_range::{AddressRange, AddressRangeError};
pub use backend_list::BackendsError;
pub use backends::{
    Backends, Balance, DEFAULT_FALL, DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_TIMEOUT, DEFAULT_RISE,
    HealthCheck, MAX_WEIGHT, Member, Probe,
};
pub use domain_store::{DomainStore, StoredDomain};
pub use drain_store::{DrainStore, DrainStoreError};
pub use eab::{EabConfig, decode_mac_key};
pub use error::{ConfigError, ConfigProblem};
pub use field_error::ListedNameError;
pub use field_error::{DomainNameError, FieldError};
pub use fields::{
    DEFAULT_ACME_DIRECTORY, DEFAULT_RENEW_AT, MAX_WARN_DAYS, STAGING_ACME_DIRECTORY,
    normalize_domain_name, normalize_pin, parse_account_email, parse_acme_directory, parse_bind,
    parse_duration, parse_renew_at,
};
pub use listener::ListenerError;
pub use log_settings::{AccessLogConfig, AccessLogFormat, DEFAULT_LOG_LEVEL, LogConfig, LogFormat};
pub use logs::LogsConfigError;
pub use names::{NamesError, effective_challenge, listed_by, normalize_listed_name, order_names};
pub use on_demand::{
    DEFAULT_BURST, DEFAULT_RATE, DEFAULT_REFUSED_FOR, DEFAULT_WAIT, OnDemandConfig,
    OnDemandConfigError, Rate, parse_rate,
};
pub use paths::PathError;
pub use rfc2136::{DEFAULT_PROPAGATION_TIMEOUT, Rfc2136Config, Rfc2136ConfigError, TsigAlgorithm};
pub use schema::json_schema;
pub use storage::StorageConfigError;
pub use types::{
    ALIAS_PREFIX, AcceptProxyProtocol, AcmeConfig, AdminConfig, BackendTls, CertificateSource,
    ChallengeKind, ClientAuthConfig, Config, DEFAULT_LOCK_LEASE, DEFAULT_RESCAN_INTERVAL,
    DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_STATE_DIR, DEFAULT_STORAGE_LEASE, DEFAULT_STORAGE_PREFIX,
    DEFAULT_TICKET_ROTATION, DEFAULT_UPGRADE, DomainAcme, DomainConfig, EtcdStorageConfig,
    HostPattern, HttpBackend, HttpBackendError, Limits, ListenerConfig, ListenerKind,
    MAX_STORAGE_LEASE, MAX_TICKET_ROTATION, MIN_LOCK_LEASE, MIN_STORAGE_LEASE, MIN_TICKET_ROTATION,
    Route, RouteAction, StorageConfig, TcpBackend,
};

#[cfg(test)]
mod tests;
