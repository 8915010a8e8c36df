//! `names`, wildcards, per-domain challenges and `acme.rfc2136` as
//! `proxy.yaml` gives them.

use std::path::Path;
use std::time::Duration;

use crate::config::{ChallengeKind, Config, TsigAlgorithm};

const FILE: &str = "/etc/sniwalk/proxy.yaml";

/// An `https` and an `http` listener, so http-01 and tls-alpn-01 domains
/// are answerable.
const LISTENERS: &str = "listeners:\n  - name: web\n    kind: https\n    bind: 127.0.0.1:8443\n  - name: plain\n    kind: http\n    bind: 127.0.0.1:8080\n";

const RFC2136: &str = "  rfc2136:\n    server: 127.0.0.1:5353\n    tsig_key_name: acme-update\n    tsig_secret_file: /etc/sniwalk/tsig.key\n";

fn parse(yaml: &str) -> Result<Config, String> {
    Config::parse(yaml, Path::new(FILE)).map_err(|e| e.to_string())
}

fn ok(yaml: &str) -> Config {
    parse(yaml).unwrap_or_else(|e| panic!("expected valid, got: {e}\n{yaml}"))
}

fn err(yaml: &str) -> String {
    match parse(yaml) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e,
    }
}

fn assert_contains_all(message: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            message.contains(needle),
            "`{needle}` missing from: {message}"
        );
    }
}

/// A configuration with `tenant.example` as the master and `domains` added
/// below it, `acme` as the acme block's fields.
fn config(domains: &str, acme: &str) -> String {
    format!(
        "master_domain: example.com\ndomains:\n  example.com: {{}}\n{domains}{LISTENERS}acme:\n  account_email: ops@example.com\n{acme}"
    )
}

#[test]
fn names_are_read_lower_cased_with_wildcards() {
    let yaml = config(
        "  tenant.example:\n    names: [Tenant.Example, \"*.tenant.example.\", phone.customer.org]\n    acme: { enabled: true }\n",
        &format!("  challenge: dns-01\n{RFC2136}"),
    );
    let config = ok(&yaml);
    let domain = config
        .domains
        .iter()
        .find(|d| d.name == "tenant.example")
        .expect("domain");
    assert_eq!(
        domain.names,
        ["tenant.example", "*.tenant.example", "phone.customer.org"]
    );
    assert_eq!(
        crate::config::order_names(domain),
        ["tenant.example", "*.tenant.example", "phone.customer.org"]
    );
    let master = &config.domains[0];
    assert!(master.names.is_empty());
    assert_eq!(crate::config::order_names(master), ["example.com"]);
    let rfc2136 = config.acme.rfc2136.expect("rfc2136");
    assert_eq!(rfc2136.server, "127.0.0.1:5353");
    assert_eq!(rfc2136.tsig_key_name, "acme-update");
    assert_eq!(rfc2136.tsig_algorithm, TsigAlgorithm::HmacSha256);
    assert_eq!(rfc2136.zone, None);
    assert_eq!(rfc2136.propagation_timeout, Duration::from_secs(60));
}

#[test]
fn bad_names_are_refused_naming_them() {
    for (name, needles) in [
        ("\"*.com\"", &["*.com", "wildcard", "names"][..]),
        ("\"a.*.example\"", &["a.*.example", "names"][..]),
        ("192.0.2.1", &["192.0.2.1", "names"][..]),
    ] {
        let yaml = config(&format!("  tenant.example:\n    names: [{name}]\n"), "");
        assert_contains_all(&err(&yaml), needles);
    }
}

#[test]
fn a_name_belongs_to_one_domain() {
    let twice = config(
        "  a.example: { names: [a.example, shared.example] }\n  b.example: { names: [b.example, shared.example] }\n",
        "",
    );
    assert_contains_all(
        &err(&twice),
        &[
            "domains.b.example.names",
            "shared.example",
            "domains.a.example",
        ],
    );
    let configured = config(
        "  a.example: { names: [a.example, b.example] }\n  b.example: {}\n",
        "",
    );
    assert_contains_all(
        &err(&configured),
        &["b.example", "the configured domain b.example"],
    );
    let repeated = config("  a.example: { names: [a.example, a.example] }\n", "");
    assert_contains_all(&err(&repeated), &["listed twice", "a.example"]);
    let wildcards = config(
        "  a.example: { names: [a.example, \"*.x.example\"] }\n  b.example: { names: [b.example, \"*.x.example\"] }\n",
        "",
    );
    assert_contains_all(&err(&wildcards), &["*.x.example"]);
}

#[test]
fn wildcards_of_acme_domains_need_dns01_and_dns01_needs_a_server() {
    let http = config(
        "  tenant.example:\n    names: [tenant.example, \"*.tenant.example\"]\n    acme: { enabled: true }\n",
        "",
    );
    assert_contains_all(
        &err(&http),
        &[
            "domains.tenant.example.names",
            "*.tenant.example",
            "dns-01",
            "http-01",
        ],
    );
    // A certificate set by hand may be a wildcard: no order proves it.
    ok(&config(
        "  tenant.example:\n    names: [tenant.example, \"*.tenant.example\"]\n",
        "",
    ));
    // The domain's own name belongs in the list.
    assert_contains_all(
        &err(&config(
            "  tenant.example:\n    names: [\"*.tenant.example\"]\n",
            "",
        )),
        &["domains.tenant.example.names", "lacks `tenant.example`"],
    );
    let no_server = config(
        "  tenant.example:\n    acme: { enabled: true, challenge: dns-01 }\n",
        "",
    );
    assert_contains_all(
        &err(&no_server),
        &["acme.rfc2136", "tenant.example", "dns-01"],
    );
}

#[test]
fn a_domain_may_choose_its_own_challenge() {
    let yaml = format!(
        "master_domain: example.com\ndomains:\n  example.com: {{ acme: {{ enabled: true }} }}\n  tenant.example:\n    names: [tenant.example, \"*.tenant.example\"]\n    acme: {{ enabled: true, challenge: dns-01 }}\nlisteners:\n  - name: plain\n    kind: http\n    bind: 127.0.0.1:8080\nacme:\n{RFC2136}"
    );
    let config = ok(&yaml);
    let challenges: Vec<ChallengeKind> = config
        .domains
        .iter()
        .map(|d| crate::config::effective_challenge(d, &config.acme))
        .collect();
    assert_eq!(challenges, [ChallengeKind::Http01, ChallengeKind::Dns01]);
    // dns-01 for all needs no listener at all.
    ok(&format!(
        "master_domain: example.com\ndomains:\n  example.com: {{ acme: {{ enabled: true }} }}\nacme:\n  challenge: dns-01\n{RFC2136}"
    ));
    // A tls-alpn-01 domain still needs an https listener.
    let alpn = format!(
        "master_domain: example.com\ndomains:\n  example.com: {{ acme: {{ enabled: true, challenge: tls-alpn-01 }} }}\nacme:\n  challenge: dns-01\n{RFC2136}"
    );
    assert_contains_all(&err(&alpn), &["example.com", "tls-alpn-01", "kind: https"]);
}

#[test]
fn a_zone_must_hold_every_dns01_name() {
    let domains = "  tenant.example:\n    names: [tenant.example, \"*.tenant.example\", phone.customer.org]\n    acme: { enabled: true }\n";
    let with_zone = |zone: &str| {
        config(
            domains,
            &format!("  challenge: dns-01\n{RFC2136}    zone: {zone}\n"),
        )
    };
    assert_contains_all(
        &err(&with_zone("tenant.example")),
        &["phone.customer.org", "acme.rfc2136.zone", "tenant.example"],
    );
    ok(&config(
        "  tenant.example:\n    names: [tenant.example, \"*.tenant.example\"]\n    acme: { enabled: true }\n",
        &format!("  challenge: dns-01\n{RFC2136}    zone: tenant.example\n"),
    ));
}

#[test]
fn rfc2136_fields_are_checked() {
    let with = |fields: &str| {
        config(
            "",
            &format!("  rfc2136:\n    tsig_secret_file: /etc/sniwalk/tsig.key\n{fields}"),
        )
    };
    let full = ok(&with(
        "    server: \"[::1]\"\n    tsig_key_name: Acme-Update.\n    tsig_algorithm: HMAC-SHA512\n    zone: Tenant.Example\n    propagation_timeout: 2m\n",
    ))
    .acme
    .rfc2136
    .expect("rfc2136");
    assert_eq!(full.server, "[::1]:53");
    assert_eq!(full.tsig_key_name, "acme-update");
    assert_eq!(full.tsig_algorithm, TsigAlgorithm::HmacSha512);
    assert_eq!(full.zone.as_deref(), Some("tenant.example"));
    assert_eq!(full.propagation_timeout, Duration::from_secs(120));
    assert_eq!(
        full.tsig_secret_file,
        std::path::PathBuf::from("/etc/sniwalk/tsig.key")
    );
    for (fields, needles) in [
        (
            "    server: \"http://ns1\"\n    tsig_key_name: k\n",
            &["acme.rfc2136.server", "http://ns1"][..],
        ),
        (
            "    server: ns1.example.net\n    tsig_key_name: \"bad key\"\n",
            &["acme.rfc2136.tsig_key_name", "bad key"][..],
        ),
        (
            "    server: ns1.example.net\n    tsig_key_name: k\n    tsig_algorithm: hmac-md5\n",
            &["acme.rfc2136.tsig_algorithm", "hmac-md5", "hmac-sha256"][..],
        ),
        (
            "    server: ns1.example.net\n    tsig_key_name: k\n    propagation_timeout: 0s\n",
            &["acme.rfc2136.propagation_timeout"][..],
        ),
        ("    server: ns1.example.net\n", &["tsig_key_name"][..]),
    ] {
        assert_contains_all(&err(&with(fields)), needles);
    }
}
