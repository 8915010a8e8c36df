//! `DELETE /domains/{name}`: takes a domain added through the admin API
//! (`POST /certificates` or an import) out again, with its stored
//! certificate, and answers once this instance no longer serves it (the
//! others follow the domain store; README, "Admin API").

use hyper::StatusCode;

use super::reply::{Reply, error, json};
use super::state::{APPLY_TIMEOUT, AdminState};
use crate::config::{Config, normalize_domain_name};
use crate::reload::Reload;
use crate::snapshot::Place;

/// Removes `name` from the domain store and its certificate from the
/// storage, under the writer; 404 for a name the store does not hold, 409
/// for one the configuration file configures (it is changed there).
pub(super) async fn delete(state: &AdminState, name: &str) -> Reply {
    let name = match normalize_domain_name(name) {
        Ok(name) => name,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("domain `{name}`: {e}")),
    };
    let file = state.config.file.clone();
    // Reading and checking the file is blocking work: off the runtime.
    let in_file = {
        let (file, name) = (file.clone(), name.clone());
        tokio::task::spawn_blocking(move || {
            configured_in_file(&file).is_some_and(|c| c.domains.iter().any(|d| d.name == name))
        })
        .await
        .unwrap_or(false)
    };
    if in_file {
        return error(
            StatusCode::CONFLICT,
            format!(
                "{name} is configured in {}; remove it there and reload (SIGHUP)",
                file.display()
            ),
        );
    }
    let _writer = state.writer.lock().await;
    let removed =
        match crate::storage::document::remove_domain(&state.storage, &name, |_| true).await {
            Ok(removed) => removed,
            Err(e) => {
                tracing::error!(domain = %name, "admin: removing the domain failed: {e}");
                return error(
                    e.status(),
                    format!("{name} not removed, nothing changed: {e}"),
                );
            }
        };
    if !removed {
        return error(
            StatusCode::NOT_FOUND,
            format!("{name} is not a domain added through the admin API; nothing to remove"),
        );
    }
    // The certificate goes too, so a later `POST /certificates` for the
    // name starts afresh. The domain is already gone from the store: a
    // failure here leaves an unused key, which is logged, not an error.
    let key = crate::storage::keys::certificate(&name);
    let deleted = state
        .storage
        .engine()
        .delete(&key, crate::storage::Condition::Always)
        .await;
    if let Err(e) = &deleted {
        tracing::warn!(domain = %name, key, "admin: the removed domain's certificate stays stored: {e}");
    }
    if let Some(cache) = state.storage.cache() {
        let _ = std::fs::remove_file(cache.stored_certificate(&name));
    }
    tracing::info!(domain = %name, key, "admin: domain removed from the domain store");
    state.reloads.send(Reload::All);
    let place = Place::Domain(name.clone());
    let gone = state
        .store
        .wait_for(APPLY_TIMEOUT, |snapshot| snapshot.report(&place).is_none())
        .await;
    if gone.is_err() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "{name} is removed from the domain store but still served after {}s; see the log",
                APPLY_TIMEOUT.as_secs()
            ),
        );
    }
    json(
        StatusCode::OK,
        &serde_json::json!({
            "domain": name,
            "removed": true,
            "certificate_removed": matches!(deleted, Ok(true)),
        }),
    )
}

/// The configuration file as it is now, without the domain store (`None`
/// when it does not load: the store alone then decides).
fn configured_in_file(file: &std::path::Path) -> Option<Config> {
    let text = std::fs::read_to_string(file).ok()?;
    Config::parse(&text, file).ok()
}
