use super::certificate::{LoadedCertificate, SourceKind};
use super::report::{Severity, check_key};
use crate::pem;

fn loaded(algorithm: &'static rcgen::SignatureAlgorithm) -> LoadedCertificate {
    let key = rcgen::KeyPair::generate_for(algorithm).expect("key");
    let params = rcgen::CertificateParams::new(vec!["a.example.com".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    let text = format!("{}{}", key.serialize_pem(), cert.pem());
    let parsed = pem::parse_certificate_pem(&text).expect("loads");
    LoadedCertificate::from_parsed(parsed, SourceKind::Inline, None)
}

#[test]
fn ed25519_keys_are_warned_about_naming_the_clients_that_fail() {
    let mut problems = Vec::new();
    check_key(&mut problems, &loaded(&rcgen::PKCS_ED25519));
    assert_eq!(problems.len(), 1, "{problems:?}");
    let problem = &problems[0];
    assert_eq!(problem.severity, Severity::Warning, "served, not an error");
    for needle in [
        "Ed25519",
        "Chrome",
        "Firefox",
        "Safari",
        "Edge",
        "OpenSSL 1.1.1+",
    ] {
        assert!(
            problem.message.contains(needle),
            "{needle}: {}",
            problem.message
        );
    }
    for algorithm in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_RSA_SHA256] {
        let mut problems = Vec::new();
        check_key(&mut problems, &loaded(algorithm));
        assert!(problems.is_empty(), "{problems:?}");
    }
}
