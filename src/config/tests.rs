//! Tests for `proxy.yaml` parsing and validation.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::types::parse_host_pattern;
use super::*;

/// The fake configuration file most tests parse as.
const FILE: &str = "/etc/sniwalk/proxy.yaml";

/// The smallest valid configuration, used as a prefix by many tests.
const MINIMAL: &str = "master_domain: example.com\ndomains:\n  example.com: {}\n";

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::parse(yaml, Path::new(FILE))
}

/// Parses `yaml`, failing the test with the error message if it is refused.
fn ok(yaml: &str) -> Config {
    parse(yaml).unwrap_or_else(|e| panic!("expected a valid configuration, got: {e}\n{yaml}"))
}

/// Parses `yaml`, failing the test if it is accepted; returns the message.
fn err(yaml: &str) -> String {
    match parse(yaml) {
        Ok(config) => panic!("expected an error, got {config:#?}\nfor:\n{yaml}"),
        Err(e) => {
            assert!(
                matches!(e, ConfigError::Invalid { ref file, .. } if file == Path::new(FILE)),
                "expected ConfigError::Invalid for {FILE}, got {e:?}"
            );
            e.to_string()
        }
    }
}

/// Asserts that `message` contains every one of `needles`.
fn assert_contains_all(message: &str, needles: &[&str], yaml: &str) {
    for needle in needles {
        assert!(
            message.contains(needle),
            "error message lacks `{needle}`:\n  {message}\nfor:\n{yaml}"
        );
    }
}

/// One listener block with the given name and bind and nothing else.
fn listener(name: &str, bind: &str) -> String {
    format!("  - name: {name}\n    kind: https\n    bind: {bind}\n")
}

fn domain<'a>(config: &'a Config, name: &str) -> &'a DomainConfig {
    config
        .domains
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no domain `{name}` in {:?}", config.domains))
}

// ---- the shipped file ------------------------------------------------------

/// The `proxy.yaml` shipped at the crate root loads, with the values its
/// comments promise.
#[test]
fn shipped_proxy_yaml_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = dir.join("proxy.yaml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.file, path);
    assert_eq!(config.master_domain, "example.com");
    assert_eq!(config.state_dir, dir.join("state"));
    assert_eq!(config.default_certificate, None);
    assert_eq!(config.domains.len(), 1);
    assert_eq!(config.domains[0].name, "example.com");
    assert_eq!(config.domains[0].certificate, CertificateSource::None);
    assert_eq!(config.listeners.len(), 1);
    let ws = config.listener("ws").expect("listener ws");
    assert_eq!(ws.kind, ListenerKind::Https);
    assert_eq!(ws.bind, "127.0.0.1:8443".parse::<SocketAddr>().unwrap());
    assert_eq!(ws.certdir, None);
    assert!(ws.access_log.is_some());
    assert_eq!(
        ws.routes,
        vec![Route {
            host: HostPattern::Any,
            path_prefix: None,
            action: RouteAction::StatusPage,
            upgrades: vec![],
        }]
    );
    assert_eq!(config.acme.directory, DEFAULT_ACME_DIRECTORY);
}

// ---- a full configuration --------------------------------------------------

const FULL: &str = r#"# every feature at once
master_domain: Example.COM.
state_dir: alias://paths/var/state
paths:
  certs: certs
  abs: /srv/tls
  var: /var/lib/sniwalk
default_certificate: alias://paths/abs/default.pem
domains:
  example.com:
    certificate_file: alias://paths/certs/example.com.pem
    acme: { enabled: true, account_email: ops@example.com }
  t1.example.com:
    certificate_pem: |
      -----BEGIN CERTIFICATE-----
      MIIB
      -----END CERTIFICATE-----
  t2.example.com:
  t3.example.com: {}
  t4.example.com:
    certificate_file: domains/t4.pem
  t5.example.com:
    certificate_file: /opt/pem/t5.pem
    acme: { enabled: false }
listeners:
  - name: ws
    kind: https
    bind: 127.0.0.1:8443
    certdir: alias://paths/certs/ws
    access_log: false
    routes:
      - host: "*.example.com"
        path: /api/
        respond: { status: 503, body: "down for maintenance" }
      - host: WWW.Example.com.
        respond: { body: hello }
      - host: "*"
        status_page: true
  - name: public
    kind: https
    bind: "[::]:443"
    certdir: /etc/ssl/public
  - name: plain
    kind: http
    bind: 127.0.0.1:8080
acme:
  directory: https://acme-staging-v02.api.letsencrypt.org/directory
  ca_roots: alias://paths/certs/ca.pem
  account_email: hostmaster@example.com
  challenge: http-01
  renew_at: 0.5
  warn_days: 21
  expected_addresses: [203.0.113.7, "2001:db8::7"]
  lock_lease: 90s
"#;

/// Every field of a full configuration lands in the validated types, in
/// file order, with aliases and relative paths resolved.
#[test]
fn full_configuration_parses() {
    let config = ok(FULL);
    assert_eq!(config.file, Path::new(FILE));
    assert_eq!(config.master_domain, "example.com");
    assert_eq!(config.state_dir, Path::new("/var/lib/sniwalk/state"));
    assert_eq!(
        config.default_certificate.as_deref(),
        Some(Path::new("/srv/tls/default.pem"))
    );
    assert_eq!(
        config.domains,
        vec![
            DomainConfig {
                name: "example.com".into(),
                certificate: CertificateSource::File("/etc/sniwalk/certs/example.com.pem".into()),
                acme: Some(DomainAcme {
                    enabled: true,
                    account_email: Some("ops@example.com".into()),
                    challenge: None,
                }),
                names: Vec::new(),
                on_demand: false,
            },
            DomainConfig {
                name: "t1.example.com".into(),
                certificate: CertificateSource::Inline(
                    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()
                ),
                acme: None,
                names: Vec::new(),
                on_demand: false,
            },
            DomainConfig {
                name: "t2.example.com".into(),
                certificate: CertificateSource::None,
                acme: None,
                names: Vec::new(),
                on_demand: false,
            },
            DomainConfig {
                name: "t3.example.com".into(),
                certificate: CertificateSource::None,
                acme: None,
                names: Vec::new(),
                on_demand: false,
            },
            DomainConfig {
                name: "t4.example.com".into(),
                certificate: CertificateSource::File("/etc/sniwalk/domains/t4.pem".into()),
                acme: None,
                names: Vec::new(),
                on_demand: false,
            },
            DomainConfig {
                name: "t5.example.com".into(),
                certificate: CertificateSource::File("/opt/pem/t5.pem".into()),
                acme: Some(DomainAcme {
                    enabled: false,
                    account_email: None,
                    challenge: None,
                }),
                names: Vec::new(),
                on_demand: false,
            },
        ]
    );
    assert_eq!(
        config.listeners,
        vec![
            ListenerConfig {
                name: "ws".into(),
                kind: ListenerKind::Https,
                bind: "127.0.0.1:8443".parse().unwrap(),
                certdir: Some("/etc/sniwalk/certs/ws".into()),
                routes: vec![
                    Route {
                        host: HostPattern::Suffix("example.com".into()),
                        path_prefix: Some("/api/".into()),
                        action: RouteAction::Respond {
                            status: 503,
                            body: "down for maintenance".into(),
                        },
                        upgrades: vec![],
                    },
                    Route {
                        host: HostPattern::Exact("www.example.com".into()),
                        path_prefix: None,
                        action: RouteAction::Respond {
                            status: 200,
                            body: "hello".into(),
                        },
                        upgrades: vec![],
                    },
                    Route {
                        host: HostPattern::Any,
                        path_prefix: None,
                        action: RouteAction::StatusPage,
                        upgrades: vec![],
                    },
                ],
                access_log: None,
                backends: None,
                proxy_protocol: false,
                accept_proxy_protocol: None,
                https_port: None,
                limits: Limits::default(),
                client_auth: None,
            },
            ListenerConfig {
                name: "public".into(),
                kind: ListenerKind::Https,
                bind: "[::]:443".parse().unwrap(),
                certdir: Some("/etc/ssl/public".into()),
                routes: vec![],
                access_log: Some(AccessLogConfig {
                    format: AccessLogFormat::Text,
                    file: None,
                }),
                backends: None,
                proxy_protocol: false,
                accept_proxy_protocol: None,
                https_port: None,
                limits: Limits::default(),
                client_auth: None,
            },
            ListenerConfig {
                name: "plain".into(),
                kind: ListenerKind::Http,
                bind: "127.0.0.1:8080".parse().unwrap(),
                certdir: None,
                routes: vec![],
                access_log: Some(AccessLogConfig {
                    format: AccessLogFormat::Text,
                    file: None,
                }),
                backends: None,
                proxy_protocol: false,
                accept_proxy_protocol: None,
                https_port: None,
                limits: Limits::default(),
                client_auth: None,
            },
        ]
    );
    assert_eq!(
        config.acme,
        AcmeConfig {
            directory: STAGING_ACME_DIRECTORY.into(),
            ca_roots: vec!["/etc/sniwalk/certs/ca.pem".into()],
            account_email: Some("hostmaster@example.com".into()),
            challenge: ChallengeKind::Http01,
            renew_at: 0.5,
            warn_days: 21,
            expected_addresses: vec![
                "203.0.113.7".parse().unwrap(),
                "2001:db8::7".parse().unwrap()
            ],
            lock_lease: Duration::from_secs(90),
            rfc2136: None,
            eab: None,
            staging_check_directory: None,
            on_demand: None,
        }
    );
}

/// The routes of a parsed configuration match hosts as their patterns say
/// (parsing and matching agree on how a suffix is stored).
#[test]
fn parsed_routes_match_hosts() {
    let config = ok(FULL);
    let routes = &config.listener("ws").unwrap().routes;
    let first_match = |host: &str| routes.iter().position(|r| r.host.matches(host));
    assert_eq!(first_match("a.example.com"), Some(0));
    assert_eq!(first_match("www.example.com"), Some(0));
    assert_eq!(first_match("a.b.example.com"), Some(0));
    assert_eq!(first_match("example.com"), Some(2));
    assert_eq!(first_match("badexample.com"), Some(2));
    assert_eq!(first_match("other.org"), Some(2));
    assert!(routes[1].host.matches("www.example.com"));
    assert!(!routes[1].host.matches("www.example.org"));
}

// ---- defaults --------------------------------------------------------------

/// Without the optional fields: state_dir is `<config dir>/state`, no default
/// certificate, no listeners, Let's Encrypt production.
#[test]
fn defaults_of_a_minimal_configuration() {
    let config = ok(MINIMAL);
    assert_eq!(config.state_dir, Path::new("/etc/sniwalk/state"));
    assert_eq!(
        config.state_dir,
        Path::new("/etc/sniwalk").join(DEFAULT_STATE_DIR)
    );
    assert_eq!(config.default_certificate, None);
    assert!(config.listeners.is_empty());
    assert_eq!(config.acme.directory, DEFAULT_ACME_DIRECTORY);
    assert_eq!(
        DEFAULT_ACME_DIRECTORY,
        "https://acme-v02.api.letsencrypt.org/directory"
    );
}

/// `acme: {}` and `acme:` with no directory also mean Let's Encrypt
/// production.
#[test]
fn acme_without_directory_defaults_to_production() {
    for acme in ["acme: {}\n", "acme:\n"] {
        let config = ok(&format!("{MINIMAL}{acme}"));
        assert_eq!(config.acme.directory, DEFAULT_ACME_DIRECTORY, "{acme}");
    }
}

// ---- acme ------------------------------------------------------------------

/// `acme:` prefixed to `fields` (each line indented by two spaces), after
/// the minimal configuration. The first field is on line 5.
fn with_acme(fields: &str) -> String {
    format!("{MINIMAL}acme:\n{fields}")
}

/// Without `acme:`, or with an empty one, every field has its default:
/// Let's Encrypt production, system roots, HTTP-01, renewal at 2/3, warning
/// 14 days before expiry, no pre-flight addresses.
#[test]
fn acme_defaults() {
    for yaml in [
        MINIMAL.to_string(),
        format!("{MINIMAL}acme: {{}}\n"),
        format!("{MINIMAL}acme:\n"),
        with_acme("  expected_addresses: []\n  account_email:\n  ca_roots: []\n"),
    ] {
        let acme = ok(&yaml).acme;
        assert_eq!(acme, AcmeConfig::default(), "{yaml}");
        assert_eq!(acme.directory, DEFAULT_ACME_DIRECTORY);
        assert!(acme.ca_roots.is_empty());
        assert_eq!(acme.account_email, None);
        assert_eq!(acme.challenge, ChallengeKind::Http01);
        assert_eq!(acme.renew_at, 2.0 / 3.0);
        assert_eq!(acme.warn_days, 14);
        assert!(acme.expected_addresses.is_empty());
        assert_eq!(acme.lock_lease, Duration::from_secs(60));
    }
}

/// `lock_lease` is a duration of at least 2 s.
#[test]
fn acme_lock_lease() {
    for (value, want) in [
        ("2s", Duration::from_secs(2)),
        ("90s", Duration::from_secs(90)),
        ("5m", Duration::from_secs(300)),
        ("2500ms", Duration::from_millis(2500)),
        ("30", Duration::from_secs(30)),
    ] {
        let yaml = with_acme(&format!("  lock_lease: {value}\n"));
        assert_eq!(ok(&yaml).acme.lock_lease, want, "{value}");
    }
    for value in ["1s", "1999ms", "0", "0s"] {
        let yaml = with_acme(&format!("  lock_lease: {value}\n"));
        assert_contains_all(
            &err(&yaml),
            &["acme.lock_lease", "at least 2s", "line 5"],
            &yaml,
        );
    }
    for (value, says) in [
        ("abc", "is not a duration"),
        ("-5s", "is not a duration"),
        ("10 parsecs", "unknown unit"),
    ] {
        let yaml = with_acme(&format!("  lock_lease: {value}\n"));
        assert_contains_all(&err(&yaml), &["acme.lock_lease", says, "line 5"], &yaml);
    }
}

/// `staging` and `production` stand for Let's Encrypt's directories; any
/// https:// URL is kept as written.
#[test]
fn acme_directory_shorthands_and_urls() {
    for (value, want) in [
        ("staging", STAGING_ACME_DIRECTORY),
        ("production", DEFAULT_ACME_DIRECTORY),
        ("Staging", STAGING_ACME_DIRECTORY),
        ("https://127.0.0.1:14000/dir", "https://127.0.0.1:14000/dir"),
        (
            "\"https://acme.example.net/directory\"",
            "https://acme.example.net/directory",
        ),
    ] {
        let yaml = with_acme(&format!("  directory: {value}\n"));
        assert_eq!(ok(&yaml).acme.directory, want, "{value}");
    }
    assert_eq!(
        STAGING_ACME_DIRECTORY,
        "https://acme-staging-v02.api.letsencrypt.org/directory"
    );
}

/// Anything but an https:// URL or a shorthand is refused at its position,
/// with the shorthands as a hint.
#[test]
fn acme_directory_must_be_https() {
    for value in [
        "http://acme.example.net/directory",
        "acme-v02.api.letsencrypt.org/directory",
        "https://",
        "\"https:// x\"",
        "\"\"",
        "letsencrypt",
    ] {
        let yaml = with_acme(&format!("  directory: {value}\n"));
        assert_contains_all(
            &err(&yaml),
            &[
                "acme.directory",
                "https://",
                "`staging`",
                "line 5 column 14",
            ],
            &yaml,
        );
    }
    let yaml = with_acme("  directory: [https://x]\n");
    assert_contains_all(&err(&yaml), &["acme.directory", "invalid type"], &yaml);
}

/// `ca_roots` takes one path or a list; both resolve like every other path
/// (relative to the configuration's folder, aliases, absolute kept). The
/// files are not read here.
#[test]
fn acme_ca_roots_one_or_many() {
    let paths = "paths:\n  tls: /srv/tls\n";
    for (value, want) in [
        ("ca.pem", vec!["/etc/sniwalk/ca.pem"]),
        ("/opt/pebble/root.pem", vec!["/opt/pebble/root.pem"]),
        ("alias://paths/tls/ca.pem", vec!["/srv/tls/ca.pem"]),
        (
            "[ca.pem, alias://paths/tls/other.pem, /abs.pem]",
            vec!["/etc/sniwalk/ca.pem", "/srv/tls/other.pem", "/abs.pem"],
        ),
        (
            "\n    - one.pem\n    - two.pem",
            vec!["/etc/sniwalk/one.pem", "/etc/sniwalk/two.pem"],
        ),
        ("[]", vec![]),
        (
            "does/not/exist.pem",
            vec!["/etc/sniwalk/does/not/exist.pem"],
        ),
    ] {
        let yaml = format!("{paths}{}", with_acme(&format!("  ca_roots: {value}\n")));
        let want: Vec<PathBuf> = want.into_iter().map(PathBuf::from).collect();
        assert_eq!(ok(&yaml).acme.ca_roots, want, "{value}");
    }
}

/// Bad `ca_roots` entries name the field: an unknown alias, an empty path,
/// something that is neither a path nor a list.
#[test]
fn acme_ca_roots_errors_name_the_field() {
    let cases: &[(&str, &[&str])] = &[
        (
            "alias://paths/nope/ca.pem",
            &["acme.ca_roots", "unknown alias `nope`", "line 5 column 13"],
        ),
        (
            "[a.pem, alias://paths/nope/ca.pem]",
            &["acme.ca_roots[1]", "unknown alias `nope`"],
        ),
        ("\"\"", &["acme.ca_roots", "empty", "line 5 column 13"]),
        (
            "[a.pem, \"\"]",
            &["acme.ca_roots[1]", "empty", "line 5 column 21"],
        ),
        (
            "5",
            &[
                "acme.ca_roots",
                "a path or a list of paths",
                "line 5 column 13",
            ],
        ),
        ("{ a: b }", &["acme.ca_roots", "a path or a list of paths"]),
    ];
    for (value, needles) in cases {
        let yaml = with_acme(&format!("  ca_roots: {value}\n"));
        assert_contains_all(&err(&yaml), needles, &yaml);
    }
}

/// Account emails, global and per domain: one address; `mailto:`, lists,
/// spaces and half addresses are refused with the field and position.
#[test]
fn acme_account_emails() {
    for good in [
        "ops@example.com",
        "a.b+acme@mail.example.co.uk",
        "x@localhost",
    ] {
        let yaml = with_acme(&format!("  account_email: {good}\n"));
        assert_eq!(ok(&yaml).acme.account_email.as_deref(), Some(good));
        assert_eq!(parse_account_email(good).as_deref(), Ok(good));
    }
    let cases: &[(&str, &str)] = &[
        ("mailto:ops@example.com", "without `mailto:`"),
        ("MAILTO:ops@example.com", "without `mailto:`"),
        ("\"ops@example.com, dev@example.com\"", "contains `,`"),
        ("\"ops @example.com\"", "contains a space"),
        ("\"Ops <ops@example.com>\"", "contains a space"),
        ("ops.example.com", "not an email address"),
        ("\"@example.com\"", "not an email address"),
        ("ops@", "not an email address"),
        ("a@b@example.com", "not an email address"),
        ("ops@example..com", "not a domain"),
        ("\"\"", "not an email address"),
    ];
    for (value, reason) in cases {
        let yaml = with_acme(&format!("  account_email: {value}\n"));
        assert_contains_all(
            &err(&yaml),
            &["acme.account_email", reason, "line 5 column 18"],
            &yaml,
        );
        let yaml = format!(
            "master_domain: example.com\ndomains:\n  example.com:\n    acme:\n      account_email: {value}\n"
        );
        assert_contains_all(
            &err(&yaml),
            &[
                "domains.example.com.acme.account_email",
                reason,
                "line 5 column 22",
            ],
            &yaml,
        );
    }
    // The per-domain address keeps its shape.
    let config = ok(
        "master_domain: example.com\ndomains:\n  example.com:\n    acme: { account_email: dev@example.com }\n",
    );
    assert_eq!(
        domain(&config, "example.com").acme,
        Some(DomainAcme {
            enabled: false,
            account_email: Some("dev@example.com".into()),
            challenge: None,
        })
    );
}

/// `challenge` is `http-01` or `tls-alpn-01`; anything else lists both.
#[test]
fn acme_challenge_kinds() {
    for (value, want) in [
        ("http-01", ChallengeKind::Http01),
        ("tls-alpn-01", ChallengeKind::TlsAlpn01),
        ("TLS-ALPN-01", ChallengeKind::TlsAlpn01),
    ] {
        let yaml = format!(
            "{}listeners:\n{}",
            with_acme(&format!("  challenge: {value}\n")),
            listener("ws", "127.0.0.1:1")
        );
        assert_eq!(ok(&yaml).acme.challenge, want, "{value}");
    }
    assert_eq!(ChallengeKind::Http01.as_str(), "http-01");
    assert_eq!(ChallengeKind::TlsAlpn01.as_str(), "tls-alpn-01");
    assert_eq!(
        ChallengeKind::Http01.listener_kind(),
        Some(ListenerKind::Http)
    );
    assert_eq!(ChallengeKind::Dns01.listener_kind(), None);
    assert_eq!(
        ChallengeKind::TlsAlpn01.listener_kind(),
        Some(ListenerKind::Https)
    );
    for value in ["dns01", "http01", "\"\"", "5"] {
        let yaml = with_acme(&format!("  challenge: {value}\n"));
        assert_contains_all(
            &err(&yaml),
            &[
                "acme.challenge",
                "`http-01`",
                "`tls-alpn-01`",
                "line 5 column 14",
            ],
            &yaml,
        );
    }
}

/// `renew_at` is a fraction strictly between 0 and 1, as a number or `A/B`.
#[test]
fn acme_renew_at() {
    for (value, want) in [
        ("0.66", 0.66),
        ("0.5", 0.5),
        ("\"2/3\"", 2.0 / 3.0),
        ("2/3", 2.0 / 3.0),
        ("\" 3 / 4 \"", 0.75),
        ("\"0.75\"", 0.75),
        ("1e-1", 0.1),
    ] {
        let yaml = with_acme(&format!("  renew_at: {value}\n"));
        assert_eq!(ok(&yaml).acme.renew_at, want, "{value}");
    }
    for value in [
        "0",
        "1",
        "1.0",
        "1.5",
        "-0.5",
        "0.0",
        "66",
        "3/2",
        "2/0",
        "0/3",
        "1/1",
        "-1/3",
        "abc",
        "\"2/3/4\"",
        ".nan",
        ".inf",
        "\"\"",
    ] {
        let yaml = with_acme(&format!("  renew_at: {value}\n"));
        assert_contains_all(
            &err(&yaml),
            &[
                "acme.renew_at",
                "lifetime after which it is renewed",
                "0.66 (day 60 of 90)",
                "line 5 column 13",
            ],
            &yaml,
        );
    }
}

/// `warn_days` is a whole number of days from 1 to 365.
#[test]
fn acme_warn_days() {
    for (value, want) in [("1", 1), ("14", 14), ("30", 30), ("365", 365)] {
        let yaml = with_acme(&format!("  warn_days: {value}\n"));
        assert_eq!(ok(&yaml).acme.warn_days, want, "{value}");
    }
    for value in ["0", "366", "-1", "99999999999", "1.5", "ten", "\"14\""] {
        let yaml = with_acme(&format!("  warn_days: {value}\n"));
        assert_contains_all(
            &err(&yaml),
            &["acme.warn_days", "between 1 and 365", "line 5 column 14"],
            &yaml,
        );
    }
}

/// `expected_addresses` is a list of IPv4 and IPv6 addresses; a bad entry
/// is named with its index and position.
#[test]
fn acme_expected_addresses() {
    let yaml =
        with_acme("  expected_addresses:\n    - 203.0.113.7\n    - \"2001:db8::7\"\n    - ::1\n");
    let want: Vec<IpAddr> = ["203.0.113.7", "2001:db8::7", "::1"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(ok(&yaml).acme.expected_addresses, want);
    let cases: &[(&str, &[&str])] = &[
        (
            "[203.0.113.7, shop.example.com]",
            &[
                "acme.expected_addresses[1]",
                "`shop.example.com`",
                "IPv4 or IPv6",
                "line 5 column 37",
            ],
        ),
        (
            "[\"203.0.113.7:80\"]",
            &[
                "acme.expected_addresses[0]",
                "`203.0.113.7:80`",
                "line 5 column 24",
            ],
        ),
        (
            "[300.1.1.1]",
            &["acme.expected_addresses[0]", "`300.1.1.1`"],
        ),
        (
            "203.0.113.7",
            &["acme.expected_addresses", "invalid type", "expected a list"],
        ),
    ];
    for (value, needles) in cases {
        let yaml = with_acme(&format!("  expected_addresses: {value}\n"));
        assert_contains_all(&err(&yaml), needles, &yaml);
    }
}

/// A domain with ACME enabled needs the listener its challenge arrives on:
/// `kind: http` for HTTP-01, `kind: https` for TLS-ALPN-01. The message
/// names the domains (the first few) and what to add.
#[test]
fn acme_enabled_needs_the_challenge_listener() {
    let domains = "master_domain: example.com\ndomains:\n  example.com: {}\n  \
                   shop.example.com:\n    acme: { enabled: true }\n  off.example.com:\n    acme: { enabled: false }\n";
    let http = "  - name: plain\n    kind: http\n    bind: 127.0.0.1:8080\n";
    let https = listener("ws", "127.0.0.1:8443");
    let tls =
        "  - name: sip\n    kind: tls\n    bind: 127.0.0.1:5061\n    backend: 127.0.0.1:5060\n";
    let ok_cases = [
        ("", format!("listeners:\n{http}")),
        ("", format!("listeners:\n{https}{http}")),
        (
            "acme:\n  challenge: http-01\n",
            format!("listeners:\n{http}"),
        ),
        (
            "acme:\n  challenge: tls-alpn-01\n",
            format!("listeners:\n{https}"),
        ),
    ];
    for (acme, listeners) in &ok_cases {
        ok(&format!("{domains}{acme}{listeners}"));
    }
    let refused: [(&str, String, &[&str]); 4] = [
        (
            "",
            String::new(),
            &[
                "kind: http",
                "on port 80",
                "or choose another challenge (`tls-alpn-01`",
            ],
        ),
        (
            "",
            format!("listeners:\n{https}{tls}"),
            &[
                "kind: http",
                "on port 80",
                "or choose another challenge (`tls-alpn-01`",
            ],
        ),
        (
            "acme:\n  challenge: tls-alpn-01\n",
            format!("listeners:\n{http}{tls}"),
            &[
                "kind: https",
                "on port 443",
                "or choose another challenge (`http-01`",
            ],
        ),
        (
            "acme:\n  challenge: tls-alpn-01\n",
            String::new(),
            &["kind: https", "on port 443"],
        ),
    ];
    for (acme, listeners, needles) in &refused {
        let yaml = format!("{domains}{acme}{listeners}");
        let message = err(&yaml);
        assert_contains_all(
            &message,
            &[
                "domains.shop.example.com.acme",
                "ACME is enabled for `shop.example.com`",
                "line 4 column 3",
            ],
            &yaml,
        );
        assert_contains_all(&message, needles, &yaml);
        assert!(!message.contains("off.example.com"), "{message}");
    }
    // Without any enabled domain, no listener is needed.
    ok("master_domain: example.com\ndomains:\n  example.com:\n    acme: { enabled: false }\n");
    // Many domains: the first three, then a count.
    let many: String = (1..=5)
        .map(|i| format!("  d{i}.example.com:\n    acme: {{ enabled: true }}\n"))
        .collect();
    let yaml = format!("{MINIMAL}{many}");
    assert_contains_all(
        &err(&yaml),
        &[
            "`d1.example.com`, `d2.example.com`, `d3.example.com` and 2 more",
            "line 4 column 3",
        ],
        &yaml,
    );
}

/// A listener without `access_log` logs; `access_log: false` does not;
/// `respond` without `status` answers 200 with an empty body by default.
#[test]
fn listener_and_route_defaults() {
    let yaml = format!(
        "{MINIMAL}listeners:\n{}    routes:\n      - host: \"*\"\n        respond: {{}}\n{}    access_log: false\n",
        listener("a", "127.0.0.1:1"),
        listener("b", "127.0.0.1:2"),
    );
    let config = ok(&yaml);
    let a = config.listener("a").unwrap();
    assert!(a.access_log.is_some());
    assert_eq!(a.certdir, None);
    assert_eq!(
        a.routes[0].action,
        RouteAction::Respond {
            status: 200,
            body: String::new(),
        }
    );
    assert_eq!(a.routes[0].path_prefix, None);
    assert!(config.listener("b").unwrap().access_log.is_none());
}

/// Status codes at both ends of the valid range are accepted.
#[test]
fn status_range_bounds_are_accepted() {
    for status in [100, 599] {
        let yaml = format!(
            "{MINIMAL}listeners:\n{}    routes:\n      - host: \"*\"\n        respond: {{ status: {status} }}\n",
            listener("a", "127.0.0.1:1"),
        );
        let config = ok(&yaml);
        assert_eq!(
            config.listeners[0].routes[0].action,
            RouteAction::Respond {
                status,
                body: String::new(),
            }
        );
    }
}

/// `Config::listener` finds a listener by exact name and nothing else.
#[test]
fn listener_lookup_by_name() {
    let config = ok(FULL);
    assert_eq!(config.listener("ws").unwrap().name, "ws");
    assert_eq!(
        config.listener("public").unwrap().bind,
        "[::]:443".parse().unwrap()
    );
    assert!(config.listener("WS").is_none());
    assert!(config.listener("w").is_none());
    assert!(config.listener("").is_none());
    assert!(ok(MINIMAL).listener("ws").is_none());
}

// ---- paths -----------------------------------------------------------------

/// Relative paths are relative to the configuration file's folder; absolute
/// paths stay as written; aliases expand, alone or followed by more path,
/// and a relative alias value is itself relative to the configuration folder.
#[test]
fn paths_resolve_against_config_folder_and_aliases() {
    let yaml = r#"
master_domain: example.com
state_dir: var/state
default_certificate: alias://paths/rel
paths:
  rel: certs/default.pem
  abs: /srv/certs
  dotted: ./x/../y
domains:
  example.com:
    certificate_file: example.pem
  a.example.com:
    certificate_file: /abs/a.pem
  b.example.com:
    certificate_file: alias://paths/abs/domains/b.pem
  c.example.com:
    certificate_file: alias://paths/abs
  d.example.com:
    certificate_file: alias://paths/dotted/d.pem
listeners:
  - name: a
    kind: https
    bind: 127.0.0.1:1
    certdir: alias://paths/abs/ws
  - name: b
    kind: https
    bind: 127.0.0.1:2
    certdir: certs/b
  - name: c
    kind: https
    bind: 127.0.0.1:3
    certdir: /etc/ssl/c
"#;
    let config = ok(yaml);
    assert_eq!(config.state_dir, Path::new("/etc/sniwalk/var/state"));
    assert_eq!(
        config.default_certificate.as_deref(),
        Some(Path::new("/etc/sniwalk/certs/default.pem"))
    );
    let file = |name: &str| match &domain(&config, name).certificate {
        CertificateSource::File(path) => path.clone(),
        other => panic!("{name}: expected a file, got {other:?}"),
    };
    assert_eq!(file("example.com"), Path::new("/etc/sniwalk/example.pem"));
    assert_eq!(file("a.example.com"), Path::new("/abs/a.pem"));
    assert_eq!(file("b.example.com"), Path::new("/srv/certs/domains/b.pem"));
    assert_eq!(file("c.example.com"), Path::new("/srv/certs"));
    assert_eq!(
        file("d.example.com"),
        Path::new("/etc/sniwalk/./x/../y/d.pem")
    );
    let certdir = |name: &str| config.listener(name).unwrap().certdir.clone().unwrap();
    assert_eq!(certdir("a"), Path::new("/srv/certs/ws"));
    assert_eq!(certdir("b"), Path::new("/etc/sniwalk/certs/b"));
    assert_eq!(certdir("c"), Path::new("/etc/ssl/c"));
}

/// `state_dir` accepts an alias and an absolute path.
#[test]
fn state_dir_alias_and_absolute() {
    let config = ok(&format!(
        "{MINIMAL}paths:\n  data: data\nstate_dir: alias://paths/data/state\n"
    ));
    assert_eq!(config.state_dir, Path::new("/etc/sniwalk/data/state"));
    let config = ok(&format!("{MINIMAL}state_dir: /var/lib/sniwalk\n"));
    assert_eq!(config.state_dir, Path::new("/var/lib/sniwalk"));
}

/// A configuration path without a folder anchors relative paths to the
/// current folder (relative result), not to `/`.
#[test]
fn bare_file_name_gives_relative_paths() {
    let config = Config::parse(MINIMAL, Path::new("proxy.yaml")).unwrap();
    assert_eq!(config.state_dir, Path::new("state"));
    assert!(config.state_dir.is_relative());
}

/// `Config::load` reads the file and anchors relative paths in its folder.
#[test]
fn load_anchors_paths_in_the_file_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(
        &path,
        "master_domain: example.com\npaths:\n  d: certs/ws\ndomains:\n  example.com:\n    certificate_file: certs/e.pem\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:8443\n    certdir: alias://paths/d\n",
    )
    .unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.file, path);
    assert_eq!(config.state_dir, dir.path().join("state"));
    assert_eq!(
        config.domains[0].certificate,
        CertificateSource::File(dir.path().join("certs/e.pem"))
    );
    assert_eq!(
        config.listener("ws").unwrap().certdir,
        Some(dir.path().join("certs/ws"))
    );
}

/// A missing file is a read error naming the file.
#[test]
fn load_missing_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yaml");
    let e = Config::load(&path).unwrap_err();
    assert!(
        matches!(e, ConfigError::Read { ref file, .. } if *file == path),
        "{e:?}"
    );
    let message = e.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("cannot read"), "{message}");
}

/// An invalid file loaded from disk reports the path of that file.
#[test]
fn load_invalid_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(&path, "master_domain: example.com\ndomains: {}\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    assert!(
        matches!(e, ConfigError::Invalid { ref file, .. } if *file == path),
        "{e:?}"
    );
    let message = e.to_string();
    assert!(
        message.starts_with(&format!("{}: ", path.display())),
        "{message}"
    );
    assert!(message.contains("master_domain"), "{message}");
}

// ---- domain names ----------------------------------------------------------

/// Domain keys and the master domain are lower-cased and lose a trailing
/// dot, and the master is found among the domains after normalising.
#[test]
fn domain_names_are_normalised() {
    let config = ok(
        "master_domain: EXAMPLE.com.\ndomains:\n  Example.COM: {}\n  WWW.Example.Com.:\n  a_b.example.com: {}\n",
    );
    assert_eq!(config.master_domain, "example.com");
    let names: Vec<&str> = config.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["example.com", "www.example.com", "a_b.example.com"]);
}

/// `normalize_domain_name` accepts DNS names and returns their canonical
/// form.
#[test]
fn normalize_domain_name_valid() {
    let label63 = "a".repeat(63);
    let long_ok = format!("{label63}.{label63}.{label63}.{}", "a".repeat(61));
    assert_eq!(long_ok.len(), 253);
    let with_63 = format!("{label63}.com");
    let cases: &[(&str, &str)] = &[
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  example.com  ", "example.com"),
        ("localhost", "localhost"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.c-d.example", "a-b.c-d.example"),
        ("_acme-challenge.example.com", "_acme-challenge.example.com"),
        ("123.example.com", "123.example.com"),
        ("a", "a"),
        (&with_63, &with_63),
        (&long_ok, &long_ok),
    ];
    for (input, expected) in cases {
        assert_eq!(
            normalize_domain_name(input).as_deref(),
            Ok(*expected),
            "input `{input}`"
        );
    }
}

/// `normalize_domain_name` refuses what is not a DNS name, with a reason.
#[test]
fn normalize_domain_name_invalid() {
    let label64 = format!("{}.com", "a".repeat(64));
    let too_long = format!("{}.{}", "a".repeat(63), "b.".repeat(100));
    assert!(too_long.trim_end_matches('.').len() > 253);
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("   ", "empty"),
        (".", "empty"),
        ("exa mple.com", "contains ` `"),
        ("-a.com", "starting or ending with `-`"),
        ("a-.com", "starting or ending with `-`"),
        ("a..com", "empty label"),
        (".a.com", "empty label"),
        ("a.com..", "empty label"),
        ("*.example.com", "wildcard"),
        ("*", "contains `*`"),
        ("192.168.1.1", "IP address"),
        ("::1", "IP address"),
        (&label64, "longer than 63"),
        (&too_long, "longer than 253"),
        ("exa/mple.com", "contains `/`"),
        ("bücher.example", "contains `ü`"),
        ("example.com:443", "contains `:`"),
    ];
    for (input, expected) in cases {
        match normalize_domain_name(input).map_err(|e| e.to_string()) {
            Ok(name) => panic!("`{input}` was accepted as `{name}`"),
            Err(e) => assert!(e.contains(expected), "`{input}`: `{e}` lacks `{expected}`"),
        }
    }
}

// ---- binds -----------------------------------------------------------------

/// `parse_bind` accepts IP:PORT, [IPv6]:PORT, `localhost:PORT` and `*:PORT`.
#[test]
fn parse_bind_valid() {
    let cases: &[(&str, &str)] = &[
        ("127.0.0.1:8443", "127.0.0.1:8443"),
        ("0.0.0.0:443", "0.0.0.0:443"),
        ("[::1]:8443", "[::1]:8443"),
        ("[::]:443", "[::]:443"),
        ("localhost:8443", "127.0.0.1:8443"),
        ("*:443", "0.0.0.0:443"),
        (":443", "0.0.0.0:443"),
        ("127.0.0.1:0", "127.0.0.1:0"),
        ("127.0.0.1:65535", "127.0.0.1:65535"),
    ];
    for (input, expected) in cases {
        assert_eq!(
            parse_bind(input),
            Ok(expected.parse::<SocketAddr>().unwrap()),
            "input `{input}`"
        );
    }
}

/// `parse_bind` refuses binds without a port, with a bad port, or with a
/// host name, and says why.
#[test]
fn parse_bind_invalid() {
    let cases: &[(&str, &str)] = &[
        ("127.0.0.1", "has no port"),
        ("", "has no port"),
        ("127.0.0.1:99999", "invalid port `99999`"),
        ("127.0.0.1:", "invalid port"),
        ("127.0.0.1:http", "invalid port `http`"),
        ("nonsense:80", "`nonsense` is not an IP address"),
        ("example.com:443", "`example.com` is not an IP address"),
        ("::1:8443", "not an IP address"),
        ("256.0.0.1:80", "not an IP address"),
    ];
    for (input, expected) in cases {
        match parse_bind(input).map_err(|e| e.to_string()) {
            Ok(addr) => panic!("`{input}` was accepted as {addr}"),
            Err(e) => {
                assert!(e.contains(expected), "`{input}`: `{e}` lacks `{expected}`");
                assert!(
                    e.contains("127.0.0.1:8443"),
                    "`{input}`: `{e}` lacks the hint"
                );
            }
        }
    }
}

// ---- host patterns ---------------------------------------------------------

/// `HostPattern::matches`: `Any` matches everything, `Exact` one name,
/// `Suffix` names strictly below the suffix on a label boundary.
#[test]
fn host_pattern_matches() {
    let suffix = HostPattern::Suffix("example.com".into());
    let exact = HostPattern::Exact("example.com".into());
    let cases: &[(&HostPattern, &str, bool)] = &[
        (&HostPattern::Any, "example.com", true),
        (&HostPattern::Any, "a.b.c", true),
        (&HostPattern::Any, "", true),
        (&exact, "example.com", true),
        (&exact, "a.example.com", false),
        (&exact, "example.co", false),
        (&exact, "example.com.au", false),
        (&suffix, "a.example.com", true),
        (&suffix, "a.b.example.com", true),
        (&suffix, "www.example.com", true),
        (&suffix, "example.com", false),
        (&suffix, "badexample.com", false),
        (&suffix, ".example.com", false),
        (&suffix, "a.example.com.evil", false),
        (&suffix, "example.org", false),
        (&suffix, "", false),
    ];
    for (pattern, host, expected) in cases {
        assert_eq!(pattern.matches(host), *expected, "{pattern:?} on `{host}`");
    }
}

/// Route hosts parse to the right pattern: `*`, `*.name`, exact names
/// (normalised), IP addresses and `localhost`.
#[test]
fn host_patterns_parse() {
    let cases: &[(&str, HostPattern)] = &[
        ("*", HostPattern::Any),
        (" * ", HostPattern::Any),
        ("*.example.com", HostPattern::Suffix("example.com".into())),
        ("*.Example.COM.", HostPattern::Suffix("example.com".into())),
        ("example.com", HostPattern::Exact("example.com".into())),
        (
            "WWW.Example.com.",
            HostPattern::Exact("www.example.com".into()),
        ),
        ("localhost", HostPattern::Exact("localhost".into())),
        ("127.0.0.1", HostPattern::Exact("127.0.0.1".into())),
        ("::1", HostPattern::Exact("::1".into())),
    ];
    for (input, expected) in cases {
        assert_eq!(
            parse_host_pattern(input).as_ref(),
            Ok(expected),
            "input `{input}`"
        );
    }
    for bad in ["*.*.example.com", "exa mple.com", "a..com", "", "*.", "**"] {
        assert!(
            parse_host_pattern(bad).is_err(),
            "`{bad}` was accepted as {:?}",
            parse_host_pattern(bad)
        );
    }
}

/// `ListenerKind::as_str` gives the configuration spelling and
/// `terminates_tls` is true exactly for the TLS kinds.
#[test]
fn listener_kind_helpers() {
    assert_eq!(ListenerKind::Https.as_str(), "https");
    assert_eq!(ListenerKind::Tls.as_str(), "tls");
    assert_eq!(ListenerKind::Http.as_str(), "http");
    assert!(ListenerKind::Https.terminates_tls());
    assert!(ListenerKind::Tls.terminates_tls());
    assert!(!ListenerKind::Http.terminates_tls());
}

// ---- errors ----------------------------------------------------------------

/// Every refused configuration names the field and, where the parser or the
/// lookup can tell, the line and column of the problem.
#[test]
fn invalid_configurations_are_refused_with_field_and_position() {
    let cases: &[(&str, &[&str])] = &[
        // unknown fields
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlistners: []\n",
            &["unknown field `listners`", "line 4 column 1"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com:\n    certifcate_file: a.pem\n",
            &[
                "unknown field `certifcate_file`",
                "domains",
                "line 4 column 5",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com:\n    acme: { enabled: true, email: a@b.c }\n",
            &[
                "domains.example.com.acme",
                "unknown field `email`",
                "line 4 column 28",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:8443\n    acces_log: true\n",
            &[
                "listeners[0]",
                "unknown field `acces_log`",
                "line 8 column 5",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:8443\n    routes:\n      - host: \"*\"\n        status_page: true\n        prefix: /a\n",
            &["unknown field `prefix`", "line 11 column 9"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nacme:\n  directry: https://x\n",
            &["unknown field `directry`", "line 5 column 3"],
        ),
        // missing required fields
        (
            "domains:\n  example.com: {}\n",
            &["missing field `master_domain`"],
        ),
        ("master_domain: example.com\n", &["missing field `domains`"]),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    bind: 127.0.0.1:8443\n",
            &["listeners[0]", "missing field `kind`", "line 5 column 5"],
        ),
        // duplicate domains
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\n  example.com: {}\n",
            &[
                "domains",
                "duplicate domain `example.com`",
                "line 4 column 3",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  Example.com: {}\n  example.com.: {}\n",
            &[
                "domains",
                "duplicate domain `example.com`",
                "line 4 column 3",
            ],
        ),
        // duplicate alias
        (
            "master_domain: example.com\npaths:\n  a: x\n  a: y\ndomains:\n  example.com: {}\n",
            &["paths", "duplicate key `a`", "line 4 column 3"],
        ),
        // master domain
        (
            "master_domain: example.com\ndomains:\n  www.example.com: {}\n",
            &[
                "master_domain: `example.com` is not among `domains`",
                "line 1 column 1",
            ],
        ),
        (
            "# comment\nmaster_domain: example.org\ndomains:\n  example.com: {}\n",
            &["master_domain", "example.org", "line 2 column 1"],
        ),
        (
            "master_domain: example.com\ndomains: {}\n",
            &["master_domain", "not among `domains`", "line 1 column 1"],
        ),
        (
            "master_domain: -a.com\ndomains:\n  example.com: {}\n",
            &["master_domain", "invalid domain name", "line 1 column 16"],
        ),
        (
            "master_domain: \"\"\ndomains:\n  example.com: {}\n",
            &["master_domain", "empty", "line 1 column 16"],
        ),
        // bad binds
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1\n",
            &[
                "listeners[0].bind",
                "invalid bind",
                "has no port",
                "line 7 column 11",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:99999\n",
            &[
                "listeners[0].bind",
                "invalid port `99999`",
                "line 7 column 11",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: nonsense:80\n",
            &[
                "listeners[0].bind",
                "`nonsense` is not an IP address",
                "line 7 column 11",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: example.com:443\n",
            &[
                "listeners[0].bind",
                "`example.com` is not an IP address",
                "line 7 column 11",
            ],
        ),
        // listeners: names and binds
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:2\n",
            &["listeners.ws", "`ws` is used twice", "line 8 column 5"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: a\n    kind: https\n    bind: 127.0.0.1:8443\n  - name: b\n    kind: https\n    bind: 127.0.0.1:8443\n",
            &[
                "listeners.b.bind",
                "`127.0.0.1:8443` is already bound by listener `a`",
                "line 10 column 5",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n  - name: \"\"\n    kind: https\n    bind: 127.0.0.1:2\n",
            &["listeners", "non-empty `name`"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: ftp\n    bind: 127.0.0.1:1\n",
            &[
                "listeners[0].kind",
                "unknown variant `ftp`",
                "line 6 column 11",
            ],
        ),
        // certificates
        (
            "master_domain: example.com\ndomains:\n  example.com:\n    certificate_pem: x\n    certificate_file: y.pem\n",
            &[
                "domains.example.com",
                "either `certificate_pem` or `certificate_file`, not both",
                "line 3 column 3",
            ],
        ),
        // aliases
        (
            "master_domain: example.com\npaths:\n  certs: c\n  keys: k\ndomains:\n  example.com:\n    certificate_file: alias://paths/nope/e.pem\n",
            &[
                "domains.example.com.certificate_file",
                "unknown alias `nope`",
                "alias://paths/nope/e.pem",
                "known: certs, keys",
                "line 7 column 23",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    certdir: alias://paths/default_certdir\n",
            &[
                "listeners.ws.certdir",
                "unknown alias `default_certdir`",
                "known: none",
                "line 8 column 14",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\ndefault_certificate: alias://paths/x\n",
            &[
                "default_certificate",
                "unknown alias `x`",
                "line 4 column 22",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nstate_dir: alias://paths/data/state\n",
            &["state_dir", "unknown alias `data`", "line 4 column 12"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nstate_dir: \"\"\n",
            &["state_dir", "the path is empty", "line 4 column 1"],
        ),
        // status codes
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      - host: \"*\"\n        respond: { status: 99 }\n",
            &[
                "listeners[0].routes[0].respond.status",
                "invalid status `99`",
                "between 100 and 599",
                "line 10 column 28",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      - host: \"*\"\n        respond:\n          status: 600\n",
            &[
                "respond.status",
                "invalid status `600`",
                "line 11 column 19",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      - host: \"*\"\n        respond:\n          status: 70000\n",
            &[
                "respond.status",
                "invalid status `70000`",
                "line 11 column 19",
            ],
        ),
        // route actions
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      - host: \"*\"\n        path: /a\n",
            &[
                "listeners.ws.routes[0]",
                "says nothing to do",
                "status_page: true",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      - host: \"*\"\n        status_page: true\n      - host: \"*\"\n        status_page: true\n        respond: { status: 200 }\n",
            &["listeners.ws.routes[1]", "not several"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      - host: \"*.*.example.com\"\n        status_page: true\n",
            &[
                "listeners[0].routes[0].host",
                "invalid route host",
                "wildcard",
                "line 9 column 15",
            ],
        ),
        // listener kinds
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: sip\n    kind: tls\n    bind: 127.0.0.1:5061\n    routes:\n      - host: \"*\"\n        status_page: true\n",
            &[
                "listeners.sip.routes",
                "only `https` listeners have `routes`",
                "`tls`",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: sip\n    kind: tls\n    bind: 127.0.0.1:5061\n",
            &["listeners.sip.backend", "needs `backend: HOST:PORT`"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: sip\n    kind: tls\n    bind: 127.0.0.1:5061\n    backend: 127.0.0.1\n",
            &["listeners.sip.backend", "has no port"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: sip\n    kind: tls\n    bind: 127.0.0.1:5061\n    backend: 127.0.0.1:5060\n    proxy_protocol: v1\n",
            &["listeners.sip.proxy_protocol", "`v1` is not supported"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    backend: 127.0.0.1:5060\n",
            &["listeners.ws.backend", "only `tls` listeners"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: plain\n    kind: http\n    bind: 127.0.0.1:80\n    proxy_protocol: v2\n",
            &["listeners.plain.proxy_protocol", "only `tls` listeners"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    https_port: 8443\n",
            &["listeners.ws.https_port", "only `http` listeners"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      - host: \"*\"\n        backend: ftp://127.0.0.1:8080\n",
            &[
                "listeners.ws.routes[0].backend",
                "not an http://HOST:PORT or https://HOST:PORT URL",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      - host: \"*\"\n        backend: http://127.0.0.1:8080/app\n",
            &["listeners.ws.routes[0].backend", "without a path"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      - host: \"*\"\n        redirect: { to: \"https://a.test\", status: 200 }\n",
            &["listeners.ws.routes[0].redirect.status", "not a redirect"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      - host: \"*\"\n        redirect: { to: \"/elsewhere\" }\n",
            &["listeners.ws.routes[0].redirect.to", "absolute"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    idle_timeout: 10 minutes\n",
            &["idle_timeout", "unknown unit", "line 8 column 19"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    max_header_bytes: 100\n",
            &["listeners.ws.max_header_bytes", "at least 8192"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    max_connections: 0\n",
            &["listeners.ws.max_connections", "at least 1"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    max_concurrent_streams: 0\n",
            &["listeners.ws.max_concurrent_streams", "at least 1"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    max_backend_connections: 0\n",
            &["listeners.ws.max_backend_connections", "at least 1"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    send_timeout: 0s\n",
            &["listeners.ws.send_timeout", "more than 0"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      - host: \"*\"\n        backend: http://127.0.0.1:8080\n        upgrades: [websocket, H2C]\n",
            &["listeners.ws.routes[0].upgrades", "`h2c`", "RFC 9113"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      - host: \"*\"\n        backend: http://127.0.0.1:8080\n        upgrades: [\"web socket\"]\n",
            &["listeners.ws.routes[0].upgrades", "not a protocol name"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      - host: \"*\"\n        status_page: true\n        upgrades: [websocket]\n",
            &[
                "listeners.ws.routes[0].upgrades",
                "only a route with a `backend`",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nworker_threads: 0\n",
            &["worker_threads", "at least 1", "line 4 column 1"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: plain\n    kind: http\n    bind: 127.0.0.1:80\n    certdir: certs\n",
            &["listeners.plain.certdir", "serves no certificate"],
        ),
        // syntax and types
        (
            "master_domain: example.com\ndomains:\n  example.com: {\n",
            &["did not find expected node content", "line 4 column 1"],
        ),
        (
            "master_domain: \"example.com\ndomains:\n  example.com: {}\n",
            &["quoted scalar", "line 4 column 1", "line 1 column 16"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\n listeners: []\n",
            &["did not find expected key", "line 4 column 2"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    access_log: maybe\n",
            &[
                "listeners[0].access_log",
                "invalid type",
                "boolean",
                "line 8 column 17",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners: 5\n",
            &[
                "listeners",
                "invalid type",
                "expected a list",
                "line 4 column 12",
            ],
        ),
        (
            "master_domain: example.com\ndomains:\n  - example.com\n",
            &["domains", "invalid type", "line 3 column 3"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com: 5\n",
            &["domains.example.com", "invalid type", "line 3 column 16"],
        ),
        (
            "master_domain: example.com\ndomains:\n  example.com:\n    acme: { enabled: yes please }\n",
            &[
                "domains.example.com.acme.enabled",
                "invalid type",
                "line 4 column 22",
            ],
        ),
        ("", &["missing field"]),
        ("- a\n- b\n", &["invalid type", "sequence"]),
    ];
    for (yaml, needles) in cases {
        let message = err(yaml);
        assert!(message.starts_with(&format!("{FILE}: ")), "{message}");
        assert_contains_all(&message, needles, yaml);
    }
}

/// Bad domain names under `domains:` are refused at their line and column,
/// with the reason.
#[test]
fn bad_domain_names_are_refused_with_position() {
    let label64 = format!("{}.com", "a".repeat(64));
    let cases: &[(&str, &str)] = &[
        ("\"exa mple.com\"", "contains ` `"),
        ("-a.com", "starting or ending with `-`"),
        ("a..com", "empty label"),
        ("\"*.example.com\"", "wildcard"),
        ("192.168.1.1", "IP address"),
        (&label64, "longer than 63"),
        ("\"\"", "empty"),
    ];
    for (key, reason) in cases {
        let yaml =
            format!("master_domain: example.com\ndomains:\n  example.com: {{}}\n  {key}: {{}}\n");
        let message = err(&yaml);
        assert_contains_all(
            &message,
            &["domains", "invalid domain name", reason, "line 4 column 3"],
            &yaml,
        );
    }
}

/// Two listeners on the same address collide even when the bind is written
/// differently (`localhost` is 127.0.0.1, `*` is 0.0.0.0).
#[test]
fn same_bind_written_differently_collides() {
    for (first, second) in [
        ("localhost:8443", "127.0.0.1:8443"),
        ("\"*:443\"", "0.0.0.0:443"),
    ] {
        let yaml = format!(
            "{MINIMAL}listeners:\n{}{}",
            listener("a", first),
            listener("b", second)
        );
        let message = err(&yaml);
        assert_contains_all(
            &message,
            &[
                "listeners.b.bind",
                "already bound by listener `a`",
                "line 10 column 5",
            ],
            &yaml,
        );
    }
}

/// A duplicate listener name is located at the second use of that exact
/// name, not at a longer name that starts the same way.
#[test]
fn duplicate_listener_name_location_skips_longer_names() {
    let yaml = format!(
        "{MINIMAL}listeners:\n{}{}{}",
        listener("ws2", "127.0.0.1:1"),
        listener("ws", "127.0.0.1:2"),
        listener("ws", "127.0.0.1:3"),
    );
    let message = err(&yaml);
    assert_contains_all(&message, &["`ws` is used twice", "line 11 column 5"], &yaml);
}

/// Different ports on one address, and one port on different addresses, do
/// not collide.
#[test]
fn distinct_binds_are_accepted() {
    let yaml = format!(
        "{MINIMAL}listeners:\n{}{}{}",
        listener("a", "127.0.0.1:8443"),
        listener("b", "127.0.0.1:8444"),
        listener("c", "\"[::1]:8443\""),
    );
    let config = ok(&yaml);
    assert_eq!(config.listeners.len(), 3);
    let names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

/// Both certificate sources on one domain are located at that domain's key,
/// not at a longer name ending the same way.
#[test]
fn both_certificates_location_skips_longer_names() {
    let yaml = "master_domain: example.com\ndomains:\n  www.example.com: {}\n  example.com:\n    certificate_pem: x\n    certificate_file: y.pem\n";
    let message = err(yaml);
    assert_contains_all(
        &message,
        &["domains.example.com:", "not both", "line 4 column 3"],
        yaml,
    );
}

/// Two listeners on the same quoted bind are located at the second one.
#[test]
fn same_quoted_bind_is_located_at_the_second_listener() {
    let yaml = format!(
        "{MINIMAL}listeners:\n{}{}{}",
        listener("a", "\"[::1]:8443\""),
        listener("b", "127.0.0.1:8443"),
        listener("c", "\"[::1]:8443\""),
    );
    let message = err(&yaml);
    assert_contains_all(
        &message,
        &[
            "listeners.c.bind",
            "`[::1]:8443` is already bound by listener `a`",
            "line 13 column 5",
        ],
        &yaml,
    );
}

/// A negative status is refused at its position like any other out of range.
#[test]
fn negative_status_is_refused_with_position() {
    let yaml = format!(
        "{MINIMAL}listeners:\n{}    routes:\n      - host: \"*\"\n        respond: {{ status: -200 }}\n",
        listener("a", "127.0.0.1:1"),
    );
    let message = err(&yaml);
    assert_contains_all(
        &message,
        &[
            "respond.status",
            "`-200`",
            "between 100 and 599",
            "line 10 column 28",
        ],
        &yaml,
    );
}

/// Traffic settings: the three listener kinds with their own fields,
/// backend and redirect routes, durations and limits with their defaults.
#[test]
fn traffic_settings_parse_with_defaults() {
    let config = ok("master_domain: example.com\ndomains:\n  example.com: {}\n\
         worker_threads: 2\nshutdown_timeout: 5s\n\
         listeners:\n\
         \x20 - name: ws\n    kind: https\n    bind: 127.0.0.1:8443\n    header_timeout: 2s\n    idle_timeout: 90\n\
         \x20   backend_timeout: 1500ms\n    max_connections: 100\n    routes:\n\
         \x20     - host: \"*\"\n        path: /old/\n        redirect: { to: \"https://new.example.com\" }\n\
         \x20     - host: \"*\"\n        backend: http://127.0.0.1:8080/\n\
         \x20 - name: sip\n    kind: tls\n    bind: 127.0.0.1:5061\n    backend: localhost:5060\n    proxy_protocol: v2\n\
         \x20 - name: plain\n    kind: http\n    bind: 127.0.0.1:8080\n    https_port: 8443\n");
    assert_eq!(config.worker_threads, Some(2));
    assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
    let ws = config.listener("ws").expect("ws");
    assert_eq!(ws.limits.header_timeout, Duration::from_secs(2));
    assert_eq!(ws.limits.idle_timeout, Duration::from_secs(90));
    assert_eq!(ws.limits.backend_timeout, Duration::from_millis(1500));
    assert_eq!(ws.limits.max_connections, 100);
    assert_eq!(ws.limits.max_concurrent_streams, 128, "nginx's default");
    assert_eq!(ws.limits.max_backend_connections, 10_000);
    assert_eq!(ws.limits.send_timeout, Duration::from_secs(60));
    assert_eq!(ws.routes[1].upgrades, ["websocket"], "the default");
    assert!(
        ws.routes[0].upgrades.is_empty(),
        "a redirect upgrades nothing"
    );
    assert_eq!(
        ws.limits.handshake_timeout,
        Limits::default().handshake_timeout
    );
    assert_eq!(
        ws.routes[0].action,
        RouteAction::Redirect {
            to: "https://new.example.com".into(),
            status: 308
        }
    );
    assert_eq!(
        ws.routes[1].action,
        RouteAction::Backend(Backends {
            members: vec![HttpBackend {
                authority: "127.0.0.1:8080".parse().expect("authority"),
                tls: None,
                weight: 1,
                drain: false,
            }],
            balance: Balance::RoundRobin,
            health: None,
        })
    );
    let sip = config.listener("sip").expect("sip");
    assert_eq!(
        sip.backends,
        Some(Backends {
            members: vec![TcpBackend {
                address: "localhost:5060".into(),
                tls: None,
                weight: 1,
                drain: false,
            }],
            balance: Balance::RoundRobin,
            health: None,
        })
    );
    assert!(sip.proxy_protocol);
    assert_eq!(
        config.listener("plain").expect("plain").https_port,
        Some(8443)
    );
    let defaults = ok(MINIMAL);
    assert_eq!(defaults.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
    assert_eq!(defaults.worker_threads, None);
}

/// Durations: units and plain seconds.
#[test]
fn durations() {
    for (text, millis) in [
        ("250ms", 250),
        ("10s", 10_000),
        ("10", 10_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
    ] {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_millis(millis)),
            "{text}"
        );
    }
    for bad in ["", "s", "-1s", "1.5s", "10 parsecs"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn admin_block() {
    assert!(ok(MINIMAL).admin.is_none(), "off by default");
    let local = ok(&format!("{MINIMAL}admin: {{ bind: 127.0.0.1:9901 }}\n"));
    let admin = local.admin.expect("admin");
    assert_eq!(admin.bind.to_string(), "127.0.0.1:9901");
    assert!(admin.token_file.is_none());
    let with_token = ok(&format!(
        "{MINIMAL}admin: {{ bind: 0.0.0.0:9901, token_file: admin.token }}\n"
    ));
    assert_eq!(
        with_token.admin.expect("admin").token_file.as_deref(),
        Some(Path::new("/etc/sniwalk/admin.token"))
    );
    let yaml = format!("{MINIMAL}admin: {{ bind: 0.0.0.0:9901 }}\n");
    assert_contains_all(
        &err(&yaml),
        &["admin.bind", "0.0.0.0:9901", "token_file", "line"],
        &yaml,
    );
    let yaml = format!("{MINIMAL}admin: {{ bind: 127.0.0.1:9901, tokn: x }}\n");
    assert_contains_all(&err(&yaml), &["tokn"], &yaml);
}

#[test]
fn domain_store_is_merged_on_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("proxy.yaml");
    std::fs::write(&file, format!("{MINIMAL}state_dir: state\n")).expect("config");
    let state = crate::state_layout::StateLayout::new(dir.path().join("state"));
    let mut store = DomainStore::default();
    store.domains.insert(
        "new.example.com".into(),
        StoredDomain {
            acme: true,
            on_demand: false,
        },
    );
    store.domains.insert(
        "example.com".into(),
        StoredDomain {
            acme: true,
            on_demand: false,
        },
    );
    store.write(&state).expect("write store");
    let config = Config::load(&file).expect("loads");
    let added = domain(&config, "new.example.com");
    assert!(added.acme.as_ref().is_some_and(|a| a.enabled));
    assert!(
        domain(&config, "example.com").acme.is_none(),
        "the file's own entry wins"
    );
    std::fs::write(state.domain_store(), "{ broken").expect("break");
    let message = Config::load(&file).expect_err("refused").to_string();
    assert!(message.contains("domains.json"), "{message}");
}

#[test]
fn tls_ticket_keys_file() {
    assert!(ok(MINIMAL).ticket_keys_file.is_none());
    let config = ok(&format!(
        "{MINIMAL}tls: {{ ticket_keys_file: ticket.keys }}\n"
    ));
    assert_eq!(
        config.ticket_keys_file.as_deref(),
        Some(Path::new("/etc/sniwalk/ticket.keys"))
    );
    let yaml = format!("{MINIMAL}tls: {{ ticket_key: x }}\n");
    assert_contains_all(&err(&yaml), &["ticket_key"], &yaml);
}

#[test]
fn client_auth_block() {
    let listener = |auth: &str| {
        format!(
            "{MINIMAL}listeners:\n  - name: api\n    kind: https\n    bind: 127.0.0.1:8443\n    client_auth: {auth}\n"
        )
    };
    let sha = "AB:".repeat(31) + "AB";
    let config = ok(&listener(&format!(
        "{{ mode: required, ca_file: ca.pem, pinned_sha256: [\"{sha}\"], pinned_sha1: [{}] }}",
        "cd".repeat(20)
    )));
    let auth = config.listeners[0].client_auth.clone().expect("on");
    assert!(auth.required);
    assert_eq!(auth.ca_file, Path::new("/etc/sniwalk/ca.pem"));
    assert_eq!(auth.pinned_sha256, vec!["ab".repeat(32)]);
    assert!(auth.pinned(&"00".repeat(32), &"cd".repeat(20)));
    assert!(!auth.pinned(&"00".repeat(32), &"00".repeat(20)));
    assert!(
        ok(&listener("{ mode: off }")).listeners[0]
            .client_auth
            .is_none()
    );
    for (auth, needles) in [
        ("{ mode: off, ca_file: ca.pem }", vec!["mode: off"]),
        ("{ mode: required }", vec!["ca_file"]),
        (
            "{ mode: sometimes, ca_file: ca.pem }",
            vec!["sometimes", "off, optional or required"],
        ),
        (
            "{ mode: required, ca_file: ca.pem, pinned_sha256: [abc] }",
            vec!["pinned_sha256", "64 hex"],
        ),
    ] {
        let yaml = listener(auth);
        assert_contains_all(&err(&yaml), &needles, &yaml);
    }
}

#[test]
fn backend_tls_on_routes_and_tls_listeners() {
    let route = |backend: &str, tls: &str| {
        format!(
            "{MINIMAL}listeners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:8443\n    routes:\n      \
             - host: \"*\"\n        backend: {backend}\n{tls}"
        )
    };
    // https:// alone: system roots, the host as server name.
    let config = ok(&route("https://api.internal:9443", ""));
    let RouteAction::Backend(group) = &config.listeners[0].routes[0].action else {
        panic!("a backend route");
    };
    let backend = &group.members[0];
    assert_eq!(backend.authority, "api.internal:9443");
    let tls = backend.tls.clone().expect("TLS");
    assert_eq!(tls.backend, "https://api.internal:9443");
    assert_eq!(tls.server_name, "api.internal");
    assert_eq!(tls.ca_file, None);
    assert!(!tls.insecure_skip_verify);
    // IPv6 literal: the server name has no brackets.
    let config = ok(&route("https://[::1]:9443/", ""));
    assert_eq!(config.backend_tls()[0].server_name, "::1");
    // Every field.
    let config = ok(&route(
        "https://10.0.0.5:9443",
        "        backend_tls: { ca_file: ca.pem, client_certificate: alias://paths/c/client.pem, server_name: API.Internal. }\n",
    )
    .replace("listeners:", "paths: { c: /etc/certs }\nlisteners:"));
    let tls = config.backend_tls()[0].clone();
    assert_eq!(
        tls.ca_file.as_deref(),
        Some(Path::new("/etc/sniwalk/ca.pem"))
    );
    assert_eq!(
        tls.client_certificate.as_deref(),
        Some(Path::new("/etc/certs/client.pem"))
    );
    assert_eq!(tls.server_name, "api.internal");
    // A tls listener.
    let yaml = format!(
        "{MINIMAL}listeners:\n  - name: sip\n    kind: tls\n    bind: 127.0.0.1:5061\n    backend: sbc.internal:5061\n    \
         backend_tls: {{ insecure_skip_verify: true }}\n"
    );
    let config = ok(&yaml);
    let group = config.listeners[0].backends.clone().expect("backend");
    let tls = group.members[0].tls.clone().expect("TLS");
    assert_eq!(tls.server_name, "sbc.internal");
    assert!(tls.insecure_skip_verify);

    for (yaml, needles) in [
        (
            route(
                "http://127.0.0.1:8080",
                "        backend_tls: { ca_file: ca.pem }\n",
            ),
            vec!["backend_tls", "plain HTTP", "https://127.0.0.1:8080"],
        ),
        (
            route(
                "https://127.0.0.1:8080",
                "        backend_tls: { ca_file: ca.pem, insecure_skip_verify: true }\n",
            ),
            vec!["insecure_skip_verify", "ca_file"],
        ),
        (
            route(
                "https://127.0.0.1:8080",
                "        backend_tls: { server_name: \"not a name\" }\n",
            ),
            vec!["server_name", "not a name"],
        ),
        (
            route("https://127.0.0.1:8080", "        backend_tls: { ca: x }\n"),
            vec!["ca"],
        ),
        (
            route("ftp://127.0.0.1:8080", ""),
            vec!["ftp://", "https://HOST:PORT"],
        ),
        (
            format!(
                "{MINIMAL}listeners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:8443\n    \
                 backend_tls: {{ ca_file: ca.pem }}\n"
            ),
            vec!["backend_tls", "on the route"],
        ),
        (
            format!(
                "{MINIMAL}listeners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:8443\n    routes:\n      \
                 - {{ host: a.example.com, backend: \"https://127.0.0.1:9\", backend_tls: {{ ca_file: a.pem }} }}\n      \
                 - {{ host: b.example.com, backend: \"https://127.0.0.1:9\", backend_tls: {{ ca_file: b.pem }} }}\n"
            ),
            vec!["https://127.0.0.1:9", "twice", "backend_tls"],
        ),
    ] {
        assert_contains_all(&err(&yaml), &needles, &yaml);
    }
}

// ---- storage and tls.ticket_rotation ---------------------------------------

/// `storage:` with `fields` (each line indented by two spaces), after the
/// minimal configuration. The first field is on line 5.
fn with_storage(fields: &str) -> String {
    format!("{MINIMAL}storage:\n{fields}")
}

/// An etcd `storage:` with one endpoint and `more` fields.
fn etcd_with(more: &str) -> String {
    with_storage(&format!(
        "  kind: etcd\n  endpoints: [\"127.0.0.1:2379\"]\n{more}"
    ))
}

/// The etcd settings of a configuration that must have them.
fn etcd(config: &Config) -> &EtcdStorageConfig {
    match &config.storage {
        StorageConfig::Etcd(etcd) => etcd,
        StorageConfig::Dir => panic!("expected etcd storage, got dir"),
    }
}

/// Without `storage:`, or with an empty one or `kind: dir`, the state
/// directory; without `tls.ticket_rotation`, 6 hours.
#[test]
fn storage_and_ticket_rotation_defaults() {
    let config = ok(MINIMAL);
    assert_eq!(config.storage, StorageConfig::Dir);
    assert_eq!(config.storage, StorageConfig::default());
    assert_eq!(config.ticket_rotation, Duration::from_secs(6 * 3600));
    assert_eq!(config.ticket_rotation, DEFAULT_TICKET_ROTATION);
    for yaml in [
        format!("{MINIMAL}storage:\n"),
        with_storage("  kind: dir\n"),
        format!("{MINIMAL}storage: {{ kind: Dir }}\n"),
        format!("{MINIMAL}tls: {{ ticket_keys_file: ticket.keys }}\n"),
    ] {
        let config = ok(&yaml);
        assert_eq!(config.storage, StorageConfig::Dir, "{yaml}");
        assert_eq!(config.ticket_rotation, DEFAULT_TICKET_ROTATION, "{yaml}");
    }
    // The lease's default is the storage engine's.
    assert_eq!(DEFAULT_STORAGE_LEASE, crate::storage::DEFAULT_LEASE);
}

/// Every field of an etcd section; paths resolve against the
/// configuration's folder and through aliases.
#[test]
fn storage_etcd_full() {
    let yaml = format!(
        "{MINIMAL}paths: {{ secrets: /run/secrets }}\nstorage:\n  kind: etcd\n  endpoints:\n    \
         - https://etcd-1.example.internal:2379\n    - \" etcd-2.example.internal:2379/ \"\n    \
         - \"10.0.0.5:2379\"\n    - https://[2001:db8::5]:2379\n  prefix: /sniwalk/\n  tls:\n    \
         ca_file: etcd-ca.pem\n    client_certificate: /etc/pki/client.pem\n    \
         client_key: alias://paths/secrets/client-key.pem\n  username: \" sniwalk \"\n  \
         password_file: etcd.password\n  lease: 30s\n"
    );
    let config = ok(&yaml);
    assert_eq!(
        etcd(&config),
        &EtcdStorageConfig {
            endpoints: vec![
                "https://etcd-1.example.internal:2379".into(),
                "etcd-2.example.internal:2379/".into(),
                "10.0.0.5:2379".into(),
                "https://[2001:db8::5]:2379".into(),
            ],
            prefix: "/sniwalk/".into(),
            ca_file: Some(PathBuf::from("/etc/sniwalk/etcd-ca.pem")),
            client_certificate: Some(PathBuf::from("/etc/pki/client.pem")),
            client_key: Some(PathBuf::from("/run/secrets/client-key.pem")),
            username: Some("sniwalk".into()),
            password_file: Some(PathBuf::from("/etc/sniwalk/etcd.password")),
            lease: Duration::from_secs(30),
        }
    );
}

/// An etcd section with endpoints alone: prefix `sniwalk/`, lease 15 s,
/// no TLS files, no user.
#[test]
fn storage_etcd_defaults() {
    let config = ok(&etcd_with(""));
    assert_eq!(
        etcd(&config),
        &EtcdStorageConfig {
            endpoints: vec!["127.0.0.1:2379".into()],
            prefix: "sniwalk/".into(),
            ca_file: None,
            client_certificate: None,
            client_key: None,
            username: None,
            password_file: None,
            lease: Duration::from_secs(15),
        }
    );
    assert_eq!(etcd(&config).prefix, DEFAULT_STORAGE_PREFIX);
    assert_eq!(etcd(&config).lease, DEFAULT_STORAGE_LEASE);
    // `tls` with only a CA, over bare HOST:PORT (HTTPS implied).
    let config = ok(&etcd_with("  tls: { ca_file: ca.pem }\n"));
    assert_eq!(
        etcd(&config).ca_file.as_deref(),
        Some(Path::new("/etc/sniwalk/ca.pem"))
    );
    assert_eq!(etcd(&config).client_certificate, None);
}

/// `kind` is required and is `dir` or `etcd`.
#[test]
fn storage_kind_errors() {
    for (yaml, needles) in [
        (
            format!("{MINIMAL}storage: {{}}\n"),
            vec!["storage.kind", "required", "`dir`", "`etcd`", "line 4"],
        ),
        (
            with_storage("  endpoints: [\"127.0.0.1:2379\"]\n"),
            vec!["storage.kind", "required", "line 4"],
        ),
        (
            with_storage("  kind: consul\n"),
            vec!["storage.kind", "`consul`", "use `dir` or `etcd`", "line 5"],
        ),
        (
            with_storage("  kind: etcd\n  endpoint: [\"127.0.0.1:2379\"]\n"),
            vec!["endpoint", "unknown field"],
        ),
        (
            with_storage("  kind: etcd\n  endpoints: [\"127.0.0.1:2379\"]\n  tls: { cert: x }\n"),
            vec!["cert", "unknown field"],
        ),
    ] {
        assert_contains_all(&err(&yaml), &needles, &yaml);
    }
}

/// `kind: dir` takes none of the etcd fields.
#[test]
fn storage_dir_refuses_etcd_fields() {
    for (field, value) in [
        ("endpoints", "[\"127.0.0.1:2379\"]"),
        ("prefix", "sniwalk/"),
        ("tls", "{ ca_file: ca.pem }"),
        ("username", "sniwalk"),
        ("password_file", "etcd.password"),
        ("lease", "15s"),
    ] {
        let yaml = with_storage(&format!("  kind: dir\n  {field}: {value}\n"));
        assert_contains_all(
            &err(&yaml),
            &[
                &format!("storage.{field}"),
                "only with `kind: etcd`",
                "line 6",
            ],
            &yaml,
        );
    }
}

/// Endpoints: at least one, each `http(s)://HOST:PORT` or `HOST:PORT`.
#[test]
fn storage_endpoints() {
    for endpoint in [
        "http://127.0.0.1:2379",
        "https://etcd.example.internal:2379/",
        "etcd:2379",
        "localhost:1",
        "[::1]:65535",
        "https://[2001:db8::1]:2379",
    ] {
        let yaml = with_storage(&format!("  kind: etcd\n  endpoints: [\"{endpoint}\"]\n"));
        assert_eq!(etcd(&ok(&yaml)).endpoints, vec![endpoint], "{endpoint}");
    }
    for endpoints in ["[]", "", "null"] {
        let yaml = with_storage(&format!("  kind: etcd\n  endpoints: {endpoints}\n"));
        assert_contains_all(
            &err(&yaml),
            &["storage.endpoints", "at least one endpoint", "line 4"],
            &yaml,
        );
    }
    let yaml = with_storage("  kind: etcd\n");
    assert_contains_all(&err(&yaml), &["storage.endpoints", "at least one"], &yaml);
    for (endpoint, says) in [
        ("etcd.example.internal", "has no port"),
        ("http://etcd.example.internal", "has no port"),
        ("etcd:0", "from 1 to 65535"),
        ("etcd:65536", "from 1 to 65535"),
        ("etcd:+80", "from 1 to 65535"),
        ("etcd:", "from 1 to 65535"),
        ("etcd:port", "from 1 to 65535"),
        (":2379", "has no host"),
        ("https://:2379", "has no host"),
        ("https://etcd:2379/v3", "has a path"),
        ("etcd:2379//", "has a path"),
        ("etcd:2379?x=1", "has a path"),
        ("etcd :2379", "contains a space"),
        ("ftp://etcd:2379", "scheme other than"),
        ("HTTPS://etcd:2379", "scheme other than"),
        ("user@etcd:2379", "neither a DNS name nor an IP address"),
        ("et_cd!:2379", "neither a DNS name nor an IP address"),
        ("::1:2379", "IPv6 address without brackets"),
        ("[etcd]:2379", "not an IPv6 address"),
        ("", "is empty"),
    ] {
        let yaml = with_storage(&format!(
            "  kind: etcd\n  endpoints:\n    - 127.0.0.1:2379\n    - \"{endpoint}\"\n"
        ));
        assert_contains_all(
            &err(&yaml),
            &[
                "storage.endpoints[1]",
                &format!("`{endpoint}`"),
                says,
                "https://HOST:PORT",
            ],
            &yaml,
        );
    }
    // The position of the bad endpoint.
    let yaml = with_storage("  kind: etcd\n  endpoints:\n    - a:1\n    - b\n");
    assert_contains_all(&err(&yaml), &["storage.endpoints[1]", "line 8"], &yaml);
}

/// One scheme for every endpoint; bare `HOST:PORT` goes with either.
#[test]
fn storage_endpoints_do_not_mix_schemes() {
    for endpoints in [
        "[\"http://a:1\", \"b:2\", \"http://c:3\"]",
        "[\"https://a:1\", \"b:2\", \"https://c:3\"]",
    ] {
        ok(&with_storage(&format!(
            "  kind: etcd\n  endpoints: {endpoints}\n"
        )));
    }
    let yaml =
        with_storage("  kind: etcd\n  endpoints: [\"http://a:1\", \"b:2\", \"https://c:3\"]\n");
    assert_contains_all(
        &err(&yaml),
        &[
            "storage.endpoints[2]",
            "`https://c:3` is https://",
            "`http://a:1` (storage.endpoints[0]) is http://",
            "same one",
            "line 6",
        ],
        &yaml,
    );
}

/// `prefix`: ends with `/`, no empty segment but a leading `/`.
#[test]
fn storage_prefix() {
    for prefix in ["/sniwalk/", "sniwalk/", "a/b/", "/a/b-c_d.e/", "x.y/"] {
        let yaml = etcd_with(&format!("  prefix: \"{prefix}\"\n"));
        assert_eq!(etcd(&ok(&yaml)).prefix, prefix);
    }
    for (prefix, says) in [
        ("sniwalk", "does not end with `/`"),
        ("//x/", "empty segment"),
        ("a//b/", "empty segment"),
        ("/", "empty segment"),
        ("//", "empty segment"),
        ("a/../b/", "`.` or `..` segment"),
        ("./", "`.` or `..` segment"),
        ("", "is empty"),
        ("sni walk/", "printable ASCII"),
        ("snïwalk/", "printable ASCII"),
    ] {
        let yaml = etcd_with(&format!("  prefix: \"{prefix}\"\n"));
        assert_contains_all(
            &err(&yaml),
            &[
                "storage.prefix",
                &format!("`{prefix}`"),
                says,
                "`sniwalk/`",
                "line 7",
            ],
            &yaml,
        );
    }
}

/// `tls` only over HTTPS; the client certificate and its key together.
#[test]
fn storage_tls() {
    let https = |tls: &str| {
        with_storage(&format!(
            "  kind: etcd\n  endpoints: [\"https://a:1\", \"b:2\"]\n  tls: {tls}\n"
        ))
    };
    let config = ok(&https(
        "{ client_certificate: client.pem, client_key: client-key.pem }",
    ));
    let settings = etcd(&config);
    assert_eq!(settings.ca_file, None);
    assert_eq!(
        settings.client_certificate.as_deref(),
        Some(Path::new("/etc/sniwalk/client.pem"))
    );
    assert_eq!(
        settings.client_key.as_deref(),
        Some(Path::new("/etc/sniwalk/client-key.pem"))
    );
    for (yaml, needles) in [
        (
            with_storage(
                "  kind: etcd\n  endpoints: [\"b:2\", \"http://a:1\"]\n  tls: { ca_file: ca.pem }\n",
            ),
            vec![
                "storage.tls",
                "`http://a:1` (storage.endpoints[1]) is plain HTTP",
                "remove `tls`",
                "line 7",
            ],
        ),
        (
            https("{ client_certificate: client.pem }"),
            vec![
                "storage.tls.client_key",
                "required with `storage.tls.client_certificate`",
            ],
        ),
        (
            https("{ client_key: client-key.pem }"),
            vec![
                "storage.tls.client_certificate",
                "required with `storage.tls.client_key`",
            ],
        ),
        (
            https("{ ca_file: \"\" }"),
            vec!["storage.tls.ca_file", "the path is empty"],
        ),
        (
            https("{ ca_file: alias://paths/nowhere/ca.pem }"),
            vec!["storage.tls.ca_file", "unknown alias `nowhere`"],
        ),
    ] {
        assert_contains_all(&err(&yaml), &needles, &yaml);
    }
}

/// `username` and `password_file` come together.
#[test]
fn storage_user() {
    for (more, needles) in [
        (
            "  username: sniwalk\n",
            vec![
                "storage.password_file",
                "required with `storage.username`",
                "line 7",
            ],
        ),
        (
            "  password_file: etcd.password\n",
            vec![
                "storage.username",
                "required with `storage.password_file`",
                "line 7",
            ],
        ),
        (
            "  username: \" \"\n  password_file: etcd.password\n",
            vec!["storage.username", "empty", "line 7"],
        ),
        (
            "  username: sniwalk\n  password_file: \"\"\n",
            vec!["storage.password_file", "the path is empty"],
        ),
    ] {
        let yaml = etcd_with(more);
        assert_contains_all(&err(&yaml), &needles, &yaml);
    }
}

/// `storage.lease` is a duration from 2 s to 10 min.
#[test]
fn storage_lease() {
    for (value, want) in [
        ("2s", Duration::from_secs(2)),
        ("15s", Duration::from_secs(15)),
        ("2500ms", Duration::from_millis(2500)),
        ("10m", Duration::from_secs(600)),
        ("60", Duration::from_secs(60)),
    ] {
        let yaml = etcd_with(&format!("  lease: {value}\n"));
        assert_eq!(etcd(&ok(&yaml)).lease, want, "{value}");
    }
    for value in ["1s", "1999ms", "0", "601s", "1h"] {
        let yaml = etcd_with(&format!("  lease: {value}\n"));
        assert_contains_all(
            &err(&yaml),
            &["storage.lease", "between 2s and 10m", "line 7"],
            &yaml,
        );
    }
    // `acme.lock_lease` earlier in the file is not where the error points.
    let yaml = format!(
        "{MINIMAL}acme:\n  lock_lease: 60s\nstorage:\n  kind: etcd\n  endpoints: [\"a:1\"]\n  \
         lease: 1s\n"
    );
    assert_contains_all(&err(&yaml), &["storage.lease", "line 9"], &yaml);
    let yaml = etcd_with("  lease: soon\n");
    assert_contains_all(
        &err(&yaml),
        &["storage.lease", "is not a duration", "line 7"],
        &yaml,
    );
}

/// `tls.ticket_rotation` is a duration from 1 min to 24 h.
#[test]
fn tls_ticket_rotation() {
    for (value, want) in [
        ("1m", Duration::from_secs(60)),
        ("6h", Duration::from_secs(6 * 3600)),
        ("90m", Duration::from_secs(90 * 60)),
        ("24h", Duration::from_secs(24 * 3600)),
    ] {
        let yaml = format!("{MINIMAL}tls:\n  ticket_rotation: {value}\n");
        assert_eq!(ok(&yaml).ticket_rotation, want, "{value}");
    }
    for value in ["59s", "0", "25h", "86401s"] {
        let yaml = format!("{MINIMAL}tls:\n  ticket_rotation: {value}\n");
        assert_contains_all(
            &err(&yaml),
            &["tls.ticket_rotation", "between 1m and 24h", "line 5"],
            &yaml,
        );
    }
    let yaml = format!("{MINIMAL}tls:\n  ticket_rotation: daily\n");
    assert_contains_all(
        &err(&yaml),
        &["tls.ticket_rotation", "is not a duration", "line 5"],
        &yaml,
    );
}

// ---- acme.eab, acme.fallback_to_staging -------------------------------------

/// `acme.eab` reads the MAC key file when the configuration loads:
/// base64url with or without padding and a trailing newline, standard
/// base64 too; the key never shows in debug output.
#[test]
fn acme_eab_reads_the_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("eab.key");
    // 0xfb 0xff: `-_` in base64url, `+/` in standard base64.
    for content in ["-_8\n", "-_8=\n", "  -_8  ", "+/8=", "+/8"] {
        std::fs::write(&file, content).expect("write");
        let yaml = with_acme(&format!(
            "  eab: {{ kid: kid-1, hmac_key_file: {} }}\n",
            file.display()
        ));
        let eab = ok(&yaml).acme.eab.expect("eab");
        assert_eq!(eab.kid, "kid-1");
        assert_eq!(eab.hmac_key, vec![0xfb, 0xff], "{content:?}");
        assert_eq!(eab.hmac_key_file, file);
        assert!(!format!("{eab:?}").contains("251"), "{eab:?}");
    }
    assert_eq!(ok(MINIMAL).acme.eab, None);
}

/// A relative `hmac_key_file` is relative to the configuration's folder,
/// and aliases work, like every other path.
#[test]
fn acme_eab_path_resolves_like_other_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("eab.key"), "c2VjcmV0").expect("write");
    let config_file = dir.path().join("proxy.yaml");
    for path in ["eab.key", "alias://paths/keys/eab.key"] {
        let yaml = format!(
            "{MINIMAL}paths:\n  keys: {}\nacme:\n  eab: {{ kid: k, hmac_key_file: \"{path}\" }}\n",
            dir.path().display()
        );
        let config = Config::parse(&yaml, &config_file).expect("valid");
        assert_eq!(config.acme.eab.expect("eab").hmac_key, b"secret");
    }
}

/// Errors name the field and the file and say what it must hold.
#[test]
fn acme_eab_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("eab.key");
    std::fs::write(&file, "c2VjcmV0").expect("write");
    let at = |kid: &str, path: &Path| {
        with_acme(&format!(
            "  eab: {{ kid: \"{kid}\", hmac_key_file: {} }}\n",
            path.display()
        ))
    };
    let yaml = at("  ", &file);
    assert_contains_all(&err(&yaml), &["acme.eab.kid", "empty", "line 5"], &yaml);
    for (content, says) in [
        ("", "is empty"),
        ("\n", "is empty"),
        ("not*base64!", "is not base64url"),
        ("two words", "more than one word"),
    ] {
        std::fs::write(&file, content).expect("write");
        let yaml = at("kid-1", &file);
        assert_contains_all(
            &err(&yaml),
            &["acme.eab.hmac_key_file", "eab.key", says, "base64url"],
            &yaml,
        );
    }
    let missing = dir.path().join("missing.key");
    let yaml = at("kid-1", &missing);
    assert_contains_all(
        &err(&yaml),
        &["acme.eab.hmac_key_file", "cannot read", "missing.key"],
        &yaml,
    );
    let yaml = with_acme("  eab: { kid: k }\n");
    assert_contains_all(&err(&yaml), &["hmac_key_file"], &yaml);
}

/// `fallback_to_staging` defaults to Let's Encrypt staging with the
/// production directory; any other directory needs `staging_directory`.
#[test]
fn acme_fallback_to_staging() {
    assert_eq!(ok(MINIMAL).acme.staging_check_directory, None);
    let config = ok(&with_acme("  fallback_to_staging: true\n"));
    assert_eq!(
        config.acme.staging_check_directory.as_deref(),
        Some(STAGING_ACME_DIRECTORY)
    );
    let config = ok(&with_acme(
        "  directory: https://ca.example/dir\n  fallback_to_staging: true\n  \
         staging_directory: https://ca.example/staging\n",
    ));
    assert_eq!(
        config.acme.staging_check_directory.as_deref(),
        Some("https://ca.example/staging")
    );
    // Without the switch, staging_directory alone runs no check.
    let config = ok(&with_acme("  staging_directory: staging\n"));
    assert_eq!(config.acme.staging_check_directory, None);
    let config = ok(&with_acme("  fallback_to_staging: false\n"));
    assert_eq!(config.acme.staging_check_directory, None);

    let yaml = with_acme("  directory: https://ca.example/dir\n  fallback_to_staging: true\n");
    assert_contains_all(
        &err(&yaml),
        &[
            "acme.fallback_to_staging",
            "acme.staging_directory",
            "https://ca.example/dir",
            "line 6",
        ],
        &yaml,
    );
    let yaml = with_acme("  fallback_to_staging: true\n  staging_directory: http://x/dir\n");
    assert_contains_all(&err(&yaml), &["staging_directory", "https"], &yaml);
}

/// `acme.on_demand`: `ask` required, defaults for the rest, each value
/// checked with the field named, and a challenge it can answer.
#[test]
fn acme_on_demand() {
    let with_http = |fields: &str| {
        format!(
            "{MINIMAL}listeners:\n  - {{ name: plain, kind: http, bind: \"127.0.0.1:8080\" }}\n\
             acme:\n{fields}"
        )
    };
    assert_eq!(ok(MINIMAL).acme.on_demand, None);
    let config = ok(&with_http(
        "  on_demand: { ask: \"http://127.0.0.1:9000/allowed\" }\n",
    ));
    assert_eq!(
        config.acme.on_demand,
        Some(crate::config::OnDemandConfig {
            ask: "http://127.0.0.1:9000/allowed".into(),
            rate: crate::config::DEFAULT_RATE,
            burst: crate::config::DEFAULT_BURST,
            wait: crate::config::DEFAULT_WAIT,
            refused_for: crate::config::DEFAULT_REFUSED_FOR,
        })
    );
    let config = ok(&with_http(
        "  on_demand:\n    ask: https://tenants.example/ok\n    rate: 5/h\n    burst: 2\n    \
         wait: 0\n    refused_for: 1h\n",
    ));
    let on_demand = config.acme.on_demand.expect("on_demand");
    assert_eq!(
        (on_demand.rate.count, on_demand.rate.per.as_secs()),
        (5, 3600)
    );
    assert_eq!(on_demand.burst, 2);
    assert_eq!(on_demand.wait, Duration::ZERO);
    assert_eq!(on_demand.refused_for, Duration::from_secs(3600));

    for (fields, says) in [
        (
            "ask: 127.0.0.1:9000",
            &["acme.on_demand.ask", "http://", "line 7"][..],
        ),
        (
            "ask: \"http://x/a\", rate: 10/day",
            &["acme.on_demand.rate", "N/min"],
        ),
        ("ask: \"http://x/a\", burst: 0", &["acme.on_demand.burst"]),
        (
            "ask: \"http://x/a\", wait: 31s",
            &["acme.on_demand.wait", "30s"],
        ),
        (
            "ask: \"http://x/a\", refused_for: 0",
            &["acme.on_demand.refused_for"],
        ),
        ("rate: 1/s", &["ask"]),
        ("ask: \"http://x/a\", when: always", &["when"]),
    ] {
        let yaml = with_http(&format!("  on_demand: {{ {fields} }}\n"));
        assert_contains_all(&err(&yaml), says, &yaml);
    }
    // No listener for the challenge, or dns-01 (customers' zones).
    let yaml = with_acme("  on_demand: { ask: \"http://x/a\" }\n");
    assert_contains_all(
        &err(&yaml),
        &["acme.on_demand", "http-01", "kind: http"],
        &yaml,
    );
    let yaml = with_http(
        "  challenge: dns-01\n  rfc2136: { server: 127.0.0.1, tsig_key_name: k, \
         tsig_secret_file: k.secret }\n  on_demand: { ask: \"http://x/a\" }\n",
    );
    assert_contains_all(
        &err(&yaml),
        &["acme.on_demand", "dns-01", "customers' zones"],
        &yaml,
    );
}
