//! Expiry monitoring: every certificate sniwalk serves (domains, certdirs,
//! the default) is checked at start and then every hour.
//!
//! A certificate within `acme.warn_days` of expiry gets one warning line a
//! day, an expired one an error line a day, for as long as it is served.
//! `check` shows the same states (the snapshot records them when it is
//! built, see [`crate::snapshot::SourceReport::expiry`]); this task is what
//! keeps reminding a running proxy's logs.
//!
//! The deciding part, [`ExpiryMonitor`], is pure: it takes the snapshot and
//! `now` and remembers what it already reported, so "once per certificate
//! per day" is unit-tested without a clock. [`run`] only adds the clock and
//! the log lines.
//!
//! The monitor reads the snapshot and never writes it: it holds a
//! `SnapshotReader`; the reload task holds the one writer.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::clock::DAY;
use crate::expiry::{self, ExpiryState};
use crate::snapshot::SnapshotReader;
use crate::snapshot::{Place, Snapshot, SourceKind};

/// A served certificate that expires soon or has expired, reported at most
/// once a day (more often only when it gets worse: expiring → expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryNotice {
    /// Where it serves.
    pub place: Place,
    /// How it is configured.
    pub source: SourceKind,
    /// The file (or certdir) it was read from; `None` for inline text and
    /// a default generated in memory.
    pub file: Option<PathBuf>,
    /// Subject of the leaf.
    pub subject: String,
    /// SHA-256 fingerprint of the leaf, which tells a replaced certificate
    /// from the old one.
    pub sha256: String,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// [`ExpiryState::ExpiresSoon`] or [`ExpiryState::Expired`], never
    /// [`ExpiryState::Ok`].
    pub state: ExpiryState,
}

impl ExpiryNotice {
    /// Whether the certificate has expired (an error, not a warning).
    pub fn is_expired(&self) -> bool {
        self.state == ExpiryState::Expired
    }
}

/// Decides which certificates to report, remembering which ones it already
/// reported today.
#[derive(Debug, Default)]
pub struct ExpiryMonitor {
    /// Keyed by place and fingerprint, so a certificate replaced at the same
    /// place is a new one, and the same file serving two places is reported
    /// for each.
    noticed: HashMap<(Place, String), Noticed>,
    /// Counts calls of [`ExpiryMonitor::notices`]; entries not seen in the
    /// latest one are dropped.
    pass: u64,
}

/// What was last reported for one certificate at one place.
#[derive(Debug, Clone, Copy)]
struct Noticed {
    /// Day number (`now / 86400`, UTC days) of the last notice.
    day: i64,
    /// Whether it was expired then.
    expired: bool,
    /// The pass that last saw it in need of a notice.
    pass: u64,
}

impl ExpiryMonitor {
    /// A monitor that has reported nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The notices due at `now` (Unix seconds) for the certificates of
    /// `snapshot`: one for each certificate that expires within `warn_days`
    /// or has expired and was not reported yet on this UTC day (`now / 86400`),
    /// or was reported today as expiring and has expired since.
    ///
    /// Certificates back in order (renewed, replaced, removed) are
    /// forgotten, so a later problem is reported again at once.
    pub fn notices(&mut self, snapshot: &Snapshot, now: i64, warn_days: u32) -> Vec<ExpiryNotice> {
        self.pass = self.pass.wrapping_add(1);
        let pass = self.pass;
        let day = now.div_euclid(DAY);
        let mut notices = Vec::new();
        for report in snapshot.reports() {
            let Some(loaded) = &report.loaded else {
                continue;
            };
            let state = expiry::expiry_state(loaded.facts.not_after, now, warn_days);
            if state == ExpiryState::Ok {
                continue;
            }
            let expired = state == ExpiryState::Expired;
            match self
                .noticed
                .entry((report.place.clone(), loaded.facts.sha256.clone()))
            {
                Entry::Occupied(mut entry) => {
                    let noticed = entry.get_mut();
                    noticed.pass = pass;
                    if noticed.day == day && (noticed.expired || !expired) {
                        continue;
                    }
                    noticed.day = day;
                    noticed.expired = expired;
                }
                Entry::Vacant(entry) => {
                    entry.insert(Noticed { day, expired, pass });
                }
            }
            notices.push(ExpiryNotice {
                place: report.place.clone(),
                source: loaded.kind,
                file: loaded.file.clone().or_else(|| report.file.clone()),
                subject: loaded.facts.subject.clone(),
                sha256: loaded.facts.sha256.clone(),
                not_after: loaded.facts.not_after,
                state,
            });
        }
        self.noticed.retain(|_, noticed| noticed.pass == pass);
        notices
    }
}

/// Checks the served certificates now and then every [`CHECK_INTERVAL`],
/// logging each [`ExpiryNotice`] as one line, until `stop` is cancelled.
///
/// `warn_days` is `acme.warn_days` of the configuration sniwalk started
/// with.
pub async fn run(store: SnapshotReader, warn_days: u32, stop: CancellationToken) {
    let mut monitor = ExpiryMonitor::new();
    // The first tick completes at once: the check at start.
    let mut ticks = tokio::time::interval(CHECK_INTERVAL);
    // After a suspend, one check on waking is enough.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let snapshot = store.load_full();
        for notice in monitor.notices(&snapshot, crate::clock::unix_now(), warn_days) {
            log_notice(&notice);
        }
    }
}

/// Logs one notice: a warning while the certificate is still valid, an
/// error once it has expired.
fn log_notice(notice: &ExpiryNotice) {
    let place = notice.place.to_string();
    let source = notice.source.as_str();
    let file = notice
        .file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "-".into());
    let not_after = crate::clock::rfc3339(notice.not_after);
    match notice.state {
        ExpiryState::Expired => tracing::error!(
            place = %place, source, file = %file, subject = %notice.subject,
            not_after = %not_after, sha256 = %notice.sha256,
            "certificate expired; it is still served and clients refuse it: replace it"
        ),
        ExpiryState::ExpiresSoon { days_left } => tracing::warn!(
            place = %place, source, file = %file, subject = %notice.subject,
            days_left, not_after = %not_after, sha256 = %notice.sha256,
            "certificate expires soon; renew or replace it"
        ),
        ExpiryState::Ok => {}
    }
}

/// How often the served certificates are checked.
///
/// The check is a pass over the snapshot in memory (no I/O), so an hour is
/// cheap even for many domains; it puts the first warning of a new day, and
/// the error for a certificate that has just expired, at most an hour late.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(60 * 60);

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::snapshot::{DefaultPolicy, Snapshot};

    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600;
    const H: i64 = 3_600;

    /// A `certificate_pem` text for `name`, valid for 90 days up to
    /// `not_after`.
    fn pem_until(name: &str, not_after: i64) -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        let at = |unix| time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
        params.not_before = at(not_after - 90 * DAY);
        params.not_after = at(not_after);
        let cert = params.self_signed(&key).unwrap();
        format!("{}{}", key.serialize_pem(), cert.pem())
    }

    /// A snapshot of master `example.com` (no certificate) and `domains`,
    /// each with its certificate inline; the default is generated in memory.
    fn snapshot(domains: &[(&str, &str)]) -> Snapshot {
        let mut yaml = String::from(
            "master_domain: example.com\nstate_dir: /nonexistent/sniwalk-monitor-test\n\
             domains:\n  example.com: {}\n",
        );
        for (name, pem) in domains {
            yaml.push_str(&format!("  {name}:\n    certificate_pem: |\n"));
            for line in pem.lines() {
                yaml.push_str(&format!("      {line}\n"));
            }
        }
        let config = Config::parse(&yaml, Path::new("/nonexistent/proxy.yaml")).unwrap();
        Snapshot::build(&config, None, DefaultPolicy::InMemory, T0).unwrap()
    }

    fn places(notices: &[ExpiryNotice]) -> Vec<String> {
        notices.iter().map(|n| n.place.to_string()).collect()
    }

    /// Two expiring certificates are each reported once on a day, not again
    /// an hour later, and again the next day; certificates with time left
    /// (a domain's and the generated default) never are.
    #[test]
    fn once_per_certificate_per_day() {
        let a = pem_until("a.example.com", T0 + 5 * DAY);
        let b = pem_until("b.example.com", T0 + 10 * DAY + 7 * H);
        let c = pem_until("c.example.com", T0 + 60 * DAY);
        let snap = snapshot(&[
            ("a.example.com", &a),
            ("b.example.com", &b),
            ("c.example.com", &c),
        ]);
        let mut monitor = ExpiryMonitor::new();
        let d = T0 + 2 * H;

        let first = monitor.notices(&snap, d, 14);
        assert_eq!(
            places(&first),
            ["domain a.example.com", "domain b.example.com"]
        );
        assert_eq!(first[0].state, ExpiryState::ExpiresSoon { days_left: 4 });
        assert_eq!(first[1].state, ExpiryState::ExpiresSoon { days_left: 10 });
        assert!(first.iter().all(|n| !n.is_expired()));
        assert_eq!(first[0].source, SourceKind::Inline);
        assert_eq!(first[0].file, None);
        assert_eq!(first[0].subject, "CN=rcgen self signed cert");
        assert_eq!(first[0].not_after, T0 + 5 * DAY);
        let a_sha = &snap
            .report(&Place::Domain("a.example.com".into()))
            .and_then(|r| r.loaded.as_ref())
            .unwrap()
            .facts
            .sha256;
        assert_eq!(&first[0].sha256, a_sha);

        assert!(monitor.notices(&snap, d + H, 14).is_empty());
        assert!(monitor.notices(&snap, d + 20 * H, 14).is_empty());
        let next_day = monitor.notices(&snap, d + DAY, 14);
        assert_eq!(
            places(&next_day),
            ["domain a.example.com", "domain b.example.com"]
        );
        assert_eq!(next_day[0].state, ExpiryState::ExpiresSoon { days_left: 3 });
        assert!(monitor.notices(&snap, d + DAY + H, 14).is_empty());
    }

    /// The warning period is the caller's: with 3 days only the closest
    /// certificate warns, with 60 all three do.
    #[test]
    fn warn_days_decide_what_is_soon() {
        let a = pem_until("a.example.com", T0 + 2 * DAY);
        let b = pem_until("b.example.com", T0 + 20 * DAY);
        let c = pem_until("c.example.com", T0 + 59 * DAY);
        let snap = snapshot(&[
            ("a.example.com", &a),
            ("b.example.com", &b),
            ("c.example.com", &c),
        ]);
        assert_eq!(
            places(&ExpiryMonitor::new().notices(&snap, T0, 3)),
            ["domain a.example.com"]
        );
        assert_eq!(
            places(&ExpiryMonitor::new().notices(&snap, T0, 60)).len(),
            3
        );
    }

    /// An expired certificate is an error notice, once a day; one that was
    /// reported as expiring earlier the same day is reported again when it
    /// expires.
    #[test]
    fn expired_is_an_error_and_worsening_is_reported_the_same_day() {
        let a = pem_until("a.example.com", T0 + 12 * H);
        let b = pem_until("b.example.com", T0 - 3 * DAY);
        let snap = snapshot(&[("a.example.com", &a), ("b.example.com", &b)]);
        let mut monitor = ExpiryMonitor::new();

        let morning = monitor.notices(&snap, T0 + H, 14);
        assert_eq!(
            places(&morning),
            ["domain a.example.com", "domain b.example.com"]
        );
        assert_eq!(morning[0].state, ExpiryState::ExpiresSoon { days_left: 0 });
        assert!(!morning[0].is_expired());
        assert_eq!(morning[1].state, ExpiryState::Expired);
        assert!(morning[1].is_expired());

        assert!(monitor.notices(&snap, T0 + 2 * H, 14).is_empty());
        let evening = monitor.notices(&snap, T0 + 13 * H, 14);
        assert_eq!(places(&evening), ["domain a.example.com"]);
        assert!(evening[0].is_expired());
        assert!(monitor.notices(&snap, T0 + 14 * H, 14).is_empty());
        assert_eq!(monitor.notices(&snap, T0 + DAY + H, 14).len(), 2);
    }

    /// Nothing to report when every certificate has time left.
    #[test]
    fn certificates_with_time_left_give_no_notice() {
        let a = pem_until("a.example.com", T0 + 90 * DAY);
        let snap = snapshot(&[("a.example.com", &a)]);
        let mut monitor = ExpiryMonitor::new();
        for hour in 0..48 {
            assert!(monitor.notices(&snap, T0 + hour * H, 14).is_empty());
        }
    }

    /// A certificate replaced at the same place (a new fingerprint) gets
    /// its own notice the same day; one renewed is forgotten, so if the old
    /// one comes back it is reported at once.
    #[test]
    fn a_replaced_certificate_is_a_new_one() {
        let old = pem_until("a.example.com", T0 + 3 * DAY);
        let replacement = pem_until("a.example.com", T0 + 4 * DAY);
        let renewed = pem_until("a.example.com", T0 + 90 * DAY);
        let mut monitor = ExpiryMonitor::new();

        let first = monitor.notices(&snapshot(&[("a.example.com", &old)]), T0 + H, 14);
        assert_eq!(places(&first), ["domain a.example.com"]);
        let second = monitor.notices(
            &snapshot(&[("a.example.com", &replacement)]),
            T0 + 2 * H,
            14,
        );
        assert_eq!(places(&second), ["domain a.example.com"]);
        assert_ne!(first[0].sha256, second[0].sha256);
        assert_eq!(second[0].state, ExpiryState::ExpiresSoon { days_left: 3 });

        assert!(
            monitor
                .notices(&snapshot(&[("a.example.com", &renewed)]), T0 + 3 * H, 14)
                .is_empty()
        );
        let back = monitor.notices(&snapshot(&[("a.example.com", &old)]), T0 + 4 * H, 14);
        assert_eq!(places(&back), ["domain a.example.com"]);
    }

    /// Certdirs and a configured default certificate are monitored like
    /// domains, with their files in the notice.
    #[test]
    fn certdirs_and_the_default_are_monitored() {
        let dir = tempfile::tempdir().unwrap();
        let certdir = dir.path().join("ws");
        std::fs::create_dir_all(&certdir).unwrap();
        let pem = pem_until("ws.example.com", T0 + 6 * DAY);
        let cert_at = pem.find("-----BEGIN CERTIFICATE").unwrap();
        std::fs::write(certdir.join("server.key"), &pem[..cert_at]).unwrap();
        std::fs::write(certdir.join("server.crt"), &pem[cert_at..]).unwrap();
        let default = dir.path().join("default.pem");
        std::fs::write(&default, pem_until("example.com", T0 - DAY)).unwrap();
        let yaml = "master_domain: example.com\nstate_dir: state\ndefault_certificate: default.pem\n\
                    domains:\n  example.com: {}\nlisteners:\n  - name: ws\n    kind: https\n    \
                    bind: 127.0.0.1:1\n    certdir: ws\n";
        let config = Config::parse(yaml, &dir.path().join("proxy.yaml")).unwrap();
        let snap = Snapshot::build(&config, None, DefaultPolicy::InMemory, T0).unwrap();

        let notices = ExpiryMonitor::new().notices(&snap, T0, 14);
        assert_eq!(
            places(&notices),
            ["certdir of listener ws", "default certificate"]
        );
        assert_eq!(notices[0].source, SourceKind::Certdir);
        assert_eq!(notices[0].file.as_deref(), Some(certdir.as_path()));
        assert_eq!(notices[0].state, ExpiryState::ExpiresSoon { days_left: 6 });
        assert_eq!(notices[1].source, SourceKind::DefaultFile);
        assert_eq!(notices[1].file.as_deref(), Some(default.as_path()));
        assert!(notices[1].is_expired());
    }

    /// The task keeps running from one hourly check to the next and stops
    /// at once when cancelled.
    #[tokio::test(start_paused = true)]
    async fn run_stops_when_cancelled() {
        let a = pem_until("a.example.com", T0);
        let store =
            crate::snapshot::SnapshotWriter::new(snapshot(&[("a.example.com", &a)])).reader();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(store, 14, stop.clone()));
        tokio::time::sleep(CHECK_INTERVAL * 3).await;
        assert!(!task.is_finished());
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("stops at once")
            .expect("does not panic");
    }
}
