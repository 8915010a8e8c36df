//! Pending ACME challenge answers, read by the listeners.
//!
//! Small and separate from the certificate snapshot (answers come and go
//! within an order; a snapshot is rebuilt only when certificates change):
//! HTTP-01 key authorizations by token, served by `http` listeners at
//! `/.well-known/acme-challenge/<token>`, and TLS-ALPN-01 certificates by
//! domain, served by the resolver of `https` listeners to ClientHellos that
//! offer ALPN `acme-tls/1` (RFC 8737). ACME is the only writer; readers
//! never lock.
//!
//! HTTP-01 answers are also written to `state_dir/acme/http-01/<token>`, so
//! with several instances sharing `state_dir` the one the CA happens to
//! reach answers for the one that ordered. The files are public (the CA
//! fetches them over plain HTTP) and removed when the challenge is over;
//! leftovers of killed instances are swept at start ([`sweep_shared_answers`]).

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;

use crate::state_layout::StateLayout;

/// The ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Pending challenge answers: HTTP-01 by token, TLS-ALPN-01 by domain.
#[derive(Debug, Default)]
pub struct ChallengeStore {
    http01: ArcSwap<HashMap<String, Arc<str>>>,
    tls_alpn01: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
}

impl ChallengeStore {
    /// The key authorization to answer for `token`, if one is pending.
    pub fn http01(&self, token: &str) -> Option<Arc<str>> {
        self.http01.load().get(token).cloned()
    }

    /// Publishes the answer for `token`.
    pub fn set_http01(&self, token: &str, key_authorization: &str) {
        let answer: Arc<str> = key_authorization.into();
        self.http01.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(token.to_string(), answer.clone());
            next
        });
    }

    /// Withdraws the answer for `token` once the challenge is over.
    pub fn remove_http01(&self, token: &str) {
        self.http01.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.remove(token);
            next
        });
    }

    /// The TLS-ALPN-01 certificate pending for `domain` (lower case, no
    /// trailing dot, as rustls hands out SNI names).
    pub fn tls_alpn01(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        let pending = self.tls_alpn01.load();
        if pending.is_empty() {
            return None;
        }
        pending.get(domain).cloned()
    }

    /// Publishes the TLS-ALPN-01 certificate for `domain`.
    pub fn set_tls_alpn01(&self, domain: &str, certificate: Arc<CertifiedKey>) {
        self.tls_alpn01.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(domain.to_string(), certificate.clone());
            next
        });
    }

    /// Withdraws the TLS-ALPN-01 certificate for `domain`.
    pub fn remove_tls_alpn01(&self, domain: &str) {
        self.tls_alpn01.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.remove(domain);
            next
        });
    }

    /// Withdraws `domain`'s TLS-ALPN-01 certificate only if it is still
    /// `certificate` (another writer may have set a newer one since).
    pub fn remove_tls_alpn01_if(&self, domain: &str, certificate: &Arc<CertifiedKey>) {
        self.tls_alpn01.rcu(|current| {
            let mut next = HashMap::clone(current);
            if next
                .get(domain)
                .is_some_and(|set| Arc::ptr_eq(set, certificate))
            {
                next.remove(domain);
            }
            next
        });
    }
}

/// Largest shared answer read: a key authorization is a token (43
/// characters from Let's Encrypt), a dot and a 43-character thumbprint.
pub const MAX_SHARED_ANSWER_BYTES: u64 = 4096;

/// Shared answers older than this are leftovers of an instance killed
/// mid-order (a challenge lasts minutes).
pub const SHARED_ANSWER_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Reads the shared answer for `token` ([`StateLayout::http01_answer`]):
/// `None` if there is none, `token` is not a valid token, or the answer is
/// larger than [`MAX_SHARED_ANSWER_BYTES`].
pub async fn read_shared_http01(state: &StateLayout, token: &str) -> io::Result<Option<String>> {
    use tokio::io::AsyncReadExt as _;
    if !is_token(token) {
        return Ok(None);
    }
    let file = match tokio::fs::File::open(state.http01_answer(token)).await {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut answer = String::new();
    file.take(MAX_SHARED_ANSWER_BYTES + 1)
        .read_to_string(&mut answer)
        .await?;
    if answer.len() as u64 > MAX_SHARED_ANSWER_BYTES {
        return Ok(None);
    }
    Ok(Some(answer))
}

/// Whether a shared answer last written at `modified` is a leftover at
/// `now`.
pub fn is_leftover_answer(modified: SystemTime, now: SystemTime) -> bool {
    now.duration_since(modified)
        .is_ok_and(|age| age > SHARED_ANSWER_MAX_AGE)
}

/// Deletes shared answers older than [`SHARED_ANSWER_MAX_AGE`] (left by
/// instances killed mid-order): HTTP-01 answers and, with `storage: dir`,
/// TLS-ALPN-01 digests; best effort. Returns how many went.
pub fn sweep_shared_answers(state: &StateLayout, now: SystemTime) -> usize {
    let tls_alpn01 = state
        .key_path(&crate::storage::keys::tls_alpn01("x"))
        .parent()
        .map(std::path::Path::to_path_buf);
    [Some(state.http01_dir()), tls_alpn01]
        .into_iter()
        .flatten()
        .map(|dir| sweep_old_files(&dir, now))
        .sum()
}

/// Deletes the files in `dir` older than [`SHARED_ANSWER_MAX_AGE`].
fn sweep_old_files(dir: &std::path::Path, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| is_leftover_answer(modified, now))
        })
        .filter(|entry| std::fs::remove_file(entry.path()).is_ok())
        .count()
}

/// Why the TLS-ALPN-01 certificate could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ChallengeCertificateError {
    /// No key could be generated.
    #[error("generating the key: {0}")]
    Key(rcgen::Error),
    /// The domain is no name for a certificate.
    #[error("certificate parameters for `{domain}`: {error}")]
    Params {
        /// The domain.
        domain: String,
        /// What rcgen said.
        error: rcgen::Error,
    },
    /// Signing failed.
    #[error("signing the challenge certificate: {0}")]
    Sign(rcgen::Error),
    /// rustls refused the generated key.
    #[error("loading the challenge key: {0}")]
    LoadKey(rustls::Error),
}

/// Builds the self-signed TLS-ALPN-01 certificate for `domain` (RFC 8737
/// §3): a fresh P-256 key, `domain` as its only name, and the critical
/// `acmeIdentifier` extension holding `digest`, the SHA-256 of the key
/// authorization.
///
/// It goes through `CertifiedKey::new`, not `from_der`: rustls's key/cert
/// consistency check rejects the critical extension it does not know.
pub fn tls_alpn01_certificate(
    domain: &str,
    digest: &[u8],
) -> Result<CertifiedKey, ChallengeCertificateError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(ChallengeCertificateError::Key)?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|error| {
        ChallengeCertificateError::Params {
            domain: domain.to_string(),
            error,
        }
    })?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let certificate = params
        .self_signed(&key)
        .map_err(ChallengeCertificateError::Sign)?;
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing_key = rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(ChallengeCertificateError::LoadKey)?;
    Ok(CertifiedKey::new(
        vec![certificate.der().clone()],
        signing_key,
    ))
}

/// Whether `token` can be an ACME token (base64url, RFC 8555 §8.3): a
/// cheap guard before any lookup with network input.
pub fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn answers_come_and_go() {
        let store = ChallengeStore::default();
        assert_eq!(store.http01("abc"), None);
        store.set_http01("abc", "abc.thumb");
        assert_eq!(store.http01("abc").as_deref(), Some("abc.thumb"));
        store.remove_http01("abc");
        assert_eq!(store.http01("abc"), None);
    }

    #[test]
    fn tls_alpn01_certificates_come_and_go() {
        let store = ChallengeStore::default();
        assert!(store.tls_alpn01("a.example.com").is_none());
        let cert = tls_alpn01_certificate("a.example.com", &[7; 32]).expect("builds");
        store.set_tls_alpn01("a.example.com", Arc::new(cert));
        assert!(store.tls_alpn01("a.example.com").is_some());
        assert!(store.tls_alpn01("b.example.com").is_none());
        store.remove_tls_alpn01("a.example.com");
        assert!(store.tls_alpn01("a.example.com").is_none());
    }

    #[test]
    fn tls_alpn01_certificate_carries_the_digest() {
        let digest = [0xab; 32];
        let cert = tls_alpn01_certificate("a.example.com", &digest).expect("builds");
        let der = cert.end_entity_cert().expect("leaf");
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).expect("parses");
        // id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31, critical, OCTET STRING.
        let extension = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier present");
        assert!(extension.critical);
        assert_eq!(&extension.value[2..], &digest);
        let names: Vec<String> = parsed
            .subject_alternative_name()
            .expect("san")
            .expect("present")
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, vec!["DNSName(a.example.com)".to_string()]);
    }

    /// What the dir storage engine writes for an HTTP-01 answer.
    fn write_shared_http01(state: &StateLayout, token: &str, answer: &str) -> PathBuf {
        let path = state.http01_answer(token);
        crate::fsio::create_private_dir(&state.http01_dir()).expect("folder");
        crate::fsio::write_atomic(&path, answer.as_bytes(), false).expect("write");
        path
    }

    #[tokio::test]
    async fn shared_answers_are_read_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = &StateLayout::new(dir.path());
        let shared = state.http01_dir();
        assert_eq!(read_shared_http01(state, "tok").await.expect("io"), None);
        let path = write_shared_http01(state, "tok", "tok.thumb");
        assert_eq!(path, shared.join("tok"));
        assert_eq!(
            read_shared_http01(state, "tok")
                .await
                .expect("io")
                .as_deref(),
            Some("tok.thumb")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o644, "public: the CA fetches it");
        }
        // Not a token: never a path outside the folder.
        assert_eq!(read_shared_http01(state, "../tok").await.expect("io"), None);
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(read_shared_http01(state, "tok").await.expect("io"), None);
        // Oversized files are not answered.
        std::fs::write(shared.join("big"), vec![b'a'; 5000]).expect("write");
        assert_eq!(read_shared_http01(state, "big").await.expect("io"), None);
    }

    #[test]
    fn only_day_old_answers_are_leftovers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * 24 * 3600);
        let hour = Duration::from_secs(3600);
        assert!(!is_leftover_answer(now - hour, now));
        assert!(!is_leftover_answer(now - 24 * hour, now));
        assert!(is_leftover_answer(now - 25 * hour, now));
        assert!(!is_leftover_answer(now + hour, now), "clock skew");
        let dir = tempfile::tempdir().expect("tempdir");
        let state = &StateLayout::new(dir.path());
        write_shared_http01(state, "fresh", "x");
        let digest = state.key_path(&crate::storage::keys::tls_alpn01("a.test"));
        std::fs::create_dir_all(digest.parent().expect("folder")).expect("mkdir");
        std::fs::write(&digest, "00").expect("write");
        assert_eq!(sweep_shared_answers(state, SystemTime::now()), 0);
        assert_eq!(
            sweep_shared_answers(state, SystemTime::now() + 25 * hour),
            2
        );
        assert!(!state.http01_answer("fresh").exists());
        assert!(!digest.exists());
        let missing = StateLayout::new(dir.path().join("none"));
        assert_eq!(sweep_shared_answers(&missing, now), 0);
    }

    #[test]
    fn tokens_are_base64url() {
        assert!(is_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"));
        assert!(!is_token(""));
        assert!(!is_token("../etc/passwd"));
        assert!(!is_token("a b"));
    }
}
