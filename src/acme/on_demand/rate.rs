//! The order budget of `acme.on_demand`: a token bucket holding up to
//! `burst` orders and refilled at `rate`. Pure: the caller gives the time.

use std::time::{Duration, Instant};

use crate::config::Rate;

/// A token bucket: full at first, one token per order.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    burst: u32,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate`.
    pub fn new(rate: Rate, burst: u32, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes new settings (a reload): the tokens left stay, up to the new
    /// burst, so a reload never hands out a fresh burst.
    pub fn retune(&mut self, rate: Rate, burst: u32, now: Instant) {
        if self.rate == rate && self.burst == burst {
            return;
        }
        self.refill(now);
        self.rate = rate;
        self.burst = burst;
        self.tokens = self.tokens.min(f64::from(burst));
    }

    /// Whether a token is there at `now`, without taking it.
    pub fn has_token(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    /// Takes a token if there is one at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        let per_token = self.rate.per.as_secs_f64() / f64::from(self.rate.count);
        self.tokens = (self.tokens + elapsed.as_secs_f64() / per_token).min(f64::from(self.burst));
    }

    /// How long until the next token, at `now` (for the log line of a
    /// refusal).
    pub fn next_token_in(&self, now: Instant) -> Duration {
        let per_token = self.rate.per.as_secs_f64() / f64::from(self.rate.count);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        let missing = (1.0 - self.tokens - elapsed / per_token).max(0.0);
        Duration::from_secs_f64(missing * per_token)
    }
}
