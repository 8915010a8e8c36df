//! When to renew a certificate, when to retry after a failure, and how close
//! a certificate is to expiry.
//!
//! Everything here is a pure function of the times it is given: no clock, no
//! I/O, no randomness. Times are Unix seconds (`i64`, like
//! [`crate::clock::unix_now`]); durations are seconds (`i64`). The caller supplies
//! `now` and any random input (a fraction in `[0, 1)`), which keeps the
//! schedule testable on fixed dates and reproducible in logs. All arithmetic
//! saturates and every float input is sanitised, so no input panics.
//!
//! # Renewal point
//!
//! 1. Our own point: `not_before + lifetime × fraction`, where the fraction
//!    is the configured one ([`DEFAULT_RENEW_AT`], 2/3: day 60 of 90) but at
//!    most [`SHORT_LIFETIME_RENEW_AT`] (1/2) for lifetimes of
//!    [`SHORT_LIFETIME`] (10 days) or less.
//! 2. With a renewal window from the CA (ARI, RFC 9773): a point picked
//!    uniformly in the window by the caller's random fraction, as RFC 9773
//!    recommends.
//! 3. The renewal time is the **earlier** of the two. See [`renewal`] for why
//!    a window later than our own point does not postpone renewal.
//! 4. It is due when that time is not after `now`; a window wholly in the
//!    past therefore means "renew now", as RFC 9773 intends.
//!
//! # Retry backoff
//!
//! After `n` consecutive failures, wait `min(60 s × 2^(n−1), 6 h)`:
//!
//! | failures | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10+ |
//! | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
//! | wait | 1 m | 2 m | 4 m | 8 m | 16 m | 32 m | 64 m | 128 m | 256 m | 6 h |
//!
//! minus up to a quarter ([`BACKOFF_JITTER`]) by the caller's jitter, and
//! never less than the CA's `Retry-After` (itself capped at
//! [`RETRY_AFTER_CAP`], one day). See [`retry_delay`].

/// One day in seconds (see [`crate::clock::DAY`]).
pub use crate::clock::DAY;

/// Default point in a certificate's lifetime at which renewal starts (the
/// configuration's default for `acme.renew_at`).
pub use crate::config::DEFAULT_RENEW_AT;

/// Lifetimes up to and including this are "short" and renew at
/// [`SHORT_LIFETIME_RENEW_AT`].
///
/// For a 6-day certificate a third of the lifetime is 2 days, too little
/// slack for a weekend outage; half keeps 3 days. 10 days draws the line
/// above today's short-lived offerings (6 days) with room to spare, while
/// ordinary certificates (45 days and up) keep the default.
pub const SHORT_LIFETIME: i64 = 10 * DAY;

/// Renewal fraction ceiling for short lifetimes (see [`SHORT_LIFETIME`]).
pub const SHORT_LIFETIME_RENEW_AT: f64 = 0.5;

/// First retry delay after a failed issuance or renewal.
///
/// A minute rides out a blip (a DNS answer not yet propagated, a CA
/// hiccup) without hammering the CA.
pub const BACKOFF_START: i64 = 60;

/// Longest retry delay from our own backoff.
///
/// Six hours keeps the load on a CA that is down, or on an account that is
/// rate limited, to four attempts a day, yet still gives many attempts in
/// the 30 days of slack that [`DEFAULT_RENEW_AT`] leaves.
pub const BACKOFF_CAP: i64 = 6 * 60 * 60;

/// Largest share of a backoff delay that jitter takes off.
///
/// Many certificates failing together (CA outage) would otherwise retry in
/// lockstep; spreading each retry over the last quarter of its delay
/// de-synchronises them. Jitter only ever *shortens* the delay, so
/// [`BACKOFF_CAP`] stays a true cap and jitter 0 gives the table exactly.
pub const BACKOFF_JITTER: f64 = 0.25;

/// Longest `Retry-After` from the CA that we honour.
///
/// A CA may legitimately ask for hours (rate limits); but a misparsed
/// HTTP-date, a clock error or a CA bug asking for weeks must not park
/// renewal while the certificate runs out. Beyond a day we retry daily
/// anyway: one rejected request a day is cheap for the CA.
pub const RETRY_AFTER_CAP: i64 = DAY;

/// A suggested renewal window from the CA (ARI, RFC 9773 `suggestedWindow`),
/// in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalWindow {
    /// Earliest suggested renewal time.
    pub start: i64,
    /// Latest suggested renewal time; a window with `end < start` is invalid
    /// and ignored.
    pub end: i64,
}

/// What decided a [`Renewal`] time, for logs and status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalBasis {
    /// Our own fraction of the certificate's lifetime.
    Lifetime,
    /// The CA's renewal window (earlier than our own point).
    Ari,
    /// The validity period is nonsense (`not_after <= not_before`), so the
    /// certificate is replaced now.
    InvalidValidity,
}

/// When to renew one certificate, computed by [`renewal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    /// Unix time at which renewal should start; may be in the past.
    pub at: i64,
    /// Whether `at` has been reached, i.e. renew now.
    pub due: bool,
    /// What decided `at`.
    pub basis: RenewalBasis,
}

/// Decides when to renew a certificate valid from `not_before` to
/// `not_after`, at time `now`.
///
/// - `renew_at`: fraction of the lifetime at which to renew
///   ([`DEFAULT_RENEW_AT`] normally). Capped at [`SHORT_LIFETIME_RENEW_AT`]
///   for lifetimes up to [`SHORT_LIFETIME`]: that rule is a safety ceiling,
///   so an operator's even earlier fraction still wins. Clamped to `[0, 1]`;
///   NaN or infinite means the default. (Rejecting silly fractions such as 0,
///   which would renew on every check, is configuration validation's job.)
/// - `ari`: the CA's suggested window, if it gave one.
/// - `jitter`: the caller's random fraction in `[0, 1)` that picks the point
///   inside the window, as RFC 9773 recommends (uniform in the window).
///   Clamped to `[0, 1]`; NaN means 0. Unused without a window.
///
/// # The window never postpones renewal
///
/// The result is the earlier of our own point and the point picked in the
/// window. A window earlier than our point wins: that is what ARI is for (a
/// CA revoking certificates after an incident asks for early renewal, and a
/// window wholly in the past means "now"). A window *later* than our point
/// does not: RFC 9773 has clients schedule "based on" the window, and
/// renewing earlier than suggested costs only one ordinary renewal at the
/// same point every client without ARI uses, whereas following a late window
/// trades away safety margin. A window that is wrong (clock skew, a CA bug,
/// a window past `not_after`) thus can never bring us closer to expiry than
/// having no ARI at all.
///
/// A validity period with `not_after <= not_before` is garbage; renewing is
/// the only way out, so it is due at `now`.
pub fn renewal(
    not_before: i64,
    not_after: i64,
    ari: Option<RenewalWindow>,
    now: i64,
    renew_at: f64,
    jitter: f64,
) -> Renewal {
    let Some(own) = lifetime_point(not_before, not_after, renew_at) else {
        return Renewal {
            at: now,
            due: true,
            basis: RenewalBasis::InvalidValidity,
        };
    };
    let (at, basis) = match ari.and_then(|window| window_point(window, jitter)) {
        Some(point) if point < own => (point, RenewalBasis::Ari),
        _ => (own, RenewalBasis::Lifetime),
    };
    Renewal {
        at,
        due: at <= now,
        basis,
    }
}

/// Our own renewal point, or `None` for a nonsense validity period.
fn lifetime_point(not_before: i64, not_after: i64, renew_at: f64) -> Option<i64> {
    if not_after <= not_before {
        return None;
    }
    let lifetime = not_after.saturating_sub(not_before);
    let mut fraction = if renew_at.is_finite() {
        renew_at.clamp(0.0, 1.0)
    } else {
        DEFAULT_RENEW_AT
    };
    if lifetime <= SHORT_LIFETIME {
        fraction = fraction.min(SHORT_LIFETIME_RENEW_AT);
    }
    // Rounded, not truncated: 2/3 is not exact in binary, and truncating
    // would put a 90-day certificate's point one second before day 60.
    let offset = scale(lifetime, fraction);
    Some(not_before.saturating_add(offset).min(not_after))
}

/// The point in `window` that `jitter` picks, or `None` for an inverted
/// window.
fn window_point(window: RenewalWindow, jitter: f64) -> Option<i64> {
    if window.end < window.start {
        return None;
    }
    let span = window.end.saturating_sub(window.start);
    let offset = scale(span, unit(jitter));
    Some(window.start.saturating_add(offset).min(window.end))
}

/// How long to wait before retrying after `failures` consecutive failed
/// attempts (counting the one that just failed; 0 is treated as 1), in
/// seconds.
///
/// - Backoff: `min(BACKOFF_START × 2^(failures−1), BACKOFF_CAP)`, the table
///   in the module docs.
/// - `jitter`: the caller's random fraction in `[0, 1)`; takes off up to
///   [`BACKOFF_JITTER`] of the backoff, so the wait lies in
///   `(0.75 × backoff, backoff]` (exactly the backoff with jitter 0). Clamped
///   to `[0, 1]`; NaN means 0.
/// - `retry_after`: the CA's `Retry-After`, converted by the caller to
///   seconds from now. It is a floor, so the result is the later of the
///   jittered backoff and `Retry-After`. It is not jittered (the CA chose the
///   time), is capped at [`RETRY_AFTER_CAP`] so a wild value cannot stall
///   renewal, and negative values (a date in the past) count as 0.
pub fn retry_delay(failures: u32, jitter: f64, retry_after: Option<i64>) -> i64 {
    let base = backoff(failures);
    let jittered = base.saturating_sub(scale(base, BACKOFF_JITTER * unit(jitter)));
    let floor = retry_after.map_or(0, |secs| secs.clamp(0, RETRY_AFTER_CAP));
    jittered.max(floor)
}

/// The un-jittered backoff after `failures` consecutive failures (0 is
/// treated as 1), in seconds: the table in the module docs.
pub fn backoff(failures: u32) -> i64 {
    let doublings = failures.saturating_sub(1);
    BACKOFF_START
        .saturating_mul(2_i64.saturating_pow(doublings))
        .min(BACKOFF_CAP)
}

/// A caller-supplied fraction made safe: NaN → 0, clamped to `[0, 1]`.
fn unit(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// `secs × fraction`, rounded; `fraction` is in `[0, 1]`, so the result is
/// in `[0, secs]` (float-to-int `as` saturates, it never panics).
fn scale(secs: i64, fraction: f64) -> i64 {
    ((secs as f64 * fraction).round() as i64).clamp(0, secs.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01T00:00:00Z, the issuance time of every test certificate.
    const T0: i64 = 1_767_225_600;
    const H: i64 = 3_600;
    const M: i64 = 60;

    fn window(start: i64, end: i64) -> Option<RenewalWindow> {
        Some(RenewalWindow { start, end })
    }

    #[test]
    fn renewal_points() {
        use RenewalBasis::{Ari, InvalidValidity, Lifetime};
        struct Case {
            name: &'static str,
            lifetime_days: i64,
            ari: Option<RenewalWindow>,
            now: i64,
            renew_at: f64,
            jitter: f64,
            at: i64,
            due: bool,
            basis: RenewalBasis,
        }
        let d = DAY;
        let f = DEFAULT_RENEW_AT;
        #[rustfmt::skip]
        let cases = [
            Case { name: "90-day at day 60", lifetime_days: 90, ari: None, now: T0, renew_at: f, jitter: 0.0, at: T0 + 60 * d, due: false, basis: Lifetime },
            Case { name: "90-day one second before", lifetime_days: 90, ari: None, now: T0 + 60 * d - 1, renew_at: f, jitter: 0.0, at: T0 + 60 * d, due: false, basis: Lifetime },
            Case { name: "90-day exactly at the point", lifetime_days: 90, ari: None, now: T0 + 60 * d, renew_at: f, jitter: 0.0, at: T0 + 60 * d, due: true, basis: Lifetime },
            Case { name: "90-day jitter unused without ARI", lifetime_days: 90, ari: None, now: T0, renew_at: f, jitter: 0.9, at: T0 + 60 * d, due: false, basis: Lifetime },
            Case { name: "6-day at day 3", lifetime_days: 6, ari: None, now: T0, renew_at: f, jitter: 0.0, at: T0 + 3 * d, due: false, basis: Lifetime },
            Case { name: "10-day at day 5", lifetime_days: 10, ari: None, now: T0, renew_at: f, jitter: 0.0, at: T0 + 5 * d, due: false, basis: Lifetime },
            Case { name: "11-day at 2/3", lifetime_days: 11, ari: None, now: T0, renew_at: f, jitter: 0.0, at: T0 + 7 * d + 8 * H, due: false, basis: Lifetime },
            Case { name: "custom 1/2 of 90", lifetime_days: 90, ari: None, now: T0, renew_at: 0.5, jitter: 0.0, at: T0 + 45 * d, due: false, basis: Lifetime },
            Case { name: "custom 3/4 of 90", lifetime_days: 90, ari: None, now: T0, renew_at: 0.75, jitter: 0.0, at: T0 + 67 * d + 12 * H, due: false, basis: Lifetime },
            Case { name: "custom 3/4 of 6 capped at 1/2", lifetime_days: 6, ari: None, now: T0, renew_at: 0.75, jitter: 0.0, at: T0 + 3 * d, due: false, basis: Lifetime },
            Case { name: "custom 1/4 of 6 kept", lifetime_days: 6, ari: None, now: T0, renew_at: 0.25, jitter: 0.0, at: T0 + 36 * H, due: false, basis: Lifetime },
            Case { name: "NaN fraction means default", lifetime_days: 90, ari: None, now: T0, renew_at: f64::NAN, jitter: 0.0, at: T0 + 60 * d, due: false, basis: Lifetime },
            Case { name: "fraction above 1 clamps to expiry", lifetime_days: 90, ari: None, now: T0, renew_at: 5.0, jitter: 0.0, at: T0 + 90 * d, due: false, basis: Lifetime },
            Case { name: "ARI earlier, window start", lifetime_days: 90, ari: window(T0 + 30 * d, T0 + 32 * d), now: T0, renew_at: f, jitter: 0.0, at: T0 + 30 * d, due: false, basis: Ari },
            Case { name: "ARI earlier, mid window", lifetime_days: 90, ari: window(T0 + 30 * d, T0 + 32 * d), now: T0, renew_at: f, jitter: 0.5, at: T0 + 31 * d, due: false, basis: Ari },
            Case { name: "ARI earlier, now inside window past point", lifetime_days: 90, ari: window(T0 + 30 * d, T0 + 32 * d), now: T0 + 31 * d, renew_at: f, jitter: 0.25, at: T0 + 30 * d + 12 * H, due: true, basis: Ari },
            Case { name: "ARI window already passed", lifetime_days: 90, ari: window(T0 + d, T0 + 2 * d), now: T0 + 10 * d, renew_at: f, jitter: 0.5, at: T0 + d + 12 * H, due: true, basis: Ari },
            Case { name: "ARI window before issuance", lifetime_days: 90, ari: window(T0 - 2 * d, T0 - d), now: T0, renew_at: f, jitter: 0.0, at: T0 - 2 * d, due: true, basis: Ari },
            Case { name: "ARI later than our point", lifetime_days: 90, ari: window(T0 + 70 * d, T0 + 72 * d), now: T0, renew_at: f, jitter: 0.0, at: T0 + 60 * d, due: false, basis: Lifetime },
            Case { name: "ARI straddling, picked later", lifetime_days: 90, ari: window(T0 + 59 * d, T0 + 63 * d), now: T0, renew_at: f, jitter: 0.75, at: T0 + 60 * d, due: false, basis: Lifetime },
            Case { name: "ARI straddling, picked earlier", lifetime_days: 90, ari: window(T0 + 59 * d, T0 + 63 * d), now: T0, renew_at: f, jitter: 0.125, at: T0 + 59 * d + 12 * H, due: false, basis: Ari },
            Case { name: "ARI point window", lifetime_days: 90, ari: window(T0 + 40 * d, T0 + 40 * d), now: T0, renew_at: f, jitter: 0.7, at: T0 + 40 * d, due: false, basis: Ari },
            Case { name: "ARI inverted window ignored", lifetime_days: 90, ari: window(T0 + 32 * d, T0 + 30 * d), now: T0, renew_at: f, jitter: 0.0, at: T0 + 60 * d, due: false, basis: Lifetime },
            Case { name: "ARI NaN jitter is window start", lifetime_days: 90, ari: window(T0 + 30 * d, T0 + 32 * d), now: T0, renew_at: f, jitter: f64::NAN, at: T0 + 30 * d, due: false, basis: Ari },
            Case { name: "not_before after not_after", lifetime_days: -5, ari: None, now: T0 + 7, renew_at: f, jitter: 0.0, at: T0 + 7, due: true, basis: InvalidValidity },
            Case { name: "zero lifetime", lifetime_days: 0, ari: window(T0 + d, T0 + 2 * d), now: T0, renew_at: f, jitter: 0.0, at: T0, due: true, basis: InvalidValidity },
        ];
        for c in cases {
            let not_after = T0 + c.lifetime_days * DAY;
            let got = renewal(T0, not_after, c.ari, c.now, c.renew_at, c.jitter);
            let want = Renewal {
                at: c.at,
                due: c.due,
                basis: c.basis,
            };
            assert_eq!(got, want, "{}", c.name);
        }
    }

    #[test]
    fn ari_point_stays_in_window() {
        let (start, end) = (T0 + 20 * DAY, T0 + 22 * DAY);
        for jitter in [
            0.0,
            1e-9,
            0.3,
            0.5,
            0.999_999,
            1.0,
            -3.0,
            7.0,
            f64::INFINITY,
        ] {
            let r = renewal(
                T0,
                T0 + 90 * DAY,
                window(start, end),
                T0,
                DEFAULT_RENEW_AT,
                jitter,
            );
            assert!((start..=end).contains(&r.at), "jitter {jitter}: {r:?}");
            assert_eq!(r.basis, RenewalBasis::Ari);
        }
    }

    #[test]
    fn backoff_table() {
        let want = [
            (0, M),
            (1, M),
            (2, 2 * M),
            (3, 4 * M),
            (4, 8 * M),
            (5, 16 * M),
            (6, 32 * M),
            (7, 64 * M),
            (8, 128 * M),
            (9, 256 * M),
            (10, 6 * H),
            (11, 6 * H),
            (64, 6 * H),
            (u32::MAX, 6 * H),
        ];
        for (failures, secs) in want {
            assert_eq!(backoff(failures), secs, "backoff({failures})");
            assert_eq!(
                retry_delay(failures, 0.0, None),
                secs,
                "failures {failures}"
            );
        }
    }

    #[test]
    fn jitter_shortens_within_a_quarter() {
        for failures in [1, 2, 5, 9, 10, 30] {
            let base = backoff(failures);
            for jitter in [0.0, 0.1, 0.5, 0.9, 0.999_999, 1.0, -1.0, 2.0, f64::NAN] {
                let got = retry_delay(failures, jitter, None);
                assert!(
                    got <= base && got >= base - base / 4,
                    "failures {failures} jitter {jitter}: {got} not in [{}, {base}]",
                    base - base / 4
                );
            }
            // Jitter actually spreads the retries.
            assert!(retry_delay(failures, 0.9, None) < base);
        }
        assert_eq!(retry_delay(1, 0.5, None), 60 - 8); // 60 × 0.25 × 0.5 = 7.5 → 8
    }

    #[test]
    fn retry_after_is_a_capped_floor() {
        #[rustfmt::skip]
        let cases = [
            // (name, failures, jitter, Retry-After, want)
            ("larger than backoff", 1, 0.0, Some(5 * M), 5 * M),
            ("smaller than backoff", 1, 0.0, Some(10), M),
            ("larger than jittered backoff", 10, 0.5, Some(6 * H), 6 * H),
            ("smaller than capped backoff", 10, 0.0, Some(H), 6 * H),
            ("beyond the cap", 1, 0.0, Some(3 * DAY), DAY),
            ("exactly the cap", 1, 0.0, Some(DAY), DAY),
            ("in the past", 1, 0.0, Some(-500), M),
            ("absurd", 3, 0.0, Some(i64::MAX), DAY),
            ("absent", 3, 0.0, None, 4 * M),
        ];
        for (name, failures, jitter, retry_after, want) in cases {
            assert_eq!(retry_delay(failures, jitter, retry_after), want, "{name}");
        }
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let times = [i64::MIN, i64::MIN + 1, -1, 0, 1, T0, i64::MAX - 1, i64::MAX];
        let fractions = [
            f64::NAN,
            f64::NEG_INFINITY,
            -1.0,
            0.0,
            0.5,
            1.0,
            2.0,
            f64::INFINITY,
        ];
        for &a in &times {
            for &b in &times {
                for &now in &[i64::MIN, 0, i64::MAX] {
                    for &x in &fractions {
                        let r = renewal(a, b, window(a, b), now, x, x);
                        assert_eq!(r.due, r.at <= now);
                        let _ = crate::expiry::expiry_state(b, now, u32::MAX);
                    }
                }
            }
        }
        for failures in [0, 1, 31, 32, 63, 64, u32::MAX] {
            for &x in &fractions {
                for ra in [None, Some(i64::MIN), Some(0), Some(i64::MAX)] {
                    let d = retry_delay(failures, x, ra);
                    assert!((0..=RETRY_AFTER_CAP.max(BACKOFF_CAP)).contains(&d));
                }
            }
        }
    }
}
