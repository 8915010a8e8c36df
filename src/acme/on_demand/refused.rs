//! Names refused on demand (by `ask`, over the rate, by the pre-flight or
//! by a failed order), remembered for `acme.on_demand.refused_for` so that
//! neither the `ask` endpoint nor the CA hears of them again meanwhile.
//! Bounded: a flood of random names cannot grow it past [`MAX_REFUSED`].

use std::collections::HashMap;
use std::time::Instant;

/// Most names remembered; past it, expired ones are dropped, then the
/// whole memory if that left less than a tenth free (a flood of random
/// names, which would only be refused again): a full scan happens at most
/// once per `MAX_REFUSED / 10` names refused.
pub const MAX_REFUSED: usize = 100_000;

/// Refused names and until when.
#[derive(Debug, Default)]
pub struct RefusedNames {
    until: HashMap<String, Instant>,
}

impl RefusedNames {
    /// Whether `name` is refused at `now`.
    pub fn is_refused(&self, name: &str, now: Instant) -> bool {
        self.until.get(name).is_some_and(|until| *until > now)
    }

    /// Refuses `name` until `until`.
    pub fn refuse(&mut self, name: &str, until: Instant, now: Instant) {
        if self.until.len() >= MAX_REFUSED && !self.until.contains_key(name) {
            self.until.retain(|_, t| *t > now);
            if self.until.len() >= MAX_REFUSED - MAX_REFUSED / 10 {
                tracing::warn!(
                    names = self.until.len(),
                    "acme.on_demand: {MAX_REFUSED} refused names remembered; forgetting them all \
                     (a flood of unknown names?)"
                );
                self.until.clear();
            }
        }
        self.until.insert(name.to_string(), until);
    }

    /// How many names are remembered.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}
