//! Writers on real files: sharing, appending, reopening, finishing, and a
//! disk that is full.

use std::time::Duration;

use super::*;

/// Waits (up to 10 s) until `path` holds `expected`.
fn wait_for(path: &Path, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {text:?}, not {expected:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn one_writer_per_file_appending_whole_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    std::fs::write(&path, "kept\n").expect("an existing log");
    let destination = Destination::File(path.clone());
    let first = writer_for(&destination);
    let second = writer_for(&destination);
    assert!(
        Arc::ptr_eq(&first, &second),
        "listeners share the file's writer"
    );
    first.write(b"one\n".to_vec());
    second.write(b"two\n".to_vec());
    wait_for(&path, "kept\none\ntwo\n");
    let other = writer_for(&Destination::File(dir.path().join("other.log")));
    assert!(!Arc::ptr_eq(&first, &other));
}

#[cfg(unix)]
#[test]
fn a_new_file_is_not_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.log");
    let writer = writer_for(&Destination::File(path.clone()));
    writer.write(b"x\n".to_vec());
    wait_for(&path, "x\n");
    let mode = std::fs::metadata(&path)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o007, 0, "nothing for others: {mode:o}");
    assert_eq!(mode & 0o600, 0o600, "the owner reads and writes: {mode:o}");
}

#[test]
fn reopening_starts_a_fresh_file_after_a_rename() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let writer = writer_for(&Destination::File(path.clone()));
    writer.write(b"before\n".to_vec());
    wait_for(&path, "before\n");
    std::fs::rename(&path, &rotated).expect("logrotate renames");
    assert!(reopen_files() >= 1, "the writer is found");
    writer.write(b"after\n".to_vec());
    wait_for(&path, "after\n");
    wait_for(&rotated, "before\n");
}

#[test]
fn finish_waits_for_the_queued_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("last.log");
    let writer = writer_for(&Destination::File(path.clone()));
    for i in 0..1000 {
        writer.write(format!("line {i}\n").into_bytes());
    }
    drop(writer);
    assert!(
        finish(FINISH_LIMIT),
        "the writer ends once its handles are gone"
    );
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.lines().count(), 1000);
    assert_eq!(text.lines().last(), Some("line 999"));
}

/// `/dev/full` fails every write with ENOSPC, as a full disk does: the
/// lines are counted as lost, and once writing works again the count
/// starts over.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_loses_lines_and_counts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut output = Output::new(Destination::File("/dev/full".into()));
    assert!(output.file.is_some(), "/dev/full opens");
    output.write(b"a\nb\n", 2);
    output.write(b"c\n", 1);
    assert_eq!(output.lost, 3);
    let good = dir.path().join("good.log");
    output.file = Some(open_append(&good).expect("open"));
    output.write(b"d\n", 1);
    assert_eq!(output.lost, 0, "written again");
    assert_eq!(std::fs::read_to_string(&good).expect("read"), "d\n");
}

#[test]
fn a_file_that_cannot_be_opened_loses_lines_without_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gone").join("access.log");
    let mut output = Output::new(Destination::File(path.clone()));
    assert!(output.file.is_none());
    output.write(b"a\n", 1);
    assert_eq!(output.lost, 1);
    // The folder comes back: SIGUSR1 opens the file.
    std::fs::create_dir(dir.path().join("gone")).expect("folder");
    output.reopen();
    output.write(b"b\n", 1);
    assert_eq!(output.lost, 0);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "b\n");
}
