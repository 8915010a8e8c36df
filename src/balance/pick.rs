//! Choosing one backend of a group: pure functions of the candidates.
//!
//! A candidate that is down or draining is simply not eligible; every
//! function here returns `None` when no candidate is, and the caller
//! answers that (503) itself.

use std::hash::BuildHasher;

/// What a choice needs to know of one backend of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Its configured weight, 1 to 256.
    pub weight: u32,
    /// Requests and tunnels it carries now.
    pub in_flight: usize,
    /// Whether it may take a new session: up and not draining.
    pub eligible: bool,
}

/// Smooth weighted round robin, as nginx does it: each choice adds every
/// eligible candidate's weight to its running score, takes the highest
/// score and lowers that one by the sum of the weights. Weights 5, 1, 1
/// give `a a b a c a a`: each candidate gets its share, spread out rather
/// than in runs.
#[derive(Debug, Clone, Default)]
pub struct SmoothRoundRobin {
    scores: Vec<i64>,
}

impl SmoothRoundRobin {
    /// The next candidate, or `None` when none is eligible.
    pub fn pick(&mut self, candidates: &[Candidate]) -> Option<usize> {
        // A group whose size changed (a reload) starts over.
        if self.scores.len() != candidates.len() {
            self.scores = vec![0; candidates.len()];
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (index, candidate) in candidates.iter().enumerate() {
            if !candidate.eligible {
                continue;
            }
            let weight = i64::from(candidate.weight.max(1));
            self.scores[index] += weight;
            total += weight;
            if best.is_none_or(|b| self.scores[index] > self.scores[b]) {
                best = Some(index);
            }
        }
        let chosen = best?;
        self.scores[chosen] -= total;
        Some(chosen)
    }
}

/// The eligible candidate with the fewest sessions for its weight
/// (`in_flight ÷ weight`, compared without division); among equals, the
/// first at or after `start` in a rotation, so that equal candidates take
/// turns (the caller passes a counter) instead of the first always winning.
pub fn least_conn(candidates: &[Candidate], start: usize) -> Option<usize> {
    let count = candidates.len();
    if count == 0 {
        return None;
    }
    let mut best: Option<usize> = None;
    for offset in 0..count {
        let index = (start + offset) % count;
        let candidate = &candidates[index];
        if !candidate.eligible {
            continue;
        }
        let fewer = best.is_none_or(|b| {
            let other = &candidates[b];
            // a/wa < b/wb  ⇔  a·wb < b·wa (weights are positive).
            (candidate.in_flight as u128) * u128::from(other.weight.max(1))
                < (other.in_flight as u128) * u128::from(candidate.weight.max(1))
        });
        if fewer {
            best = Some(index);
        }
    }
    best
}

/// The candidate a client key (its IP address's bytes) belongs to, by
/// weighted rendezvous hashing: every candidate scores the key, the
/// highest score wins. The same key goes to the same candidate as long as
/// that one is eligible, on every instance of the proxy (the hash has a
/// fixed seed); when one leaves, only its own clients move, spread over
/// the others in proportion to their weights, and they come back when it
/// returns. `ids` names the candidates (their addresses), in the same order.
pub fn client_hash<S: AsRef<str>>(
    candidates: &[Candidate],
    ids: impl IntoIterator<Item = S>,
    key: &[u8],
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (index, (candidate, id)) in candidates.iter().zip(ids).enumerate() {
        if !candidate.eligible {
            continue;
        }
        let score = weighted_score(key, id.as_ref(), candidate.weight.max(1));
        if best.is_none_or(|(_, top)| score > top) {
            best = Some((index, score));
        }
    }
    best.map(|(index, _)| index)
}

/// `-weight / ln(u)` for a uniform `u` in (0, 1) drawn from the hash of
/// key and id: the highest of these falls to each candidate in proportion
/// to its weight (Schindelhauer and Schomaker's weighted rendezvous).
fn weighted_score(key: &[u8], id: &str, weight: u32) -> f64 {
    let hash = foldhash::quality::FixedState::with_seed(0x5ee_d15c).hash_one((key, id));
    // The top 53 bits as a float in (0, 1): never 0, so the log is finite.
    let unit = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight) / unit.ln()
}

#[cfg(test)]
mod tests;
