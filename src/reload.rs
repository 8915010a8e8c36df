//! The reload task: the only writer of the `ArcSwap<Snapshot>`.
//!
//! Invariants (README, "Changing certificates and configuration while
//! running"):
//! 1. Only this task calls `store()`; everything else sends it a
//!    [`Reload`] message (file watcher, SIGHUP, the periodic re-scan, later
//!    ACME and the admin API).
//! 2. A snapshot is built off the async threads from the configuration and
//!    the previous snapshot, which supplies last-good certificates and lets
//!    unchanged sources be reused without reading them.
//! 3. Nothing is closed by a reload: connections keep what they have; the
//!    listeners' rustls configurations are never rebuilt.
//!
//! The watcher watches *directories* (the configuration's, every certdir,
//! the folders of certificate files, the default certificate and
//! `state_dir`), because editors and Kubernetes replace files by renaming,
//! which a watch on the file itself does not survive. Events for files that
//! are no source (editor swap files, logs) are ignored.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify::event::{AccessKind, AccessMode, EventKind};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

use crate::config::{CertificateSource, Config, ListenerConfig};
use crate::metrics::Metrics;
use crate::snapshot::SnapshotWriter;
use crate::snapshot::{Changes, DefaultPolicy, Snapshot, SnapshotError, store_generated_default};
pub use changes::log_sources;
use changes::{differences, log_change};

/// How long file events are collected before a rebuild: editors and
/// `kubectl` write several files in a burst.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// What to reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Everything: the configuration file and every source (re-scan,
    /// the admin API).
    All,
    /// Everything, as [`Reload::All`], asked for by SIGHUP: once it is
    /// applied or refused, the service manager hears `READY=1` and how it
    /// went ([`crate::service::reloaded`]; the SIGHUP handler has sent
    /// `RELOADING=1`).
    Hangup,
    /// These files changed (file events).
    Files(Vec<PathBuf>),
    /// This domain's certificate changed (ACME results, imports): its
    /// certificate file or stored certificate is re-read.
    Domain(String),
}

/// Sends reload messages to the reload task.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    tx: mpsc::UnboundedSender<Reload>,
}

impl ReloadHandle {
    /// Asks for a reload; a no-op once the proxy has stopped.
    pub fn send(&self, reload: Reload) {
        let _ = self.tx.send(reload);
    }
}

/// The receiving end, handed to [`crate::run_with`]. It keeps a sender
/// only to make more handles ([`ReloadReceiver::handle`]);
/// [`ReloadTask::new`] drops it, so the channel closes once every handle
/// is gone (the file watcher has a channel of its own).
#[derive(Debug)]
pub struct ReloadReceiver {
    rx: mpsc::UnboundedReceiver<Reload>,
    tx: mpsc::UnboundedSender<Reload>,
}

impl ReloadReceiver {
    /// Another handle to send to this receiver.
    pub fn handle(&self) -> ReloadHandle {
        ReloadHandle {
            tx: self.tx.clone(),
        }
    }
}

/// A new reload channel.
pub fn channel() -> (ReloadHandle, ReloadReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (ReloadHandle { tx: tx.clone() }, ReloadReceiver { rx, tx })
}

/// The sources a configuration reads, for the watcher and its filter.
#[derive(Debug, Default, PartialEq, Eq)]
struct WatchSet {
    config_file: PathBuf,
    /// Certificate files (domains, default, stored ACME results).
    files: HashSet<PathBuf>,
    /// Certdirs and folders whose every entry is a source.
    dirs: HashSet<PathBuf>,
    /// The folder of every source, whether it exists or not.
    folders: HashSet<PathBuf>,
}

impl WatchSet {
    fn of(config: &Config) -> Self {
        let mut set = WatchSet {
            config_file: config.file.clone(),
            ..WatchSet::default()
        };
        for domain in &config.domains {
            if let CertificateSource::File(path) = &domain.certificate {
                set.files.insert(path.clone());
            }
        }
        if let Some(path) = &config.default_certificate {
            set.files.insert(path.clone());
        }
        let state = config.state_layout();
        set.files.insert(state.generated_default());
        if let Some(path) = &config.ticket_keys_file {
            set.files.insert(path.clone());
        }
        // Domains added through the admin API: part of the configuration.
        set.files.insert(state.domain_store());
        // Backends drained through the admin API, likewise (another
        // instance on this state directory may drain one).
        set.files.insert(crate::config::DrainStore::path(&state));
        set.dirs.insert(state.certificates_dir());
        for listener in &config.listeners {
            if let Some(dir) = &listener.certdir {
                set.dirs.insert(dir.clone());
            }
            if let Some(auth) = &listener.client_auth {
                set.files.insert(auth.ca_file.clone());
            }
        }
        for tls in config.backend_tls() {
            set.files.extend(tls.ca_file.iter().cloned());
            set.files.extend(tls.client_certificate.iter().cloned());
        }
        let parent = |file: &Path| file.parent().unwrap_or(Path::new(".")).to_path_buf();
        set.folders.insert(parent(&set.config_file));
        set.folders.extend(set.files.iter().map(|f| parent(f)));
        set.folders.extend(set.dirs.iter().cloned());
        set
    }

    /// The directories to watch: each source's folder, or its nearest
    /// existing ancestor while it does not exist yet.
    fn directories(&self) -> HashSet<PathBuf> {
        let mut out = HashSet::new();
        for folder in &self.folders {
            let mut dir = folder.clone();
            loop {
                if dir.is_dir() {
                    out.insert(dir);
                    break;
                }
                match dir.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => dir = parent.to_path_buf(),
                    _ => break,
                }
            }
        }
        out
    }

    /// Whether an event on `path` may have moved what must be watched: a
    /// source's folder (or an ancestor of one) made, removed or renamed.
    fn concerns_a_folder(&self, path: &Path) -> bool {
        self.folders.iter().any(|folder| folder.starts_with(path))
    }

    /// Whether an event on `path` concerns a source.
    fn is_source(&self, path: &Path) -> bool {
        if path == self.config_file || self.files.contains(path) {
            return true;
        }
        if self
            .dirs
            .iter()
            .any(|d| path.starts_with(d) || d.starts_with(path))
        {
            return true;
        }
        // Kubernetes swaps `..data` beside the files that link into it.
        let beside_a_file = self
            .files
            .iter()
            .chain(std::iter::once(&self.config_file))
            .any(|f| f.parent() == path.parent());
        beside_a_file
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".."))
    }
}

/// The reload task's state.
pub struct ReloadTask {
    config: Config,
    /// The one writer of the snapshot (see `snapshot::store`).
    store: SnapshotWriter,
    /// Reloads asked for through [`ReloadHandle`]s (SIGHUP, ACME, the
    /// admin API); `None` once every handle is gone.
    requests: Option<mpsc::UnboundedReceiver<Reload>>,
    /// Changed files, from the file watcher.
    file_events: mpsc::UnboundedReceiver<Vec<PathBuf>>,
    /// Given to the file watcher (kept, so `file_events` stays open).
    file_events_tx: mpsc::UnboundedSender<Vec<PathBuf>>,
    watch: WatchSet,
    watcher: Option<Debouncer<notify::RecommendedWatcher, RecommendedCache>>,
    watched: HashSet<PathBuf>,
    rescan: Duration,
    published: Option<tokio::sync::watch::Sender<std::sync::Arc<Config>>>,
    tickets: Option<(PathBuf, std::sync::Arc<crate::tickets::SharedTicketer>)>,
    metrics: Option<Arc<Metrics>>,
}

impl ReloadTask {
    /// A task for the running `config` and its current snapshot; it takes
    /// the one [`SnapshotWriter`].
    pub fn new(config: Config, store: SnapshotWriter, receiver: ReloadReceiver) -> Self {
        // The receiver's own sender goes: only handles keep requests open.
        let ReloadReceiver { rx, tx: _ } = receiver;
        let (file_events_tx, file_events) = mpsc::unbounded_channel();
        ReloadTask {
            rescan: config.rescan_interval,
            watch: WatchSet::of(&config),
            config,
            store,
            requests: Some(rx),
            file_events,
            file_events_tx,
            watcher: None,
            watched: HashSet::new(),
            published: None,
            tickets: None,
            metrics: None,
        }
    }

    /// Also re-reads the shared session ticket keys when their file
    /// changes.
    pub fn with_tickets(
        mut self,
        tickets: Option<(PathBuf, std::sync::Arc<crate::tickets::SharedTicketer>)>,
    ) -> Self {
        self.tickets = tickets;
        self
    }

    /// Also publishes every configuration that is applied (for the ACME
    /// task, which follows domain and `acme:` changes). It is published as
    /// the file has it, listeners that wait for a restart included: the ACME
    /// task knows what is bound, and names what a restart would bind.
    pub fn publish_config(
        mut self,
        sender: tokio::sync::watch::Sender<std::sync::Arc<Config>>,
    ) -> Self {
        self.published = Some(sender);
        self
    }

    /// Also counts every reload in `sniwalk_reloads_total`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Runs until `stop` is cancelled. When every [`ReloadHandle`] is
    /// gone, file events and the periodic re-scan still reload.
    pub async fn run(mut self, stop: tokio_util::sync::CancellationToken) {
        self.start_watcher();
        let mut rescan = tokio::time::interval(self.rescan);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        rescan.tick().await;
        loop {
            let first = tokio::select! {
                message = next_request(&mut self.requests) => match message {
                    Some(message) => message,
                    None => {
                        tracing::debug!("no reload handles left; file events and the re-scan still reload");
                        self.requests = None;
                        continue;
                    }
                },
                Some(paths) = self.file_events.recv() => Reload::Files(paths),
                _ = rescan.tick() => Reload::All,
                () = stop.cancelled() => return,
            };
            // Coalesce whatever else is already queued into one rebuild.
            let mut all = false;
            let mut hangup = false;
            let mut files: HashSet<PathBuf> = HashSet::new();
            let mut next = Some(first);
            while let Some(message) = next {
                match message {
                    Reload::All => all = true,
                    Reload::Hangup => {
                        all = true;
                        hangup = true;
                    }
                    Reload::Files(paths) => files.extend(paths),
                    Reload::Domain(name) => files.extend(self.domain_sources(&name)),
                }
                next = self
                    .requests
                    .as_mut()
                    .and_then(|requests| requests.try_recv().ok())
                    .or_else(|| self.file_events.try_recv().ok().map(Reload::Files));
            }
            // A removed directory takes its watch with it, and one made
            // (again) needs a watch of its own: re-watch, and re-read
            // everything, since what appeared in it meanwhile sent no event.
            if files
                .iter()
                .any(|path| self.watched.contains(path) || self.watch.concerns_a_folder(path))
            {
                for path in &files {
                    self.watched.remove(path);
                }
                self.update_watches();
                all = true;
            }
            files.retain(|path| {
                let source = self.watch.is_source(path);
                tracing::debug!(path = %path.display(), source, "file event");
                source
            });
            if all || !files.is_empty() {
                let outcome = self.reload(all, files).await;
                if hangup {
                    crate::service::reloaded(outcome.as_ref().copied().map_err(String::as_str));
                }
            }
        }
    }

    async fn reload(&mut self, all: bool, files: HashSet<PathBuf>) -> Result<(), String> {
        let outcome = self.rebuild(all, files).await;
        if let Some(metrics) = &self.metrics {
            metrics.reload(outcome.is_ok());
        }
        outcome
    }

    /// Re-reads the configuration (if asked) and rebuilds the snapshot;
    /// `Err` says why the configuration file or the rebuild failed (the
    /// running ones stay).
    async fn rebuild(&mut self, all: bool, files: HashSet<PathBuf>) -> Result<(), String> {
        if let Some((path, ticketer)) = &self.tickets
            && (all || files.contains(path))
        {
            match ticketer.reload(path) {
                Ok(Some(keys)) => {
                    tracing::info!(file = %path.display(), keys, "session ticket keys reloaded")
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(file = %path.display(), "{e}; the running ticket keys stay")
                }
            }
        }
        let mut config_loaded = Ok(());
        let config_changed = all
            || files.contains(&self.config.file)
            || files.contains(&self.config.state_layout().domain_store())
            || files.contains(&crate::config::DrainStore::path(
                &self.config.state_layout(),
            ));
        if config_changed {
            match Config::load(&self.config.file) {
                Ok(new) => {
                    let merged = keep_listeners(&self.config, new.clone());
                    if merged.domains != self.config.domains
                        || merged.listeners != self.config.listeners
                    {
                        tracing::info!(file = %self.config.file.display(), "configuration changed");
                    }
                    self.config = merged;
                    if let Some(published) = &self.published {
                        let acme_changed = {
                            let before = published.borrow();
                            before.domains != new.domains
                                || before.acme != new.acme
                                || before.listeners != new.listeners
                        };
                        if acme_changed {
                            published.send_replace(std::sync::Arc::new(new));
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(
                        file = %self.config.file.display(),
                        "{e}; keeping the running configuration until the file is fixed"
                    );
                    config_loaded = Err(e.to_string());
                }
            }
            let watch = WatchSet::of(&self.config);
            if watch != self.watch {
                self.watch = watch;
                self.update_watches();
            }
        }
        let previous = Arc::clone(&self.store.load());
        let config = self.config.clone();
        let changes = if all || config_changed {
            None
        } else {
            Some(files)
        };
        let built = tokio::task::spawn_blocking(move || {
            let next = build_snapshot(
                &config,
                Some(&previous),
                Changes(changes.as_ref()),
                crate::clock::unix_now(),
            );
            (previous, next)
        })
        .await;
        let (previous, next) = match built {
            Ok((previous, Ok(next))) => (previous, next),
            Ok((_, Err(e))) => {
                tracing::error!("reload failed: {e}; the running certificates stay");
                return Err(e.to_string());
            }
            Err(e) => {
                tracing::error!("reload task failed: {e}; the running certificates stay");
                return Err(e.to_string());
            }
        };
        let found = differences(&previous, &next);
        found.iter().for_each(log_change);
        let publish = !found.is_empty() || config_changed;
        drop(found);
        if publish {
            self.store.publish(Arc::new(next));
        }
        config_loaded
    }

    fn start_watcher(&mut self) {
        let tx = self.file_events_tx.clone();
        let handler = move |result: DebounceEventResult| match result {
            Ok(events) => {
                // Opening or reading a file changes nothing; counting it
                // would make every reload (which opens what it reads)
                // cause the next one, forever. A finished write counts.
                let paths: Vec<PathBuf> = events
                    .into_iter()
                    .filter(|event| match event.event.kind {
                        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                        EventKind::Access(_) => false,
                        _ => true,
                    })
                    .flat_map(|event| event.event.paths)
                    .collect();
                if !paths.is_empty() {
                    let _ = tx.send(paths);
                }
            }
            Err(errors) => {
                for error in errors {
                    tracing::warn!(error = %error, "file watcher error; the periodic re-scan still runs");
                }
            }
        };
        match new_debouncer(DEBOUNCE, None, handler) {
            Ok(debouncer) => {
                self.watcher = Some(debouncer);
                self.update_watches();
            }
            Err(e) => tracing::warn!(
                error = %e,
                rescan_secs = self.rescan.as_secs(),
                "cannot watch files; changes are picked up by the periodic re-scan and SIGHUP only"
            ),
        }
    }

    fn update_watches(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let wanted = self.watch.directories();
        for gone in self.watched.difference(&wanted) {
            let _ = watcher.unwatch(gone);
        }
        for dir in wanted.difference(&self.watched) {
            if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory; the periodic re-scan covers it");
            }
        }
        self.watched = wanted;
    }

    /// The files a domain's certificate is read from.
    fn domain_sources(&self, name: &str) -> Vec<PathBuf> {
        let Some(domain) = self.config.domains.iter().find(|d| d.name == name) else {
            tracing::warn!(
                domain = name,
                "reload asked for a domain that is not configured"
            );
            return Vec::new();
        };
        match &domain.certificate {
            CertificateSource::File(path) => vec![path.clone()],
            CertificateSource::Inline(_) => Vec::new(),
            CertificateSource::None => vec![self.config.state_layout().stored_certificate(name)],
        }
    }

    /// Whether a file event concerns a source (used to drop the rest).
    pub fn is_source(&self, path: &Path) -> bool {
        self.watch.is_source(path)
    }
}

/// The new configuration with the running listeners' binds: a listener's
/// socket cannot change without a restart, so a changed bind, an added or a
/// removed listener is logged and the running set kept; everything else
/// (routes, backends, limits, certdirs) of listeners that stay is applied.
fn keep_listeners(running: &Config, mut new: Config) -> Config {
    let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(running.listeners.len());
    for old in &running.listeners {
        match new
            .listeners
            .iter()
            .find(|l| l.name == old.name && l.kind == old.kind)
        {
            Some(updated) => {
                if updated.bind != old.bind {
                    tracing::warn!(
                        listener = %old.name, running = %old.bind, configured = %updated.bind,
                        "a listener's bind cannot change without a restart; keeping the running bind"
                    );
                }
                let mut kept = updated.clone();
                kept.bind = old.bind;
                listeners.push(kept);
            }
            None => {
                tracing::warn!(
                    listener = %old.name,
                    "listener removed or its kind changed in the configuration; it keeps running until a restart"
                );
                listeners.push(old.clone());
            }
        }
    }
    for added in new
        .listeners
        .iter()
        .filter(|l| !running.listeners.iter().any(|o| o.name == l.name))
    {
        tracing::warn!(listener = %added.name, bind = %added.bind, "new listener needs a restart to be bound");
    }
    new.listeners = listeners;
    new.worker_threads = running.worker_threads;
    if new.admin != running.admin {
        tracing::warn!(
            "the admin listener's settings change with a restart; keeping the running ones"
        );
        new.admin = running.admin.clone();
    }
    // The storage's connection, followers and locks are made at start.
    if new.storage != running.storage || new.ticket_rotation != running.ticket_rotation {
        tracing::warn!(
            "storage: and tls.ticket_rotation change with a restart; keeping the running ones"
        );
        new.storage = running.storage.clone();
        new.ticket_rotation = running.ticket_rotation;
    }
    new
}

/// The next reload request, or never once the requests have ended.
async fn next_request(requests: &mut Option<mpsc::UnboundedReceiver<Reload>>) -> Option<Reload> {
    match requests {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Builds the snapshot `run` serves: first the generated default is
/// stored in `state_dir` when the configuration relies on it (building a
/// snapshot never writes), then every source is loaded
/// ([`Snapshot::build_changed`]).
pub fn build_snapshot(
    config: &Config,
    previous: Option<&Snapshot>,
    changes: Changes<'_>,
    now: i64,
) -> Result<Snapshot, SnapshotError> {
    if let Err(e) = store_generated_default(config, now) {
        tracing::warn!(
            file = %config.state_layout().generated_default().display(),
            "{e}; it is kept in memory only"
        );
    }
    Snapshot::build_changed(config, previous, changes, DefaultPolicy::Persist, now)
}

mod changes;
#[cfg(test)]
mod tests;
