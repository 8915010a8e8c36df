//! `PUT /domains/{name}/certificate`: a certificate imported by hand,
//! validated before anything is written, stored, and answered once it
//! serves (README, "Admin API").

use base64::Engine as _;
use hyper::StatusCode;
use serde::Deserialize;

use super::reply::{Reply, error, json};
use super::state::{APPLY_TIMEOUT, AdminState, add_to_store};
use crate::config::normalize_domain_name;
use crate::pem::push_block;
use crate::reload::Reload;
use crate::snapshot::{Place, SourceKind};

/// Why a `PUT /domains/{name}/certificate` body is no `certificate_pem`
/// text (the 400 answer's message).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Neither JSON nor UTF-8 text.
    #[error("the body is neither JSON nor certificate_pem text (not UTF-8)")]
    NotText,
    /// JSON, but not the shape asked for.
    #[error(
        "JSON body must be {{\"privatekey\": base64 DER, \"certificate\": base64 DER, \"chain\": [base64 DER, ...]}}: {0}"
    )]
    Json(serde_json::Error),
    /// A field that is not base64.
    #[error("`{field}` is not base64: {error}")]
    Base64 {
        /// `privatekey`, `certificate` or `chain[I]`.
        field: String,
        /// What the decoder said.
        error: base64::DecodeError,
    },
    /// `privatekey` that is no DER private key.
    #[error("`privatekey` is not a DER private key: {0}")]
    Key(&'static str),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportJson {
    privatekey: String,
    certificate: String,
    #[serde(default)]
    chain: Vec<String>,
}

/// The body as `certificate_pem` text: JSON with base64 DER, or the text.
pub(super) fn import_text(content_type: Option<&str>, bytes: &[u8]) -> Result<String, ImportError> {
    let is_json = content_type.is_some_and(|c| c.starts_with("application/json"))
        || bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !is_json {
        return String::from_utf8(bytes.to_vec()).map_err(|_| ImportError::NotText);
    }
    let body: ImportJson = serde_json::from_slice(bytes).map_err(ImportError::Json)?;
    let decode = |field: &str, value: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|error| ImportError::Base64 {
                field: field.to_string(),
                error,
            })
    };
    let key = decode("privatekey", &body.privatekey)?;
    let label = match rustls_pki_types::PrivateKeyDer::try_from(key.as_slice()) {
        Ok(rustls_pki_types::PrivateKeyDer::Pkcs1(_)) => "RSA PRIVATE KEY",
        Ok(rustls_pki_types::PrivateKeyDer::Sec1(_)) => "EC PRIVATE KEY",
        Ok(_) => "PRIVATE KEY",
        Err(e) => return Err(ImportError::Key(e)),
    };
    let mut text = String::new();
    push_block(&mut text, label, &key);
    push_block(
        &mut text,
        "CERTIFICATE",
        &decode("certificate", &body.certificate)?,
    );
    for (i, link) in body.chain.iter().enumerate() {
        push_block(
            &mut text,
            "CERTIFICATE",
            &decode(&format!("chain[{i}]"), link)?,
        );
    }
    Ok(text)
}

/// `PUT /domains/{name}/certificate`: validates, stores under the writer,
/// and answers 200 once the certificate serves.
pub(super) async fn import(
    state: &AdminState,
    name: &str,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Reply {
    let name = match normalize_domain_name(name) {
        Ok(name) => name,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("domain `{name}`: {e}")),
    };
    if let Some(owner) = crate::config::listed_by(&state.config.domains, &name) {
        return error(
            StatusCode::CONFLICT,
            format!(
                "{name} is listed in the names of domains.{owner}, which answers it; import the \
                 certificate for {owner} instead, nothing changed"
            ),
        );
    }
    let text = match import_text(content_type, bytes) {
        Ok(text) => text,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // Validated before anything is written: parse, key match.
    let parsed = match crate::pem::parse_certificate_pem(&text) {
        Ok(parsed) => parsed,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("certificate for {name} refused, nothing changed: {e}"),
            );
        }
    };
    // One import at a time, from the look at what serves the domain until
    // the new certificate serves: a concurrent import of the same domain
    // would otherwise replace this one before it is served, and this
    // request would wait for a certificate that never comes.
    let _writer = state.writer.lock().await;
    let snapshot = state.store.load();
    let report = snapshot.report(&Place::Domain(name.clone())).cloned();
    if let Some(kind) = report
        .as_ref()
        .and_then(|r| r.kind)
        .filter(|k| matches!(k, SourceKind::Inline | SourceKind::File))
    {
        return error(
            StatusCode::CONFLICT,
            format!(
                "{name}'s certificate is set in the configuration file ({}); change it there",
                kind.as_str()
            ),
        );
    }
    // Stored (shared with the other instances) before the answer: a 2xx is
    // durable.
    let path = state.config.state_layout().stored_certificate(&name);
    let key = crate::storage::keys::certificate(&name);
    let written = state
        .storage
        .put_cached(
            &key,
            text.as_bytes().to_vec(),
            crate::storage::Condition::Always,
        )
        .await;
    match written {
        Ok(_) => {}
        // Stored: the local copy is written again when the storage's change
        // comes back by watch; whether it is served is checked below.
        Err(e @ crate::storage::StoreError::Cache { .. }) => {
            tracing::warn!(domain = %name, key, "admin: {e}");
        }
        Err(e) => {
            tracing::error!(domain = %name, key, storage = %state.storage.engine().describe(), "admin: import failed: {e}");
            let status = match e {
                crate::storage::StoreError::Storage(
                    crate::storage::StorageError::Unreachable { .. },
                ) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return error(
                status,
                format!("certificate for {name} not stored, nothing changed: {e}"),
            );
        }
    }
    // A new name joins the domain store only once its certificate is
    // stored: no instance ever has the domain without it.
    if report.is_none()
        && let Err(e) = add_to_store(&state.storage, std::slice::from_ref(&name), false).await
    {
        tracing::error!(domain = %name, "admin: {e}");
        return error(
            e.status(),
            format!(
                "the certificate for {name} is stored, but the domain could not be added to the \
                 domain store ({e}); send the import again"
            ),
        );
    }
    tracing::info!(domain = %name, key, file = %path.display(), sha256 = %parsed.leaf.sha256, "admin: certificate imported");
    state.reloads.send(if report.is_none() {
        Reload::All
    } else {
        Reload::Domain(name.clone())
    });
    let place = Place::Domain(name.clone());
    let served = state
        .store
        .wait_for(APPLY_TIMEOUT, |snapshot| {
            snapshot
                .report(&place)
                .and_then(|r| r.loaded.as_ref())
                .is_some_and(|l| l.facts.sha256 == parsed.leaf.sha256)
        })
        .await;
    let Ok(snapshot) = served else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "stored at {}, but not served within {}s; see `sniwalk check`",
                path.display(),
                APPLY_TIMEOUT.as_secs()
            ),
        );
    };
    // Served, and durable: still 200. What `check` would say about it (a
    // certificate that does not cover the domain, expiry soon) is in the
    // answer, so a script sees it without a second call.
    let problems: Vec<_> = snapshot
        .report(&place)
        .map(|report| {
            report
                .problems
                .iter()
                .map(|p| serde_json::json!({"severity": p.severity.as_str(), "message": p.message}))
                .collect()
        })
        .unwrap_or_default();
    for problem in &problems {
        tracing::warn!(domain = %name, problem = %problem["message"], "admin: imported certificate has a problem");
    }
    json(
        StatusCode::OK,
        &serde_json::json!({
            "domain": name,
            "problems": problems,
            "managed": "hand",
            "file": path.display().to_string(),
            "subject": parsed.leaf.subject,
            "names": parsed.leaf.dns_names,
            "not_after": crate::clock::rfc3339(parsed.leaf.not_after),
            "sha256": parsed.leaf.sha256,
        }),
    )
}
