//! The ACME account: created once per (directory, contact e-mail), its
//! credentials (key included) kept at
//! `state_dir/acme/accounts/<id>.json` with mode 0600, and restored from
//! there on every later start, so no new account is registered.

use std::path::PathBuf;

use instant_acme::{Account, AccountCredentials, HttpClient, NewAccount};

use super::{AcmeError, problem_of};
use crate::fsio;
use crate::state_layout::StateLayout;

/// Where the credentials for `directory` and `email` are stored: the first
/// 16 hex digits of SHA-256 over `directory`, a newline and `email`.
pub fn credentials_path(state: &StateLayout, directory: &str, email: Option<&str>) -> PathBuf {
    let input = format!("{directory}\n{}", email.unwrap_or(""));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input.as_bytes());
    let name = format!("{}.json", crate::ids::hex(&digest.as_ref()[..8]));
    state.account(&name)
}

/// Restores the account stored for `directory` and `email`, or registers
/// a new one (agreeing to the terms of service) and stores its credentials.
/// `http` is the client to reach the CA with (see [`super::client`]).
pub async fn load_or_create(
    state: &StateLayout,
    directory: &str,
    email: Option<&str>,
    http: Box<dyn HttpClient>,
) -> Result<Account, AcmeError> {
    let fail = |step: &'static str, problem: String| AcmeError::Account {
        directory: directory.to_string(),
        step,
        problem,
        problem_type: None,
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
    let path = credentials_path(state, directory, email);

    // 1. Stored credentials: restore them (no request to the CA beyond the
    //    directory).
    match fsio::read_cert_text(&path) {
        Ok(json) => {
            let credentials: AccountCredentials = serde_json::from_str(&json).map_err(|e| {
                fail(
                    "reading stored credentials",
                    format!(
                        "{}: {e}; move the file away to register a new account",
                        path.display()
                    ),
                )
            })?;
            return Account::builder_with_http(http)
                .from_credentials(credentials)
                .await
                .map_err(acme("restoring the account"));
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(fail("reading stored credentials", e.to_string())),
    }

    // 2. None yet: register a new account (newAccount, RFC 8555 §7.3).
    let contact = email.map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(http)
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_string(),
            None,
        )
        .await
        .map_err(acme("registering the account"))?;

    // 3. Keep the credentials (they hold the private key: 0600, private dir).
    let json = serde_json::to_vec_pretty(&credentials)
        .map_err(|e| fail("encoding credentials", e.to_string()))?;
    if let Some(parent) = path.parent() {
        fsio::create_private_dir(parent).map_err(|e| fail("storing credentials", e.to_string()))?;
    }
    fsio::write_atomic(&path, &json, true)
        .map_err(|e| fail("storing credentials", e.to_string()))?;
    tracing::info!(directory, email = email.unwrap_or("-"), file = %path.display(), "ACME account registered");
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_path_depends_on_directory_and_email() {
        let dir = &StateLayout::new("/state");
        let a = credentials_path(dir, "https://ca/dir", Some("a@example.com"));
        let b = credentials_path(dir, "https://ca/dir", Some("b@example.com"));
        let c = credentials_path(dir, "https://other/dir", Some("a@example.com"));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            a,
            credentials_path(dir, "https://ca/dir", Some("a@example.com"))
        );
        assert!(a.starts_with("/state/acme/accounts"));
        let name = a.file_name().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 16 + ".json".len());
    }
}
