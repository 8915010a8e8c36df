//! Unit tests of the reload task: which files are sources, what a
//! reload publishes, and the reload counters.

use super::changes::Change;
use super::*;
use crate::snapshot::Place;

fn config(yaml: &str) -> Config {
    Config::parse(yaml, Path::new("/etc/sniwalk/proxy.yaml")).expect("valid")
}

/// The reload publishes only when `differences` finds something: a
/// rebuild of unchanged sources finds nothing, a new certificate is a
/// swap, a removed domain is named.
#[test]
fn differences_decide_what_is_published() {
    let pem = |name: &str| {
        crate::snapshot::generate_self_signed_pem(&[name.to_string()], 1, false)
            .expect("certificate")
    };
    // The generated default persists in state_dir, as in `run`.
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().display().to_string();
    let yaml = |text: &str| {
        let block: String = text.lines().map(|l| format!("      {l}\n")).collect();
        format!(
            "master_domain: a.test\nstate_dir: {state}\ndomains:\n  a.test: {{}}\n  \
             b.a.test:\n    certificate_pem: |\n{block}"
        )
    };
    let first = config(&yaml(&pem("b.a.test")));
    let built = |c: &Config, previous: Option<&Snapshot>| {
        build_snapshot(c, previous, Changes(None), 0).expect("builds")
    };
    let one = built(&first, None);
    let same = built(&first, Some(&one));
    let found = differences(&one, &same);
    assert!(found.is_empty(), "nothing changed: {found:?}");

    let second = config(&yaml(&pem("b.a.test")));
    let swapped = built(&second, Some(&one));
    let found = differences(&one, &swapped);
    assert!(
        found
            .iter()
            .any(|c| matches!(c, Change::Swapped(r) if r.place.to_string().contains("b.a.test"))),
        "{found:?}"
    );

    let without = config(&format!(
        "master_domain: a.test\nstate_dir: {state}\ndomains:\n  a.test: {{}}\n"
    ));
    let removed = built(&without, Some(&swapped));
    let found = differences(&swapped, &removed);
    assert!(
        found
            .iter()
            .any(|c| matches!(c, Change::Removed(place) if place.to_string().contains("b.a.test"))),
        "{found:?}"
    );
}

#[test]
fn only_sources_count_as_changes() {
    let c = config(
        "master_domain: a.test\nstate_dir: /var/lib/sniwalk\ndomains:\n  a.test:\n    certificate_file: certs/a.pem\n\
         listeners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    certdir: /etc/ssl/ws\n    routes:\n      - host: \"*\"\n        status_page: true\n",
    );
    let watch = WatchSet::of(&c);
    for (path, expected) in [
        ("/etc/sniwalk/proxy.yaml", true),
        ("/etc/sniwalk/.proxy.yaml.swp", false),
        ("/etc/sniwalk/proxy.yaml~", false),
        ("/etc/sniwalk/certs/a.pem", true),
        ("/etc/sniwalk/certs/b.pem", false),
        ("/etc/sniwalk/certs/..data", true),
        ("/etc/ssl/ws/server.crt", true),
        ("/etc/ssl/ws/..2026_11_25", true),
        ("/etc/ssl/ws", true),
        ("/var/lib/sniwalk/default.pem", true),
        ("/var/lib/sniwalk/certificates/a.test.pem", true),
        ("/var/lib/sniwalk/account.json", false),
        ("/var/log/sniwalk.log", false),
    ] {
        assert_eq!(watch.is_source(Path::new(path)), expected, "{path}");
    }
}

#[test]
fn a_domain_message_names_its_certificate_files() {
    let c = config(
        "master_domain: a.test\nstate_dir: /var/lib/sniwalk\ndomains:\n  a.test:\n    certificate_file: certs/a.pem\n\
         \x20 shop.a.test:\n    acme: { enabled: true }\n  inline.a.test:\n    certificate_pem: x\n\
         listeners:\n  - name: plain\n    kind: http\n    bind: 127.0.0.1:1\n",
    );
    let snapshot = Snapshot::build(&c, None, DefaultPolicy::InMemory, 0).expect("builds");
    let (_handle, receiver) = channel();
    let task = ReloadTask::new(c, SnapshotWriter::new(snapshot), receiver);
    assert_eq!(
        task.domain_sources("a.test"),
        [PathBuf::from("/etc/sniwalk/certs/a.pem")]
    );
    assert_eq!(
        task.domain_sources("shop.a.test"),
        [PathBuf::from(
            "/var/lib/sniwalk/certificates/shop.a.test.pem"
        )]
    );
    assert!(task.domain_sources("inline.a.test").is_empty());
    assert!(task.domain_sources("unknown.test").is_empty());
    assert!(task.is_source(Path::new("/etc/sniwalk/certs/a.pem")));
}

#[test]
fn listener_binds_survive_a_reload_and_the_rest_applies() {
    let running = config(
        "master_domain: a.test\ndomains:\n  a.test: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    header_timeout: 5s\n",
    );
    let new = config(
        "master_domain: a.test\ndomains:\n  a.test: {}\n  b.a.test: {}\nlisteners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:2\n    header_timeout: 7s\n  - name: extra\n    kind: http\n    bind: 127.0.0.1:3\n",
    );
    let merged = keep_listeners(&running, new);
    assert_eq!(
        merged.listeners.len(),
        1,
        "no new listener without a restart"
    );
    assert_eq!(merged.listeners[0].bind, running.listeners[0].bind);
    assert_eq!(
        merged.listeners[0].limits.header_timeout,
        Duration::from_secs(7)
    );
    assert_eq!(merged.domains.len(), 2, "domains apply");
}

/// Every reload counts once: ok when the snapshot was rebuilt, failed
/// when the configuration file does not load (even though the
/// certificates are then rebuilt from the running configuration).
#[tokio::test]
async fn reloads_are_counted_by_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("proxy.yaml");
    let yaml = format!(
        "master_domain: a.test\nstate_dir: {}\ndomains:\n  a.test: {{}}\n\
         listeners:\n  - name: plain\n    kind: http\n    bind: 127.0.0.1:1\n",
        dir.path().join("state").display()
    );
    std::fs::write(&file, &yaml).expect("write");
    let c = Config::load(&file).expect("valid");
    let snapshot = Snapshot::build(&c, None, DefaultPolicy::InMemory, 0).expect("builds");
    let writer = SnapshotWriter::new(snapshot);
    let store = writer.reader();
    let metrics = Metrics::new(&c);
    let (_handle, receiver) = channel();
    let mut task = ReloadTask::new(c, writer, receiver).with_metrics(metrics.clone());
    let count = |result: &str| {
        let text = metrics.render(&store.load());
        let line = format!("sniwalk_reloads_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {line} in {text}"))
    };

    assert_eq!(task.reload(true, HashSet::new()).await, Ok(()));
    assert_eq!((count("ok"), count("failed")), (1, 0));
    std::fs::write(&file, "master_domain: [").expect("break the file");
    // The refusal names the file: it becomes systemd's STATUS= line.
    let refused = task
        .reload(true, HashSet::new())
        .await
        .expect_err("a broken file is refused");
    assert!(refused.contains("proxy.yaml"), "{refused}");
    assert_eq!((count("ok"), count("failed")), (1, 1));
    std::fs::write(&file, &yaml).expect("fix the file");
    assert_eq!(
        task.reload(false, HashSet::from([file.clone()])).await,
        Ok(())
    );
    assert_eq!((count("ok"), count("failed")), (2, 1));
}

/// With every `ReloadHandle` gone the task keeps running: a changed
/// certificate file is still picked up by the file watcher, and only
/// `stop` ends the task.
#[tokio::test]
async fn file_events_reload_after_every_handle_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = |name: &str| {
        crate::snapshot::generate_self_signed_pem(&[name.to_string()], 1, false)
            .expect("certificate")
    };
    let cert = dir.path().join("b.pem");
    std::fs::write(&cert, pem("b.a.test")).expect("write");
    let file = dir.path().join("proxy.yaml");
    std::fs::write(
        &file,
        format!(
            "master_domain: a.test\nstate_dir: {}\ndomains:\n  a.test: {{}}\n  \
             b.a.test:\n    certificate_file: {}\n",
            dir.path().join("state").display(),
            cert.display()
        ),
    )
    .expect("write");
    let c = Config::load(&file).expect("valid");
    let sha = |snapshot: &Snapshot| {
        snapshot
            .report(&Place::Domain("b.a.test".into()))
            .and_then(|r| r.loaded.as_ref())
            .map(|l| l.facts.sha256.clone())
    };
    let snapshot = build_snapshot(&c, None, Changes(None), 0).expect("builds");
    let first = sha(&snapshot).expect("loaded");
    let writer = SnapshotWriter::new(snapshot);
    let reader = writer.reader();
    let (handle, receiver) = channel();
    drop(handle);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(ReloadTask::new(c, writer, receiver).run(stop.clone()));
    // The watcher starts inside `run`; give it a moment to be in place.
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&cert, pem("b.a.test")).expect("replace");
    let swapped = reader
        .wait_for(Duration::from_secs(10), |s| {
            sha(s).is_some_and(|now| now != first)
        })
        .await;
    assert!(swapped.is_ok(), "the new certificate is served");
    assert!(!task.is_finished(), "the task runs until stopped");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops")
        .expect("no panic");
}
