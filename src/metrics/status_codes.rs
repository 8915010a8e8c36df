//! Requests by status code: `sniwalk_http_requests_total{listener, class,
//! code}`. A leaf of `metrics`.
//!
//! A request adds one to a per-listener array of atomics indexed by its
//! status (one relaxed `fetch_add`, no lookup, no lock); the series are made
//! at render time, only for the codes seen, and the class of each is derived
//! from its code there. A family of counters keyed by code would take a lock
//! per request (`Family::get_or_create`), which the hot-path rule of
//! `metrics.rs` forbids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// The statuses with a cell of their own: what hyper's `StatusCode` can
/// hold (RFC 9110 §15 defines three digits; hyper relays 600–999 from a
/// backend as they are).
const FIRST_CODE: u16 = 100;
const LAST_CODE: u16 = 999;
/// One cell per code, then one for anything else.
const CELLS: usize = (LAST_CODE - FIRST_CODE) as usize + 2;
const OTHER_CELL: usize = CELLS - 1;

/// The `class` label values of requests.
pub(super) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One listener's requests by status.
#[derive(Debug)]
pub(super) struct StatusCounts {
    listener: String,
    cells: Box<[AtomicU64]>,
}

impl StatusCounts {
    /// Counts for `listener`, all at zero.
    pub(super) fn new(listener: &str) -> Self {
        StatusCounts {
            listener: listener.to_owned(),
            cells: (0..CELLS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts one answered request with `status`.
    pub(super) fn count(&self, status: u16) {
        self.cells[cell_index(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// The requests counted with `status` (a code outside 100–999 counts
    /// in one cell for them all).
    #[cfg(test)]
    pub(super) fn get(&self, status: u16) -> u64 {
        self.cells[cell_index(status)].load(Ordering::Relaxed)
    }
}

/// The family as rendered: every `https` and `http` listener's counts.
/// Clones share the list (an `Arc`), like prometheus-client's `Family`.
#[derive(Debug, Clone, Default)]
pub(super) struct StatusCodeFamily {
    listeners: Arc<RwLock<Vec<Arc<StatusCounts>>>>,
}

impl StatusCodeFamily {
    /// The counts of the listener named `listener`, made (at zero) the
    /// first time it is asked for: once per listener start, never per
    /// request.
    pub(super) fn listener(&self, listener: &str) -> Arc<StatusCounts> {
        let mut listeners = match self.listeners.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(known) = listeners.iter().find(|c| c.listener == listener) {
            return known.clone();
        }
        let made = Arc::new(StatusCounts::new(listener));
        listeners.push(made.clone());
        made
    }
}

impl TypedMetric for StatusCodeFamily {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for StatusCodeFamily {
    /// One series per listener and code seen. A class that has seen no
    /// code yet shows as one series without `code`, at zero, so that sums
    /// and ratios by class read 0 rather than nothing before its first
    /// request (an empty label and a missing one are the same series to
    /// Prometheus); it is gone once a code of that class is counted.
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let listeners = match self.listeners.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        for counts in listeners.iter() {
            let listener = counts.listener.as_str();
            let mut class_seen = [false; STATUS_CLASSES.len()];
            let mut seen = Vec::new();
            for (index, cell) in counts.cells.iter().enumerate() {
                let value = cell.load(Ordering::Relaxed);
                if value == 0 {
                    continue;
                }
                let (class, code) = cell_labels(index);
                class_seen[class] = true;
                seen.push((class, code, value));
            }
            for (class, seen) in class_seen.iter().enumerate() {
                if !seen {
                    let labels = [("listener", listener), ("class", STATUS_CLASSES[class])];
                    encoder
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&0u64, None)?;
                }
            }
            for (class, code, value) in seen {
                let labels = [
                    ("listener", listener),
                    ("class", STATUS_CLASSES[class]),
                    ("code", code.as_str()),
                ];
                encoder
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Where a status's count sits.
fn cell_index(status: u16) -> usize {
    if (FIRST_CODE..=LAST_CODE).contains(&status) {
        usize::from(status - FIRST_CODE)
    } else {
        OTHER_CELL
    }
}

/// The class (an index into [`STATUS_CLASSES`]) and the `code` label of
/// cell `index`. A backend's 600–999, and anything outside 100–999 (`code`
/// `other`), count with the server errors.
fn cell_labels(index: usize) -> (usize, String) {
    if index == OTHER_CELL {
        return (STATUS_CLASSES.len() - 1, "other".to_owned());
    }
    let status = FIRST_CODE as usize + index;
    (status_class_index(status), status.to_string())
}

/// Where a status's class sits in [`STATUS_CLASSES`].
pub(super) fn status_class_index(status: usize) -> usize {
    (status / 100).clamp(1, STATUS_CLASSES.len()) - 1
}
