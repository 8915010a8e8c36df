//! The dns-01 challenge's publisher: the TXT record `_acme-challenge.NAME`
//! added through `acme.rfc2136` before the CA is told to look, and removed
//! once it has looked (RFC 8555 §8.4; README, "DNS-01 and wildcards").

use std::time::Duration;

use super::rfc2136::{DnsUpdater, Rfc2136Settings, parse_tsig_secret};
use crate::config::Rfc2136Config;

/// TTL of the published TXT records: short, so a resolver that cached one
/// forgets it by the next order.
const TXT_TTL: u32 = 60;

/// How often a published record is looked for on the server.
const VISIBLE_POLL: Duration = Duration::from_millis(250);

/// Publishes and withdraws dns-01 answers on one DNS server.
#[derive(Clone)]
pub struct Dns01 {
    updater: DnsUpdater,
    propagation_timeout: Duration,
}

impl Dns01 {
    /// Reads the TSIG secret and resolves the server of `config`; the error
    /// names the file or the server and says what to do.
    pub async fn from_config(config: &Rfc2136Config) -> Result<Self, String> {
        let file = config.tsig_secret_file.display();
        let text = tokio::fs::read_to_string(&config.tsig_secret_file)
            .await
            .map_err(|e| {
                format!(
                    "acme.rfc2136.tsig_secret_file {file}: {e}; write the key's base64 secret \
                     into it (as `tsig-keygen` prints it)"
                )
            })?;
        let secret = parse_tsig_secret(&text)
            .map_err(|e| format!("acme.rfc2136.tsig_secret_file {file}: {e}"))?;
        let server = tokio::net::lookup_host(&config.server)
            .await
            .ok()
            .and_then(|mut addresses| addresses.next())
            .ok_or_else(|| {
                format!(
                    "acme.rfc2136.server {}: the name does not resolve; write the server's \
                     address or a name this machine resolves",
                    config.server
                )
            })?;
        let updater = DnsUpdater::new(Rfc2136Settings {
            server,
            key_name: config.tsig_key_name.clone(),
            algorithm: config.tsig_algorithm,
            secret,
            zone: config.zone.clone(),
        })
        .map_err(|e| e.to_string())?;
        Ok(Dns01 {
            updater,
            propagation_timeout: config.propagation_timeout,
        })
    }

    /// Adds `value` to the TXT records of `record` and waits until the
    /// server serves it (at most `acme.rfc2136.propagation_timeout`), so the
    /// CA is not told to look too early.
    pub async fn publish(&self, record: &str, value: &str) -> Result<(), String> {
        self.updater
            .add_txt(record, value, TXT_TTL)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(record, server = %self.updater.server(), "ACME: dns-01 TXT record published");
        let deadline = tokio::time::Instant::now() + self.propagation_timeout;
        loop {
            match self.updater.txt_values(record).await {
                Ok(values) if values.iter().any(|v| v == value) => return Ok(()),
                Ok(_) => {}
                Err(e) => tracing::debug!(record, "dns-01: looking for the record: {e}"),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the TXT record {record} was added on {} but not served within {}s; check \
                     that the server is the zone's primary (acme.rfc2136.server), or raise \
                     acme.rfc2136.propagation_timeout",
                    self.updater.server(),
                    self.propagation_timeout.as_secs()
                ));
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
