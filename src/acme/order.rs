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

use super::dns01::{Dns01, Dns01Error};
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
    /// The domain issued for: its name is where the result is stored.
    pub domain: &'a str,
    /// The names the certificate covers (the domain's `names`, else its
    /// own name); wildcards `*.x` need dns-01.
    pub names: &'a [String],
    /// How to prove control of it.
    pub challenge: ChallengeKind,
    /// Where answers are published for the listeners to serve.
    pub challenges: &'a ChallengeStore,
    /// Where dns-01 answers are published (`acme.rfc2136`).
    pub dns: Option<&'a Dns01>,
    /// The storage that shares the answers with the other instances, and
    /// the order lock they are put under (they go when it is released);
    /// `None` keeps them in this process.
    pub shared: Option<(&'a dyn Storage, &'a HeldLock)>,
    /// The ACME directory URL, recorded in the result's markers.
    pub directory: &'a str,
    /// Told each step as it starts (job status, logs).
    pub progress: &'a (dyn Fn(Step) + Send + Sync),
}

/// Issues a certificate for `issue.names` from the CA `account` belongs
/// to. Returns the `certificate_pem` text: markers
/// `acme_issued=<RFC 3339 now>` and `acme_directory=<directory>`, a new
/// ECDSA P-256 key, the leaf and the chain.
///
/// The challenge answers are withdrawn again whether issuance worked or not
/// (also when this future is dropped half-way).
pub async fn issue(account: &Account, issue: Issue<'_>) -> Result<String, AcmeError> {
    let mut published = Published {
        challenges: issue.challenges,
        http01: Vec::new(),
        tls_alpn01: Vec::new(),
        dns01: Vec::new(),
        dns: issue.dns.cloned(),
    };
    let issued = issue_inner(account, issue, &mut published).await;
    // Also on failure (RFC 8555 §8.4 leaves the record to us).
    published.withdraw_dns01().await;
    issued
}

/// [`issue`] by HTTP-01 without progress reports or shared answers.
pub async fn issue_http01(
    account: &Account,
    domain: &str,
    challenges: &ChallengeStore,
    directory: &str,
) -> Result<String, AcmeError> {
    let names = [domain.to_string()];
    issue(
        account,
        Issue {
            domain,
            names: &names,
            challenge: ChallengeKind::Http01,
            challenges,
            dns: None,
            shared: None,
            directory,
            progress: &|_| {},
        },
    )
    .await
}

/// Answers published during one issuance; withdrawn when dropped, so an
/// order that fails, or whose task is cancelled, leaves none behind. (The
/// shared copies go with the order lock; DNS records are withdrawn by
/// [`Published::withdraw_dns01`], or by a task spawned on drop.)
struct Published<'a> {
    challenges: &'a ChallengeStore,
    http01: Vec<String>,
    tls_alpn01: Vec<String>,
    dns01: Vec<(String, String)>,
    dns: Option<Dns01>,
}

impl Published<'_> {
    /// Removes the TXT records this order published, once validation is
    /// over (README, "DNS-01 and wildcards"); a failure is logged: the
    /// record holds no secret and a later order adds its own.
    async fn withdraw_dns01(&mut self) {
        let Some(dns) = self.dns.clone() else {
            return;
        };
        // One at a time: if this is cancelled, the rest go on drop.
        while let Some((name, value)) = self.dns01.last().cloned() {
            dns.withdraw(&name, &value).await;
            self.dns01.pop();
        }
    }
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for token in &self.http01 {
            self.challenges.remove_http01(token);
        }
        for name in &self.tls_alpn01 {
            self.challenges.remove_tls_alpn01(name);
        }
        // Dropped half-way (the task was cancelled): withdraw in the
        // background.
        let records = std::mem::take(&mut self.dns01);
        if let (Some(dns), false) = (self.dns.clone(), records.is_empty())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                for (name, value) in records {
                    dns.withdraw(&name, &value).await;
                }
            });
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
        names,
        challenge: kind,
        challenges,
        dns,
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
        ChallengeKind::Dns01 => ChallengeType::Dns01,
    };

    // 1. New order for all the names (newOrder, §7.4; a wildcard is the
    //    identifier `*.x`, §7.1.3).
    progress(Step::CreateOrder);
    let identifiers: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(acme(Step::CreateOrder))?;
    tracing::info!(domain, names = %names.join(" "), order = order.url(), "ACME: order placed");

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
            // The name validated: a wildcard's authorization is for the
            // name below `*.` (§7.1.4).
            let Identifier::Dns(name) = challenge.identifier().identifier.clone() else {
                return Err(fail(
                    Step::GetChallenge,
                    "the CA sent an authorization for an identifier that is not a DNS name".into(),
                ));
            };
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
                    let certificate = tls_alpn01_certificate(&name, digest.as_ref())
                        .map_err(|e| fail(Step::AnswerChallenge, e.to_string()))?;
                    challenges.set_tls_alpn01(&name, Arc::new(certificate));
                    published.tls_alpn01.push(name.clone());
                    if let Some((storage, lock)) = shared {
                        let key = keys::tls_alpn01(&name);
                        share(storage, lock, domain, &key, &hex(digest.as_ref())).await;
                    }
                }
                ChallengeKind::Dns01 => {
                    let dns_failed = |e: Dns01Error| AcmeError::DnsUpdate {
                        domain: domain.to_string(),
                        problem: e.to_string(),
                    };
                    let Some(dns) = dns else {
                        return Err(dns_failed(Dns01Error::NotConfigured));
                    };
                    // RFC 8555 §8.4: TXT `_acme-challenge.NAME`, the
                    // base64url SHA-256 of the key authorization.
                    let record = format!("_acme-challenge.{name}");
                    let value = key_authorization.dns_value();
                    // Remembered first: an update that timed out may still
                    // have been applied, and removing an absent value is a
                    // no-op (RFC 2136 §2.5.4).
                    published.dns01.push((record.clone(), value.clone()));
                    dns.publish(&record, &value).await.map_err(dns_failed)?;
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
    let status = order.poll_ready(&retry).await;
    // Validation is over either way: the TXT records have served.
    published.withdraw_dns01().await;
    let status = status.map_err(acme(Step::CheckOrder))?;
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

    // 4. A new ECDSA P-256 key and a CSR for the names (§7.4 finalize).
    progress(Step::CreateCertificate);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| fail(Step::CreateCertificate, format!("generating the key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
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
