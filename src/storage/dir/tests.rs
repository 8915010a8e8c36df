//! Tests of the `dir` engine on a temporary state directory: the files
//! each key maps to, conditions, listings, watches, locks between two
//! engines on one folder, fencing and values that go with their lock.

use std::time::Duration;

use super::*;

const LEASE: Duration = Duration::from_secs(3);
const CHANGE_LIMIT: Duration = Duration::from_secs(5);

fn engine(dir: &tempfile::TempDir) -> DirStorage {
    DirStorage::new(StateLayout::new(dir.path()))
}

async fn next_change(changes: &mut mpsc::Receiver<Change>) -> Change {
    tokio::time::timeout(CHANGE_LIMIT, changes.recv())
        .await
        .expect("a change within the limit")
        .expect("the watch is still open")
}

#[tokio::test]
async fn values_land_in_the_existing_files_with_their_modes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = engine(&dir);
    storage
        .put("certificates/a.test", b"PEM".to_vec(), Condition::Always)
        .await
        .expect("put")
        .expect("written");
    storage
        .put("http-01/tok", b"tok.thumb".to_vec(), Condition::Always)
        .await
        .expect("put")
        .expect("written");
    let certificate = dir.path().join("certificates/a.test.pem");
    assert_eq!(std::fs::read(&certificate).expect("read"), b"PEM");
    let answer = dir.path().join("acme/http-01/tok");
    assert_eq!(std::fs::read(&answer).expect("read"), b"tok.thumb");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&certificate), 0o600);
        assert_eq!(mode(&answer), 0o644);
    }
    // A file written before there was a storage interface is a value.
    std::fs::write(dir.path().join("certificates/old.test.pem"), "OLD").expect("write");
    let old = storage.get("certificates/old.test").await.expect("get");
    assert_eq!(old.map(|s| s.value), Some(b"OLD".to_vec()));
    assert_eq!(
        storage.get("certificates/none.test").await.expect("get"),
        None
    );
    // Keys the engine would never map to a file of its own.
    for bad in ["certificates/.hidden", "../x", "a//b", ""] {
        assert!(
            matches!(
                storage.put(bad, vec![], Condition::Always).await,
                Err(StorageError::Key { .. })
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn conditions_decide_puts_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = engine(&dir);
    let first = storage
        .put("jobs/1", b"one".to_vec(), Condition::Absent)
        .await
        .expect("put")
        .expect("created");
    assert_eq!(
        storage
            .put("jobs/1", b"two".to_vec(), Condition::Absent)
            .await
            .expect("put"),
        None,
        "create-only never replaces"
    );
    assert_eq!(
        storage
            .put(
                "jobs/1",
                b"two".to_vec(),
                Condition::ModifiedAt(Revision(1))
            )
            .await
            .expect("put"),
        None,
        "a stale revision is refused"
    );
    storage
        .put("jobs/1", b"two".to_vec(), Condition::ModifiedAt(first))
        .await
        .expect("put")
        .expect("the current revision is accepted");
    assert_eq!(
        storage.get("jobs/1").await.expect("get").map(|s| s.value),
        Some(b"two".to_vec())
    );
    assert!(
        !storage
            .delete("jobs/1", Condition::ModifiedAt(Revision(1)))
            .await
            .expect("delete")
    );
    assert!(
        storage
            .delete("jobs/1", Condition::Always)
            .await
            .expect("delete")
    );
    assert!(
        !storage
            .delete("jobs/1", Condition::Always)
            .await
            .expect("delete")
    );
    assert!(dir.path().join("shared").exists());
}

#[tokio::test]
async fn a_listing_has_the_keys_under_its_prefix_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = engine(&dir);
    for key in [
        "certificates/a.test",
        "certificates/b.test",
        "jobs/1",
        "jobs/x/2",
    ] {
        storage
            .put(key, key.as_bytes().to_vec(), Condition::Always)
            .await
            .expect("put");
    }
    // Files that are not keys: a temporary file, a foreign name.
    std::fs::write(dir.path().join("certificates/.a.test.pem.tmp.1.1"), "x").expect("write");
    std::fs::write(dir.path().join("certificates/notes.txt"), "x").expect("write");
    let keys = |listing: Listing| -> Vec<String> {
        listing.entries.into_iter().map(|(key, _)| key).collect()
    };
    assert_eq!(
        keys(storage.list("certificates/").await.expect("list")),
        ["certificates/a.test", "certificates/b.test"]
    );
    assert_eq!(
        keys(storage.list("jobs/").await.expect("list")),
        ["jobs/1", "jobs/x/2"]
    );
    assert_eq!(keys(storage.list("").await.expect("list")).len(), 4);
    assert!(storage.list("jobs").await.is_err(), "a prefix ends with /");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_changes_after_the_listing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = engine(&dir);
    let listing = storage.list("certificates/").await.expect("list");
    let mut changes = storage.watch("certificates/", listing.revision);
    // Give the watch a moment to be in place before writing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    storage
        .put("certificates/a.test", b"one".to_vec(), Condition::Always)
        .await
        .expect("put");
    storage
        .put("jobs/1", b"elsewhere".to_vec(), Condition::Always)
        .await
        .expect("put");
    match next_change(&mut changes).await {
        Change::Put { key, value, .. } => {
            assert_eq!(key, "certificates/a.test");
            assert_eq!(value, b"one");
        }
        other => panic!("expected a put, got {other:?}"),
    }
    storage
        .delete("certificates/a.test", Condition::Always)
        .await
        .expect("delete");
    match next_change(&mut changes).await {
        Change::Deleted { key, .. } => assert_eq!(key, "certificates/a.test"),
        other => panic!("expected a delete, got {other:?}"),
    }
    // A watch from before a write it cannot replay says so.
    let mut late = storage.watch("jobs/", listing.revision);
    assert_eq!(next_change(&mut late).await, Change::Resync);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_is_exclusive_between_two_engines_on_one_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (one, two) = (engine(&dir), engine(&dir));
    let lock = one
        .try_lock("orders/a.test", "instance one", LEASE)
        .await
        .expect("try")
        .expect("free");
    assert!(dir.path().join("acme/locks/a.test.lock").exists());
    assert!(
        two.try_lock("orders/a.test", "instance two", LEASE)
            .await
            .expect("try")
            .is_none()
    );
    let holder = two.lock_holder("orders/a.test").await.expect("holder");
    assert!(
        holder
            .as_deref()
            .is_some_and(|h| h.starts_with("instance one")),
        "{holder:?}"
    );
    // Kept alive past its lease while held.
    tokio::time::sleep(LEASE + Duration::from_secs(1)).await;
    assert!(!lock.is_lost());
    assert!(
        two.try_lock("orders/a.test", "instance two", LEASE)
            .await
            .expect("try")
            .is_none()
    );
    one.unlock(lock).await.expect("unlock");
    assert_eq!(
        two.lock_holder("orders/a.test").await.expect("holder"),
        None
    );
    let second = two
        .try_lock("orders/a.test", "instance two", LEASE)
        .await
        .expect("try")
        .expect("free again");
    // Dropping a holding releases it too.
    drop(second);
    tokio::time::timeout(Duration::from_secs(5), async {
        while dir.path().join("acme/locks/a.test.lock").exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the dropped lock's file is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_lock_was_taken_over_is_fenced_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (one, two) = (engine(&dir), engine(&dir));
    let lock = one
        .try_lock("orders/a.test", "one", LEASE)
        .await
        .expect("try")
        .expect("free");
    assert!(
        one.put(
            "certificates/a.test",
            b"first".to_vec(),
            Condition::HeldLock(&lock)
        )
        .await
        .expect("put")
        .is_some()
    );
    one.put_while_held("tls-alpn-01/a.test", b"one's".to_vec(), &lock)
        .await
        .expect("put")
        .expect("held");
    // As if `one` had been paused past its lease: the file says it ended.
    let file = dir.path().join("acme/locks/a.test.lock");
    let mut record: LockRecord =
        serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    record.expires = crate::clock::unix_now() - 1;
    std::fs::write(&file, serde_json::to_vec(&record).expect("json")).expect("write");
    let newer = two
        .try_lock("orders/a.test", "two", LEASE)
        .await
        .expect("try")
        .expect("the stale lock is taken over");
    assert!(newer.fence > lock.fence);
    assert_eq!(
        one.put(
            "certificates/a.test",
            b"late".to_vec(),
            Condition::HeldLock(&lock)
        )
        .await
        .expect("put"),
        None,
        "the late write is refused"
    );
    assert!(
        two.put(
            "certificates/a.test",
            b"newer".to_vec(),
            Condition::HeldLock(&newer)
        )
        .await
        .expect("put")
        .is_some()
    );
    // The old holder's keep-alive notices within a third of a lease.
    tokio::time::timeout(LEASE, lock.lost())
        .await
        .expect("the loss is seen");
    assert_eq!(
        std::fs::read(dir.path().join("certificates/a.test.pem")).expect("read"),
        b"newer"
    );
    two.put_while_held("tls-alpn-01/a.test", b"two's".to_vec(), &newer)
        .await
        .expect("put")
        .expect("held");
    // Releasing the lost holding leaves the newer lock, and what its
    // holder put under the same key, alone.
    one.unlock(lock).await.expect("unlock");
    assert!(file.exists());
    assert_eq!(
        std::fs::read(dir.path().join("shared/tls-alpn-01/a.test")).expect("read"),
        b"two's"
    );
    two.unlock(newer).await.expect("unlock");
    assert!(!file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_put_while_held_go_with_the_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = engine(&dir);
    let lock = storage
        .try_lock("orders/a.test", "one", LEASE)
        .await
        .expect("try")
        .expect("free");
    storage
        .put_while_held("http-01/tok", b"answer".to_vec(), &lock)
        .await
        .expect("put")
        .expect("held");
    assert!(dir.path().join("acme/http-01/tok").exists());
    storage.unlock(lock).await.expect("unlock");
    assert!(!dir.path().join("acme/http-01/tok").exists());
    // Dropped instead of released: the keep-alive task cleans up.
    let lock = storage
        .try_lock("orders/a.test", "one", LEASE)
        .await
        .expect("try")
        .expect("free");
    storage
        .put_while_held("tls-alpn-01/a.test", b"cert".to_vec(), &lock)
        .await
        .expect("put")
        .expect("held");
    drop(lock);
    tokio::time::timeout(Duration::from_secs(5), async {
        while dir.path().join("shared/tls-alpn-01/a.test").exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the value goes with the dropped lock");
}
