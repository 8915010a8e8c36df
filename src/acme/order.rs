//! One issuance (RFC 8555 §7.4), step by step, with its challenge answers
//! shared through the storage; the issuer stores the result.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus,
    RetryPolicy,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use super::{AcmeError, Step, problem_of};
use crate::challenge::{ChallengeStore, tls_alpn01_certificate};
use crate::config::ChallengeKind;
use crate::ids::hex;
use crate::pem::{ACME_ISSUED_MARKER, Markers, render_certificate_pem};
use crate::storage::{HeldLock, Storage, keys};

pub use crate::pem::ACME_DIRECTORY_MARKER;

/// How long to wait for the CA to validate, and then to issue.
const POLL_TIMEOUT: Duration = Duration::from_secs(60);

/// What one issuance needs besides the account.
#[derive(Clone, Copy)]
pub struct Issue<'a> {
    /// The name to issue for.
    pub domain: &'a str,
    /// How to prove control of it.
    pub challenge: ChallengeKind,
    /// Where answers are published for the listeners to serve.
    pub challenges: &'a ChallengeStore,
    /// The storage that shares the answers with the other instances, and
    /// the order lock they are put under (they go when it is released);
    /// `None` keeps them in this process.
    pub shared: Option<(&'a dyn Storage, &'a HeldLock)>,
    /// The ACME directory URL, recorded in the result's markers.
    pub directory: &'a str,
    /// Told each step as it starts (job status, logs).
    pub progress: &'a (dyn Fn(Step) + Send + Sync),
}

/// Issues a certificate for `issue.domain` from the CA `account` belongs
/// to. Returns the `certificate_pem` text: markers
/// `acme_issued=<RFC 3339 now>` and `acme_directory=<directory>`, a new
/// ECDSA P-256 key, the leaf and the chain.
///
/// The challenge answers are withdrawn again whether issuance worked or not
/// (also when this future is dropped half-way).
pub async fn issue(account: &Account, issue: Issue<'_>) -> Result<String, AcmeError> {
    let mut published = Published {
        challenges: issue.challenges,
        domain: issue.domain,
        http01: Vec::new(),
        tls_alpn01: false,
    };
    issue_inner(account, issue, &mut published).await
}

/// [`issue`] by HTTP-01 without progress reports or shared answers.
pub async fn issue_http01(
    account: &Account,
    domain: &str,
    challenges: &ChallengeStore,
    directory: &str,
) -> Result<String, AcmeError> {
    issue(
        account,
        Issue {
            domain,
            challenge: ChallengeKind::Http01,
            challenges,
            shared: None,
            directory,
            progress: &|_| {},
        },
    )
    .await
}

/// Answers published in this process during one issuance; withdrawn when
/// dropped, so an order that fails, or whose task is cancelled, leaves
/// none behind. (The shared copies go with the order lock.)
struct Published<'a> {
    challenges: &'a ChallengeStore,
    domain: &'a str,
    http01: Vec<String>,
    tls_alpn01: bool,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for token in &self.http01 {
            self.challenges.remove_http01(token);
        }
        if self.tls_alpn01 {
            self.challenges.remove_tls_alpn01(self.domain);
        }
    }
}

async fn issue_inner(
    account: &Account,
    issue: Issue<'_>,
    published: &mut Published<'_>,
) -> Result<String, AcmeError> {
    let Issue {
        domain,
        challenge: kind,
        challenges,
        shared,
        directory,
        progress,
    } = issue;
    let fail = |step: Step, problem: String| AcmeError::Order {
        domain: domain.to_string(),
        step,
        problem,
        problem_type: None,
    };
    let acme = |step: Step| {
        move |e: instant_acme::Error| {
            let (problem, problem_type) = problem_of(&e);
            AcmeError::Order {
                domain: domain.to_string(),
                step,
                problem,
                problem_type,
            }
        }
    };
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(POLL_TIMEOUT);
    let challenge_type = match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };

    // 1. New order for the one name (newOrder, §7.4).
    progress(Step::CreateOrder);
    let identifiers = [Identifier::Dns(domain.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(acme(Step::CreateOrder))?;
    tracing::info!(domain, order = order.url(), "ACME: order placed");

    // 2. Authorizations (§7.5): skip those already valid (the CA may reuse
    //    an earlier one); for the rest, publish the answer and tell the CA
    //    it is ready (§7.5.1; HTTP-01 §8.3, TLS-ALPN-01 RFC 8737).
    progress(Step::GetChallenge);
    {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(acme(Step::GetChallenge))?;
            match authorization.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(fail(
                        Step::GetChallenge,
                        format!("the CA's authorization is {other:?}"),
                    ));
                }
            }
            let mut challenge =
                authorization
                    .challenge(challenge_type.clone())
                    .ok_or_else(|| {
                        fail(
                            Step::GetChallenge,
                            format!(
                                "the CA offers no {} challenge; set acme.challenge to another type",
                                kind.as_str()
                            ),
                        )
                    })?;
            progress(Step::AnswerChallenge);
            let key_authorization = challenge.key_authorization();
            match kind {
                ChallengeKind::Http01 => {
                    challenges.set_http01(&challenge.token, key_authorization.as_str());
                    published.http01.push(challenge.token.clone());
                    if let Some((storage, lock)) = shared {
                        let key = keys::http01(&challenge.token);
                        share(storage, lock, domain, &key, key_authorization.as_str()).await;
                    }
                }
                ChallengeKind::TlsAlpn01 => {
                    let digest = key_authorization.digest();
                    let certificate = tls_alpn01_certificate(domain, digest.as_ref())
                        .map_err(|e| fail(Step::AnswerChallenge, e.to_string()))?;
                    challenges.set_tls_alpn01(domain, Arc::new(certificate));
                    published.tls_alpn01 = true;
                    if let Some((storage, lock)) = shared {
                        let key = keys::tls_alpn01(domain);
                        share(storage, lock, domain, &key, &hex(digest.as_ref())).await;
                    }
                }
            }
            challenge
                .set_ready()
                .await
                .map_err(acme(Step::AnswerChallenge))?;
        }
    }

    // 3. Wait for the CA to validate: the order becomes ready (or invalid,
    //    with the reason in the failed challenge).
    progress(Step::CheckOrder);
    let status = order
        .poll_ready(&retry)
        .await
        .map_err(acme(Step::CheckOrder))?;
    if status != OrderStatus::Ready {
        let reason = challenge_problems(&mut order).await;
        return Err(fail(
            Step::CheckOrder,
            format!(
                "the CA could not validate the {} challenge (order {status:?}): {reason}",
                kind.as_str()
            ),
        ));
    }

    // 4. A new ECDSA P-256 key and a CSR for the name (§7.4 finalize).
    progress(Step::CreateCertificate);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| fail(Step::CreateCertificate, format!("generating the key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])
        .map_err(|e| fail(Step::CreateCertificate, format!("building the CSR: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| fail(Step::CreateCertificate, format!("building the CSR: {e}")))?;

    // 5. Finalize, then wait for the certificate (§7.4.2).
    order
        .finalize_csr(csr.der())
        .await
        .map_err(acme(Step::CreateCertificate))?;
    let chain_pem = order
        .poll_certificate(&retry)
        .await
        .map_err(acme(Step::CreateCertificate))?;

    // 6. Render as a `certificate_pem` with our markers.
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            fail(
                Step::CreateCertificate,
                format!("reading the certificate chain: {e}"),
            )
        })?;
    if chain.is_empty() {
        return Err(fail(
            Step::CreateCertificate,
            "the CA sent no certificate".into(),
        ));
    }
    let markers = Markers {
        pairs: vec![
            (
                ACME_ISSUED_MARKER.to_string(),
                crate::clock::rfc3339(crate::clock::unix_now()),
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

/// Puts a challenge's answer where every instance finds it, for whichever
/// one the CA reaches, for as long as the order lock is held. A failure is
/// logged, not fatal: this instance still answers from memory.
async fn share(storage: &dyn Storage, lock: &HeldLock, domain: &str, key: &str, answer: &str) {
    match storage
        .put_while_held(key, answer.as_bytes().to_vec(), lock)
        .await
    {
        Ok(Some(_)) => tracing::debug!(
            domain,
            key,
            "ACME: challenge answer shared with the other instances"
        ),
        Ok(None) => tracing::warn!(
            domain,
            key,
            "cannot share the challenge answer: the order lock was lost"
        ),
        Err(e) => tracing::warn!(
            domain,
            "cannot share the challenge answer ({e}); only this instance can answer the CA"
        ),
    }
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
            Err(e) => problems.push(problem_of(&e).0),
        }
    }
    if problems.is_empty() {
        "the CA gave no reason".into()
    } else {
        problems.join("; ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_rfc3339() {
        let now = crate::clock::rfc3339(crate::clock::unix_now());
        assert!(now.ends_with('Z'), "{now}");
        assert!(
            time::OffsetDateTime::parse(&now, &time::format_description::well_known::Rfc3339)
                .is_ok()
        );
    }
}
