//! Hex text and random identifiers, one way each (jobs, order requests,
//! lock owners, ticket keys, fingerprints). A leaf.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Lower-case hex of `bytes`, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing into a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The bytes of hex text (either case); `None` when it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// 16 random hex digits (64 bits from the system's random source), to
/// name a job, a request or a lock owner.
///
/// Should the random source fail, the time in nanoseconds mixed with a
/// per-process counter is used instead: never all zeros, and still
/// different for every call of this process.
pub fn random_hex16() -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let count = CALLS.fetch_add(1, Ordering::Relaxed);
        bytes = (nanos ^ count.rotate_left(32) ^ u64::from(std::process::id())).to_le_bytes();
    }
    hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_random_ids() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(hex(&[]), "");
        let (a, b) = (random_hex16(), random_hex16());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }
}
