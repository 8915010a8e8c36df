//! The `acme:` fields that need more than a value check: External Account
//! Binding (`acme.eab`, its MAC key read from `hmac_key_file` when the
//! configuration loads) and the staging check (`acme.fallback_to_staging`,
//! `acme.staging_directory`).

use std::path::PathBuf;

use serde::Deserialize;

use super::eab::{EabConfig, decode_mac_key};
use super::fields::{DEFAULT_ACME_DIRECTORY, DirectoryField, STAGING_ACME_DIRECTORY};
use super::paths::{PathError, PathResolver};
use super::positions::locate_in_section;

/// `acme.eab:` as written.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AcmeEab")]
pub(super) struct RawEab {
    /// The key identifier the CA gives with the MAC key (ZeroSSL, Google Trust Services, Sectigo: their dashboard or API).
    pub(super) kid: String,
    /// A file holding the MAC key exactly as the CA hands it out (base64url; padding and a trailing newline are fine). Relative to this file; read when the configuration loads.
    pub(super) hmac_key_file: String,
}

/// Why `acme.eab`, `acme.fallback_to_staging` or `acme.staging_directory`
/// is refused; each message names the field (and the file) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AcmeSettingsError {
    /// A path cannot be used.
    #[error(transparent)]
    Path(#[from] PathError),
    /// `acme.rfc2136` is refused.
    #[error(transparent)]
    Rfc2136(Box<super::rfc2136::Rfc2136ConfigError>),
    /// `acme.eab.kid` empty.
    #[error(
        "acme.eab.kid: empty; set the key identifier (\"kid\") the CA shows with the MAC key{at}"
    )]
    EmptyKid {
        /// Where `kid:` is.
        at: String,
    },
    /// The MAC key file cannot be read.
    #[error(
        "acme.eab.hmac_key_file: cannot read {}: {error}; it must hold the CA's MAC key \
         (base64url){at}",
        file.display()
    )]
    KeyUnreadable {
        /// The file.
        file: PathBuf,
        /// What the system said.
        error: std::io::Error,
        /// Where `hmac_key_file:` is.
        at: String,
    },
    /// The MAC key file holds no base64url key.
    #[error(
        "acme.eab.hmac_key_file: {} {problem}; it must hold the MAC key exactly as the CA \
         hands it out (base64url, e.g. `lmE2L3sp...`), nothing else{at}",
        file.display()
    )]
    KeyInvalid {
        /// The file.
        file: PathBuf,
        /// What is wrong with its content.
        problem: &'static str,
        /// Where `hmac_key_file:` is.
        at: String,
    },
    /// `acme.on_demand` is refused.
    #[error(transparent)]
    OnDemand(#[from] super::on_demand::OnDemandConfigError),
    /// `fallback_to_staging` with a directory that has no known staging.
    #[error(
        "acme.fallback_to_staging: the directory `{directory}` has no staging directory sniwalk \
         knows; set acme.staging_directory to the CA's staging (test) directory URL, or remove \
         fallback_to_staging{at}"
    )]
    NoStagingDirectory {
        /// `acme.directory`.
        directory: String,
        /// Where `fallback_to_staging:` is.
        at: String,
    },
}

/// Reads `acme.eab`: the kid must not be empty, the key file must hold a
/// base64url key (standard base64 is taken too).
pub(super) fn eab_from_raw(
    raw: RawEab,
    paths: &PathResolver<'_>,
) -> Result<EabConfig, AcmeSettingsError> {
    let kid = raw.kid.trim().to_string();
    if kid.is_empty() {
        return Err(AcmeSettingsError::EmptyKid {
            at: locate_in_section(paths.text, "acme", "kid:"),
        });
    }
    let file = paths.resolve(&raw.hmac_key_file, "acme.eab.hmac_key_file")?;
    let at = || locate_in_section(paths.text, "acme", "hmac_key_file:");
    let text = std::fs::read(&file).map_err(|error| AcmeSettingsError::KeyUnreadable {
        file: file.clone(),
        error,
        at: at(),
    })?;
    let hmac_key = decode_mac_key(&text).map_err(|problem| AcmeSettingsError::KeyInvalid {
        file: file.clone(),
        problem,
        at: at(),
    })?;
    Ok(EabConfig {
        kid,
        hmac_key_file: file,
        hmac_key,
    })
}

/// The directory the staging check runs against: `staging_directory` when
/// set, else Let's Encrypt staging when `directory` is Let's Encrypt
/// production; `None` without `fallback_to_staging`.
pub(super) fn staging_from_raw(
    fallback: bool,
    staging: Option<DirectoryField>,
    directory: &str,
    text: &str,
) -> Result<Option<String>, AcmeSettingsError> {
    if !fallback {
        return Ok(None);
    }
    match staging {
        Some(url) => Ok(Some(url.0)),
        None if directory == DEFAULT_ACME_DIRECTORY => Ok(Some(STAGING_ACME_DIRECTORY.to_string())),
        None => Err(AcmeSettingsError::NoStagingDirectory {
            directory: directory.to_string(),
            at: locate_in_section(text, "acme", "fallback_to_staging:"),
        }),
    }
}

impl From<super::rfc2136::Rfc2136ConfigError> for AcmeSettingsError {
    fn from(error: super::rfc2136::Rfc2136ConfigError) -> Self {
        AcmeSettingsError::Rfc2136(Box::new(error))
    }
}
