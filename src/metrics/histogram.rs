//! The duration histogram of requests and backends: atomic buckets, no
//! lock per observation. A leaf of `metrics` (no `use` of the crate), so
//! that a backend's state (`balance/state.rs`) can hold one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Duration bucket bounds: 0.5 ms doubling to 32.768 s.
pub(super) const DURATION_BUCKETS: usize = 17;
pub(super) const DURATION_BOUNDS_NS: [u64; DURATION_BUCKETS] = {
    let mut bounds = [0; DURATION_BUCKETS];
    let mut i = 0;
    while i < DURATION_BUCKETS {
        bounds[i] = 500_000 << i;
        i += 1;
    }
    bounds
};

/// A duration histogram with atomic buckets: prometheus-client's
/// `Histogram` takes a mutex per observation, which every request of a
/// listener (or of a backend) would contend on.
///
/// Buckets double from 0.5 ms to 32.768 s (17 bounds plus `+Inf`). The sum
/// is kept in nanoseconds, so an observation is two `fetch_add`s and no
/// compare-and-swap loop on an `f64`. A scrape reads the atomics one by
/// one: it may see an observation in a bucket and not yet in the sum,
/// which Prometheus's rate functions shrug off. The count is the sum of the
/// buckets, so `_count` always equals the `+Inf` bucket.
#[derive(Debug, Clone, Default)]
pub struct DurationHistogram {
    pub(super) inner: Arc<HistogramCells>,
}

#[derive(Debug, Default)]
pub(super) struct HistogramCells {
    /// One cell per bound in [`DURATION_BOUNDS_NS`], then `+Inf`.
    pub(super) buckets: [AtomicU64; DURATION_BUCKETS + 1],
    pub(super) sum_ns: AtomicU64,
}

impl DurationHistogram {
    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let bucket = DURATION_BOUNDS_NS
            .iter()
            .position(|&bound| ns <= bound)
            .unwrap_or(DURATION_BUCKETS);
        self.inner.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.inner.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Adds what `other` recorded to this one: the series of two backend
    /// states that show under the same labels are rendered as one.
    pub(super) fn absorb(&self, other: &DurationHistogram) {
        for (mine, theirs) in self.inner.buckets.iter().zip(&other.inner.buckets) {
            mine.fetch_add(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        let sum = other.inner.sum_ns.load(Ordering::Relaxed);
        self.inner.sum_ns.fetch_add(sum, Ordering::Relaxed);
    }

    /// How many durations were recorded.
    #[cfg(test)]
    pub(super) fn count(&self) -> u64 {
        self.inner
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0, 0); DURATION_BUCKETS + 1];
        for (i, (bound, count)) in buckets.iter_mut().enumerate() {
            *bound = DURATION_BOUNDS_NS
                .get(i)
                .map_or(f64::INFINITY, |&ns| ns as f64 / 1e9);
            *count = self.inner.buckets[i].load(Ordering::Relaxed);
        }
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = self.inner.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}
