//! Whether the running process can answer a domain's ACME challenge at
//! all: the CA validates by connecting to a listener of the challenge's
//! kind, and only listeners bound at the start take connections. One added
//! to `proxy.yaml` later waits for a restart (the reload keeps the running
//! set), so ordering before then would only fail validation and, against
//! Let's Encrypt, spend its failed-validation limit.
//!
//! [`challenge_listener`] is the pure decision: the challenge, what is
//! bound and what is configured in, the reason out.

use std::fmt;
use std::net::SocketAddr;

use crate::config::{ChallengeKind, ListenerConfig, ListenerKind};

/// The stable code of [`NoListener`], in the status file, `check`, the
/// result of `sniwalk renew` and admin jobs.
pub const NO_LISTENER_CODE: &str = "ChallengeListenerNotBound";

/// A listener the running process has bound (from its start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundListener {
    /// Its name in the configuration.
    pub name: String,
    /// What it serves.
    pub kind: ListenerKind,
}

impl BoundListener {
    /// The listeners of a configuration, as bound by [`crate::run_with`]
    /// (one socket per configured listener).
    pub fn of(listeners: &[ListenerConfig]) -> Vec<BoundListener> {
        listeners
            .iter()
            .map(|l| BoundListener {
                name: l.name.clone(),
                kind: l.kind,
            })
            .collect()
    }
}

/// A configured listener of the needed kind that is not bound yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its name.
    pub name: String,
    /// Its configured address.
    pub bind: SocketAddr,
}

/// No bound listener can answer the challenge: why, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoListener {
    /// The configured challenge.
    pub challenge: ChallengeKind,
    /// The kind of listener it needs.
    pub needed: ListenerKind,
    /// Listeners of that kind in the configuration that wait for a restart
    /// to be bound.
    pub pending: Vec<Pending>,
}

impl fmt::Display for NoListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no bound `kind: {}` listener can answer the {} challenge; ",
            self.needed.as_str(),
            self.challenge.as_str()
        )?;
        if self.pending.is_empty() {
            let other = match self.challenge {
                ChallengeKind::Http01 => "tls-alpn-01",
                ChallengeKind::TlsAlpn01 | ChallengeKind::Dns01 => "http-01",
            };
            return write!(
                f,
                "add a `kind: {}` listener to the configuration and restart sniwalk, or set \
                 `acme.challenge: {other}`",
                self.needed.as_str()
            );
        }
        let names = self
            .pending
            .iter()
            .map(|p| format!("`{}` ({})", p.name, p.bind))
            .collect::<Vec<_>>()
            .join(", ");
        write!(
            f,
            "restart sniwalk to bind listener {names} (a listener added or changed by a reload is bound only at a restart)"
        )
    }
}

/// Whether a listener in `bound` can answer `challenge`; if none can, the
/// reason, naming the listeners of `configured` that a restart would bind.
pub fn challenge_listener(
    challenge: ChallengeKind,
    bound: &[BoundListener],
    configured: &[ListenerConfig],
) -> Result<(), NoListener> {
    // dns-01 is checked by the CA in the DNS: no listener takes part.
    let Some(needed) = challenge.listener_kind() else {
        return Ok(());
    };
    if bound.iter().any(|l| l.kind == needed) {
        return Ok(());
    }
    Err(NoListener {
        challenge,
        needed,
        pending: configured
            .iter()
            // A running listener whose kind changed in the file keeps its
            // old kind until a restart (the reload matches name and kind).
            .filter(|l| {
                l.kind == needed && !bound.iter().any(|b| b.name == l.name && b.kind == l.kind)
            })
            .map(|l| Pending {
                name: l.name.clone(),
                bind: l.bind,
            })
            .collect(),
    })
}

/// Whether each challenge can be answered by the bound listeners, worked
/// out once per plan: domains may each use their own challenge.
pub struct Answerable([Result<(), NoListener>; 3]);

impl Answerable {
    /// The answer for every challenge kind.
    pub fn new(bound: &[BoundListener], configured: &[ListenerConfig]) -> Self {
        Answerable(
            [
                ChallengeKind::Http01,
                ChallengeKind::TlsAlpn01,
                ChallengeKind::Dns01,
            ]
            .map(|c| challenge_listener(c, bound, configured)),
        )
    }

    /// Whether `challenge` can be answered; if not, why.
    pub fn get(&self, challenge: ChallengeKind) -> &Result<(), NoListener> {
        match challenge {
            ChallengeKind::Http01 => &self.0[0],
            ChallengeKind::TlsAlpn01 => &self.0[1],
            ChallengeKind::Dns01 => &self.0[2],
        }
    }
}

/// The challenge `domain` is ordered with in `config` (its own, else the
/// global one; the global one for a domain not configured).
pub fn challenge_of(config: &crate::config::Config, domain: &str) -> ChallengeKind {
    config
        .domains
        .iter()
        .find(|d| d.name == domain)
        .map_or(config.acme.challenge, |d| {
            crate::config::effective_challenge(d, &config.acme)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(name: &str, kind: ListenerKind, port: u16) -> ListenerConfig {
        let yaml = format!(
            "master_domain: a.test\ndomains:\n  a.test: {{}}\nlisteners:\n  - name: {name}\n    kind: {}\n    bind: 127.0.0.1:{port}\n",
            kind.as_str()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("proxy.yaml");
        std::fs::write(&file, yaml).expect("write");
        let config = crate::config::Config::load(&file).expect("valid");
        config.listeners[0].clone()
    }

    fn bound(name: &str, kind: ListenerKind) -> BoundListener {
        BoundListener {
            name: name.into(),
            kind,
        }
    }

    #[test]
    fn a_bound_listener_of_the_challenges_kind_answers() {
        let plain = listener("plain", ListenerKind::Http, 80);
        let web = listener("web", ListenerKind::Https, 443);
        let both = [
            bound("plain", ListenerKind::Http),
            bound("web", ListenerKind::Https),
        ];
        let configured = [plain, web];
        assert_eq!(
            challenge_listener(ChallengeKind::Http01, &both, &configured),
            Ok(())
        );
        assert_eq!(
            challenge_listener(ChallengeKind::TlsAlpn01, &both, &configured),
            Ok(())
        );
        // A `tls` listener answers neither.
        let sip = [bound("sip", ListenerKind::Tls)];
        assert!(challenge_listener(ChallengeKind::Http01, &sip, &[]).is_err());
        assert!(challenge_listener(ChallengeKind::TlsAlpn01, &sip, &[]).is_err());
    }

    #[test]
    fn a_listener_added_by_a_reload_is_named_for_a_restart() {
        let plain = listener("plain", ListenerKind::Http, 8080);
        let web = listener("web", ListenerKind::Https, 443);
        let running = [bound("web", ListenerKind::Https)];
        let error = challenge_listener(ChallengeKind::Http01, &running, &[web.clone(), plain])
            .expect_err("http-01 has no bound http listener");
        assert_eq!(error.needed, ListenerKind::Http);
        assert_eq!(
            error.pending,
            vec![Pending {
                name: "plain".into(),
                bind: "127.0.0.1:8080".parse().expect("addr"),
            }]
        );
        let text = error.to_string();
        assert!(text.contains("http-01"), "{text}");
        assert!(text.contains("`kind: http`"), "{text}");
        assert!(
            text.contains("restart sniwalk to bind listener `plain` (127.0.0.1:8080)"),
            "{text}"
        );
        // tls-alpn-01 is answered by the running `web`.
        assert_eq!(
            challenge_listener(ChallengeKind::TlsAlpn01, &running, &[web]),
            Ok(())
        );
    }

    #[test]
    fn a_listener_whose_kind_changed_waits_for_a_restart_too() {
        // The running `plain` became `https` in the file: it stays http
        // until a restart, which binds it as https.
        let running = [bound("plain", ListenerKind::Http)];
        let configured = [listener("plain", ListenerKind::Https, 443)];
        let error = challenge_listener(ChallengeKind::TlsAlpn01, &running, &configured)
            .expect_err("no https listener is bound");
        assert_eq!(error.pending.len(), 1, "{error:?}");
        assert!(
            error
                .to_string()
                .contains("restart sniwalk to bind listener `plain`"),
            "{error}"
        );
    }

    #[test]
    fn without_any_listener_of_the_kind_it_says_what_to_add() {
        let running = [bound("plain", ListenerKind::Http)];
        let configured = [listener("plain", ListenerKind::Http, 80)];
        let error = challenge_listener(ChallengeKind::TlsAlpn01, &running, &configured)
            .expect_err("no https listener is bound");
        assert!(error.pending.is_empty(), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("tls-alpn-01"), "{text}");
        assert!(
            text.contains("add a `kind: https` listener")
                && text.contains("acme.challenge: http-01"),
            "{text}"
        );
    }
}
