//! The default certificate: `default_certificate` when configured, else one
//! sniwalk generates for the master domain. `run` stores the generated one
//! in `state_dir` with [`store_generated_default`] before it builds a
//! snapshot; [`build_default`], which `Snapshot::build` calls, only reads
//! it (or makes one in memory, as `check` and `resolve` do).

use std::path::PathBuf;
use std::sync::Arc;

use super::certificate::{LoadedCertificate, SourceKind, SourceStamp};
use super::last_good::{Attempt, settle, unchanged};
use super::loaders::load_pem_file;
use super::model::{Snapshot, SnapshotError};
use super::report::{Place, Problem, SourceReport, check_key, check_validity};
use crate::config::Config;
use crate::expiry::{self, ExpiryState};
use crate::fsio;
use crate::pem::{self, CertificateFacts};

/// Whether the generated default is expected on disk when a snapshot is
/// built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// `run`: [`store_generated_default`] ran before the build, so a
    /// generated default missing from `state_dir` is reported (kept in
    /// memory).
    Persist,
    /// `check`, `resolve`: they change nothing on disk, and a generated
    /// default in memory is no problem.
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
                || SourceStamp::of_file(path),
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
    let path = config.state_layout().generated_default();
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
        || SourceStamp::of_file(&path),
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
    let loaded = match usable_generated(config, now) {
        Some((parsed, stamp)) => {
            let mut loaded =
                LoadedCertificate::from_parsed(parsed, SourceKind::Generated, Some(path.clone()));
            loaded.acme_issued = false;
            loaded.stamp = stamp;
            loaded
        }
        None => {
            // Nothing usable on disk: one in memory. `run` stores one with
            // [`store_generated_default`] before every build, so there this
            // means the write failed (logged with the reason).
            let (_, parsed) = generate(&names)?;
            if policy == DefaultPolicy::Persist {
                report.problems.push(Problem::warning(format!(
                    "{} could not be written (see the log); the generated default certificate \
                     is kept in memory only",
                    path.display()
                )));
            }
            let mut loaded = LoadedCertificate::from_parsed(parsed, SourceKind::Generated, None);
            loaded.acme_issued = false;
            loaded.stamp = SourceStamp::Unknown;
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

/// Makes sure `state_dir/default.pem` holds a usable generated default
/// when the configuration relies on it (no `default_certificate`, or one
/// that does not load): one that names the master domain and is not close
/// to expiry. Writes a new one (mode 0600) when it does not, and returns
/// its path then; `Ok(None)` when nothing had to be written.
///
/// `run` calls this before every snapshot build, so building a snapshot
/// itself never writes (README, "Layout").
pub fn store_generated_default(
    config: &Config,
    now: i64,
) -> Result<Option<PathBuf>, SnapshotError> {
    if let Some(configured) = &config.default_certificate
        && load_pem_file(configured).is_ok()
    {
        return Ok(None);
    }
    if usable_generated(config, now).is_some() {
        return Ok(None);
    }
    let state = config.state_layout();
    let path = state.generated_default();
    let names = generated_default_names(&config.master_domain);
    let (text, _) = generate(&names)?;
    fsio::create_private_dir(state.root())
        .and_then(|()| fsio::write_atomic(&path, text.as_bytes(), true))
        .map_err(SnapshotError::StoreDefault)?;
    tracing::info!(file = %path.display(), names = %names.join(","), "generated the default certificate");
    Ok(Some(path))
}

/// The generated default on disk, when it names the master domain (and
/// `localhost`) and is not close to expiry.
fn usable_generated(config: &Config, now: i64) -> Option<(pem::ParsedPem, SourceStamp)> {
    let names = generated_default_names(&config.master_domain);
    load_pem_file(&config.state_layout().generated_default())
        .ok()
        .filter(|(parsed, _)| {
            names.iter().all(|n| parsed.leaf.covers(n))
                && expiry::expiry_state(parsed.leaf.not_after, now, config.acme.warn_days)
                    == ExpiryState::Ok
        })
}

/// A new self-signed default for `names`: the text and its parse.
fn generate(names: &[String]) -> Result<(String, pem::ParsedPem), SnapshotError> {
    let text = generate_self_signed_pem(names, 3650, false).map_err(SnapshotError::Generate)?;
    let parsed = pem::parse_certificate_pem(&text).map_err(SnapshotError::Generated)?;
    Ok((text, parsed))
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
