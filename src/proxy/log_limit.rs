//! One log line per period for events that can come in floods (requests
//! refused at a limit, requests with every backend down): the first at
//! once, then at most one per period, saying how many came meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};

/// Seconds between two lines of one kind.
const PERIOD_SECS: u64 = 10;

/// The state of one kind of rate-limited line.
#[derive(Debug, Default)]
pub struct LogLimit {
    /// Events not logged yet.
    unlogged: AtomicU64,
    /// When the last line was written (seconds on the Unix clock; 0:
    /// never).
    last_logged: AtomicU64,
}

impl LogLimit {
    /// Counts one event; `Some(n)` when a line is due now, `n` being the
    /// events since the last line (this one included).
    pub fn admit(&self) -> Option<u64> {
        let count = self.unlogged.fetch_add(1, Ordering::AcqRel) + 1;
        let now = crate::clock::unix_now().max(0) as u64;
        let last = self.last_logged.load(Ordering::Acquire);
        if last != 0 && now < last + PERIOD_SECS {
            return None;
        }
        self.last_logged
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        self.unlogged.fetch_sub(count, Ordering::AcqRel);
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_logged_and_the_next_ones_wait_for_the_period() {
        let limit = LogLimit::default();
        assert_eq!(limit.admit(), Some(1));
        assert_eq!(limit.admit(), None);
        assert_eq!(limit.admit(), None);
        // Pretend the last line is older than the period.
        limit.last_logged.store(1, Ordering::Release);
        assert_eq!(limit.admit(), Some(3), "the two held back and this one");
    }
}
