//! `backends:`, `balance:` and `health:` of routes and `tls` listeners.

use std::path::Path;
use std::time::Duration;

use crate::config::{Backends, Balance, Config, HttpBackend, Probe, RouteAction, TcpBackend};

const HEAD: &str = "master_domain: example.com\ndomains:\n  example.com: {}\nlisteners:\n";

/// A configuration with one `https` listener whose one route has `route`
/// (YAML lines at the route's indentation, after `host`).
fn https(route: &str) -> String {
    format!(
        "{HEAD}  - name: ws\n    kind: https\n    bind: 127.0.0.1:8443\n    routes:\n      - host: \"*\"\n{}",
        indent(route, 8)
    )
}

/// A configuration with one `tls` listener with `fields`.
fn tls(fields: &str) -> String {
    format!(
        "{HEAD}  - name: sip\n    kind: tls\n    bind: 127.0.0.1:5061\n{}",
        indent(fields, 4)
    )
}

fn indent(lines: &str, by: usize) -> String {
    lines
        .lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

fn parse(yaml: &str) -> Result<Config, String> {
    Config::parse(yaml, Path::new("/etc/sniwalk/proxy.yaml")).map_err(|e| e.to_string())
}

fn route_group(yaml: &str) -> Backends<HttpBackend> {
    let config = parse(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    match &config.listeners[0].routes[0].action {
        RouteAction::Backend(group) => group.clone(),
        other => panic!("not a backend route: {other:?}"),
    }
}

fn tcp_group(yaml: &str) -> Backends<TcpBackend> {
    let config = parse(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    config.listeners[0].backends.clone().expect("backends")
}

fn refused(yaml: &str, needles: &[&str]) {
    let message = match parse(yaml) {
        Ok(config) => panic!("accepted: {config:#?}\n{yaml}"),
        Err(message) => message,
    };
    for needle in needles {
        assert!(
            message.contains(needle),
            "`{needle}` missing from: {message}\n{yaml}"
        );
    }
}

#[test]
fn a_route_lists_backends_as_strings_or_maps() {
    let group = route_group(&https(
        "backends:\n  - http://ws-a.internal:8080\n  - { url: http://ws-b.internal:8080, weight: 2 }\n  - { url: \"http://10.0.0.9:8080\", drain: true }\nbalance: least_conn\nhealth: { path: /health, interval: 5s, timeout: 2s, fall: 3, rise: 2 }",
    ));
    let summary: Vec<(String, u32, bool)> = group
        .members
        .iter()
        .map(|m| (m.authority.to_string(), m.weight, m.drain))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("ws-a.internal:8080".into(), 1, false),
            ("ws-b.internal:8080".into(), 2, false),
            ("10.0.0.9:8080".into(), 1, true),
        ]
    );
    assert_eq!(group.balance, Balance::LeastConn);
    let health = group.health.expect("health");
    assert_eq!(
        health.probe,
        Probe::Http {
            path: "/health".into()
        }
    );
    assert_eq!(health.interval, Duration::from_secs(5));
    assert_eq!(health.timeout, Duration::from_secs(2));
    assert_eq!((health.fall, health.rise), (3, 2));
}

#[test]
fn a_single_backend_is_a_group_of_one_and_health_has_defaults() {
    let group = route_group(&https("backend: http://127.0.0.1:8080\nhealth: {}"));
    assert_eq!(group.members.len(), 1);
    assert_eq!(group.balance, Balance::RoundRobin);
    let health = group.health.expect("health");
    assert_eq!(health.probe, Probe::Http { path: "/".into() });
    assert_eq!(health.interval, Duration::from_secs(5));
    assert_eq!(health.timeout, Duration::from_secs(2));
    assert_eq!((health.fall, health.rise), (3, 2));
    // A short interval shortens the default timeout with it.
    let group = route_group(&https(
        "backend: http://127.0.0.1:8080\nhealth: { interval: 1s }",
    ));
    assert_eq!(
        group.health.expect("health").timeout,
        Duration::from_millis(500)
    );
}

#[test]
fn https_members_each_get_the_routes_backend_tls() {
    let group = route_group(&https(
        "backends: [\"https://a.internal:9443\", \"https://b.internal:9443\"]\nbackend_tls: { server_name: api.internal }",
    ));
    let names: Vec<(String, String)> = group
        .members
        .iter()
        .map(|m| {
            let tls = m.tls.clone().expect("tls");
            (tls.backend, tls.server_name)
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("https://a.internal:9443".into(), "api.internal".into()),
            ("https://b.internal:9443".into(), "api.internal".into()),
        ]
    );
}

#[test]
fn a_tls_listener_lists_addresses_and_checks_with_send_expect() {
    let group = tcp_group(&tls(
        "backends:\n  - 127.0.0.1:5060\n  - { address: \"sbc-b.internal:5060\", weight: 3 }\nbalance: client_ip\nhealth: { send: \"OPTIONS sip:ping SIP/2.0\\r\\n\\r\\n\", expect: \"SIP/2.0\", interval: 2s }",
    ));
    assert_eq!(group.members[1].address, "sbc-b.internal:5060");
    assert_eq!(group.members[1].weight, 3);
    assert_eq!(group.balance, Balance::ClientIp);
    let health = group.health.expect("health");
    assert_eq!(
        health.probe,
        Probe::Tcp {
            send: Some("OPTIONS sip:ping SIP/2.0\r\n\r\n".into()),
            expect: Some("SIP/2.0".into())
        }
    );
    // A bare connect check.
    let group = tcp_group(&tls("backend: 127.0.0.1:5060\nhealth: {}"));
    assert_eq!(
        group.health.expect("health").probe,
        Probe::Tcp {
            send: None,
            expect: None
        }
    );
}

#[test]
fn bad_groups_are_refused_with_the_field_named() {
    let r = "listeners.ws.routes[0]";
    refused(
        &https("backend: http://a:1\nbackends: [\"http://b:1\"]"),
        &[r, "both `backend` and `backends`"],
    );
    refused(&https("backends: []"), &[r, "backends: the list is empty"]);
    refused(
        &https("backends: [\"http://a:1\", \"http://a:1/\"]"),
        &[r, "backends[1]", "already in the list"],
    );
    refused(
        &https("backends: [{ url: \"http://a:1\", weight: 0 }]"),
        &[r, "backends[0].weight", "1 to 256"],
    );
    refused(
        &https("backends: [{ url: \"http://a:1\", weight: 257 }]"),
        &["backends[0].weight", "`257`"],
    );
    refused(
        &https("backends: [\"http://a:1\", \"https://b:1\"]"),
        &[r, "mixes http:// and https://"],
    );
    refused(
        &https("backends: [\"http://a:1\", \"ftp://b:1\"]"),
        &["listeners.ws.routes[0].backends[1]", "ftp://b:1"],
    );
    refused(
        &https("backends: [{ address: \"a:1\" }]"),
        &[r, "backends[0]", "`url: http://HOST:PORT`, not `address:`"],
    );
    refused(
        &https("backends: [{ weight: 2 }]"),
        &["backends[0]", "write one `url"],
    );
    refused(
        &https("backends: [{ url: \"http://a:1\", wieght: 2 }]"),
        &["unknown field `wieght`"],
    );
    refused(
        &https("backend: http://a:1\nbalance: least_conn"),
        &[r, "balance: only a `backends:` list is balanced"],
    );
    refused(
        &https("backends: [\"http://a:1\"]\nbalance: fastest"),
        &[r, "`fastest` is not a method", "least_conn"],
    );
    refused(
        &https("status_page: true\nhealth: {}"),
        &[r, "health: only a route or `tls` listener with backends"],
    );
    refused(
        &https("backend: http://a:1\nhealth: { send: PING }"),
        &[r, "health.send", "a route checks `path:`"],
    );
    refused(
        &https("backend: http://a:1\nhealth: { path: health }"),
        &[r, "health.path", "must start with `/`"],
    );
    refused(
        &https("backend: http://a:1\nhealth: { path: \"/he alth\" }"),
        &[r, "health.path", "valid request path"],
    );
    refused(
        &https("backend: http://a:1\nhealth: { interval: 2s, timeout: 2s }"),
        &[r, "health.timeout", "not shorter than the interval"],
    );
    refused(
        &https("backend: http://a:1\nhealth: { interval: 18446744073709551615 }"),
        &[r, "health.interval", "at most 1h"],
    );
    refused(
        &format!(
            "{HEAD}  - name: ws\n    kind: https\n    bind: 127.0.0.1:8443\n    routes:\n      \
             - {{ host: a.example.com, backends: [\"http://a:1\"] }}\n      \
             - {{ host: b.example.com, backends: [\"http://a:1\"], health: {{}} }}\n"
        ),
        &[
            "listeners.ws.routes[1].health",
            "`a:1` is also on listeners.ws.routes[0]",
        ],
    );
    refused(
        &https("backend: http://a:1\nhealth: { fall: 0 }"),
        &[r, "health.fall: must be more than 0"],
    );
    refused(
        &https("backends: [\"http://a:1\"]\nbackend_tls: { ca_file: ca.pem }"),
        &[r, "backend_tls", "plain HTTP"],
    );
    let l = "listeners.sip";
    refused(
        &tls("backends: [{ url: \"http://a:1\" }]"),
        &[l, "`address: HOST:PORT`, not `url:`"],
    );
    refused(
        &tls("backend: 127.0.0.1:5060\nhealth: { path: /health }"),
        &[l, "health.path", "send:"],
    );
    refused(
        &tls("backends: [\"127.0.0.1:5060\", \"127.0.0.1\"]"),
        &["listeners.sip.backends[1]", "has no port"],
    );
    refused(
        &tls("backends: [\"127.0.0.1:5060\", \"127.0.0.1:5060\"]"),
        &["backends[1]", "already in the list"],
    );
    refused(&tls("balance: least_conn"), &[l, "balance"]);
    refused(
        &format!(
            "{HEAD}  - name: ws\n    kind: https\n    bind: 127.0.0.1:8443\n    backends: [\"127.0.0.1:1\"]\n"
        ),
        &["listeners.ws.backend", "only `tls` listeners"],
    );
}
