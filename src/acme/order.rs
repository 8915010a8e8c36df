//! One HTTP-01 issuance (RFC 8555 §7.4), step by step, and storing its
//! result where the snapshot loads it (`state_dir/certificates/<domain>.pem`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus,
    RetryPolicy,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use super::{AcmeError, problem_text};
use crate::challenge::ChallengeStore;
use crate::pem::{ACME_ISSUED_MARKER, Markers, render_certificate_pem};
use crate::{fsio, snapshot};

/// Marker naming the ACME directory that issued a stored certificate.
pub const ACME_DIRECTORY_MARKER: &str = "acme_directory";

/// How long to wait for the CA to validate, and then to issue.
const POLL_TIMEOUT: Duration = Duration::from_secs(60);

/// Issues a certificate for `domain` from the CA `account` belongs to,
/// answering HTTP-01 through `challenges` (served by the `http`
/// listeners). Returns the `certificate_pem` text: markers
/// `acme_issued=<RFC 3339 now>` and `acme_directory=<directory>`, a new
/// ECDSA P-256 key, the leaf and the chain.
///
/// The challenge answers are withdrawn again whether issuance worked or not.
pub async fn issue_http01(
    account: &Account,
    domain: &str,
    challenges: &ChallengeStore,
    directory: &str,
) -> Result<String, AcmeError> {
    let mut published = Vec::new();
    let result = issue_inner(account, domain, challenges, directory, &mut published).await;
    // Withdraw the challenge answers, also on failure.
    for token in &published {
        challenges.remove_http01(token);
    }
    result
}

async fn issue_inner(
    account: &Account,
    domain: &str,
    challenges: &ChallengeStore,
    directory: &str,
    published: &mut Vec<String>,
) -> Result<String, AcmeError> {
    let fail = |step: &'static str, problem: String| AcmeError::Order {
        domain: domain.to_string(),
        step,
        problem,
    };
    let acme = |step: &'static str| move |e: instant_acme::Error| fail(step, problem_text(&e));
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(POLL_TIMEOUT);

    // 1. New order for the one name (newOrder, §7.4).
    let identifiers = [Identifier::Dns(domain.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(acme("creating the order"))?;

    // 2. Authorizations (§7.5): skip those already valid (the CA may reuse
    //    an earlier one); for the rest, publish the HTTP-01 key
    //    authorization and tell the CA it is ready (§7.5.1, §8.3).
    {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(acme("fetching an authorization"))?;
            match authorization.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(fail(
                        "fetching an authorization",
                        format!("authorization is {other:?}"),
                    ));
                }
            }
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| fail("choosing a challenge", "the CA offers no http-01".into()))?;
            let key_authorization = challenge.key_authorization();
            challenges.set_http01(&challenge.token, key_authorization.as_str());
            published.push(challenge.token.clone());
            challenge
                .set_ready()
                .await
                .map_err(acme("answering the http-01 challenge"))?;
        }
    }

    // 3. Wait for the CA to validate: the order becomes ready (or invalid,
    //    with the reason in the failed challenge).
    let status = order
        .poll_ready(&retry)
        .await
        .map_err(acme("validating the http-01 challenge"))?;
    if status != OrderStatus::Ready {
        let reason = challenge_problems(&mut order).await;
        return Err(fail(
            "validating the http-01 challenge",
            format!("order is {status:?}: {reason}"),
        ));
    }

    // 4. A new ECDSA P-256 key and a CSR for the name (§7.4 finalize).
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| fail("generating the key", e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])
        .map_err(|e| fail("building the CSR", e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| fail("building the CSR", e.to_string()))?;

    // 5. Finalize, then wait for the certificate (§7.4.2).
    order
        .finalize_csr(csr.der())
        .await
        .map_err(acme("finalizing the order"))?;
    let chain_pem = order
        .poll_certificate(&retry)
        .await
        .map_err(acme("downloading the certificate"))?;

    // 6. Render as a `certificate_pem` with our markers.
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail("reading the certificate chain", e.to_string()))?;
    if chain.is_empty() {
        return Err(fail(
            "reading the certificate chain",
            "the CA sent no certificate".into(),
        ));
    }
    let markers = Markers {
        pairs: vec![
            (
                ACME_ISSUED_MARKER.to_string(),
                crate::inspect::rfc3339(crate::unix_now()),
            ),
            (ACME_DIRECTORY_MARKER.to_string(), directory.to_string()),
        ],
    };
    Ok(render_certificate_pem(
        &markers,
        &key.serialize_der(),
        &chain,
    ))
}

/// The problem documents of the order's failed challenges, for the error.
async fn challenge_problems(order: &mut Order) -> String {
    let mut problems = Vec::new();
    if let Some(error) = &order.state().error {
        problems.push(error.to_string());
    }
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        match authorization {
            Ok(authorization) => problems.extend(
                authorization
                    .challenges
                    .iter()
                    .filter_map(|c| c.error.as_ref().map(|e| e.to_string())),
            ),
            Err(e) => problems.push(problem_text(&e)),
        }
    }
    if problems.is_empty() {
        "the CA gave no reason".into()
    } else {
        problems.join("; ")
    }
}

/// Writes `pem` atomically (mode 0600, the folder created owner-only) to
/// where the snapshot loads `domain`'s certificate, and returns the path.
pub async fn store(state_dir: &Path, domain: &str, pem: &str) -> Result<PathBuf, AcmeError> {
    let path = snapshot::stored_certificate_path(state_dir, domain);
    let fail = {
        let (domain, path) = (domain.to_string(), path.clone());
        move |problem: String| AcmeError::Store {
            domain: domain.clone(),
            path: path.clone(),
            problem,
        }
    };
    let (target, pem) = (path.clone(), pem.to_string());
    let written = tokio::task::spawn_blocking(move || {
        if let Some(parent) = target.parent() {
            fsio::create_private_dir(parent)?;
        }
        fsio::write_atomic(&target, pem.as_bytes(), true)
    })
    .await;
    match written {
        Ok(Ok(())) => Ok(path),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(e) => Err(fail(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn store_writes_private_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = store(dir.path(), "a.example.com", "text")
            .await
            .expect("store");
        assert_eq!(
            path,
            snapshot::stored_certificate_path(dir.path(), "a.example.com")
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "text");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn now_is_rfc3339() {
        let now = crate::inspect::rfc3339(crate::unix_now());
        assert!(now.ends_with('Z'), "{now}");
        assert!(
            time::OffsetDateTime::parse(&now, &time::format_description::well_known::Rfc3339)
                .is_ok()
        );
    }
}
