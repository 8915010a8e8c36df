//! The dns-01 challenge's publisher: the TXT record `_acme-challenge.NAME`
//! added through `acme.rfc2136` before the CA is told to look, and removed
//! once it has looked (RFC 8555 §8.4; README, "DNS-01 and wildcards").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::rfc2136::{
    DnsUpdater, OPERATION_TIMEOUT, Rfc2136Error, Rfc2136Settings, parse_tsig_secret,
};
use crate::config::Rfc2136Config;

/// TTL of the published TXT records: short, so a resolver that cached one
/// forgets it by the next order.
const TXT_TTL: u32 = 60;

/// How often a published record is looked for on the server.
const VISIBLE_POLL: Duration = Duration::from_millis(250);

/// Why a dns-01 answer could not be published: a problem on this side
/// (the settings, the secret file, the DNS server), never the CA's; each
/// message names the setting, file, server or record and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Dns01Error {
    /// The order needs dns-01 but `acme.rfc2136` is not set.
    #[error("dns-01 needs acme.rfc2136 (the DNS server to publish in)")]
    NotConfigured,
    /// `tsig_secret_file` cannot be read.
    #[error(
        "acme.rfc2136.tsig_secret_file {}: {error}; write the key's base64 secret into it (as \
         `tsig-keygen` prints it)",
        file.display()
    )]
    SecretUnreadable {
        /// The file.
        file: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// `tsig_secret_file` holds no usable secret.
    #[error("acme.rfc2136.tsig_secret_file {}: {error}", file.display())]
    SecretInvalid {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        error: Rfc2136Error,
    },
    /// `server` does not resolve.
    #[error(
        "acme.rfc2136.server {server}: the name does not resolve ({problem}); write the \
         server's address or a name this machine resolves"
    )]
    ServerUnresolved {
        /// As configured.
        server: String,
        /// What the resolver said.
        problem: String,
    },
    /// The update was not applied (the server down, the key refused...).
    #[error(transparent)]
    Update(#[from] Rfc2136Error),
    /// Added, but not served by the server in time.
    #[error(
        "the TXT record {record} was added on {server} but not served within {secs}s{last}; \
         check that the server is the zone's primary (acme.rfc2136.server), or raise \
         acme.rfc2136.propagation_timeout"
    )]
    NotServed {
        /// The record.
        record: String,
        /// The server asked.
        server: SocketAddr,
        /// `propagation_timeout`, in seconds.
        secs: u64,
        /// `` (the last query's error: ...)`` when the last look failed.
        last: String,
    },
}

/// Publishes and withdraws dns-01 answers on one DNS server.
#[derive(Clone)]
pub struct Dns01 {
    updater: DnsUpdater,
    propagation_timeout: Duration,
}

impl Dns01 {
    /// Reads the TSIG secret and resolves the server of `config`.
    pub async fn from_config(config: &Rfc2136Config) -> Result<Self, Dns01Error> {
        let file = &config.tsig_secret_file;
        let text = tokio::fs::read_to_string(file).await.map_err(|error| {
            Dns01Error::SecretUnreadable {
                file: file.clone(),
                error,
            }
        })?;
        let secret = parse_tsig_secret(&text).map_err(|error| Dns01Error::SecretInvalid {
            file: file.clone(),
            error,
        })?;
        let unresolved = |problem: String| Dns01Error::ServerUnresolved {
            server: config.server.clone(),
            problem,
        };
        let server =
            tokio::time::timeout(OPERATION_TIMEOUT, tokio::net::lookup_host(&config.server))
                .await
                .map_err(|_| {
                    unresolved(format!("no answer within {}s", OPERATION_TIMEOUT.as_secs()))
                })?
                .map_err(|e| unresolved(e.to_string()))?
                .next()
                .ok_or_else(|| unresolved("no address".into()))?;
        let updater = DnsUpdater::new(Rfc2136Settings {
            server,
            key_name: config.tsig_key_name.clone(),
            algorithm: config.tsig_algorithm,
            secret,
            zone: config.zone.clone(),
        })?;
        Ok(Dns01 {
            updater,
            propagation_timeout: config.propagation_timeout,
        })
    }

    /// Adds `value` to the TXT records of `record` and waits until the
    /// server serves it (at most `acme.rfc2136.propagation_timeout`), so the
    /// CA is not told to look too early.
    pub async fn publish(&self, record: &str, value: &str) -> Result<(), Dns01Error> {
        self.updater.add_txt(record, value, TXT_TTL).await?;
        tracing::info!(record, server = %self.updater.server(), "ACME: dns-01 TXT record published");
        let deadline = tokio::time::Instant::now() + self.propagation_timeout;
        loop {
            let last = match self.updater.txt_values(record).await {
                Ok(values) if values.iter().any(|v| v == value) => return Ok(()),
                Ok(_) => String::new(),
                Err(e) => {
                    tracing::debug!(record, "dns-01: looking for the record: {e}");
                    format!(" (the last query's error: {e})")
                }
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(Dns01Error::NotServed {
                    record: record.to_string(),
                    server: self.updater.server(),
                    secs: self.propagation_timeout.as_secs(),
                    last,
                });
            }
            tokio::time::sleep(VISIBLE_POLL).await;
        }
    }

    /// Removes `value` from the TXT records of `record`; a failure is
    /// logged (the record holds no secret, and expires with its TTL from
    /// caches; the zone keeps it until removed by hand).
    pub async fn withdraw(&self, record: &str, value: &str) {
        match self.updater.remove_txt(record, value).await {
            Ok(()) => tracing::info!(
                record,
                server = %self.updater.server(),
                "ACME: dns-01 TXT record removed"
            ),
            Err(e) => tracing::warn!(
                record,
                "ACME: cannot remove the dns-01 TXT record ({e}); remove it by hand"
            ),
        }
    }
}
