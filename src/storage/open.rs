//! Opens the storage the configuration names (`storage:`; README,
//! "Running several instances"): the state directory, or etcd with its
//! TLS files and password read here.

use std::path::Path;

use super::api::StorageError;
use super::shared::Shared;
use crate::config::{Config, StorageConfig};

/// Largest password or PEM file read for the storage's connection.
const MAX_SECRET_BYTES: u64 = 1 << 20;

/// The storage of `config` for this instance. With etcd, the connection is
/// made here (a user is authenticated at once, so a wrong password stops
/// the start with a clear message).
pub async fn open(config: &Config) -> Result<Shared, StorageError> {
    match &config.storage {
        StorageConfig::Dir => Ok(Shared::in_state_dir(&config.state_layout())),
        #[cfg(feature = "etcd")]
        StorageConfig::Etcd(etcd) => {
            let mut options =
                super::etcd::EtcdOptions::new(etcd.endpoints.clone(), etcd.prefix.clone());
            options.lease = etcd.lease;
            options.ca_pem = etcd
                .ca_file
                .as_deref()
                .map(|file| read_text("storage.tls.ca_file", file))
                .transpose()?;
            if let (Some(cert), Some(key)) = (&etcd.client_certificate, &etcd.client_key) {
                options.client_identity = Some(super::etcd::ClientIdentity {
                    cert_pem: read_text("storage.tls.client_certificate", cert)?,
                    key_pem: read_text("storage.tls.client_key", key)?,
                });
            }
            options.username = etcd.username.clone();
            options.password = etcd
                .password_file
                .as_deref()
                .map(|file| {
                    read_text("storage.password_file", file)
                        .map(|text| text.trim_end_matches(['\r', '\n']).to_string())
                })
                .transpose()?;
            // Unreachable now: go on (`run` serves the local cache) and
            // connect once etcd answers; the health says so. Anything else
            // (a refused user, a bad prefix) stops here with its message.
            let (engine, unreachable): (std::sync::Arc<dyn super::api::Storage>, _) =
                match super::etcd::EtcdStorage::connect(options.clone()).await {
                    Ok(engine) => (std::sync::Arc::new(engine), None),
                    Err(e @ StorageError::Unreachable { .. }) => (
                        std::sync::Arc::new(super::etcd_lazy::LazyEtcd::new(options)),
                        Some(e),
                    ),
                    Err(e) => return Err(e),
                };
            let shared = Shared::new(
                engine,
                super::shared::instance_name(),
                Some(etcd.lease),
                Some(config.state_layout()),
            );
            if let Some(e) = unreachable {
                shared
                    .health()
                    .set_down(&format!("{e}; connecting when etcd answers"));
            }
            Ok(shared)
        }
        #[cfg(not(feature = "etcd"))]
        StorageConfig::Etcd(_) => Err(StorageError::Setup {
            field: "storage.kind",
            detail: "this sniwalk was built without etcd support; build it with \
                     `cargo build --release --features etcd` (needs protoc, Debian's \
                     protobuf-compiler)"
                .into(),
        }),
    }
}

/// Reads a small text file named by `field`.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
fn read_text(field: &'static str, file: &Path) -> Result<String, StorageError> {
    use std::io::Read as _;
    let fail = |detail: String| StorageError::Setup {
        field,
        detail: format!("{}: {detail}", file.display()),
    };
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_SECRET_BYTES).read_to_string(&mut text))
        .map_err(|e| fail(format!("cannot read it ({e})")))?;
    if text.trim().is_empty() {
        return Err(fail("it is empty".into()));
    }
    Ok(text)
}
