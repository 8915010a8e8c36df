//! Tests of `storage migrate`'s decisions (pure), of which configurations
//! name one storage, and of a migration and an inventory between two
//! state directories.

use std::path::Path;

use super::*;
use crate::state_layout::StateLayout;
use crate::storage::dir::DirStorage;

/// A self-signed certificate text (key, then leaf) for `name`, valid from
/// an hour ago for `days`.
fn certificate(name: &str, days: i64) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
    let start = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_before = start;
    params.not_after = start + time::Duration::days(days);
    let leaf = params.self_signed(&key).expect("self-signed");
    format!("{}{}", key.serialize_pem(), leaf.pem())
}

fn stored(value: &str, modified: u64) -> Stored {
    Stored {
        value: value.as_bytes().to_vec(),
        modified: Revision(modified),
    }
}

#[test]
fn transient_keys_are_skipped_whatever_the_target_holds() {
    for key in [
        "locks/orders/a.test",
        "locks/instances/1-ab",
        "http-01/tok",
        "tls-alpn-01/a.test",
        "jobs/1",
        "status/a.test",
    ] {
        assert_eq!(decide(key, b"x", None), Decision::Skip, "{key}");
        assert_eq!(
            decide(key, b"x", Some(&stored("y", 3))),
            Decision::Skip,
            "{key}"
        );
    }
    for key in [
        "certificates/a.test",
        "accounts/0123.json",
        "domains",
        "ticket-keys",
    ] {
        assert!(!is_transient(key), "{key}");
    }
}

#[test]
fn absent_keys_are_copied_and_equal_ones_are_the_same() {
    let pem = certificate("a.test", 30);
    for (key, value) in [
        ("certificates/a.test", pem.as_str()),
        ("accounts/0123.json", "{\"id\":1}"),
        ("domains", "{}"),
        ("ticket-keys", "secret"),
        ("anything/else", "x"),
    ] {
        assert_eq!(decide(key, value.as_bytes(), None), Decision::Copy, "{key}");
        assert_eq!(
            decide(key, value.as_bytes(), Some(&stored(value, 9))),
            Decision::Same,
            "{key}"
        );
    }
}

#[test]
fn other_keys_that_differ_are_never_overwritten() {
    for key in ["accounts/0123.json", "domains", "ticket-keys", "x/y"] {
        assert_eq!(
            decide(key, b"source", Some(&stored("target", 4))),
            Decision::Differs,
            "{key}"
        );
    }
}

#[test]
fn a_certificate_replaces_the_targets_only_when_it_lasts_longer() {
    let key = "certificates/a.test";
    let short = certificate("a.test", 30);
    let long = certificate("a.test", 90);
    let other_long = certificate("a.test", 90);
    // The source's lasts longer: replace, compared to the target's revision.
    match decide(key, long.as_bytes(), Some(&stored(&short, 7))) {
        Decision::Replace {
            expected,
            reason: Reason::Expiry { source, target },
        } => {
            assert_eq!(expected, Revision(7));
            assert!(source > target);
        }
        other => panic!("{other:?}"),
    }
    // The target's lasts longer: kept.
    let kept = decide(key, short.as_bytes(), Some(&stored(&long, 7)));
    assert!(
        matches!(kept, Decision::Keep { reason: Reason::Expiry { source, target } } if source < target),
        "{kept:?}"
    );
    assert!(kept.describe(false).starts_with("kept newer in target"));
    assert!(!kept.writes());
    // Another certificate valid as long (the same second, or within a
    // second of it): never overwritten either.
    let as_new = decide(key, other_long.as_bytes(), Some(&stored(&long, 7)));
    assert!(matches!(as_new, Decision::Keep { .. }), "{as_new:?}");
    assert!(as_new.describe(false).starts_with("kept newer in target"));
}

#[test]
fn an_unloadable_certificate_loses_to_one_that_loads() {
    let key = "certificates/a.test";
    let good = certificate("a.test", 30);
    let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n";
    match decide(key, good.as_bytes(), Some(&stored(broken, 5))) {
        Decision::Replace {
            expected,
            reason: Reason::TargetUnloadable(problem),
        } => {
            assert_eq!(expected, Revision(5));
            assert!(problem.contains("cut off"), "{problem}");
        }
        other => panic!("{other:?}"),
    }
    let kept = decide(key, broken.as_bytes(), Some(&stored(&good, 5)));
    assert!(
        matches!(
            kept,
            Decision::Keep {
                reason: Reason::SourceUnloadable(_)
            }
        ),
        "{kept:?}"
    );
    assert_eq!(
        decide(key, broken.as_bytes(), Some(&stored("garbage", 5))),
        Decision::Differs
    );
    assert_eq!(
        decide(key, &[0xff, 0xfe], Some(&stored(&good, 5))),
        Decision::Keep {
            reason: Reason::SourceUnloadable("not UTF-8 text".into())
        }
    );
}

#[test]
fn decisions_read_as_the_readme_says() {
    let replace = Decision::Replace {
        expected: Revision(1),
        reason: Reason::Expiry {
            source: 2_000_000_000,
            target: 1_900_000_000,
        },
    };
    assert!(
        replace
            .describe(false)
            .starts_with("copied (not after 2033-05-18T03:33:20Z")
    );
    assert!(replace.describe(true).starts_with("would be copied"));
    assert_eq!(Decision::Copy.describe(false), "copied");
    assert_eq!(Decision::Same.describe(true), "same");
    assert_eq!(Decision::Skip.describe(false), "skipped (transient)");
    assert_eq!(
        Decision::Differs.describe(false),
        "differs: not overwritten"
    );
    let failed = KeyReport {
        key: "domains".into(),
        decision: Decision::Copy,
        failure: Some("refused".into()),
    };
    assert_eq!(failed.line(false), "domains: failed: refused");
}

/// A configuration with `storage` (YAML lines) read as if from `file`.
fn config(file: &str, top: &str) -> Config {
    let yaml = format!("master_domain: example.com\n{top}domains:\n  example.com: {{}}\n");
    Config::parse(&yaml, Path::new(file)).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

#[test]
fn the_same_storage_is_the_same_folder_or_the_same_etcd_prefix() {
    let dir_a = config("/srv/a/proxy.yaml", "state_dir: /srv/state\n");
    let dir_b = config("/srv/b/proxy.yaml", "state_dir: /srv/state\n");
    let dir_c = config("/srv/c/proxy.yaml", "state_dir: /srv/other\n");
    let same = |a: &Config, b: &Config| check_distinct(a, b).is_err();
    let refused = check_distinct(&dir_a, &dir_b).expect_err("one folder");
    assert!(
        refused
            .to_string()
            .contains("same storage (state directory /srv/state)"),
        "{refused}"
    );
    assert!(!same(&dir_a, &dir_c));
    let etcd = |endpoints: &str, prefix: &str| {
        config(
            "/srv/e/proxy.yaml",
            &format!(
                "state_dir: /srv/state\nstorage:\n  kind: etcd\n  endpoints: [{endpoints}]\n  \
                 prefix: {prefix}\n"
            ),
        )
    };
    let one = etcd(
        "\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\"",
        "/sniwalk/",
    );
    assert!(same(&one, &etcd("\"10.0.0.2:2379/\"", "/sniwalk/")));
    assert!(!same(&one, &etcd("\"10.0.0.2:2379\"", "/other/")));
    assert!(!same(&one, &etcd("\"10.0.0.3:2379\"", "/sniwalk/")));
    assert!(!same(&one, &dir_a));
}

/// Writes files into a state directory the way an instance on
/// `storage: dir` left them.
fn populate(state: &Path, files: &[(&str, &str)]) {
    for (file, text) in files {
        let path = state.join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
}

#[tokio::test]
async fn a_migration_copies_once_keeps_newer_and_never_shows_a_value() {
    let (from_dir, to_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let source = DirStorage::new(StateLayout::new(from_dir.path()));
    let target = DirStorage::new(StateLayout::new(to_dir.path()));
    let (a, b) = (certificate("a.test", 30), certificate("b.test", 30));
    populate(
        from_dir.path(),
        &[
            ("certificates/a.test.pem", &a),
            ("certificates/b.test.pem", &b),
            (
                "acme/accounts/0123456789abcdef.json",
                "{\"secret\":\"s3cr3t\"}",
            ),
            ("domains.json", "{\"domains\":[]}"),
            ("acme/http-01/tok", "tok.thumb"),
        ],
    );
    let newer_b = certificate("b.test", 90);
    populate(to_dir.path(), &[("certificates/b.test.pem", &newer_b)]);

    // A dry run decides and writes nothing.
    let mut lines = Vec::new();
    let dry = migrate(&source, &target, true, |k| lines.push(k.line(true)))
        .await
        .expect("dry run");
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(
        lines.contains(&"certificates/a.test: would be copied".to_string()),
        "{lines:?}"
    );
    assert!(
        dry.summary().ends_with("dry run: nothing written"),
        "{}",
        dry.summary()
    );
    assert!(!to_dir.path().join("certificates/a.test.pem").exists());

    let first = migrate(&source, &target, false, |_| {})
        .await
        .expect("migrate");
    let outcome = |report: &MigrationReport, key: &str| {
        report
            .keys
            .iter()
            .find(|k| k.key == key)
            .map(|k| k.line(false))
            .unwrap_or_else(|| panic!("{key} not in {:?}", report.keys))
    };
    assert_eq!(first.failed(), 0, "{:?}", first.keys);
    assert_eq!(
        outcome(&first, "certificates/a.test"),
        "certificates/a.test: copied"
    );
    assert!(outcome(&first, "certificates/b.test").contains("kept newer in target"));
    assert_eq!(
        outcome(&first, "http-01/tok"),
        "http-01/tok: skipped (transient)"
    );
    assert_eq!(
        std::fs::read_to_string(to_dir.path().join("acme/accounts/0123456789abcdef.json"))
            .expect("account copied"),
        "{\"secret\":\"s3cr3t\"}"
    );
    assert_eq!(
        std::fs::read_to_string(to_dir.path().join("certificates/b.test.pem")).expect("kept"),
        newer_b
    );
    assert!(!to_dir.path().join("acme/http-01/tok").exists());

    // Again: nothing left to copy.
    let second = migrate(&source, &target, false, |_| {})
        .await
        .expect("again");
    for key in &second.keys {
        assert!(
            matches!(
                key.decision,
                Decision::Same | Decision::Skip | Decision::Keep { .. }
            ),
            "{key:?}"
        );
    }
    assert!(
        second.summary().contains("0 copied"),
        "{}",
        second.summary()
    );

    // The inventory shows facts, never a value.
    let listed = inventory(&target).await.expect("inventory");
    let text = listed.render_text();
    let json = serde_json::to_string(&listed).expect("json");
    for shown in [&text, &json] {
        assert!(
            shown.contains("a.test") && shown.contains("b.test"),
            "{shown}"
        );
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("\"domains\":[]"), "{shown}");
    }
    let b_info = listed
        .keys
        .iter()
        .find(|k| k.key == "certificates/b.test")
        .and_then(|k| k.certificate.clone())
        .expect("b.test described");
    assert!(b_info.loads);
    assert_eq!(b_info.names, ["b.test"]);
}

#[test]
fn an_inventory_names_what_does_not_load() {
    let listing = Listing {
        entries: vec![
            (
                "certificates/x.test".into(),
                stored("-----BEGIN CERTIFICATE-----\nAAAA\n", 3),
            ),
            ("ticket-keys".into(), stored("0011 secret", 4)),
        ],
        revision: Revision(9),
    };
    let listed = Inventory::of("etcd e prefix /p/".into(), &listing);
    let text = listed.render_text();
    assert!(
        text.contains("certificates/x.test: does not load"),
        "{text}"
    );
    assert!(
        text.contains("2 keys (1 certificates, 1 not loading) in etcd e prefix /p/ at revision 9"),
        "{text}"
    );
    assert!(!text.contains("secret") && !text.contains("AAAA"), "{text}");
    assert_eq!(listed.keys[1].size, 11);
}
