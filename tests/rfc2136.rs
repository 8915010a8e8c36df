//! The RFC 2136 client against a real BIND 9 over TCP: what it adds and
//! removes is checked with `dig` (tests/common/bind.rs), an independent
//! client. Each test starts its own `named` in a temporary folder.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::bind::BindServer;
use sniwalk::acme::rfc2136::{
    DnsUpdater, OPERATION_TIMEOUT, Rfc2136Error, Rfc2136Settings, TsigAlgorithm, parse_tsig_secret,
};

/// The zone most tests use.
const ZONE: &str = "example.test";

/// A challenge name two labels below the zone.
const NAME: &str = "_acme-challenge.tenant.example.test";

async fn bind(dir: &tempfile::TempDir, zones: &[&str]) -> BindServer {
    BindServer::start(&dir.path().join("bind"), zones).await
}

/// Settings for `server`'s key, read from its secret file, and `zone`.
fn settings(server: &BindServer, zone: Option<&str>) -> Rfc2136Settings {
    let text = std::fs::read_to_string(&server.secret_file).expect("read secret file");
    Rfc2136Settings {
        server: server.addr(),
        key_name: server.key_name.clone(),
        algorithm: TsigAlgorithm::HmacSha256,
        secret: parse_tsig_secret(&text).expect("secret file"),
        zone: zone.map(str::to_string),
    }
}

fn updater(settings: Rfc2136Settings) -> DnsUpdater {
    DnsUpdater::new(settings).expect("updater")
}

#[tokio::test]
async fn two_values_at_one_name_are_both_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = bind(&dir, &[ZONE]).await;
    let dns = updater(settings(&server, None));
    dns.add_txt(NAME, "token-for-wildcard", 60)
        .await
        .expect("first value");
    dns.add_txt(NAME, "token-for-base", 60)
        .await
        .expect("second value");
    assert_eq!(
        server.txt(NAME).await,
        ["token-for-base", "token-for-wildcard"]
    );
    let mut ours = dns.txt_values(NAME).await.expect("txt_values");
    ours.sort();
    assert_eq!(ours, ["token-for-base", "token-for-wildcard"]);
    // Adding a value again does not duplicate it (RFC 2136 §2.5.1).
    dns.add_txt(NAME, "token-for-base", 60)
        .await
        .expect("again");
    assert_eq!(server.txt(NAME).await.len(), 2);
    server.stop();
}

#[tokio::test]
async fn removing_one_value_leaves_the_other_and_the_last_leaves_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = bind(&dir, &[ZONE]).await;
    let dns = updater(settings(&server, Some(ZONE)));
    dns.add_txt(NAME, "one", 60).await.expect("add one");
    dns.add_txt(NAME, "two", 60).await.expect("add two");
    dns.remove_txt(NAME, "one").await.expect("remove one");
    assert_eq!(server.txt(NAME).await, ["two"]);
    // Removing a value that is not there is no error and changes nothing.
    dns.remove_txt(NAME, "one").await.expect("remove one again");
    assert_eq!(server.txt(NAME).await, ["two"]);
    dns.remove_txt(NAME, "two").await.expect("remove two");
    assert!(server.txt(NAME).await.is_empty());
    assert!(dns.txt_values(NAME).await.expect("txt_values").is_empty());
    server.stop();
}

#[tokio::test]
async fn the_zone_is_discovered_with_an_soa_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = bind(&dir, &[ZONE, "sub.example.test"]).await;
    let dns = updater(settings(&server, None));
    assert_eq!(dns.zone_of(NAME).await.expect("zone of NAME"), ZONE);
    assert_eq!(dns.zone_of(ZONE).await.expect("apex"), ZONE);
    // The deepest zone the server has wins.
    let deep = "_acme-challenge.a.sub.example.test";
    assert_eq!(dns.zone_of(deep).await.expect("deep"), "sub.example.test");
    dns.add_txt(deep, "in-the-sub-zone", 60).await.expect("add");
    assert_eq!(server.txt(deep).await, ["in-the-sub-zone"]);
    server.stop();
}

#[tokio::test]
async fn an_explicit_zone_is_used_as_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = bind(&dir, &[ZONE]).await;
    let dns = updater(settings(&server, Some("example.test.")));
    assert_eq!(dns.zone_of(NAME).await.expect("zone_of"), ZONE);
    dns.add_txt(NAME, "explicit", 120).await.expect("add");
    assert_eq!(server.txt(NAME).await, ["explicit"]);
    let ttl = server
        .dig(&["+tcp", "+noall", "+answer", "TXT", NAME])
        .await
        .expect("dig answer");
    let fields: Vec<&str> = ttl.split_whitespace().collect();
    assert_eq!(fields.get(1), Some(&"120"), "{ttl}");
    // A name outside the configured zone is refused before anything is sent.
    let error = dns
        .add_txt("_acme-challenge.other.test", "x", 60)
        .await
        .expect_err("outside the zone");
    assert!(matches!(error, Rfc2136Error::OutsideZone { .. }), "{error}");
    server.stop();
}

#[tokio::test]
async fn a_wrong_secret_names_the_key_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = bind(&dir, &[ZONE]).await;
    for zone in [Some(ZONE), None] {
        let wrong = Rfc2136Settings {
            secret: vec![7; 32],
            ..settings(&server, zone)
        };
        let error = updater(wrong)
            .add_txt(NAME, "forged", 60)
            .await
            .expect_err("wrong secret");
        let text = error.to_string();
        assert!(matches!(error, Rfc2136Error::TsigRejected { .. }), "{text}");
        assert!(!error.is_unreachable(), "{text}");
        assert!(text.contains(&server.key_name), "{text}");
        assert!(text.contains("tsig_secret_file"), "{text}");
        assert!(text.contains("BADSIG"), "{text}");
        assert!(text.contains(&server.addr().to_string()), "{text}");
    }
    assert!(server.txt(NAME).await.is_empty());
    server.stop();
}

#[tokio::test]
async fn an_unknown_key_name_is_rejected_as_a_tsig_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = bind(&dir, &[ZONE]).await;
    let unknown = Rfc2136Settings {
        key_name: "no-such-key".into(),
        ..settings(&server, Some(ZONE))
    };
    let error = updater(unknown)
        .add_txt(NAME, "forged", 60)
        .await
        .expect_err("unknown key");
    let text = error.to_string();
    assert!(matches!(error, Rfc2136Error::TsigRejected { .. }), "{text}");
    assert!(text.contains("no-such-key"), "{text}");
    assert!(text.contains("BADKEY"), "{text}");
    assert!(text.contains("tsig_key_name"), "{text}");
    // A key of the right name with another algorithm is unknown too.
    let other_algorithm = Rfc2136Settings {
        algorithm: TsigAlgorithm::HmacSha512,
        ..settings(&server, Some(ZONE))
    };
    let error = updater(other_algorithm)
        .add_txt(NAME, "forged", 60)
        .await
        .expect_err("other algorithm");
    assert!(
        matches!(error, Rfc2136Error::TsigRejected { .. }),
        "{error}"
    );
    assert!(server.txt(NAME).await.is_empty());
    server.stop();
}

#[tokio::test]
async fn a_name_outside_every_zone_is_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = bind(&dir, &[ZONE]).await;
    let outside = "_acme-challenge.elsewhere.test";
    let error = updater(settings(&server, None))
        .add_txt(outside, "x", 60)
        .await
        .expect_err("no zone");
    let text = error.to_string();
    assert!(matches!(error, Rfc2136Error::NoZone { .. }), "{text}");
    assert!(text.contains(outside), "{text}");
    assert!(text.contains("REFUSED"), "{text}");
    // A configured zone the server does not have: NOTAUTH, signed.
    let error = updater(settings(&server, Some("elsewhere.test")))
        .add_txt(outside, "x", 60)
        .await
        .expect_err("not authoritative");
    let text = error.to_string();
    assert!(
        matches!(error, Rfc2136Error::NotAuthoritative { .. }),
        "{text}"
    );
    assert!(text.contains("zone elsewhere.test"), "{text}");
    let served = server
        .dig(&["+tcp", "TXT", outside])
        .await
        .expect("dig outside");
    assert!(served.contains("status: REFUSED"), "{served}");
    assert!(server.txt(NAME).await.is_empty());
    server.stop();
}

#[tokio::test]
async fn a_closed_port_is_unreachable_and_named_at_once() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port();
    let settings = Rfc2136Settings {
        server: ([127, 0, 0, 1], port).into(),
        key_name: "acme".into(),
        algorithm: TsigAlgorithm::HmacSha256,
        secret: vec![1; 32],
        zone: None,
    };
    let started = Instant::now();
    let error = updater(settings)
        .add_txt(NAME, "x", 60)
        .await
        .expect_err("closed port");
    assert!(
        started.elapsed() < OPERATION_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    let text = error.to_string();
    assert!(error.is_unreachable(), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("connection refused"), "{text}");
    assert!(text.contains("acme.rfc2136.server"), "{text}");
    assert_eq!(OPERATION_TIMEOUT, Duration::from_secs(10));
}

#[tokio::test]
async fn the_tsig_keygen_block_works_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = bind(&dir, &[ZONE]).await;
    let block = std::fs::read_to_string(&server.keygen_file).expect("read keygen file");
    assert!(block.contains("algorithm hmac-sha256;"), "{block}");
    let settings = Rfc2136Settings {
        secret: parse_tsig_secret(&block).expect("block"),
        algorithm: TsigAlgorithm::parse("HMAC-SHA256").expect("algorithm"),
        ..settings(&server, None)
    };
    let dns = updater(settings);
    dns.add_txt(NAME, "from-the-block", 60).await.expect("add");
    assert_eq!(server.txt(NAME).await, ["from-the-block"]);
    dns.remove_txt(NAME, "from-the-block")
        .await
        .expect("remove");
    assert!(server.txt(NAME).await.is_empty());
    server.stop();
}
