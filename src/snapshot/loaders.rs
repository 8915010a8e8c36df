//! Loading certificate sources: inline text, files, certdirs and the
//! per-domain certificates stored in `state_dir`.

use std::path::Path;

use super::certificate::{FileStamp, SourceKind, SourceStamp};
use super::last_good::{Attempt, LoadError, settle, unchanged};
use super::model::Snapshot;
use super::report::{SourceReport, check_validity};
use crate::fsio;
use crate::pem::{self, ParsedPem};

/// File names inside a certdir (README, "How a certificate is chosen":
/// "`server.key` + `server.crt`, exactly these names").
pub const CERTDIR_KEY: &str = "server.key";
/// See [`CERTDIR_KEY`].
pub const CERTDIR_CERT: &str = "server.crt";

pub(super) fn text_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

pub(super) fn load_pem_text(text: &str) -> Result<(ParsedPem, SourceStamp), LoadError> {
    pem::parse_certificate_pem(text)
        .map(|p| (p, SourceStamp::Text(text_hash(text))))
        .map_err(|e| LoadError {
            message: e.to_string(),
            not_found: false,
        })
}

pub(super) fn load_pem_file(path: &Path) -> Result<(ParsedPem, SourceStamp), LoadError> {
    let stamp = SourceStamp::of_file(path);
    let text = fsio::read_cert_text(path).map_err(|e| LoadError {
        not_found: e.is_not_found(),
        message: e.to_string(),
    })?;
    pem::parse_certificate_pem(&text)
        .map(|p| (p, stamp))
        .map_err(|e| LoadError {
            message: format!("{}: {e}", path.display()),
            not_found: false,
        })
}

pub(super) fn certdir_stamp(dir: &Path) -> SourceStamp {
    match (
        FileStamp::of(&dir.join(CERTDIR_KEY)),
        FileStamp::of(&dir.join(CERTDIR_CERT)),
    ) {
        (Some(key), Some(cert)) => SourceStamp::Pair(key, cert),
        _ => SourceStamp::Unknown,
    }
}

pub(super) fn load_certdir(dir: &Path) -> Result<(ParsedPem, SourceStamp), LoadError> {
    let key_path = dir.join(CERTDIR_KEY);
    let cert_path = dir.join(CERTDIR_CERT);
    if !dir.is_dir() {
        return Err(LoadError {
            message: format!(
                "certdir {} does not exist or is not a directory; create it with {CERTDIR_KEY} and {CERTDIR_CERT} \
                 (e.g. `sniwalk selfsigned --name NAME --out {}`)",
                dir.display(),
                dir.display()
            ),
            not_found: true,
        });
    }
    let stamp = certdir_stamp(dir);
    let read = |path: &Path| {
        fsio::read_cert_text(path).map_err(|e| LoadError {
            not_found: e.is_not_found(),
            message: format!("{e}; a certdir holds exactly {CERTDIR_KEY} and {CERTDIR_CERT}"),
        })
    };
    let key = read(&key_path)?;
    let chain = read(&cert_path)?;
    pem::parse_key_and_chain(&key, &chain)
        .map(|p| (p, stamp))
        .map_err(|e| {
            // Name the file at fault: the key if it does not read on its
            // own, else the certificate (an empty server.crt and an empty
            // server.key otherwise give the same message).
            let culprit = if matches!(e, pem::PemError::KeyMatchesNoCertificate { .. }) {
                format!("{CERTDIR_KEY} and {CERTDIR_CERT}")
            } else if pem::private_key_as_pkcs8(&key).is_err() {
                CERTDIR_KEY.to_string()
            } else {
                CERTDIR_CERT.to_string()
            };
            LoadError {
                message: format!("certdir {}: {culprit}: {e}", dir.display()),
                not_found: false,
            }
        })
}

/// Loads the file (or certdir) `path` of `kind` into `report`: the
/// previous certificate while the source is unchanged (`stamp` says what
/// it looks like now, asked only when `may_have_changed`), else `load`;
/// the last good one if that fails; then its validity at `now` for
/// `warn_days`.
#[allow(clippy::too_many_arguments)]
pub(super) fn load_source(
    report: &mut SourceReport,
    previous: Option<&Snapshot>,
    kind: SourceKind,
    path: &Path,
    may_have_changed: bool,
    stamp: impl FnOnce() -> SourceStamp,
    load: impl FnOnce() -> Result<(ParsedPem, SourceStamp), LoadError>,
    (now, warn_days): (i64, u32),
) {
    let attempt = match unchanged(
        previous,
        &report.place,
        kind,
        Some(path),
        !may_have_changed,
        stamp,
    ) {
        Some(loaded) => Attempt::Reused(loaded),
        None => Attempt::from(load()),
    };
    report.loaded = settle(
        &mut report.problems,
        &report.place,
        previous,
        kind,
        Some(path.to_path_buf()),
        attempt,
    );
    if let Some(loaded) = &report.loaded {
        report.expiry = Some(check_validity(
            &mut report.problems,
            &loaded.facts,
            now,
            warn_days,
        ));
    }
}
