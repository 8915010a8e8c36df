//! Reuse and last good: a source unchanged since the previous snapshot
//! keeps its certificate without being read again, and a source that fails
//! to load keeps the previous certificate of the same file (last good),
//! unless the file was deleted.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::certificate::{LoadedCertificate, SourceKind, SourceStamp};
use super::model::Snapshot;
use super::report::{Place, Problem};
use crate::pem::ParsedPem;

/// A failed load: the message, and whether the file simply is not there.
pub(super) struct LoadError {
    pub(super) message: String,
    pub(super) not_found: bool,
}

/// What loading one source produced.
pub(super) enum Attempt {
    /// Read and parsed now.
    Parsed(ParsedPem, SourceStamp),
    /// Unchanged since the previous snapshot: its certificate, as it was.
    Reused(Arc<LoadedCertificate>),
    /// Could not be loaded.
    Failed(LoadError),
}

impl From<Result<(ParsedPem, SourceStamp), LoadError>> for Attempt {
    fn from(result: Result<(ParsedPem, SourceStamp), LoadError>) -> Self {
        match result {
            Ok((parsed, stamp)) => Attempt::Parsed(parsed, stamp),
            Err(e) => Attempt::Failed(e),
        }
    }
}

/// Which files changed since the previous snapshot, when the caller knows
/// (file events); `None` means "look at everything" (start, SIGHUP, rescan).
#[derive(Debug, Clone, Copy)]
pub struct Changes<'a>(pub Option<&'a HashSet<PathBuf>>);

impl Changes<'_> {
    /// Whether `path` may have changed: named by an event, or a
    /// Kubernetes-style `..something` entry changed beside it.
    pub(super) fn may_touch(&self, path: &Path) -> bool {
        let Some(changed) = self.0 else {
            return true;
        };
        changed.contains(path)
            || changed.iter().any(|c| {
                c.parent() == path.parent()
                    && c.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(".."))
            })
    }

    /// Whether anything inside (or the directory) `dir` may have changed.
    pub(super) fn may_touch_dir(&self, dir: &Path) -> bool {
        match self.0 {
            None => true,
            Some(changed) => changed
                .iter()
                .any(|c| c.starts_with(dir) || dir.starts_with(c)),
        }
    }
}

/// The previous certificate of `place`, if its source is unchanged.
pub(super) fn unchanged(
    previous: Option<&Snapshot>,
    place: &Place,
    kind: SourceKind,
    file: Option<&Path>,
    skip_check: bool,
    current: impl FnOnce() -> SourceStamp,
) -> Option<Arc<LoadedCertificate>> {
    let loaded = previous?.last_good(place, kind, file)?;
    if loaded.stamp == SourceStamp::Unknown {
        return None;
    }
    if skip_check || current() == loaded.stamp {
        Some(loaded)
    } else {
        None
    }
}

/// Turns a load attempt into the certificate to serve, recording problems:
/// on failure the previous snapshot's certificate for the same place and
/// file keeps serving (last good), unless the file is gone (deletion is
/// intent).
pub(super) fn settle(
    problems: &mut Vec<Problem>,
    place: &Place,
    previous: Option<&Snapshot>,
    kind: SourceKind,
    file: Option<PathBuf>,
    attempt: Attempt,
) -> Option<Arc<LoadedCertificate>> {
    match attempt {
        Attempt::Reused(loaded) => Some(loaded),
        Attempt::Parsed(parsed, stamp) => {
            let mut loaded = LoadedCertificate::from_parsed(parsed, kind, file);
            loaded.stamp = stamp;
            Some(Arc::new(loaded))
        }
        Attempt::Failed(error) => {
            let kept = if error.not_found {
                None
            } else {
                previous.and_then(|p| p.last_good(place, kind, file.as_deref()))
            };
            let mut message = error.message;
            if kept.is_some() {
                message.push_str("; the previous certificate keeps serving until this is fixed");
            } else {
                match place {
                    Place::Domain(_) => message.push_str(
                        "; until this is fixed the domain counts as having no certificate \
                         (names under it get the next certificate up the chain)",
                    ),
                    Place::Certdir(_) => message
                        .push_str("; until this is fixed the default certificate serves instead"),
                    Place::Backend(_) => message.push_str(
                        "; until this is fixed no client certificate is presented to the backend",
                    ),
                    Place::Default | Place::ClientCa(_) => {}
                }
            }
            problems.push(Problem::error(message));
            kept
        }
    }
}

impl Snapshot {
    /// The certificate that served `place` from the same source, if any.
    fn last_good(
        &self,
        place: &Place,
        kind: SourceKind,
        file: Option<&Path>,
    ) -> Option<Arc<LoadedCertificate>> {
        self.report_index
            .get(place)
            .and_then(|&i| self.reports[i].loaded.clone())
            .filter(|l| l.kind == kind && l.file.as_deref() == file)
    }
}
