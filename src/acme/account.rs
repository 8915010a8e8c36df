//! The ACME account: created once per (directory, contact e-mail, EAB
//! key identifier) by
//! whichever instance needs it first, its credentials (key included)
//! stored at `accounts/<id>.json` (with `storage: dir`,
//! `state_dir/acme/accounts/<id>.json`, mode 0600) and restored from there
//! by every instance on every later start, so no new account is
//! registered.

use instant_acme::{Account, AccountCredentials, ExternalAccountKey, HttpClient, NewAccount};

use super::{AcmeError, problem_of};
use crate::config::EabConfig;
use crate::storage::{Condition, Storage, StorageError};

/// The storage key of the credentials for `directory`, `email` and the
/// External Account Binding key identifier: the first 16 hex digits of
/// SHA-256 over `directory`, a newline and `email` (then a newline and the
/// kid, when `acme.eab` is set: an account bound to another CA account,
/// after the kid changed, is a new one; without EAB the key is the one
/// earlier versions stored).
pub fn credentials_key(directory: &str, email: Option<&str>, eab_kid: Option<&str>) -> String {
    let mut input = format!("{directory}\n{}", email.unwrap_or(""));
    if let Some(kid) = eab_kid {
        input.push('\n');
        input.push_str(kid);
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input.as_bytes());
    format!("accounts/{}.json", crate::ids::hex(&digest.as_ref()[..8]))
}

/// The problem type of a CA that requires External Account Binding
/// (RFC 8555 §7.3.4).
pub const EXTERNAL_ACCOUNT_REQUIRED: &str = "urn:ietf:params:acme:error:externalAccountRequired";

/// What to do about a refused registration, for the CA's problem type.
fn registration_hint(problem_type: Option<&str>, eab: Option<&EabConfig>) -> &'static str {
    match (problem_type, eab) {
        (Some(EXTERNAL_ACCOUNT_REQUIRED), None) => {
            "; this CA requires External Account Binding: set `acme.eab: { kid, hmac_key_file }` \
             with the key identifier and MAC key from the CA's dashboard"
        }
        (Some(t), Some(_)) if t.contains("unauthorized") || t.contains("malformed") => {
            "; check `acme.eab`: the kid and the MAC key in hmac_key_file must be the pair the \
             CA's dashboard shows (a new pair once the old one was used)"
        }
        _ => "",
    }
}

/// Restores the account stored for `directory` and `email`, or registers
/// a new one (agreeing to the terms of service, bound to `eab` when set)
/// and stores its credentials.
/// `http` is the client to reach the CA with (see [`super::client`]);
/// `domain` is the one the account is wanted for: an unreachable storage
/// is [`AcmeError::StorageUnavailable`] for it (no order, no backoff), not
/// an account failure.
pub async fn load_or_create(
    storage: &dyn Storage,
    directory: &str,
    email: Option<&str>,
    http: Box<dyn HttpClient>,
    eab: Option<&EabConfig>,
    domain: &str,
) -> Result<Account, AcmeError> {
    let fail = |step: &'static str, problem: String| AcmeError::Account {
        directory: directory.to_string(),
        step,
        problem,
        problem_type: None,
    };
    let storage_failed = |step: &'static str, e: StorageError| match e {
        StorageError::Unreachable { .. } => AcmeError::StorageUnavailable {
            domain: domain.to_string(),
            detail: e.to_string(),
        },
        other => fail(step, other.to_string()),
    };
    let acme = |step: &'static str| {
        move |e: instant_acme::Error| {
            let (problem, problem_type) = problem_of(&e);
            AcmeError::Account {
                directory: directory.to_string(),
                step,
                problem,
                problem_type,
            }
        }
    };
    let key = credentials_key(directory, email, eab.map(|e| e.kid.as_str()));

    // 1. Stored credentials: restore them (no request to the CA beyond the
    //    directory).
    match storage.get(&key).await {
        Ok(Some(stored)) => {
            let credentials: AccountCredentials =
                serde_json::from_slice(&stored.value).map_err(|e| {
                    fail(
                        "reading stored credentials",
                        format!(
                            "{} key {key}: {e}; delete it to register a new account",
                            storage.describe()
                        ),
                    )
                })?;
            return Account::builder_with_http(http)
                .from_credentials(credentials)
                .await
                .map_err(acme("restoring the account"));
        }
        Ok(None) => {}
        Err(e) => return Err(storage_failed("reading stored credentials", e)),
    }

    // 2. None yet: register a new account (newAccount, RFC 8555 §7.3).
    let contact = email.map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let binding = eab.map(|e| ExternalAccountKey::new(e.kid.clone(), &e.hmac_key));
    let (account, credentials) = Account::builder_with_http(http)
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_string(),
            binding.as_ref(),
        )
        .await
        .map_err(|e| {
            let (problem, problem_type) = problem_of(&e);
            let hint = registration_hint(problem_type.as_deref(), eab);
            AcmeError::Account {
                directory: directory.to_string(),
                step: "registering the account",
                problem: format!("{problem}{hint}"),
                problem_type,
            }
        })?;

    // 3. Keep the credentials (they hold the private key: 0600 in the
    //    state directory, or in etcd). Create-only: should another instance have
    //    registered at the same moment, its account is the one kept.
    let json = serde_json::to_vec_pretty(&credentials)
        .map_err(|e| fail("encoding credentials", e.to_string()))?;
    match storage.put(&key, json, Condition::Absent).await {
        Ok(Some(_)) => {
            tracing::info!(directory, email = email.unwrap_or("-"), key, storage = %storage.describe(), "ACME account registered");
            Ok(account)
        }
        // This order goes on with the account just registered (valid too);
        // from the next one on, the stored one is used.
        Ok(None) => {
            tracing::info!(
                directory,
                key,
                "another instance registered an account at the same moment; its account is used \
                 from the next order on"
            );
            Ok(account)
        }
        Err(e) => Err(storage_failed("storing credentials", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_registrations_say_what_to_set() {
        let hint = registration_hint(Some(EXTERNAL_ACCOUNT_REQUIRED), None);
        assert!(hint.contains("acme.eab"), "{hint}");
        assert!(hint.contains("hmac_key_file"), "{hint}");
        let eab = EabConfig {
            kid: "k".into(),
            hmac_key_file: "/k".into(),
            hmac_key: vec![1],
        };
        let hint = registration_hint(Some("urn:ietf:params:acme:error:unauthorized"), Some(&eab));
        assert!(hint.contains("acme.eab"), "{hint}");
        assert_eq!(registration_hint(Some(crate::acme::RATE_LIMITED), None), "");
        assert_eq!(registration_hint(None, Some(&eab)), "");
    }

    #[test]
    fn credentials_key_depends_on_directory_email_and_kid() {
        let a = credentials_key("https://ca/dir", Some("a@example.com"), None);
        let b = credentials_key("https://ca/dir", Some("b@example.com"), None);
        let c = credentials_key("https://other/dir", Some("a@example.com"), None);
        let bound = credentials_key("https://ca/dir", Some("a@example.com"), Some("kid-1"));
        let rebound = credentials_key("https://ca/dir", Some("a@example.com"), Some("kid-2"));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, bound);
        assert_ne!(bound, rebound, "another kid: another account");
        assert_eq!(
            a,
            credentials_key("https://ca/dir", Some("a@example.com"), None)
        );
        assert!(a.starts_with("accounts/"));
        assert_eq!(a.len(), "accounts/".len() + 16 + ".json".len());
        // The file existing state directories hold (no migration).
        let state = crate::state_layout::StateLayout::new("/state");
        assert!(state.key_path(&a).starts_with("/state/acme/accounts"));
    }
}
