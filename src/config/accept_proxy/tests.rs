//! `accept_proxy_protocol:` of `https`, `tls` and `http` listeners.

use std::net::IpAddr;
use std::path::Path;

use crate::config::{Config, ListenerKind};

/// A configuration with one listener of `kind` whose
/// `accept_proxy_protocol:` is `setting` (flow style).
fn with_setting(kind: ListenerKind, setting: &str) -> String {
    let backend = if kind == ListenerKind::Tls {
        "    backend: 127.0.0.1:5060\n"
    } else {
        ""
    };
    format!(
        "master_domain: example.com\ndomains:\n  example.com: {{}}\nlisteners:\n  - name: edge\n    \
         kind: {}\n    bind: 127.0.0.1:8443\n{backend}    accept_proxy_protocol: {setting}\n",
        kind.as_str()
    )
}

fn parse(yaml: &str) -> Result<Config, String> {
    Config::parse(yaml, Path::new("/etc/sniwalk/proxy.yaml")).map_err(|e| e.to_string())
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect(text)
}

#[test]
fn every_kind_of_listener_reads_it_and_versions_default_to_both() {
    for kind in [ListenerKind::Https, ListenerKind::Tls, ListenerKind::Http] {
        let yaml = with_setting(
            kind,
            "{ from: [10.0.0.0/8, \"::1\", 127.0.0.1/32, \"2001:db8::/32\", 192.0.2.10] }",
        );
        let config = parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let accept = config.listeners[0]
            .accept_proxy_protocol
            .as_ref()
            .expect("accept_proxy_protocol");
        assert!(accept.v1 && accept.v2, "both versions when none are listed");
        let from: Vec<String> = accept.from.iter().map(ToString::to_string).collect();
        assert_eq!(
            from,
            [
                "10.0.0.0/8",
                "::1/128",
                "127.0.0.1/32",
                "2001:db8::/32",
                "192.0.2.10/32"
            ]
        );
        for (peer, trusted) in [
            ("10.20.30.40", true),
            ("::1", true),
            ("127.0.0.1", true),
            ("::ffff:127.0.0.1", true),
            ("127.0.0.2", false),
            ("2001:db8:1::5", true),
            ("192.0.2.11", false),
        ] {
            assert_eq!(accept.trusts(ip(peer)), trusted, "{peer}");
        }
    }
}

#[test]
fn listeners_without_it_have_none() {
    let yaml = with_setting(ListenerKind::Https, "{ from: [10.0.0.0/8] }")
        .replace("    accept_proxy_protocol: { from: [10.0.0.0/8] }\n", "");
    let config = parse(&yaml).expect("valid");
    assert!(config.listeners[0].accept_proxy_protocol.is_none());
}

#[test]
fn versions_can_be_limited() {
    for (versions, v1, v2) in [
        ("[v1]", true, false),
        ("[v2]", false, true),
        ("[V2, v1]", true, true),
        ("[v2, v2]", false, true),
    ] {
        let yaml = with_setting(
            ListenerKind::Https,
            &format!("{{ versions: {versions}, from: [10.0.0.0/8] }}"),
        );
        let config = parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let accept = config.listeners[0].accept_proxy_protocol.as_ref().unwrap();
        assert_eq!((accept.v1, accept.v2), (v1, v2), "{versions}");
    }
}

#[test]
fn mistakes_are_refused_naming_the_field_and_what_to_do() {
    let cases: &[(&str, &[&str])] = &[
        (
            "{ versions: [v2] }",
            &[
                "listeners.edge.accept_proxy_protocol.from: missing",
                "addresses of the load balancers",
            ],
        ),
        (
            "{ from: [] }",
            &[
                "listeners.edge.accept_proxy_protocol.from: empty",
                "at least one",
            ],
        ),
        (
            "{ from: [10.0.0.0/8, \"::1\", 10.0.0.0/33] }",
            &[
                "listeners.edge.accept_proxy_protocol.from[2]",
                "`10.0.0.0/33`",
                "too long for an IPv4 address (at most 32)",
            ],
        ),
        (
            "{ from: [\"2001:db8::/129\"] }",
            &["accept_proxy_protocol.from[0]", "at most 128"],
        ),
        (
            "{ from: [lb.example.com] }",
            &[
                "accept_proxy_protocol.from[0]",
                "not an IP address or range",
                "10.0.0.0/8",
            ],
        ),
        (
            "{ from: [10.0.0.0/x] }",
            &["accept_proxy_protocol.from[0]", "`x` is not a number"],
        ),
        (
            "{ from: [10.1.2.3/8] }",
            &[
                "accept_proxy_protocol.from[0]",
                "write the network `10.0.0.0/8`",
                "`10.1.2.3/32`",
            ],
        ),
        (
            "{ versions: [], from: [10.0.0.0/8] }",
            &[
                "listeners.edge.accept_proxy_protocol.versions: empty",
                "leave `versions` out",
            ],
        ),
        (
            "{ versions: [v2, v3], from: [10.0.0.0/8] }",
            &[
                "listeners.edge.accept_proxy_protocol.versions[1]",
                "`v3` is not a PROXY protocol version",
                "use `v1` (text), `v2` (binary) or both",
            ],
        ),
        (
            "{ form: [10.0.0.0/8] }",
            &[
                "accept_proxy_protocol",
                "unknown field `form`",
                "expected `versions` or `from`",
                "line 8",
            ],
        ),
        (
            "{ from: 10.0.0.0/8 }",
            &["accept_proxy_protocol.from", "expected a list"],
        ),
        ("v2", &["accept_proxy_protocol", "line 8"]),
    ];
    for (setting, needles) in cases {
        let yaml = with_setting(ListenerKind::Https, setting);
        let message = match parse(&yaml) {
            Ok(config) => panic!("accepted: {:#?}\n{yaml}", config.listeners),
            Err(message) => message,
        };
        for needle in *needles {
            assert!(
                message.contains(needle),
                "`{needle}` missing from: {message}\n{yaml}"
            );
        }
    }
}

#[test]
fn it_is_not_the_header_sent_to_backends() {
    // `proxy_protocol: v2` (sent on to a `tls` listener's backends) and
    // `accept_proxy_protocol` (read from load balancers) are independent.
    let yaml = with_setting(ListenerKind::Tls, "{ versions: [v2], from: [10.0.0.0/8] }").replace(
        "    accept_proxy_protocol",
        "    proxy_protocol: v2\n    accept_proxy_protocol",
    );
    let config = parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert!(config.listeners[0].proxy_protocol);
    assert!(config.listeners[0].accept_proxy_protocol.is_some());
    let without = with_setting(ListenerKind::Tls, "{ from: [10.0.0.0/8] }");
    assert!(!parse(&without).expect("valid").listeners[0].proxy_protocol);
}
