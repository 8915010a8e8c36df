//! How close a certificate is to expiry: one rule for `check`, status,
//! metrics, the expiry monitor and ACME, which is why it is not in `acme/`.
//! Pure; a leaf but for the day length in [`crate::clock`].

use crate::clock::DAY;

/// Default number of days before expiry at which [`expiry_state`] warns.
///
/// Two weeks is well past the renewal point of any normal certificate (day
/// 60 of 90 leaves 30 days), so a warning means renewal has been failing
/// for two weeks, yet leaves two weeks for a human to fix it.
pub const DEFAULT_WARN_DAYS: u32 = 14;

/// Outcome of [`expiry_state`]: how close a certificate is to expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryState {
    /// More than the warning period left.
    Ok,
    /// Still valid, with at most the warning period left.
    ExpiresSoon {
        /// Whole days left, rounded down (0 on the last day).
        days_left: u32,
    },
    /// Past `not_after`.
    Expired,
}

/// How close a certificate expiring at `not_after` is to expiry at `now`,
/// warning when `warn_days` ([`DEFAULT_WARN_DAYS`] normally) or fewer days
/// are left.
///
/// X.509 validity includes `not_after` itself (RFC 5280), so the
/// certificate is [`ExpiryState::Expired`] only once `now > not_after`.
/// Exactly `warn_days` days left already warns.
pub fn expiry_state(not_after: i64, now: i64, warn_days: u32) -> ExpiryState {
    if now > not_after {
        return ExpiryState::Expired;
    }
    let left = not_after.saturating_sub(now);
    if left <= i64::from(warn_days).saturating_mul(DAY) {
        // left / DAY <= warn_days, so it fits; the fallback is unreachable.
        let days_left = u32::try_from(left / DAY).unwrap_or(warn_days);
        ExpiryState::ExpiresSoon { days_left }
    } else {
        ExpiryState::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600;

    #[test]
    fn expiry_states() {
        use ExpiryState::{Expired, ExpiresSoon};
        let na = T0 + 90 * DAY;
        #[rustfmt::skip]
        let cases = [
            // (name, now, warn_days, want)
            ("fresh", T0, 14, ExpiryState::Ok),
            ("one second more than 14 days", na - 14 * DAY - 1, 14, ExpiryState::Ok),
            ("exactly 14 days", na - 14 * DAY, 14, ExpiresSoon { days_left: 14 }),
            ("just under 14 days", na - 14 * DAY + 1, 14, ExpiresSoon { days_left: 13 }),
            ("last day", na - DAY + 1, 14, ExpiresSoon { days_left: 0 }),
            ("at not_after, still valid", na, 14, ExpiresSoon { days_left: 0 }),
            ("one second after", na + 1, 14, Expired),
            ("long after", na + 400 * DAY, 14, Expired),
            ("no warning period", na - 1, 0, ExpiryState::Ok),
            ("no warning period, at not_after", na, 0, ExpiresSoon { days_left: 0 }),
            ("default warning", na - 20 * DAY, DEFAULT_WARN_DAYS, ExpiryState::Ok),
            ("huge warning period", T0, u32::MAX, ExpiresSoon { days_left: 90 }),
        ];
        for (name, now, warn_days, want) in cases {
            assert_eq!(expiry_state(na, now, warn_days), want, "{name}");
        }
    }
}
