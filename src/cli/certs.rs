//! The commands that work on certificates without a running proxy:
//! `check`, `resolve`, `selfsigned` and `pem merge`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use sniwalk::config::{Config, normalize_domain_name};
use sniwalk::inspect::{CheckReport, Resolution};
use sniwalk::snapshot::{
    CERTDIR_CERT, CERTDIR_KEY, DefaultPolicy, Severity, Snapshot, generate_self_signed_pem,
};
use sniwalk::{fsio, pem, unix_now};

use crate::cli::output::{describe, out, outln};

/// Loads the snapshot as `run` would, without writing anything.
pub(crate) fn load_snapshot(config_path: &Path) -> anyhow::Result<(Config, Snapshot)> {
    let config = Config::load(config_path)?;
    let snapshot = Snapshot::build(&config, None, DefaultPolicy::InMemory, unix_now())?;
    Ok((config, snapshot))
}

/// `check`: exit 0 when every source loads (warnings allowed), 1 on any
/// error, including a configuration that does not load (with `--json`,
/// reported as `{"system_state": "error", "error": ...}` so a script reads
/// one format).
pub(crate) fn check(config_path: anyhow::Result<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = config_path.and_then(|path| load_snapshot(&path));
    let (config, snapshot) = match loaded {
        Ok(loaded) => loaded,
        Err(e) if json => {
            let value = serde_json::json!({ "system_state": "error", "error": describe(&e) });
            outln!("{}", serde_json::to_string_pretty(&value)?)?;
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            crate::cli::output::print_error(&e);
            return Ok(ExitCode::from(1));
        }
    };
    let acme_status = sniwalk::acme::control::read_status(&config.state_layout());
    let report = CheckReport::from_snapshot(&snapshot, unix_now()).with_acme_status(&acme_status);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let storage = runtime.block_on(sniwalk::storage::probe(&config));
    let credentials = sniwalk::acme::credentials::problems(&config);
    let credential_error = credentials.iter().any(|p| p.severity == Severity::Error);
    if json {
        let mut value = serde_json::to_value(&report)?;
        value["storage"] = serde_json::to_value(&storage)?;
        value["credentials"] = credentials
            .iter()
            .map(|p| serde_json::json!({ "severity": p.severity.as_str(), "message": p.message }))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        out(format_args!("{}", report.render_text()))?;
        outln!("{}", storage.line())?;
        for problem in &credentials {
            outln!("{}: {}", problem.severity.as_str(), problem.message)?;
        }
    }
    Ok(if report.has_errors() || !storage.up || credential_error {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) fn resolve(
    config_path: &Path,
    listener: Option<&str>,
    name: Option<&str>,
    no_sni: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if name.is_none() && !no_sni {
        bail!("give a NAME to resolve, or --no-sni for a client that sends none");
    }
    // The name a client could send as SNI (RFC 6066 §3: a DNS host name),
    // checked before the configuration is read.
    let name = name
        .map(|n| {
            normalize_domain_name(n).map_err(|e| anyhow::anyhow!("NAME: {e}; or pass --no-sni"))
        })
        .transpose()?;
    let name = name.as_deref();
    let (config, snapshot) = load_snapshot(config_path)?;
    let index = match listener {
        Some(wanted) => Some(snapshot.listener_index(wanted).with_context(|| {
            let known: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
            format!(
                "no listener named `{wanted}` (configured: {})",
                known.join(", ")
            )
        })?),
        None => config
            .listeners
            .iter()
            .position(|l| l.kind.terminates_tls()),
    };
    let resolution = Resolution::explain(&snapshot, index, name);
    if json {
        outln!("{}", serde_json::to_string_pretty(&resolution)?)?;
    } else {
        out(format_args!("{}", resolution.render_text()))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn selfsigned(
    names: &[String],
    days: u32,
    rsa: bool,
    dir: &Path,
    force: bool,
) -> anyhow::Result<ExitCode> {
    if days == 0 {
        bail!("--days must be at least 1");
    }
    let names = names
        .iter()
        .map(|n| normalize_domain_name(n).map_err(|e| anyhow::anyhow!("--name: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let text = generate_self_signed_pem(&names, days, rsa).map_err(anyhow::Error::msg)?;
    let (key_pem, cert_pem) = split_key_and_cert(&text)?;
    let key_path = dir.join(CERTDIR_KEY);
    let cert_path = dir.join(CERTDIR_CERT);
    // A key that is there may be the one a listener serves (or the only
    // copy of it): replaced only when asked.
    if !force && let Some(existing) = [&key_path, &cert_path].into_iter().find(|p| p.exists()) {
        bail!(
            "{} already exists; pass --force to replace it, or choose another --out",
            existing.display()
        );
    }
    fsio::create_private_dir(dir)?;
    fsio::write_atomic(&key_path, key_pem.as_bytes(), true)?;
    fsio::write_atomic(&cert_path, cert_pem.as_bytes(), false)?;
    let parsed = pem::parse_key_and_chain(key_pem, cert_pem)?;
    outln!(
        "wrote {} (0600) and {}",
        key_path.display(),
        cert_path.display()
    )?;
    outln!("names:     {}", parsed.leaf.dns_names.join(", "))?;
    outln!(
        "not after: {}",
        sniwalk::inspect::rfc3339(parsed.leaf.not_after)
    )?;
    outln!("sha256:    {}", parsed.leaf.sha256)?;
    outln!(
        "point a listener's `certdir:` at {} to serve it",
        dir.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Splits our own generated text (key block first) into key and certificate.
pub(crate) fn split_key_and_cert(text: &str) -> anyhow::Result<(&str, &str)> {
    let at = text
        .find("-----BEGIN CERTIFICATE-----")
        .context("generated text has no certificate")?;
    Ok(text.split_at(at))
}

/// `pem merge`: the certificate_pem to stdout, or with `--out` to a file
/// written atomically with mode 0600 (it holds the private key).
pub(crate) fn pem_merge(
    key: &Path,
    cert: &Path,
    chain: Option<&Path>,
    to: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let key_text = fsio::read_cert_text(key)?;
    let mut cert_text = fsio::read_cert_text(cert)?;
    if let Some(chain) = chain {
        cert_text.push('\n');
        cert_text.push_str(&fsio::read_cert_text(chain)?);
    }
    let parsed = pem::parse_key_and_chain(&key_text, &cert_text)
        .with_context(|| format!("{} + {}", key.display(), cert.display()))?;
    let key_der =
        pem::private_key_as_pkcs8(&key_text).with_context(|| key.display().to_string())?;
    let text =
        pem::render_certificate_pem(&Default::default(), &key_der, &parsed.certified_key.cert);
    match to {
        Some(file) => {
            fsio::write_atomic(file, text.as_bytes(), true)
                .with_context(|| format!("--out {}", file.display()))?;
            outln!("wrote {} (0600)", file.display())?;
        }
        None => out(format_args!("{text}"))?,
    }
    eprintln!(
        "merged: {} (names: {}; not after {}; chain of {})",
        parsed.leaf.subject,
        parsed.leaf.dns_names.join(", "),
        sniwalk::inspect::rfc3339(parsed.leaf.not_after),
        parsed.certified_key.cert.len()
    );
    Ok(ExitCode::SUCCESS)
}
