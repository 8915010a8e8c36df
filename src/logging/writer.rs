//! Where access-log lines are written: one writer per destination
//! (standard error, or one file however many listeners share it), each a
//! thread that appends what the proxy queues. The proxy never waits for a
//! disk: a line is handed over without blocking, and a full queue (a disk
//! far slower than the traffic) drops lines, counted and reported, rather
//! than slowing every request down.
//!
//! A file is opened with append (created mode 0640: logs name hosts and
//! paths, not for every local user) and reopened on SIGUSR1 ([`reopen_files`]),
//! so logrotate can rename it and have a fresh one started (README: Logs).
//! Each batch of queued lines goes out in one `write`, so lines from
//! several listeners never interleave. A failing write (disk full) is
//! logged once, and once more when writing works again, with the count of
//! lines lost; it never stops the proxy.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where a writer's lines go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Standard error, beside the event lines.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

impl Destination {
    /// `stderr` or the file's path, for log lines about the writer.
    pub fn describe(&self) -> String {
        match self {
            Destination::Stderr => "stderr".to_string(),
            Destination::File(path) => path.display().to_string(),
        }
    }
}

/// The writer of one destination; lines are queued with
/// [`AccessWriter::write`]. Its thread ends, after writing what is queued,
/// when the last handle is dropped.
#[derive(Debug)]
pub struct AccessWriter {
    destination: Destination,
    sender: SyncSender<Message>,
    state: Arc<WriterState>,
}

/// What the proxy and the writer's thread share.
#[derive(Debug, Default)]
struct WriterState {
    /// SIGUSR1 asked for the file to be opened again.
    reopen: AtomicBool,
    /// Lines dropped because the queue was full, not reported yet.
    dropped: AtomicU64,
}

#[derive(Debug)]
enum Message {
    Line(Vec<u8>),
    /// Wakes the thread for a reopen (the flag in [`WriterState`] is what
    /// counts, so a full queue loses no reopen).
    Reopen,
}

/// Lines queued at most per writer: at 300 bytes a line about 5 MiB, and
/// seconds of traffic at tens of thousands of requests a second.
const QUEUE_LINES: usize = 16 * 1024;

/// At most this much goes into one `write`.
const BATCH_BYTES: usize = 64 * 1024;

/// How often a file that could not be opened is tried again.
const RETRY_OPEN: Duration = Duration::from_secs(10);

/// How long [`finish`] waits for the writers to write what is queued.
pub const FINISH_LIMIT: Duration = Duration::from_secs(5);

/// Every writer by destination, so listeners sharing a file share its
/// writer (and SIGUSR1 finds them all). Process-wide, as the files and
/// standard error are.
static WRITERS: Mutex<Vec<(Destination, Weak<AccessWriter>)>> = Mutex::new(Vec::new());

/// The writers' threads, for [`finish`].
static THREADS: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// The writer of `destination`, started if none is running.
pub fn writer_for(destination: &Destination) -> Arc<AccessWriter> {
    let mut writers = lock(&WRITERS);
    writers.retain(|(_, writer)| writer.strong_count() > 0);
    let running = writers
        .iter()
        .filter(|(d, _)| d == destination)
        .find_map(|(_, writer)| writer.upgrade());
    if let Some(writer) = running {
        return writer;
    }
    let writer = Arc::new(AccessWriter::start(destination.clone()));
    writers.push((destination.clone(), Arc::downgrade(&writer)));
    writer
}

/// Asks every writer of a file to open it again (SIGUSR1, after logrotate
/// renamed it); returns how many were asked.
pub fn reopen_files() -> usize {
    let writers: Vec<Arc<AccessWriter>> = lock(&WRITERS)
        .iter()
        .filter_map(|(_, writer)| writer.upgrade())
        .filter(|writer| matches!(writer.destination, Destination::File(_)))
        .collect();
    for writer in &writers {
        writer.reopen();
    }
    writers.len()
}

/// Waits, at most `limit`, for the writers whose handles are all dropped
/// to write what they had queued (call it when the proxy has stopped, before
/// the process exits); returns whether all were done in time.
pub fn finish(limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let mut threads = lock(&THREADS);
        let (done, running): (Vec<_>, Vec<_>) =
            threads.drain(..).partition(JoinHandle::is_finished);
        *threads = running;
        drop(threads);
        for thread in done {
            let _ = thread.join();
        }
        if lock(&THREADS).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl AccessWriter {
    fn start(destination: Destination) -> Self {
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        let state = Arc::new(WriterState::default());
        let thread_state = state.clone();
        let thread_destination = destination.clone();
        // The file is opened by the thread too: no disk access on the
        // proxy's tasks.
        let started = std::thread::Builder::new()
            .name("sniwalk-access-log".into())
            .spawn(move || write_lines(receiver, Output::new(thread_destination), &thread_state));
        match started {
            Ok(thread) => {
                let mut threads = lock(&THREADS);
                // Finished threads need no joining: their handles go.
                threads.retain(|t| !t.is_finished());
                threads.push(thread);
            }
            // The receiver is gone with the closure: every line is then
            // dropped, and this says why.
            Err(e) => tracing::error!(
                file = %destination.describe(), error = %e,
                "cannot start the access log's writer thread; its lines are lost"
            ),
        }
        AccessWriter {
            destination,
            sender,
            state,
        }
    }

    /// Where the lines go.
    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// Queues one line (with its `\n`) without waiting; dropped and
    /// counted when the queue is full.
    pub fn write(&self, line: Vec<u8>) {
        if let Err(TrySendError::Full(_)) = self.sender.try_send(Message::Line(line)) {
            self.state.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks for the file to be opened again before the next write.
    pub fn reopen(&self) {
        self.state.reopen.store(true, Ordering::Relaxed);
        let _ = self.sender.try_send(Message::Reopen);
    }
}

/// The thread: takes what is queued (up to [`BATCH_BYTES`]), writes it in
/// one go, reports drops, until every handle is dropped and the queue is
/// empty.
fn write_lines(receiver: Receiver<Message>, mut output: Output, state: &WriterState) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    while let Ok(first) = receiver.recv() {
        batch.clear();
        let mut lines = 0u64;
        let mut take = |message: Message, batch: &mut Vec<u8>| {
            if let Message::Line(line) = message {
                batch.extend_from_slice(&line);
                lines += 1;
            }
        };
        take(first, &mut batch);
        while batch.len() < BATCH_BYTES {
            match receiver.try_recv() {
                Ok(message) => take(message, &mut batch),
                Err(_) => break,
            }
        }
        if state.reopen.swap(false, Ordering::Relaxed) {
            output.reopen();
        }
        if lines > 0 {
            output.write(&batch, lines);
        }
        let dropped = state.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                file = %output.destination.describe(), dropped,
                "access log lines dropped: the writer could not keep up with the traffic (a slow \
                 disk?); the proxy did not wait for it"
            );
        }
    }
}

/// A writer thread's destination, with what it knows of failures.
struct Output {
    destination: Destination,
    /// The open file (`None` for standard error, or while it cannot be
    /// opened).
    file: Option<File>,
    /// When opening the file was last tried.
    tried: Option<Instant>,
    /// Lines lost since writing started failing (`0`: it works).
    lost: u64,
}

impl Output {
    fn new(destination: Destination) -> Self {
        let mut output = Output {
            destination,
            file: None,
            tried: None,
            lost: 0,
        };
        if let Destination::File(path) = &output.destination {
            output.file = open_or_log(path, "cannot open the access log");
            output.tried = Some(Instant::now());
        }
        output
    }

    fn write(&mut self, batch: &[u8], lines: u64) {
        let written = match &self.destination {
            Destination::Stderr => io::stderr().lock().write_all(batch),
            Destination::File(path) => {
                if self.file.is_none() && self.tried.is_none_or(|t| t.elapsed() >= RETRY_OPEN) {
                    self.tried = Some(Instant::now());
                    self.file = open_append(path).ok();
                }
                match &mut self.file {
                    Some(file) => file.write_all(batch),
                    None => Err(io::Error::other("the file is not open")),
                }
            }
        };
        match written {
            Ok(()) if self.lost > 0 => {
                tracing::warn!(
                    file = %self.destination.describe(), lost = self.lost,
                    "access log written again; lines were lost meanwhile"
                );
                self.lost = 0;
            }
            Ok(()) => {}
            Err(e) => {
                if self.lost == 0 {
                    tracing::error!(
                        file = %self.destination.describe(), error = %e,
                        "cannot write the access log (disk full? permissions?); its lines are \
                         lost until writing works again, the proxy goes on"
                    );
                }
                self.lost += lines;
            }
        }
    }

    /// Opens the file again (SIGUSR1). Should that fail, the file open
    /// before keeps the lines.
    fn reopen(&mut self) {
        let Destination::File(path) = &self.destination else {
            return;
        };
        self.tried = Some(Instant::now());
        if let Some(file) = open_or_log(
            path,
            "cannot reopen the access log; lines go on to the file open before (fix the folder, \
             then send SIGUSR1 again)",
        ) {
            self.file = Some(file);
            tracing::info!(file = %path.display(), "access log reopened");
        }
    }
}

fn open_or_log(path: &Path, what: &str) -> Option<File> {
    match open_append(path) {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "{what}");
            None
        }
    }
}

/// Opens `path` for appending, created mode 0640 if missing (an existing
/// file keeps its mode: logrotate's `create` sets it).
fn open_append(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o640);
    }
    options.open(path)
}

/// A lock that a panic elsewhere does not poison for good: the lists stay
/// usable (they are only pushed to and filtered).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
