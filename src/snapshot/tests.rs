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

/// Building a snapshot writes nothing; `run` stores the generated default
/// first ([`super::store_generated_default`]), once, and the build then
/// serves it from its file.
#[test]
fn building_writes_nothing_and_the_generated_default_is_stored_before() {
    use super::{DefaultPolicy, Place, Snapshot, store_generated_default};
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let yaml = format!(
        "master_domain: a.test\nstate_dir: {}\ndomains:\n  a.test: {{}}\n",
        state.display()
    );
    let config =
        crate::config::Config::parse(&yaml, &dir.path().join("proxy.yaml")).expect("valid");
    let default_report = |snapshot: &Snapshot| {
        snapshot
            .report(&Place::Default)
            .cloned()
            .expect("a default report")
    };

    for policy in [DefaultPolicy::Persist, DefaultPolicy::InMemory] {
        let snapshot = Snapshot::build(&config, None, policy, 0).expect("builds");
        assert!(
            !state.exists(),
            "{policy:?}: the build wrote into state_dir"
        );
        let report = default_report(&snapshot);
        assert!(report.loaded.is_some(), "served from memory");
        assert_eq!(report.file, None);
        let warned = report
            .problems
            .iter()
            .any(|p| p.severity == Severity::Warning);
        assert_eq!(
            warned,
            policy == DefaultPolicy::Persist,
            "{:?}",
            report.problems
        );
    }

    let path = config.state_layout().generated_default();
    let now = crate::clock::unix_now();
    assert_eq!(
        store_generated_default(&config, now).expect("stored"),
        Some(path.clone())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "holds a private key");
    }
    let written = std::fs::read_to_string(&path).expect("read");
    assert_eq!(
        store_generated_default(&config, now).expect("kept"),
        None,
        "still usable"
    );
    assert_eq!(std::fs::read_to_string(&path).expect("read"), written);
    let snapshot = Snapshot::build(&config, None, DefaultPolicy::Persist, now).expect("builds");
    let report = default_report(&snapshot);
    assert_eq!(report.file.as_deref(), Some(path.as_path()));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
