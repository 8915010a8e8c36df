//! The etcd engine of the storage interface against a real etcd 3.4 on
//! loopback (tests/common/etcd.rs): conditions, listings and watches,
//! locks between two clients, fencing, values that live as long as a lock,
//! compaction, an etcd that goes away, refused users, and TLS with a
//! client certificate.
//!
//! Fencing is tested twice: once with the holder's lease revoked behind its
//! back (`etcdctl lease revoke`), once with a holder that is paused past
//! its lease (its own runtime is not driven, so nothing renews it) and
//! writes when it wakes up.
//!
//! Every test starts its own etcd and is bounded in time.
#![cfg(feature = "etcd")]

mod common;

use std::time::Duration;

use common::etcd::{EtcdTls, TestEtcd};
use common::within;
use sniwalk::storage::{
    Change, ClientIdentity, Condition, EtcdOptions, EtcdStorage, HeldLock, Revision, Storage,
    StorageError,
};
use tokio::sync::mpsc;

/// The bound of one test.
const TEST_LIMIT: Duration = Duration::from_secs(20);

/// How long a change may take to arrive through a watch.
const CHANGE_LIMIT: Duration = Duration::from_secs(5);

/// Options for `etcd` with the prefix `sniwalk/` and short timeouts.
fn options(etcd: &TestEtcd) -> EtcdOptions {
    options_for(vec![etcd.endpoint()])
}

fn options_for(endpoints: Vec<String>) -> EtcdOptions {
    let mut options = EtcdOptions::new(endpoints, "sniwalk/");
    options.connect_timeout = Duration::from_secs(1);
    options.request_timeout = Duration::from_secs(2);
    options
}

async fn connect(etcd: &TestEtcd) -> EtcdStorage {
    EtcdStorage::connect(options(etcd))
        .await
        .expect("connect to the test etcd")
}

/// The next change from a watch, within [`CHANGE_LIMIT`].
async fn next_change(changes: &mut mpsc::Receiver<Change>) -> Option<Change> {
    within(CHANGE_LIMIT, "next change", changes.recv()).await
}

/// The value at `key` as text.
async fn text_at(storage: &EtcdStorage, key: &str) -> Option<String> {
    storage
        .get(key)
        .await
        .expect("get")
        .map(|stored| String::from_utf8(stored.value).expect("UTF-8 value"))
}

/// Waits until `lock` says it was lost.
async fn wait_lost(lock: &HeldLock) {
    within(Duration::from_secs(5), "the lock to be lost", lock.lost()).await;
}

#[tokio::test]
async fn conditions_decide_puts_and_deletes() {
    within(TEST_LIMIT, "conditions", async {
        let etcd = TestEtcd::start().await;
        let storage = connect(&etcd).await;
        let key = "certificates/shop.example.com";
        assert_eq!(storage.get(key).await.expect("get missing"), None);

        // Values are bytes.
        let first = storage
            .put(key, vec![0xff, 0, 1], Condition::Always)
            .await
            .expect("put")
            .expect("Always writes");
        let stored = storage.get(key).await.expect("get").expect("stored");
        assert_eq!(stored.value, vec![0xff, 0, 1]);
        assert_eq!(stored.modified, first);

        // Absent refuses an existing key, takes a new one.
        let refused = storage
            .put(key, b"other".to_vec(), Condition::Absent)
            .await
            .expect("put Absent");
        assert_eq!(refused, None);
        assert_eq!(
            storage.get(key).await.expect("get").expect("kept").value,
            vec![0xff, 0, 1]
        );
        let created = storage
            .put(
                "certificates/new.example.com",
                b"new".to_vec(),
                Condition::Absent,
            )
            .await
            .expect("put Absent new")
            .expect("Absent creates");
        assert!(created > first);

        // ModifiedAt refuses a stale revision, takes the current one.
        let second = storage
            .put(key, b"v2".to_vec(), Condition::ModifiedAt(first))
            .await
            .expect("put ModifiedAt")
            .expect("current revision writes");
        assert!(second > created);
        let stale = storage
            .put(key, b"v3".to_vec(), Condition::ModifiedAt(first))
            .await
            .expect("put stale");
        assert_eq!(stale, None);
        assert_eq!(text_at(&storage, key).await.as_deref(), Some("v2"));

        // Deletes: the same conditions.
        assert!(
            !storage
                .delete(key, Condition::ModifiedAt(first))
                .await
                .expect("delete stale")
        );
        assert!(
            !storage
                .delete(key, Condition::Absent)
                .await
                .expect("delete Absent")
        );
        assert_eq!(text_at(&storage, key).await.as_deref(), Some("v2"));
        assert!(
            storage
                .delete(key, Condition::ModifiedAt(second))
                .await
                .expect("delete")
        );
        assert_eq!(storage.get(key).await.expect("get deleted"), None);
        assert!(
            !storage
                .delete(key, Condition::Always)
                .await
                .expect("delete missing")
        );
        assert!(
            storage
                .delete("certificates/new.example.com", Condition::Always)
                .await
                .expect("delete Always")
        );

        // Another prefix is another storage.
        let mut other = options(&etcd);
        other.prefix = "elsewhere/".into();
        let other = EtcdStorage::connect(other)
            .await
            .expect("connect elsewhere");
        other
            .put(key, b"elsewhere".to_vec(), Condition::Always)
            .await
            .expect("put elsewhere");
        assert_eq!(storage.get(key).await.expect("get"), None);
        assert_eq!(
            storage.describe(),
            format!("etcd {} prefix sniwalk/", etcd.endpoint())
        );
    })
    .await;
}

#[tokio::test]
async fn keys_outside_the_rules_are_refused_and_foreign_keys_skipped() {
    within(TEST_LIMIT, "keys", async {
        let etcd = TestEtcd::start().await;
        let storage = connect(&etcd).await;
        for key in ["../x", "a//b", "/a", "a/./b", "a b", ""] {
            let put = storage.put(key, b"x".to_vec(), Condition::Always).await;
            assert!(
                matches!(put, Err(StorageError::Key { .. })),
                "put {key:?}: {put:?}"
            );
            let get = storage.get(key).await;
            assert!(
                matches!(get, Err(StorageError::Key { .. })),
                "get {key:?}: {get:?}"
            );
            let delete = storage.delete(key, Condition::Always).await;
            assert!(
                matches!(delete, Err(StorageError::Key { .. })),
                "delete {key:?}"
            );
        }
        let lock = storage
            .try_lock("a/../b", "node-a", Duration::from_secs(3))
            .await;
        assert!(matches!(lock, Err(StorageError::Key { .. })), "{lock:?}");
        let list = storage.list("certificates").await;
        assert!(matches!(list, Err(StorageError::Key { .. })), "{list:?}");

        // What others put under the prefix that is not a key of ours (not
        // UTF-8) and what lies next to it is skipped, not a panic.
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt as _;
        etcd.etcdctl(&[
            OsStr::new("put"),
            OsStr::from_bytes(b"sniwalk/certificates/\xff"),
            OsStr::new("binary"),
        ])
        .await;
        etcd.etcdctl(&["put", "sniwalkother/x", "next door"]).await;
        storage
            .put("certificates/a", b"a".to_vec(), Condition::Always)
            .await
            .expect("put");
        let listing = storage.list("").await.expect("list everything");
        let keys: Vec<&str> = listing.entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["certificates/a"]);
    })
    .await;
}

#[tokio::test]
async fn a_watch_from_a_listing_sees_later_changes_in_order() {
    within(TEST_LIMIT, "list then watch", async {
        let etcd = TestEtcd::start().await;
        let storage = connect(&etcd).await;
        for key in ["certificates/b", "certificates/a", "certificates/c"] {
            storage
                .put(key, key.as_bytes().to_vec(), Condition::Always)
                .await
                .expect("put");
        }
        storage
            .put("tickets/keys", b"t".to_vec(), Condition::Always)
            .await
            .expect("put outside");
        let listing = storage.list("certificates/").await.expect("list");
        let keys: Vec<&str> = listing.entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["certificates/a", "certificates/b", "certificates/c"]);
        assert_eq!(listing.entries[0].1.value, b"certificates/a");
        assert!(
            listing
                .entries
                .iter()
                .all(|(_, s)| s.modified <= listing.revision)
        );

        let mut changes = storage.watch("certificates/", listing.revision);
        let put_d = storage
            .put("certificates/d", b"d".to_vec(), Condition::Always)
            .await
            .expect("put d")
            .expect("written");
        storage
            .put("tickets/keys", b"t2".to_vec(), Condition::Always)
            .await
            .expect("put outside");
        assert!(
            storage
                .delete("certificates/b", Condition::Always)
                .await
                .expect("delete b")
        );
        let put_a = storage
            .put("certificates/a", b"a2".to_vec(), Condition::Always)
            .await
            .expect("put a")
            .expect("written");

        assert_eq!(
            next_change(&mut changes).await,
            Some(Change::Put {
                key: "certificates/d".into(),
                value: b"d".to_vec(),
                modified: put_d,
            })
        );
        assert_eq!(
            next_change(&mut changes).await,
            Some(Change::Deleted {
                key: "certificates/b".into(),
                revision: Revision(put_d.0 + 2),
            })
        );
        assert_eq!(
            next_change(&mut changes).await,
            Some(Change::Put {
                key: "certificates/a".into(),
                value: b"a2".to_vec(),
                modified: put_a,
            })
        );
        assert!(changes.try_recv().is_err(), "nothing more");

        // A second watch from the same listing sees the same history.
        let mut again = storage.watch("certificates/", listing.revision);
        let first = next_change(&mut again).await;
        assert!(matches!(first, Some(Change::Put { ref key, .. }) if key == "certificates/d"));
    })
    .await;
}

#[tokio::test]
async fn a_lock_is_exclusive_between_two_clients() {
    within(TEST_LIMIT, "exclusive lock", async {
        let etcd = TestEtcd::start().await;
        let a = connect(&etcd).await;
        let b = connect(&etcd).await;
        let name = "orders/shop.example.com";
        let lease = Duration::from_secs(2);

        let lock_a = a
            .try_lock(name, "node-a", lease)
            .await
            .expect("lock")
            .expect("free");
        assert_eq!(lock_a.name, name);
        assert!(lock_a.lease != 0);
        assert!(
            b.try_lock(name, "node-b", lease)
                .await
                .expect("try")
                .is_none()
        );
        assert_eq!(
            b.lock_holder(name).await.expect("holder").as_deref(),
            Some("node-a")
        );
        assert_eq!(
            etcd.etcdctl(&[
                "get",
                "--print-value-only",
                "sniwalk/locks/orders/shop.example.com"
            ])
            .await
            .trim(),
            "node-a"
        );

        // Kept alive past its 2 s lease.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!lock_a.is_lost());
        assert!(
            b.try_lock(name, "node-b", lease)
                .await
                .expect("try")
                .is_none()
        );
        assert!(
            a.put(
                "certificates/shop.example.com",
                b"a".to_vec(),
                Condition::HeldLock(&lock_a)
            )
            .await
            .expect("fenced put")
            .is_some()
        );

        let fence_a = lock_a.fence;
        a.unlock(lock_a).await.expect("unlock");
        assert_eq!(b.lock_holder(name).await.expect("holder"), None);
        let lock_b = b
            .try_lock(name, "node-b", lease)
            .await
            .expect("lock")
            .expect("free now");
        assert!(lock_b.fence > fence_a, "{} > {fence_a}", lock_b.fence);
        assert_eq!(
            a.lock_holder(name).await.expect("holder").as_deref(),
            Some("node-b")
        );
        assert!(
            a.lock_holder("orders/other")
                .await
                .expect("holder")
                .is_none()
        );
        b.unlock(lock_b).await.expect("unlock b");
    })
    .await;
}

#[tokio::test]
async fn a_revoked_holder_is_fenced_out() {
    within(TEST_LIMIT, "fencing after a revoke", async {
        let etcd = TestEtcd::start().await;
        let a = connect(&etcd).await;
        let b = connect(&etcd).await;
        let name = "orders/shop.example.com";
        let key = "certificates/shop.example.com";
        let lease = Duration::from_secs(3);

        let lock_a = a
            .try_lock(name, "node-a", lease)
            .await
            .expect("lock")
            .expect("free");
        a.put(key, b"from a".to_vec(), Condition::HeldLock(&lock_a))
            .await
            .expect("put")
            .expect("held");
        etcd.revoke_lease(lock_a.lease).await;
        wait_lost(&lock_a).await;

        let lock_b = b
            .try_lock(name, "node-b", lease)
            .await
            .expect("lock")
            .expect("free");
        let late = a
            .put(key, b"late a".to_vec(), Condition::HeldLock(&lock_a))
            .await
            .expect("fenced put");
        assert_eq!(late, None, "a lost holder cannot write");
        assert!(
            !a.delete(key, Condition::HeldLock(&lock_a))
                .await
                .expect("fenced delete")
        );
        b.put(key, b"from b".to_vec(), Condition::HeldLock(&lock_b))
            .await
            .expect("put")
            .expect("b holds the lock");
        assert_eq!(text_at(&a, key).await.as_deref(), Some("from b"));
        // Unlocking a lost lock is no error.
        a.unlock(lock_a).await.expect("unlock lost");
        assert_eq!(
            b.lock_holder(name).await.expect("holder").as_deref(),
            Some("node-b")
        );
        assert!(!lock_b.is_lost());
    })
    .await;
}

/// A holder paused past its lease (its runtime is not driven: nothing
/// renews the lease) writes when it wakes up: refused, and it learns that
/// the lock was lost. What it put while holding the lock is gone.
#[test]
fn a_paused_holder_is_fenced_out() {
    let runtime = |what| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{what} runtime: {e}"))
    };
    let main = runtime("main");
    let paused = runtime("paused");
    let name = "orders/shop.example.com";
    let key = "certificates/shop.example.com";
    let answer = "acme/http-01/token-a";

    let etcd = main.block_on(TestEtcd::start());
    let (a, lock_a) = paused.block_on(within(TEST_LIMIT, "a locks", async {
        let a = connect(&etcd).await;
        let lock = a
            .try_lock(name, "node-a", Duration::from_secs(1))
            .await
            .expect("lock")
            .expect("free");
        a.put(key, b"from a".to_vec(), Condition::HeldLock(&lock))
            .await
            .expect("put")
            .expect("held");
        a.put_while_held(answer, b"a".to_vec(), &lock)
            .await
            .expect("put while held")
            .expect("held");
        (a, lock)
    }));

    let _b_holds = main.block_on(within(TEST_LIMIT, "b takes over", async {
        let b = connect(&etcd).await;
        let lock_b = loop {
            if let Some(lock) = b
                .try_lock(name, "node-b", Duration::from_secs(3))
                .await
                .expect("try_lock")
            {
                break lock;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            b.get(answer).await.expect("get"),
            None,
            "went with a's lease"
        );
        b.put(key, b"from b".to_vec(), Condition::HeldLock(&lock_b))
            .await
            .expect("put")
            .expect("b holds the lock");
        // b keeps its lock (renewed only while `main` is driven).
        (b, lock_b)
    }));

    paused.block_on(within(TEST_LIMIT, "a wakes up", async {
        let late = a
            .put(key, b"late a".to_vec(), Condition::HeldLock(&lock_a))
            .await
            .expect("fenced put");
        assert_eq!(late, None, "a paused holder cannot write");
        let late = a
            .put_while_held(answer, b"late".to_vec(), &lock_a)
            .await
            .expect("put while held");
        assert_eq!(late, None);
        wait_lost(&lock_a).await;
        assert_eq!(text_at(&a, key).await.as_deref(), Some("from b"));
    }));
}

#[tokio::test]
async fn values_put_while_held_go_with_the_lock() {
    within(TEST_LIMIT, "put while held", async {
        let etcd = TestEtcd::start().await;
        let storage = connect(&etcd).await;
        let name = "orders/shop.example.com";
        let lease = Duration::from_secs(3);

        // Released: gone, and watchers see it go.
        let start = storage.list("acme/").await.expect("list").revision;
        let mut changes = storage.watch("acme/", start);
        let lock = storage
            .try_lock(name, "node-a", lease)
            .await
            .expect("lock")
            .expect("free");
        let written = storage
            .put_while_held("acme/http-01/one", b"1".to_vec(), &lock)
            .await
            .expect("put")
            .expect("held");
        assert_eq!(
            text_at(&storage, "acme/http-01/one").await.as_deref(),
            Some("1")
        );
        storage.unlock(lock).await.expect("unlock");
        assert_eq!(storage.get("acme/http-01/one").await.expect("get"), None);
        assert_eq!(
            next_change(&mut changes).await,
            Some(Change::Put {
                key: "acme/http-01/one".into(),
                value: b"1".to_vec(),
                modified: written,
            })
        );
        let gone = next_change(&mut changes).await;
        assert!(
            matches!(&gone, Some(Change::Deleted { key, revision })
                if key == "acme/http-01/one" && *revision > written),
            "{gone:?}"
        );
        drop(changes);

        // Lease revoked behind the holder's back: gone, and the lock is lost.
        let lock = storage
            .try_lock(name, "node-a", lease)
            .await
            .expect("lock")
            .expect("free");
        storage
            .put_while_held("acme/http-01/two", b"2".to_vec(), &lock)
            .await
            .expect("put")
            .expect("held");
        etcd.revoke_lease(lock.lease).await;
        wait_lost(&lock).await;
        assert_eq!(storage.get("acme/http-01/two").await.expect("get"), None);
        let after = storage
            .put_while_held("acme/http-01/two", b"2".to_vec(), &lock)
            .await
            .expect("put after loss");
        assert_eq!(after, None);
        drop(lock);

        // Dropped without unlock: the keep-alive task revokes the lease.
        let lock = storage
            .try_lock(name, "node-a", lease)
            .await
            .expect("lock")
            .expect("free");
        storage
            .put_while_held("acme/http-01/three", b"3".to_vec(), &lock)
            .await
            .expect("put")
            .expect("held");
        drop(lock);
        within(
            Duration::from_secs(5),
            "the dropped lock's value to go",
            async {
                while storage
                    .get("acme/http-01/three")
                    .await
                    .expect("get")
                    .is_some()
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await;
        assert_eq!(storage.lock_holder(name).await.expect("holder"), None);
    })
    .await;
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_resyncs() {
    within(TEST_LIMIT, "compaction", async {
        let etcd = TestEtcd::start().await;
        let storage = connect(&etcd).await;
        storage
            .put("certificates/a", b"a".to_vec(), Condition::Always)
            .await
            .expect("put");
        let old = storage.list("certificates/").await.expect("list");
        for value in ["1", "2", "3"] {
            storage
                .put(
                    "certificates/a",
                    value.as_bytes().to_vec(),
                    Condition::Always,
                )
                .await
                .expect("put");
        }
        let compacted = etcd.compact().await;
        assert!(compacted > old.revision.0 + 1);

        let mut changes = storage.watch("certificates/", old.revision);
        assert_eq!(next_change(&mut changes).await, Some(Change::Resync));
        assert_eq!(next_change(&mut changes).await, None, "ends after Resync");

        // Listing again and watching from there works.
        let fresh = storage.list("certificates/").await.expect("list again");
        assert_eq!(fresh.entries[0].1.value, b"3");
        let mut changes = storage.watch("certificates/", fresh.revision);
        let written = storage
            .put("certificates/b", b"b".to_vec(), Condition::Always)
            .await
            .expect("put")
            .expect("written");
        assert_eq!(
            next_change(&mut changes).await,
            Some(Change::Put {
                key: "certificates/b".into(),
                value: b"b".to_vec(),
                modified: written,
            })
        );
    })
    .await;
}

#[tokio::test]
async fn a_watch_resyncs_when_etcd_goes_away_and_the_client_comes_back() {
    within(TEST_LIMIT, "etcd restart", async {
        let mut etcd = TestEtcd::start().await;
        let storage = connect(&etcd).await;
        storage
            .put("certificates/a", b"a".to_vec(), Condition::Always)
            .await
            .expect("put");
        let listing = storage.list("certificates/").await.expect("list");
        let mut changes = storage.watch("certificates/", listing.revision);
        // The watch is running once a change comes through.
        storage
            .put("certificates/b", b"b".to_vec(), Condition::Always)
            .await
            .expect("put");
        assert!(matches!(
            next_change(&mut changes).await,
            Some(Change::Put { .. })
        ));

        etcd.stop();
        assert_eq!(next_change(&mut changes).await, Some(Change::Resync));
        assert_eq!(next_change(&mut changes).await, None);
        let down = storage.get("certificates/a").await;
        assert!(
            matches!(down, Err(StorageError::Unreachable { .. })),
            "{down:?}"
        );

        // Same data dir and ports: the data is kept, the same client works.
        etcd.restart().await;
        let value = within(Duration::from_secs(10), "the client to reconnect", async {
            loop {
                match storage.get("certificates/b").await {
                    Ok(value) => break value,
                    Err(StorageError::Unreachable { .. }) => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Err(e) => panic!("after restart: {e}"),
                }
            }
        })
        .await;
        assert_eq!(value.expect("kept").value, b"b");
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_endpoint_is_named_within_seconds() {
    within(TEST_LIMIT, "unreachable", async {
        // Nothing listens on a port that was free a moment ago.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", listener.local_addr().expect("addr"))
        };
        let storage = EtcdStorage::connect(options_for(vec![closed.clone()]))
            .await
            .expect("connect is lazy");
        let started = std::time::Instant::now();
        match storage.get("certificates/a").await {
            Err(StorageError::Unreachable { endpoint, detail }) => {
                assert_eq!(endpoint, closed, "{detail}");
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
        let lock = storage
            .try_lock("orders/a", "node-a", Duration::from_secs(3))
            .await;
        assert!(
            matches!(lock, Err(StorageError::Unreachable { .. })),
            "{lock:?}"
        );
        let mut changes = storage.watch("certificates/", Revision(0));
        assert_eq!(next_change(&mut changes).await, Some(Change::Resync));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );

        // With a user the login fails at connect.
        let mut with_user = options_for(vec![closed.clone()]);
        with_user.username = Some("app".into());
        with_user.password = Some("pw".into());
        let error = EtcdStorage::connect(with_user).await.expect_err("login");
        assert!(
            matches!(error, StorageError::Unreachable { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(&closed), "{error}");

        // A port that accepts but never answers: the request timeout (2 s).
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
        let _held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        let storage = EtcdStorage::connect(options_for(vec![silent_url.clone()]))
            .await
            .expect("connect is lazy");
        let started = std::time::Instant::now();
        let error = storage.get("certificates/a").await.expect_err("no answer");
        assert!(
            matches!(&error, StorageError::Unreachable { endpoint, .. } if *endpoint == silent_url),
            "{error:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn refused_users_are_denied() {
    within(TEST_LIMIT, "auth", async {
        let mut etcd = TestEtcd::start().await;
        etcd.enable_auth("app", "app-pw", "sniwalk/").await;
        etcd.add_user("stranger", "stranger-pw", "other/").await;
        let as_user = |user: &str, password: &str| {
            let mut options = options(&etcd);
            options.username = Some(user.into());
            options.password = Some(password.into());
            options
        };

        let error = EtcdStorage::connect(as_user("app", "wrong"))
            .await
            .expect_err("wrong password");
        assert!(matches!(error, StorageError::Denied { .. }), "{error:?}");
        assert!(error.to_string().contains(&etcd.endpoint()), "{error}");

        let anonymous = connect(&etcd).await;
        let error = anonymous.get("certificates/a").await.expect_err("no user");
        assert!(matches!(error, StorageError::Denied { .. }), "{error:?}");

        let stranger = EtcdStorage::connect(as_user("stranger", "stranger-pw"))
            .await
            .expect("stranger logs in");
        let error = stranger
            .get("certificates/a")
            .await
            .expect_err("no permission");
        assert!(matches!(error, StorageError::Denied { .. }), "{error:?}");

        // The right user works, locks included.
        let app = EtcdStorage::connect(as_user("app", "app-pw"))
            .await
            .expect("app logs in");
        app.put("certificates/a", b"a".to_vec(), Condition::Absent)
            .await
            .expect("put")
            .expect("written");
        let lock = app
            .try_lock("orders/a", "node-a", Duration::from_secs(3))
            .await
            .expect("lock")
            .expect("free");
        app.put_while_held("acme/http-01/t", b"t".to_vec(), &lock)
            .await
            .expect("put while held")
            .expect("held");
        app.unlock(lock).await.expect("unlock");
        assert_eq!(app.get("acme/http-01/t").await.expect("get"), None);
        let listing = app.list("").await.expect("list");
        assert_eq!(listing.entries.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn tls_with_a_client_certificate() {
    within(TEST_LIMIT, "TLS", async {
        let (tls, client_cert, client_key) = EtcdTls::with_client();
        let ca_pem = tls.ca_pem.clone();
        let etcd = TestEtcd::start_tls(&tls).await;
        assert!(etcd.endpoint().starts_with("https://"));

        let mut with_certificate = options(&etcd);
        with_certificate.ca_pem = Some(ca_pem.clone());
        with_certificate.client_identity = Some(ClientIdentity {
            cert_pem: client_cert.clone(),
            key_pem: client_key.clone(),
        });
        let storage = EtcdStorage::connect(with_certificate.clone())
            .await
            .expect("connect over TLS");
        storage
            .put("certificates/a", b"a".to_vec(), Condition::Always)
            .await
            .unwrap_or_else(|e| panic!("put over TLS: {e}\n{}", etcd.logs()))
            .expect("written");
        assert_eq!(
            text_at(&storage, "certificates/a").await.as_deref(),
            Some("a")
        );
        let lock = storage
            .try_lock("orders/a", "node-a", Duration::from_secs(3))
            .await
            .expect("lock over TLS")
            .expect("free");
        let mut changes = storage.watch("certificates/", Revision(0));
        assert!(matches!(
            next_change(&mut changes).await,
            Some(Change::Put { .. })
        ));
        storage.unlock(lock).await.expect("unlock");

        // Without a client certificate, or trusting another CA: refused.
        let mut no_certificate = with_certificate.clone();
        no_certificate.client_identity = None;
        let storage = EtcdStorage::connect(no_certificate).await.expect("lazy");
        let error = storage
            .get("certificates/a")
            .await
            .expect_err("no client certificate");
        assert!(
            matches!(error, StorageError::Unreachable { .. }),
            "{error:?}"
        );
        assert!(
            !error.to_string().contains("storage.tls.ca_file"),
            "etcd refused the client, the CA is right: {error}"
        );
        // etcd's certificate does not verify against the CA given: said
        // so, with the setting to fix.
        let mut other_ca = with_certificate;
        other_ca.ca_pem = Some(common::test_ca("another CA").0);
        let storage = EtcdStorage::connect(other_ca).await.expect("lazy");
        let error = storage.get("certificates/a").await.expect_err("unknown CA");
        assert!(
            matches!(error, StorageError::Unreachable { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("server certificate does not verify")
                && message.contains("storage.tls.ca_file")
                && message.contains(&etcd.endpoint()),
            "{message}"
        );
    })
    .await;
}
