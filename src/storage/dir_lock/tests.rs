//! Tests of the `dir` engine's lock files: the pure decisions, then the files, with
//! "instances" racing in threads.

use std::sync::{Arc, Barrier};

use super::*;
use crate::state_layout::StateLayout;

const LEASE: Duration = Duration::from_secs(60);

fn holder(name: &str) -> Holder {
    Holder {
        owner: name.to_string(),
        pid: 42,
        host: "test".into(),
        fence: 7,
        label: format!("instance {name}"),
    }
}

fn write_record(path: &Path, record: &LockRecord) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, serde_json::to_vec(record).expect("json")).expect("write lock");
}

fn on_disk(path: &Path) -> LockRecord {
    serde_json::from_slice(&fs::read(path).expect("read lock")).expect("lock JSON")
}

#[test]
fn a_new_lock_lasts_one_lease_and_renewal_moves_only_the_end() {
    let record = LockRecord::new(&holder("a"), 1000, LEASE);
    assert_eq!(record.acquired, 1000);
    assert_eq!(record.expires, 1060);
    assert_eq!(record.owner, "a");
    let renewed = record.renewed(1020, LEASE);
    assert_eq!(renewed.expires, 1080);
    assert_eq!(renewed.acquired, 1000);
    assert_eq!(renewed.owner, record.owner);
    // Fractions of a second round up: a lease is never shorter than asked.
    assert_eq!(
        LockRecord::new(&holder("a"), 1000, Duration::from_millis(2500)).expires,
        1003
    );
}

#[test]
fn staleness_follows_the_lease_in_the_file() {
    let record = Seen::Record(LockRecord::new(&holder("a"), 1000, LEASE));
    assert!(!is_stale(&record, 1000, LEASE));
    assert!(!is_stale(&record, 1059, LEASE));
    assert!(is_stale(&record, 1060, LEASE));
    // The lease written in the file counts, not ours: a holder with a
    // longer lease is respected.
    assert!(!is_stale(&record, 1059, Duration::from_secs(2)));
}

#[test]
fn unreadable_locks_are_stale_only_when_older_than_a_lease() {
    let young = Seen::Unreadable {
        modified: Some(1000),
    };
    assert!(!is_stale(&young, 1000, LEASE), "being written right now");
    assert!(!is_stale(&young, 1059, LEASE));
    assert!(is_stale(&young, 1060, LEASE));
    assert!(!is_stale(
        &Seen::Unreadable { modified: None },
        i64::MAX,
        LEASE
    ));
    assert_eq!(
        Seen::parse(b"", Some(5)),
        Seen::Unreadable { modified: Some(5) }
    );
    assert_eq!(
        Seen::parse(b"{\"owner\":", None),
        Seen::Unreadable { modified: None }
    );
}

#[test]
fn the_path_is_per_domain_under_acme_locks() {
    assert_eq!(
        StateLayout::new("/var/lib/sniwalk").lock("shop.example.com"),
        Path::new("/var/lib/sniwalk/acme/locks/shop.example.com.lock")
    );
}

#[test]
fn acquire_creates_the_file_and_a_live_lock_is_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = StateLayout::new(dir.path()).lock("a.test");
    let Attempt::Acquired(mine, _) = try_acquire(&path, &holder("a"), 1000, LEASE).expect("io")
    else {
        panic!("first acquire must win");
    };
    assert_eq!(on_disk(&path), mine);
    match try_acquire(&path, &holder("b"), 1030, LEASE).expect("io") {
        Attempt::Held(Seen::Record(holder)) => assert_eq!(holder, mine),
        other => panic!("a live lock must be held, got {other:?}"),
    }
    assert_eq!(on_disk(&path), mine, "the holder's file is untouched");
}

#[test]
fn a_stale_lock_is_taken_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = StateLayout::new(dir.path()).lock("a.test");
    let old = LockRecord::new(&holder("dead"), 1000, LEASE);
    write_record(&path, &old);
    let Attempt::Acquired(mine, replaced) =
        try_acquire(&path, &holder("b"), 1060, LEASE).expect("io")
    else {
        panic!("a stale lock must be taken over");
    };
    assert_eq!(
        replaced,
        Some(Seen::Record(old)),
        "says whose lock it replaced"
    );
    assert_eq!(mine.owner, "b");
    assert_eq!(on_disk(&path), mine);
    let leftovers: Vec<_> = fs::read_dir(path.parent().expect("parent"))
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no stale copies left: {leftovers:?}");
}

#[test]
fn garbage_is_taken_over_only_when_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = StateLayout::new(dir.path()).lock("a.test");
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(&path, b"not json").expect("write");
    let now = crate::clock::unix_now();
    assert!(matches!(
        try_acquire(&path, &holder("b"), now, LEASE).expect("io"),
        Attempt::Held(Seen::Unreadable { .. })
    ));
    assert!(matches!(
        try_acquire(&path, &holder("b"), now + 61, LEASE).expect("io"),
        Attempt::Acquired(..)
    ));
}

#[test]
fn a_lock_renewed_between_read_and_rename_is_put_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = StateLayout::new(dir.path()).lock("a.test");
    let stale = LockRecord::new(&holder("a"), 1000, LEASE);
    let stale_bytes = serde_json::to_vec(&stale).expect("json");
    // The holder renewed after we judged the lock stale.
    let renewed = stale.renewed(1059, LEASE);
    write_record(&path, &renewed);
    assert!(!take_over(&path, &stale_bytes, &holder("b")).expect("take over"));
    assert_eq!(on_disk(&path), renewed, "the live lock is back");
    // And when a newer lock already took its place, the newer one stays.
    let newer = LockRecord::new(&holder("c"), 1061, LEASE);
    write_record(&path, &newer);
    let aside = path.with_extension("lock.stale.b");
    fs::write(&aside, serde_json::to_vec(&renewed).expect("json")).expect("aside");
    assert!(matches!(
        fs::hard_link(&aside, &path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists
    ));
    fs::remove_file(&aside).expect("cleanup");
    assert_eq!(on_disk(&path), newer);
}

#[test]
fn renew_and_release_touch_only_our_own_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = StateLayout::new(dir.path()).lock("a.test");
    let Attempt::Acquired(mine, _) = try_acquire(&path, &holder("a"), 1000, LEASE).expect("io")
    else {
        panic!("acquire");
    };
    assert_eq!(renew(&path, &mine, 1020, LEASE).expect("io"), Some(1080));
    assert_eq!(on_disk(&path).expires, 1080);
    // Someone took it over: neither renewal nor release may touch theirs.
    let theirs = LockRecord::new(&holder("b"), 1100, LEASE);
    write_record(&path, &theirs);
    assert_eq!(renew(&path, &mine, 1101, LEASE).expect("io"), None);
    assert!(!release(&path, &mine.owner).expect("io"));
    assert_eq!(on_disk(&path), theirs);
    assert!(release(&path, "b").expect("io"));
    assert!(!path.exists());
    assert!(!release(&path, "b").expect("io"), "nothing left to release");
}

/// Runs `instances` threads that all try at once; how many won.
fn race(path: &Path, instances: usize, now: i64) -> usize {
    let barrier = Arc::new(Barrier::new(instances));
    let threads: Vec<_> = (0..instances)
        .map(|i| {
            let (path, barrier) = (path.to_path_buf(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                try_acquire(&path, &holder(&format!("t{i}")), now, LEASE)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("thread").expect("io"))
        .filter(|a| matches!(a, Attempt::Acquired(..)))
        .count()
}

#[test]
fn racing_instances_one_wins_a_free_lock() {
    for round in 0..20 {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = StateLayout::new(dir.path()).lock("a.test");
        assert_eq!(race(&path, 8, 1000), 1, "round {round}");
    }
}

#[test]
fn racing_instances_one_wins_a_stale_lock() {
    for round in 0..50 {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = StateLayout::new(dir.path()).lock("a.test");
        write_record(&path, &LockRecord::new(&holder("dead"), 1000, LEASE));
        assert_eq!(race(&path, 8, 2000), 1, "round {round}");
        let winner = on_disk(&path);
        assert!(winner.owner.starts_with('t'), "{winner:?}");
    }
}

#[test]
fn holders_of_one_process_have_distinct_owners() {
    let (a, b) = (Holder::this_process("test"), Holder::this_process("test"));
    assert_ne!(a.owner, b.owner);
    assert_eq!(a.pid, std::process::id());
    assert!(!a.host.is_empty());
}

#[test]
fn a_lease_that_ended_is_not_renewed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = StateLayout::new(dir.path()).lock("a.test");
    let Attempt::Acquired(mine, _) = try_acquire(&path, &holder("a"), 1000, LEASE).expect("io")
    else {
        panic!("acquire");
    };
    // Still ours on disk, but past its end: another may be taking it over.
    assert_eq!(renew(&path, &mine, 1060, LEASE).expect("io"), None);
    assert_eq!(on_disk(&path), mine, "left as it was");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_renewal_never_lands_on_the_lock_of_a_taker() {
    use std::io::{Seek as _, SeekFrom, Write as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = StateLayout::new(dir.path()).lock("a.test");
    let Attempt::Acquired(mine, _) = try_acquire(&path, &holder("a"), 1000, LEASE).expect("io")
    else {
        panic!("acquire");
    };
    // The holder's handle on its file (what renew writes through), then a
    // taker moves that file aside and creates its own.
    let mut late = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    let aside = path.with_extension("lock.stale.b");
    fs::rename(&path, &aside).expect("aside");
    let theirs = LockRecord::new(&holder("b"), 1061, LEASE);
    write_record(&path, &theirs);
    // The late write through the old handle reaches the moved file only.
    late.seek(SeekFrom::Start(0)).expect("seek");
    late.write_all(&serde_json::to_vec(&mine.renewed(1062, LEASE)).expect("json"))
        .expect("write");
    assert_eq!(on_disk(&path), theirs);
    // And a renewal that opens the path finds the taker's lock: lost.
    assert_eq!(renew(&path, &mine, 1062, LEASE).expect("io"), None);
    assert_eq!(on_disk(&path), theirs);
}

#[test]
fn a_shorter_renewal_leaves_no_old_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = StateLayout::new(dir.path()).lock("a.test");
    let Attempt::Acquired(mine, _) = try_acquire(&path, &holder("a"), 1000, LEASE).expect("io")
    else {
        panic!("acquire");
    };
    // A long holder label on disk, a shorter record renewing it.
    let long = LockRecord {
        holder: "x".repeat(200),
        ..mine.clone()
    };
    write_record(&path, &long);
    assert_eq!(renew(&path, &mine, 1010, LEASE).expect("io"), Some(1070));
    assert_eq!(on_disk(&path), mine.renewed(1010, LEASE));
}
