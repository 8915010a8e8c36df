use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::*;
use crate::config::{Backends, HealthCheck, Probe, TcpBackend};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

fn member(address: &str, weight: u32, drain: bool) -> TcpBackend {
    TcpBackend {
        address: address.into(),
        tls: None,
        weight,
        drain,
    }
}

fn check() -> HealthCheck {
    HealthCheck {
        probe: Probe::Tcp {
            send: None,
            expect: None,
        },
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
        fall: 2,
        rise: 2,
    }
}

fn group(members: Vec<TcpBackend>, balance: Balance, health: Option<HealthCheck>) -> Group {
    let config = Backends {
        members,
        balance,
        health,
    };
    Group::build("sip", &config, |_| None, false, &mut HashMap::new())
}

/// A `tls` listener `sip` balancing over `members` by least connections.
fn tls_listener(
    members: Vec<TcpBackend>,
    health: Option<HealthCheck>,
) -> crate::config::ListenerConfig {
    use crate::config::{Limits, ListenerConfig, ListenerKind};
    ListenerConfig {
        name: "sip".into(),
        kind: ListenerKind::Tls,
        bind: "127.0.0.1:5061".parse().expect("bind"),
        certdir: None,
        routes: Vec::new(),
        access_log: None,
        backends: Some(Backends {
            members,
            balance: Balance::LeastConn,
            health,
        }),
        proxy_protocol: false,
        accept_proxy_protocol: None,
        https_port: None,
        limits: Limits::default(),
        client_auth: None,
    }
}

/// Who gets `count` sessions opened one after the other (each closed at
/// once), by member position.
fn shares(group: &Group, count: usize) -> Vec<usize> {
    let mut got = vec![0; group.members().len()];
    for _ in 0..count {
        let chosen = group.choose(CLIENT, None).expect("a member");
        got[chosen.index] += 1;
    }
    got
}

#[test]
fn round_robin_follows_the_weights() {
    let group = group(
        vec![member("a:1", 1, false), member("b:1", 3, false)],
        Balance::RoundRobin,
        None,
    );
    assert_eq!(shares(&group, 400), vec![100, 300]);
}

#[test]
fn least_conn_counts_the_open_sessions() {
    let group = group(
        vec![member("a:1", 1, false), member("b:1", 1, false)],
        Balance::LeastConn,
        None,
    );
    // Sessions held open: they alternate, since each adds to its member.
    let held: Vec<Chosen> = (0..10)
        .map(|_| group.choose(CLIENT, None).expect("member"))
        .collect();
    let on_a = held.iter().filter(|c| c.index == 0).count();
    assert_eq!(on_a, 5);
    assert_eq!(group.members()[0].state.in_flight(), 5);
    drop(held);
    assert_eq!(group.members()[0].state.in_flight(), 0, "sessions closed");
}

#[test]
fn least_conn_among_equals_follows_the_weights() {
    let group = group(
        vec![member("a:1", 1, false), member("b:1", 3, false)],
        Balance::LeastConn,
        None,
    );
    // One at a time, each closed at once: always a tie, broken by weight.
    assert_eq!(shares(&group, 400), vec![100, 300]);
    // Held open: b carries three times a's sessions.
    let held: Vec<Chosen> = (0..40)
        .map(|_| group.choose(CLIENT, None).expect("member"))
        .collect();
    assert_eq!(held.iter().filter(|c| c.index == 0).count(), 10);
}

#[test]
fn client_ip_keeps_a_client_on_its_member() {
    let group = group(
        vec![
            member("a:1", 1, false),
            member("b:1", 1, false),
            member("c:1", 1, false),
        ],
        Balance::ClientIp,
        None,
    );
    let first = group.choose(CLIENT, None).expect("member").index;
    for _ in 0..20 {
        assert_eq!(group.choose(CLIENT, None).expect("member").index, first);
    }
    // When its member drains, the client moves, and comes back after.
    group.members()[first].state.set_admin_drain(true);
    let moved = group.choose(CLIENT, None).expect("member").index;
    assert_ne!(moved, first);
    group.members()[first].state.set_admin_drain(false);
    assert_eq!(group.choose(CLIENT, None).expect("member").index, first);
}

#[test]
fn drained_and_excluded_members_take_nothing() {
    let group = group(
        vec![member("a:1", 1, true), member("b:1", 1, false)],
        Balance::RoundRobin,
        None,
    );
    assert_eq!(shares(&group, 10), vec![0, 10], "drain: true in the config");
    assert!(
        group.choose(CLIENT, Some(1)).is_none(),
        "b excluded, a drains"
    );
}

#[test]
fn failures_take_a_member_out_and_checks_bring_it_back() {
    let group = group(
        vec![member("a:1", 1, false), member("b:1", 1, false)],
        Balance::RoundRobin,
        Some(check()),
    );
    let a = &group.members()[0].state;
    let b = &group.members()[1].state;
    // Nothing checked yet: both pending, both used (nothing is up).
    assert_eq!(a.health(), Health::Pending);
    assert_eq!(shares(&group, 4), vec![2, 2]);
    // b's first good check makes it up: pending a waits for its own.
    assert!(b.checked(true).is_some());
    assert_eq!(shares(&group, 4), vec![0, 4]);
    assert!(a.checked(true).is_some());
    assert_eq!(shares(&group, 4), vec![2, 2]);
    // `fall` (2) failed requests in a row take a out.
    assert_eq!(a.failed(group.can_go_down()), None);
    let down = a.failed(group.can_go_down()).expect("down");
    assert_eq!((down.from, down.to), (Health::Up, Health::Down));
    assert_eq!(shares(&group, 4), vec![0, 4]);
    // A success of a request does not bring back a checked member; `rise`
    // (2) good checks do.
    assert_eq!(a.passed(), None);
    assert_eq!(a.checked(true), None);
    assert_eq!(a.health(), Health::Down);
    assert!(a.checked(true).is_some());
    assert_eq!(shares(&group, 4), vec![2, 2]);
    // Everything down: no member.
    for state in [a, b] {
        state.checked(false);
        state.checked(false);
    }
    assert!(group.choose(CLIENT, None).is_none());
}

#[test]
fn without_checks_a_failed_member_sits_out_its_cooldown() {
    let group = group(
        vec![member("a:1", 1, false), member("b:1", 1, false)],
        Balance::RoundRobin,
        None,
    );
    let a = &group.members()[0].state;
    for _ in 0..crate::config::DEFAULT_FALL {
        a.failed(group.can_go_down());
    }
    assert_eq!(a.health(), Health::Down);
    assert!(!a.cooled_down(), "10 s to go");
    assert_eq!(shares(&group, 4), vec![0, 4]);
}

#[test]
fn the_only_member_without_checks_is_never_taken_out() {
    let group = group(vec![member("a:1", 1, false)], Balance::RoundRobin, None);
    assert!(!group.can_go_down());
    let a = &group.members()[0].state;
    for _ in 0..10 {
        assert_eq!(a.failed(group.can_go_down()), None);
    }
    assert_eq!(a.failures(), 10);
    assert!(group.choose(CLIENT, None).is_some());
}

#[test]
fn a_reload_keeps_the_state_of_kept_backends_and_retires_the_busy_removed_ones() {
    let listener = |members: Vec<TcpBackend>| tls_listener(members, None);
    let before = ListenerBackends::build(
        &listener(vec![member("a:1", 1, false), member("b:1", 1, false)]),
        None,
    );
    let group = before.tcp.as_ref().expect("group");
    let on_b = group.choose(CLIENT, Some(0)).expect("b");
    group.members()[0].state.set_admin_drain(true);
    let after = ListenerBackends::build(
        &listener(vec![member("a:1", 1, false), member("c:1", 1, false)]),
        Some(&before),
    );
    let kept = &after.tcp.as_ref().expect("group").members()[0].state;
    assert!(Arc::ptr_eq(kept, &group.members()[0].state), "a kept");
    assert!(kept.admin_drained(), "with its drain");
    assert_eq!(after.retired.len(), 1, "b removed while busy");
    assert_eq!(after.retired[0].address(), "b:1");
    drop(on_b);
    let later = ListenerBackends::build(
        &listener(vec![member("a:1", 1, false), member("c:1", 1, false)]),
        Some(&after),
    );
    assert!(later.retired.is_empty(), "b's last session ended");
}

#[test]
fn traffic_does_not_hide_a_failing_health_check() {
    let mut three = check();
    three.fall = 3;
    let group = group(
        vec![member("a:1", 1, false), member("b:1", 1, false)],
        Balance::RoundRobin,
        Some(three),
    );
    let a = &group.members()[0].state;
    a.checked(true);
    // Its checks fail while requests still succeed between them (an
    // operator failing the check to drain it): out at the third.
    for _ in 0..2 {
        assert_eq!(a.checked(false), None);
        assert_eq!(a.passed(), None);
    }
    let down = a.checked(false).expect("down");
    assert_eq!(down.to, Health::Down);
}

#[test]
fn a_success_during_the_cooldown_does_not_end_it() {
    let group = group(
        vec![member("a:1", 1, false), member("b:1", 1, false)],
        Balance::RoundRobin,
        None,
    );
    let a = &group.members()[0].state;
    for _ in 0..crate::config::DEFAULT_FALL {
        a.failed(group.can_go_down());
    }
    // A request sent before it went down answers well afterwards.
    assert_eq!(a.passed(), None);
    assert_eq!(a.health(), Health::Down, "sits out the 10 s");
}

#[test]
fn a_reload_that_changes_the_checks_keeps_the_state() {
    let listener = |health: Option<HealthCheck>| {
        tls_listener(
            vec![member("a:1", 1, false), member("b:1", 1, false)],
            health,
        )
    };
    let before = ListenerBackends::build(&listener(Some(check())), None);
    let state = before.tcp.as_ref().expect("group").members()[0]
        .state
        .clone();
    state.checked(true);
    let session = Session::open(&state);
    let mut slower = check();
    slower.interval = Duration::from_secs(30);
    let after = ListenerBackends::build(&listener(Some(slower.clone())), Some(&before));
    let kept = &after.tcp.as_ref().expect("group").members()[0].state;
    assert!(Arc::ptr_eq(kept, &state));
    assert_eq!(kept.check().as_deref(), Some(&slower));
    assert_eq!(kept.health(), Health::Up);
    assert_eq!(kept.in_flight(), 1);
    assert!(after.retired.is_empty());
    // Checks removed: a pending backend becomes up.
    let unchecked = ListenerBackends::build(&listener(None), Some(&after));
    let b = &unchecked.tcp.as_ref().expect("group").members()[1].state;
    assert!(!b.is_checked());
    assert_eq!(b.health(), Health::Up);
    drop(session);
}
