//! Time as the rest of the crate needs it: now in Unix seconds, and Unix
//! seconds as RFC 3339 text for logs, reports and status files. A leaf:
//! it uses nothing else in the crate.

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Formats Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// One day in seconds, the unit of certificate lifetimes and warnings.
pub const DAY: i64 = 86_400;
