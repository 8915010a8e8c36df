//! Times as log lines write them: RFC 3339 in UTC with milliseconds
//! (`2026-03-01T12:34:56.789Z`, every line a person or Loki reads), and the
//! common log format's `10/Oct/2000:13:55:36 +0000` (the `combined` access
//! log, as Apache and nginx write it). Pure: the time is a parameter.

use std::fmt;
use std::time::SystemTime;

use time::OffsetDateTime;

/// `time` as RFC 3339 UTC with milliseconds (RFC 3339 §5.6), e.g.
/// `2026-03-01T12:34:56.789Z`; written without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339Millis(pub SystemTime);

impl fmt::Display for Rfc3339Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = OffsetDateTime::from(self.0);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

/// `time` as the common log format's `%d/%b/%Y:%H:%M:%S %z` in UTC
/// (`10/Oct/2000:13:55:36 +0000`), the `[$time_local]` of `combined`.
#[derive(Debug, Clone, Copy)]
pub struct CommonLogTime(pub SystemTime);

impl fmt::Display for CommonLogTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = OffsetDateTime::from(self.0);
        write!(
            f,
            "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
            t.day(),
            MONTHS[usize::from(u8::from(t.month())) - 1],
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

/// English month abbreviations, as `%b` in the C locale writes them (the
/// common log format is never localised).
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(unix_millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(unix_millis)
    }

    #[test]
    fn rfc3339_has_milliseconds_and_utc() {
        // (Unix milliseconds, expected): the epoch, a leap day, the last
        // millisecond of a year, a time with sub-millisecond digits cut.
        let table: &[(u64, &str)] = &[
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_007, "2000-02-29T00:00:00.007Z"),
            (1_767_225_599_999, "2025-12-31T23:59:59.999Z"),
            (971_185_736_123, "2000-10-10T13:48:56.123Z"),
        ];
        for (millis, expected) in table {
            assert_eq!(Rfc3339Millis(at(*millis)).to_string(), *expected);
        }
        let with_micros = at(1_000) + Duration::from_micros(999);
        assert_eq!(
            Rfc3339Millis(with_micros).to_string(),
            "1970-01-01T00:00:01.000Z",
            "cut, not rounded: a line is never stamped later than it was made"
        );
    }

    #[test]
    fn rfc3339_parses_back_to_the_same_instant() {
        let time = at(1_767_225_599_999);
        let text = Rfc3339Millis(time).to_string();
        let parsed = OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
        assert_eq!(parsed, OffsetDateTime::from(time));
    }

    #[test]
    fn common_log_time_is_apaches() {
        // Apache's documentation example, 10/Oct/2000:13:55:36, in UTC.
        assert_eq!(
            CommonLogTime(at(971_186_136_000)).to_string(),
            "10/Oct/2000:13:55:36 +0000"
        );
        assert_eq!(
            CommonLogTime(at(0)).to_string(),
            "01/Jan/1970:00:00:00 +0000"
        );
        assert_eq!(
            CommonLogTime(at(1_767_225_599_999)).to_string(),
            "31/Dec/2025:23:59:59 +0000"
        );
    }
}
