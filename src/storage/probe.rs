//! `sniwalk check`'s look at the storage: can it be reached now, and how
//! many instances are alive on it (README, "Running several instances").

use std::time::Duration;

use serde::Serialize;

use super::open::open;
use crate::config::Config;

/// How long `check` waits for the storage.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

/// What `check` says about the storage.
#[derive(Debug, Clone, Serialize)]
pub struct StorageProbe {
    /// The engine (`state directory …`, `etcd … prefix …`).
    pub engine: String,
    /// Whether it answered.
    pub up: bool,
    /// Live instances (remote engines: their liveness keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<usize>,
    /// Why it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StorageProbe {
    /// One line for people.
    pub fn line(&self) -> String {
        match (&self.error, self.instances) {
            (Some(error), _) => format!(
                "storage: {}: UNREACHABLE ({error}); running instances keep serving what they have \
                 and place no orders",
                self.engine
            ),
            (None, Some(instances)) => format!(
                "storage: {}: reachable, {instances} instance(s) alive",
                self.engine
            ),
            (None, None) => format!("storage: {}: reachable", self.engine),
        }
    }
}

/// Opens `config`'s storage and lists the live instances (at most
/// [`PROBE_LIMIT`]).
pub async fn probe(config: &Config) -> StorageProbe {
    let shared = match open(config).await {
        Ok(shared) => shared,
        Err(e) => {
            return StorageProbe {
                engine: "storage".into(),
                up: false,
                instances: None,
                error: Some(e.to_string()),
            };
        }
    };
    let engine = shared.engine().describe();
    let remote = shared.cache().is_some();
    let listed = tokio::time::timeout(PROBE_LIMIT, shared.engine().list("locks/instances/")).await;
    match listed {
        Ok(Ok(listing)) => StorageProbe {
            engine,
            up: true,
            instances: remote.then_some(listing.entries.len()),
            error: None,
        },
        Ok(Err(e)) => StorageProbe {
            engine,
            up: false,
            instances: None,
            error: Some(e.to_string()),
        },
        Err(_) => StorageProbe {
            engine,
            up: false,
            instances: None,
            error: Some(format!("no answer within {}s", PROBE_LIMIT.as_secs())),
        },
    }
}
