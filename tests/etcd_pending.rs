//! A certificate issued while etcd cannot be reached is never lost, and
//! never replaces one stored after its order lock was taken (README,
//! "Running several instances"): `Shared::store_certificate` keeps it in
//! the cache and in `state_dir/pending/<domain>@<fence>.pem`, and
//! `Shared::store_pending` stores it once etcd answers, unless the stored
//! value is newer than the lock (fencing). Against a real etcd on
//! loopback, stopped and started by PID.
#![cfg(feature = "etcd")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::etcd::TestEtcd;
use common::within;
use sniwalk::state_layout::StateLayout;
use sniwalk::storage::{Condition, EtcdOptions, EtcdStorage, Shared, Storage, keys};

/// The bound of one test.
const TEST_LIMIT: Duration = Duration::from_secs(60);

async fn shared(etcd: &TestEtcd, state: &StateLayout) -> (Shared, Arc<EtcdStorage>) {
    let engine = Arc::new(EtcdStorage::connect(options(etcd)).await.expect("connect"));
    let shared = Shared::new(
        engine.clone(),
        "test",
        Some(Duration::from_secs(5)),
        Some(state.clone()),
    );
    (shared, engine)
}

fn pending_files(state: &StateLayout) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state.pending_dir())
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn stored(engine: &EtcdStorage, domain: &str) -> Option<String> {
    engine
        .get(&keys::certificate(domain))
        .await
        .expect("get")
        .map(|s| String::from_utf8(s.value).expect("UTF-8"))
}

#[tokio::test]
async fn a_certificate_issued_while_etcd_is_down_is_stored_once_it_is_back() {
    within(TEST_LIMIT, "pending certificate stored", async {
        let mut etcd = TestEtcd::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateLayout::new(dir.path());
        let (shared, engine) = shared(&etcd, &state).await;
        let lock = engine
            .try_lock(&keys::order_lock("a.test"), "test", Duration::from_secs(5))
            .await
            .expect("lock")
            .expect("free");
        let fence = lock.fence;
        let issued = common::cert(&["a.test"]);

        etcd.stop();
        shared
            .store_certificate("a.test", &issued.pem, &lock)
            .await
            .expect("kept for later, not an error");
        assert!(!shared.health().is_up(), "the outage is seen");
        assert_eq!(pending_files(&state), [format!("a.test@{fence}.pem")]);
        let cached = state.stored_certificate("a.test");
        assert_eq!(
            std::fs::read_to_string(&cached).expect("cached"),
            issued.pem,
            "served from the cache meanwhile"
        );
        #[cfg(unix)]
        for file in [cached, state.pending_certificate("a.test", fence)] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
        // While etcd is down nothing is lost: the file stays.
        assert_eq!(shared.store_pending().await, 0);
        assert_eq!(pending_files(&state).len(), 1);

        etcd.restart().await;
        let mut stored_count = 0;
        for _ in 0..20 {
            stored_count = shared.store_pending().await;
            if stored_count > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(stored_count, 1);
        assert_eq!(
            stored(&engine, "a.test").await.as_deref(),
            Some(issued.pem.as_str())
        );
        assert!(pending_files(&state).is_empty(), "decided, so removed");
        drop(lock);
    })
    .await;
}

#[tokio::test]
async fn a_pending_certificate_never_replaces_one_stored_after_its_lock() {
    within(TEST_LIMIT, "pending certificate fenced", async {
        let mut etcd = TestEtcd::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateLayout::new(dir.path());
        let (shared, engine) = shared(&etcd, &state).await;
        let lock = engine
            .try_lock(&keys::order_lock("b.test"), "test", Duration::from_secs(5))
            .await
            .expect("lock")
            .expect("free");
        // The late holder's certificate is valid longer: only the fence
        // can keep it out.
        let late = common::cert_valid_for(&["b.test"], Duration::from_secs(400 * 86_400));
        etcd.stop();
        shared
            .store_certificate("b.test", &late.pem, &lock)
            .await
            .expect("kept for later");
        drop(lock);

        etcd.restart().await;
        // Another instance ordered meanwhile and stored its certificate
        // after this lock was taken.
        let other = common::cert_valid_for(&["b.test"], Duration::from_secs(90 * 86_400));
        let writer = other_instance(&etcd).await;
        writer
            .put(
                &keys::certificate("b.test"),
                other.pem.clone().into_bytes(),
                Condition::Always,
            )
            .await
            .expect("put")
            .expect("written");

        let mut decided = false;
        for _ in 0..20 {
            assert_eq!(shared.store_pending().await, 0, "never stored");
            if pending_files(&state).is_empty() {
                decided = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(decided, "the pending file is dropped once decided");
        assert_eq!(
            stored(&engine, "b.test").await.as_deref(),
            Some(other.pem.as_str()),
            "the newer holder's certificate stays"
        );
    })
    .await;
}

/// Another client of the same etcd (another instance).
async fn other_instance(etcd: &TestEtcd) -> EtcdStorage {
    EtcdStorage::connect(options(etcd)).await.expect("connect")
}

fn options(etcd: &TestEtcd) -> EtcdOptions {
    let mut options = EtcdOptions::new(vec![etcd.endpoint()], "sniwalk/");
    options.connect_timeout = Duration::from_secs(1);
    options.request_timeout = Duration::from_secs(2);
    options
}
