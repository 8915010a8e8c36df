//! The default certificate: `default_certificate` when configured, else one
//! sniwalk generates for the master domain. With [`DefaultPolicy::Persist`]
//! the generated one is written to `state_dir` from [`build_default`], which
//! `Snapshot::build` calls; `check` and `resolve` keep it in memory.

use std::sync::Arc;

use super::certificate::{FileStamp, LoadedCertificate, SourceKind, SourceStamp};
use super::last_good::{Attempt, settle, unchanged};
use super::loaders::load_pem_file;
use super::model::{Snapshot, SnapshotError};
use super::report::{Place, Problem, SourceReport, check_key, check_validity};
use crate::config::Config;
use crate::expiry::{self, ExpiryState};
use crate::fsio;
use crate::pem::{self, CertificateFacts};

/// Name of the generated default certificate inside `state_dir`.
pub const GENERATED_DEFAULT_FILE: &str = "default.pem";

/// What to do when no default certificate is stored yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// Generate one and store it in `state_dir` (`run`).
    Persist,
    /// Generate one in memory only (`check`, `resolve`: they change nothing
    /// on disk).
    InMemory,
}

/// Loads `default_certificate`, else the generated default (creating it
/// when missing or when it no longer names the master domain).
pub(super) fn build_default(
    config: &Config,
    previous: Option<&Snapshot>,
    policy: DefaultPolicy,
    now: i64,
) -> Result<(Arc<LoadedCertificate>, SourceReport), SnapshotError> {
    let mut report = SourceReport::new(Place::Default, None, None);
    if let Some(path) = &config.default_certificate {
        report.kind = Some(SourceKind::DefaultFile);
        report.file = Some(path.clone());
        report.loaded = settle(
            &mut report.problems,
            &Place::Default,
            previous,
            SourceKind::DefaultFile,
            Some(path.clone()),
            match unchanged(
                previous,
                &Place::Default,
                SourceKind::DefaultFile,
                Some(path),
                false,
                || FileStamp::of(path).map_or(SourceStamp::Unknown, SourceStamp::File),
            ) {
                Some(loaded) => Attempt::Reused(loaded),
                None => Attempt::from(load_pem_file(path)),
            },
        );
        if let Some(loaded) = report.loaded.clone() {
            report.expiry = Some(check_validity(
                &mut report.problems,
                &loaded.facts,
                now,
                config.acme.warn_days,
            ));
            check_key(&mut report.problems, &loaded);
            return Ok((loaded, report));
        }
        // Fall through: a broken default_certificate must not leave the
        // proxy without any certificate.
    }
    let path = config.state_dir.join(GENERATED_DEFAULT_FILE);
    let names = generated_default_names(&config.master_domain);
    // A generated default close to expiry is made again rather than warned
    // about: nobody renews it by hand.
    let fresh = |facts: &CertificateFacts| {
        expiry::expiry_state(facts.not_after, now, config.acme.warn_days) == ExpiryState::Ok
    };
    if let Some(loaded) = unchanged(
        previous,
        &Place::Default,
        SourceKind::Generated,
        Some(&path),
        false,
        || FileStamp::of(&path).map_or(SourceStamp::Unknown, SourceStamp::File),
    )
    .filter(|l| names.iter().all(|n| l.facts.covers(n)) && fresh(&l.facts))
    {
        report.kind = Some(SourceKind::Generated);
        report.file = Some(path);
        report.expiry = Some(expiry::expiry_state(
            loaded.facts.not_after,
            now,
            config.acme.warn_days,
        ));
        report.loaded = Some(loaded.clone());
        return Ok((loaded, report));
    }
    let reusable = load_pem_file(&path)
        .ok()
        .filter(|(parsed, _)| names.iter().all(|n| parsed.leaf.covers(n)) && fresh(&parsed.leaf));
    let loaded = match reusable {
        Some((parsed, stamp)) => {
            let mut loaded =
                LoadedCertificate::from_parsed(parsed, SourceKind::Generated, Some(path.clone()));
            loaded.acme_issued = false;
            loaded.stamp = stamp;
            loaded
        }
        None => {
            let text =
                generate_self_signed_pem(&names, 3650, false).map_err(SnapshotError::Generate)?;
            let parsed = pem::parse_certificate_pem(&text).map_err(SnapshotError::Generated)?;
            let mut file = None;
            if policy == DefaultPolicy::Persist {
                let stored = fsio::create_private_dir(&config.state_dir)
                    .and_then(|()| fsio::write_atomic(&path, text.as_bytes(), true));
                match stored {
                    Ok(()) => {
                        tracing::info!(file = %path.display(), names = %names.join(","), "generated the default certificate");
                        file = Some(path.clone());
                    }
                    Err(e) => report.problems.push(Problem::warning(format!(
                        "{e}; the generated default certificate is kept in memory only"
                    ))),
                }
            }
            // With DefaultPolicy::InMemory (check, resolve) a missing default
            // is no problem: `run` generates and stores it.
            let mut loaded = LoadedCertificate::from_parsed(parsed, SourceKind::Generated, file);
            loaded.acme_issued = false;
            loaded.stamp = FileStamp::of(&path).map_or(SourceStamp::Unknown, SourceStamp::File);
            loaded
        }
    };
    report.kind.get_or_insert(SourceKind::Generated);
    if report.file.is_none() {
        report.file = loaded.file.clone();
    }
    report.expiry = Some(expiry::expiry_state(
        loaded.facts.not_after,
        now,
        config.acme.warn_days,
    ));
    let loaded = Arc::new(loaded);
    report.loaded = Some(loaded.clone());
    Ok((loaded, report))
}

/// Names of the generated default certificate: the master domain and
/// `localhost`, so the shipped configuration works in a browser at once.
fn generated_default_names(master: &str) -> Vec<String> {
    let mut names = vec![master.to_string()];
    if master != "localhost" {
        names.push("localhost".to_string());
    }
    names
}

/// Makes a self-signed certificate for `names` as a `certificate_pem` text:
/// ECDSA P-256, or RSA-2048 when `rsa` is set.
pub fn generate_self_signed_pem(
    names: &[String],
    days: u32,
    rsa: bool,
) -> Result<String, rcgen::Error> {
    let key = if rsa {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
    } else {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
    }?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    let mut dn = rcgen::DistinguishedName::new();
    if let Some(first) = names.first() {
        dn.push(rcgen::DnType::CommonName, first.clone());
    }
    dn.push(rcgen::DnType::OrganizationName, "sniwalk self-signed");
    params.distinguished_name = dn;
    let start = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_before = start;
    params.not_after = start + time::Duration::days(i64::from(days));
    let cert = params.self_signed(&key)?;
    Ok(format!("{}{}", key.serialize_pem(), cert.pem()))
}
