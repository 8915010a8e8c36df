//! The scheduler on tokio's paused clock: when orders start, how failures
//! back off, what forced renewals and hand-managed certificates do. The CA
//! is replaced by a scripted [`Issuer`] that writes real certificates (so
//! the manager reads them back from a real snapshot); talking to a real CA
//! is covered by `tests/acme_pebble.rs`.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::snapshot::SnapshotWriter;

use super::*;
use crate::acme::schedule::{BACKOFF_CAP, DAY, RenewalBasis};
use crate::pem::{Markers, render_certificate_pem};
use crate::snapshot::DefaultPolicy;

/// 2026-01-01T00:00:00Z: the paused clock's start.
const T0: i64 = 1_767_225_600;
const DOMAIN: &str = "a.example.test";

/// What the scripted CA does on its next order.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Issue a certificate valid for this many days from now.
    Issue(i64),
    /// Fail, with this Retry-After.
    Fail(Option<i64>),
    /// A bug: the order task panics.
    Panic,
}

struct Scripted {
    config: Arc<Config>,
    /// Stands in for the reload task, which publishes what is stored.
    store: Arc<SnapshotWriter>,
    clock: Clock,
    script: Mutex<VecDeque<Outcome>>,
    calls: Arc<Mutex<Vec<i64>>>,
    /// How long each order takes.
    takes: Duration,
}

impl Issuer for Scripted {
    async fn issue(&self, job: Job) -> Result<Issued, Failure> {
        let started = (self.clock)();
        self.calls.lock().expect("calls").push(started);
        (job.progress)(Step::CreateOrder);
        tokio::time::sleep(self.takes).await;
        let outcome = self
            .script
            .lock()
            .expect("script")
            .pop_front()
            .unwrap_or(Outcome::Fail(None));
        match outcome {
            Outcome::Panic => panic!("scripted panic"),
            Outcome::Fail(retry_after) => Err(Failure {
                error: AcmeError::Order {
                    domain: job.target.domain.clone(),
                    step: Step::CheckOrder,
                    problem: "scripted failure".into(),
                    problem_type: None,
                },
                retry_after,
            }),
            Outcome::Issue(days) => {
                let now = (self.clock)();
                let pem = certificate(&job.target.domain, now, now + days * DAY, true);
                let path = job.target.state.stored_certificate(&job.target.domain);
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(&path, &pem).expect("store");
                rebuild(&self.config, &self.store, now);
                let parsed = crate::pem::parse_certificate_pem(&pem).expect("parses");
                Ok(Issued {
                    not_after: parsed.leaf.not_after,
                    sha256: parsed.leaf.sha256,
                })
            }
        }
    }

    async fn renewal_info(&self, _query: AriQuery) -> AriAnswer {
        AriAnswer::Unsupported
    }
}

/// A `certificate_pem` for `domain` valid from `not_before` to `not_after`.
fn certificate(domain: &str, not_before: i64, not_after: i64, marked: bool) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).expect("params");
    params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).expect("nb");
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).expect("na");
    let cert = params.self_signed(&key).expect("sign");
    let markers = if marked {
        Markers {
            pairs: vec![
                ("acme_issued".into(), "2026-01-01T00:00:00Z".into()),
                ("acme_directory".into(), DIRECTORY.into()),
            ],
        }
    } else {
        Markers::default()
    };
    render_certificate_pem(&markers, &key.serialize_der(), &[cert.der().clone()])
}

const DIRECTORY: &str = "https://ca.test/dir";

fn rebuild(config: &Config, store: &SnapshotWriter, now: i64) {
    let previous = Arc::clone(&store.load());
    let next = Snapshot::build(config, Some(&previous), DefaultPolicy::InMemory, now)
        .expect("snapshot builds");
    store.publish(Arc::new(next));
}

struct Harness {
    dir: tempfile::TempDir,
    calls: Arc<Mutex<Vec<i64>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    store: Arc<SnapshotWriter>,
    config: Arc<Config>,
}

impl Harness {
    /// Starts a manager for one ACME domain on the paused clock, with
    /// `existing` as its stored certificate, if any.
    fn start(script: &[Outcome], existing: Option<String>, takes: Duration) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, script, existing, takes)
    }

    fn start_in(
        dir: tempfile::TempDir,
        script: &[Outcome],
        existing: Option<String>,
        takes: Duration,
    ) -> Harness {
        Self::start_bound(dir, script, existing, takes, None)
    }

    /// [`Harness::start_in`] with the listeners the process has bound
    /// (default: the configured `plain`, kind http).
    fn start_bound(
        dir: tempfile::TempDir,
        script: &[Outcome],
        existing: Option<String>,
        takes: Duration,
        bound: Option<Vec<BoundListener>>,
    ) -> Harness {
        let yaml = format!(
            "master_domain: example.test\nstate_dir: state\ndomains:\n  example.test: {{}}\n  \
             {DOMAIN}:\n    acme: {{ enabled: true }}\nacme:\n  directory: {DIRECTORY}\n\
             listeners:\n  - name: plain\n    kind: http\n    bind: 127.0.0.1:1\n"
        );
        let file = dir.path().join("proxy.yaml");
        std::fs::write(&file, yaml).expect("config");
        let config = Arc::new(Config::load(&file).expect("valid"));
        if let Some(pem) = existing {
            let path = config.state_layout().stored_certificate(DOMAIN);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, pem).expect("existing");
        }
        let start = tokio::time::Instant::now();
        let clock: Clock = Arc::new(move || T0 + start.elapsed().as_secs() as i64);
        let store = Arc::new(SnapshotWriter::new(
            Snapshot::build(&config, None, DefaultPolicy::InMemory, T0).expect("builds"),
        ));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let issuer = Scripted {
            config: config.clone(),
            store: store.clone(),
            clock: clock.clone(),
            script: Mutex::new(script.iter().copied().collect()),
            calls: calls.clone(),
            takes,
        };
        let (_tx, rx) = watch::channel(config.clone());
        let stop = CancellationToken::new();
        let mut manager = Manager::new(issuer, rx, store.reader(), clock).with_timing(Timing {
            poll: Duration::from_secs(3600),
            max_sleep: Duration::from_secs(6 * 3600),
        });
        if let Some(bound) = bound {
            manager = manager.with_bound_listeners(bound);
        }
        let task = tokio::spawn(manager.run(stop.clone()));
        Harness {
            dir,
            calls,
            stop,
            task,
            store,
            config,
        }
    }

    fn calls(&self) -> Vec<i64> {
        self.calls.lock().expect("calls").clone()
    }

    fn status(&self) -> DomainStatus {
        control::read_status(&self.config.state_layout())
            .domains
            .get(DOMAIN)
            .cloned()
            .unwrap_or_default()
    }

    async fn stop(self) -> tempfile::TempDir {
        self.stop.cancel();
        self.task.await.expect("manager ends");
        self.dir
    }
}

async fn advance(secs: i64) {
    tokio::time::sleep(Duration::from_secs(secs.unsigned_abs())).await;
}

#[tokio::test(start_paused = true)]
async fn issues_at_once_then_renews_at_two_thirds_of_the_lifetime() {
    let h = Harness::start(
        &[Outcome::Issue(90), Outcome::Issue(90)],
        None,
        Duration::ZERO,
    );
    advance(10).await;
    assert_eq!(h.calls(), vec![T0], "first order at once");
    let status = h.status();
    assert_eq!(status.renew_at, Some(T0 + 60 * DAY), "{status:?}");
    assert!(
        h.store
            .load()
            .report(&Place::Domain(DOMAIN.into()))
            .expect("r")
            .loaded
            .is_some()
    );

    advance(60 * DAY - 20).await;
    assert_eq!(h.calls().len(), 1, "nothing before day 60");
    advance(20).await;
    let calls = h.calls();
    assert_eq!(calls.len(), 2, "renewed at day 60");
    assert!((calls[1] - (T0 + 60 * DAY)).abs() <= 1, "{calls:?}");
    assert_eq!(h.status().renew_at, Some(calls[1] + 60 * DAY));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn short_lifetimes_renew_at_half() {
    let h = Harness::start(
        &[Outcome::Issue(6), Outcome::Issue(6)],
        None,
        Duration::ZERO,
    );
    advance(3 * DAY + 5).await;
    let calls = h.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!((calls[1] - (T0 + 3 * DAY)).abs() <= 1, "{calls:?}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_doubling_with_jitter_up_to_the_cap() {
    let mut script = vec![Outcome::Fail(None); 12];
    script.push(Outcome::Issue(90));
    let h = Harness::start(&script, None, Duration::ZERO);
    advance(3 * DAY).await;
    let calls = h.calls();
    assert_eq!(calls.len(), 13, "{calls:?}");
    for (i, pair) in calls.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let backoff = schedule::backoff(i as u32 + 1);
        assert!(
            gap >= backoff * 3 / 4 && gap <= backoff + 1,
            "retry {} after {gap}s, backoff {backoff}s: {calls:?}",
            i + 1
        );
        assert!(gap <= BACKOFF_CAP + 1, "capped: {gap}");
    }
    let status = h.status();
    assert_eq!(status.failures, 0, "a success clears failures");
    assert!(status.last_error.is_none());
    assert!(status.last_issued.is_some());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_recorded_and_retry_after_is_a_floor() {
    let h = Harness::start(
        &[Outcome::Fail(Some(3 * 3600)), Outcome::Issue(90)],
        None,
        Duration::ZERO,
    );
    advance(5).await;
    let status = h.status();
    assert_eq!(status.failures, 1);
    assert_eq!(
        status.next_attempt,
        T0 + 3 * 3600,
        "Retry-After beats the 1 min backoff"
    );
    let error = status.last_error.expect("error kept");
    assert_eq!(error.step, Step::CheckOrder);
    assert_eq!(error.code, "HostnameOwnershipValidationFailed");
    assert!(error.message.contains(DOMAIN), "{}", error.message);

    advance(3 * 3600 - 60).await;
    assert_eq!(h.calls().len(), 1, "nothing before Retry-After");
    advance(120).await;
    let calls = h.calls();
    assert_eq!(calls.len(), 2);
    assert!((calls[1] - (T0 + 3 * 3600)).abs() <= 1, "{calls:?}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_order_counts_as_a_failure_and_is_retried() {
    let h = Harness::start(&[Outcome::Panic, Outcome::Issue(90)], None, Duration::ZERO);
    advance(5).await;
    let status = h.status();
    assert_eq!(status.failures, 1, "{status:?}");
    assert!(status.in_flight.is_none(), "{status:?}");
    let error = status.last_error.expect("recorded");
    assert!(
        error.message.contains("internal error"),
        "{}",
        error.message
    );
    advance(65).await;
    assert_eq!(h.calls().len(), 2, "retried after the backoff");
    assert_eq!(h.status().failures, 0);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn backoff_survives_a_restart() {
    let h = Harness::start(&[Outcome::Fail(Some(7200))], None, Duration::ZERO);
    advance(5).await;
    assert_eq!(h.calls().len(), 1);
    let dir = h.stop().await;
    // A new manager (a restart) reads status.json and waits for the retry.
    let h = Harness::start_in(dir, &[Outcome::Issue(90)], None, Duration::ZERO);
    advance(3600).await;
    assert!(
        h.calls().is_empty(),
        "no order before the persisted retry time"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn no_order_while_no_bound_listener_answers_the_challenge() {
    // `plain` (http) is configured but, as if added by a reload, not bound:
    // only an https listener is.
    let https_only = vec![BoundListener {
        name: "web".into(),
        kind: crate::config::ListenerKind::Https,
    }];
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start_bound(
        dir,
        &[Outcome::Issue(90)],
        None,
        Duration::ZERO,
        Some(https_only),
    );
    advance(DAY).await;
    assert!(h.calls().is_empty(), "no order: http-01 cannot be answered");
    let waiting = h.status().waiting.expect("the status says why");
    assert_eq!(waiting.code, NO_LISTENER_CODE);
    assert_eq!(waiting.since, T0, "set once, not on every plan");
    assert!(
        waiting.message.contains("http-01")
            && waiting
                .message
                .contains("restart sniwalk to bind listener `plain`"),
        "{waiting:?}"
    );
    // A forced renewal is refused with the same reason, placing nothing.
    let id = control::request_renewal(&h.config.state_layout(), DOMAIN, T0).expect("request");
    advance(3600 + 5).await;
    let result = control::read_result(&h.config.state_layout(), DOMAIN).expect("answered");
    assert_eq!(result.id, id);
    assert!(!result.ok);
    assert_eq!(result.code.as_deref(), Some(NO_LISTENER_CODE));
    assert!(result.message.contains("no order placed"), "{result:?}");
    assert!(h.calls().is_empty());
    // A restart that binds it: the order proceeds and the note goes.
    let dir = h.stop().await;
    let h = Harness::start_in(dir, &[Outcome::Issue(90)], None, Duration::ZERO);
    advance(5).await;
    assert_eq!(h.calls().len(), 1, "ordered once the listener is bound");
    let status = h.status();
    assert!(status.waiting.is_none(), "{status:?}");
    assert!(status.last_issued.is_some(), "{status:?}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn forced_renewal_runs_at_once_and_answers_the_request() {
    let existing = certificate(DOMAIN, T0, T0 + 90 * DAY, true);
    let h = Harness::start(&[Outcome::Issue(90)], Some(existing), Duration::ZERO);
    advance(DAY).await;
    assert!(h.calls().is_empty(), "not due");
    let id = control::request_renewal(&h.config.state_layout(), DOMAIN, T0).expect("request");
    advance(3600 + 5).await;
    assert_eq!(h.calls().len(), 1, "the request was acted on");
    let result = control::read_result(&h.config.state_layout(), DOMAIN).expect("result");
    assert_eq!(result.id, id);
    assert!(result.ok, "{result:?}");
    assert!(
        result.message.contains("new certificate served"),
        "{result:?}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn one_order_per_domain_even_when_asked_again() {
    let h = Harness::start(&[Outcome::Issue(90)], None, Duration::from_secs(7200));
    advance(10).await;
    assert_eq!(h.calls().len(), 1);
    let id = control::request_renewal(&h.config.state_layout(), DOMAIN, T0).expect("request");
    advance(4 * 3600).await;
    assert_eq!(h.calls().len(), 1, "the request joined the order in flight");
    let result = control::read_result(&h.config.state_layout(), DOMAIN).expect("answered");
    assert_eq!(result.id, id);
    assert!(result.ok);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn hand_managed_certificates_are_left_alone() {
    let by_hand = certificate(DOMAIN, T0 - 80 * DAY, T0 + 10 * DAY, false);
    let h = Harness::start(&[Outcome::Issue(90)], Some(by_hand), Duration::ZERO);
    advance(20 * DAY).await;
    assert!(h.calls().is_empty(), "never ordered");
    let id = control::request_renewal(&h.config.state_layout(), DOMAIN, T0).expect("request");
    advance(3600 + 5).await;
    assert!(h.calls().is_empty(), "not even when asked");
    let result = control::read_result(&h.config.state_layout(), DOMAIN).expect("answered");
    assert_eq!(result.id, id);
    assert!(!result.ok);
    assert_eq!(result.code.as_deref(), Some("NotManaged"));
    h.stop().await;
}

#[test]
fn decisions() {
    let served = |acme_issued, directory| ServedView {
        not_before: T0,
        not_after: T0 + 90 * DAY,
        acme_issued,
        directory,
        names_match: true,
    };
    let view = |served, stored| DomainView {
        configured_by_hand: false,
        served,
        stored,
        broken: false,
    };
    let d = |v, forced, now| decide(v, forced, DIRECTORY, None, now, 2.0 / 3.0, 0.0);
    use Decision::*;
    assert_eq!(
        d(view(None, StoredFile::Missing), false, T0),
        Issue(Reason::NoCertificate)
    );
    assert_eq!(
        d(view(None, StoredFile::Ours), false, T0),
        Issue(Reason::Broken)
    );
    assert_eq!(d(view(None, StoredFile::NotOurs), true, T0), LeaveAlone);
    let ours = view(Some(served(true, Some(DIRECTORY))), StoredFile::Missing);
    assert_eq!(d(ours, false, T0), WaitUntil(T0 + 60 * DAY));
    assert_eq!(
        d(ours, false, T0 + 60 * DAY),
        Issue(Reason::Renewal(RenewalBasis::Lifetime))
    );
    assert_eq!(d(ours, true, T0), Issue(Reason::Forced));
    let elsewhere = view(
        Some(served(true, Some("https://staging/dir"))),
        StoredFile::Missing,
    );
    assert_eq!(d(elsewhere, false, T0), Issue(Reason::DirectoryChanged));
    let renamed = view(
        Some(ServedView {
            names_match: false,
            ..served(true, Some(DIRECTORY))
        }),
        StoredFile::Missing,
    );
    assert_eq!(d(renamed, false, T0), Issue(Reason::NamesChanged));
    let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert!(names_match(
        &names(&["*.t.example", "t.example"]),
        &names(&["t.example", "*.T.example"])
    ));
    assert!(!names_match(
        &names(&["t.example"]),
        &names(&["t.example", "*.t.example"])
    ));
    // A name the CA added is no reason to order again.
    assert!(names_match(
        &names(&["t.example", "www.t.example"]),
        &names(&["t.example"])
    ));
    let by_hand = view(Some(served(false, None)), StoredFile::Missing);
    assert_eq!(d(by_hand, true, T0 + 89 * DAY), LeaveAlone);
    let configured = DomainView {
        configured_by_hand: true,
        ..view(None, StoredFile::Missing)
    };
    assert_eq!(d(configured, true, T0), LeaveAlone);
    let broken = DomainView {
        broken: true,
        ..ours
    };
    assert_eq!(d(broken, false, T0), Issue(Reason::Broken));
    // An earlier ARI window wins.
    let window = RenewalWindow {
        start: T0 + 10 * DAY,
        end: T0 + 11 * DAY,
    };
    assert_eq!(
        decide(ours, false, DIRECTORY, Some(window), T0, 2.0 / 3.0, 0.0),
        WaitUntil(T0 + 10 * DAY)
    );
}

/// After waiting for another instance's lock: its new certificate replaces
/// an order only when it is not what the decision was based on and is not
/// due itself.
#[test]
fn another_instances_certificate_is_used_only_when_new_and_fresh() {
    const DIR: &str = "https://ca.test/dir";
    let now = T0;
    let fresh = ServedView {
        not_before: now - 60,
        not_after: now + 90 * DAY,
        acme_issued: true,
        directory: Some(DIR),
        names_match: true,
    };
    let usable =
        |view, baseline| usable_instead_of_ordering(view, "NEW", baseline, DIR, now, 2.0 / 3.0);
    assert!(usable(fresh, None), "first certificate, issued elsewhere");
    assert!(usable(fresh, Some("OLD")), "renewed elsewhere");
    assert!(!usable(fresh, Some("NEW")), "the one we decided to renew");
    let expired = ServedView {
        not_before: now - 100 * DAY,
        not_after: now - DAY,
        ..fresh
    };
    assert!(!usable(expired, Some("OLD")), "due itself");
    let other_ca = ServedView {
        directory: Some("https://other.test/dir"),
        ..fresh
    };
    assert!(!usable(other_ca, Some("OLD")), "another directory");
    let by_hand = ServedView {
        acme_issued: false,
        ..fresh
    };
    assert!(!usable(by_hand, Some("OLD")), "not an ACME certificate");
}
