//! Request ids (README: Logs): the client's `X-Request-Id` when it is sane,
//! else one made here; sent to the backend, returned to the client and
//! written in the access log, so one request can be followed through
//! every log it touches (nginx's `$request_id`, passed on as users of
//! nginx configure it).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::HeaderMap;
use hyper::header::{HeaderName, HeaderValue};

/// The header that carries the id, both ways.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client id passed on; a longer one is replaced.
pub const MAX_CLIENT_ID: usize = 128;

/// The request's id, taken from `headers` or made, and set in `headers` as
/// the one `X-Request-Id` the backend gets.
pub fn take_or_make(headers: &mut HeaderMap) -> HeaderValue {
    let mut sent = headers.get_all(&X_REQUEST_ID).iter();
    if let (Some(only), None) = (sent.next(), sent.next())
        && is_sane(only)
    {
        return only.clone();
    }
    let made = make();
    headers.insert(X_REQUEST_ID, made.clone());
    made
}

/// Whether a client's id may be passed on: 1 to [`MAX_CLIENT_ID`] bytes of
/// visible ASCII (no space or control character: it goes into log lines
/// and other systems' headers as it is).
pub fn is_sane(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_CLIENT_ID && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// A fresh id: 32 lower-case hex digits (128 bits, the shape of nginx's
/// `$request_id`). 64 random bits drawn once per process, then a counter
/// scrambled by a bijection: unique within the process without a system
/// call per request, and unrelated between instances.
pub fn make() -> HeaderValue {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (prefix, offset) = *process_random();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let text = format_id(prefix, splitmix64(n.wrapping_add(offset)));
    HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("-"))
}

/// Two random words per process, from the system's random source (else
/// the time, which still differs between processes).
fn process_random() -> &'static (u64, u64) {
    static RANDOM: OnceLock<(u64, u64)> = OnceLock::new();
    RANDOM.get_or_init(|| {
        let mut bytes = [0u8; 16];
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            bytes = (nanos ^ u128::from(std::process::id())).to_le_bytes();
        }
        let (high, low) = bytes.split_at(8);
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        (word(high), word(low))
    })
}

/// SplitMix64's finaliser: a bijection on 64-bit words, so distinct
/// counters give distinct ids, that spreads consecutive counters apart.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `high` then `low` as 32 lower-case hex digits.
fn format_id(high: u64, low: u64) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 32];
    let value = (u128::from(high) << 64) | u128::from(low);
    for (i, digit) in text.iter_mut().enumerate() {
        *digit = HEX[((value >> (124 - 4 * i)) & 0xf) as usize];
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_client_id_is_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123_XYZ.9"));
        let id = take_or_make(&mut headers);
        assert_eq!(id, "abc-123_XYZ.9");
        assert_eq!(headers.get_all(&X_REQUEST_ID).iter().count(), 1);
        assert_eq!(headers[&X_REQUEST_ID], "abc-123_XYZ.9");
    }

    #[test]
    fn an_insane_client_id_is_replaced() {
        let too_long = "a".repeat(MAX_CLIENT_ID + 1);
        let longest = "b".repeat(MAX_CLIENT_ID);
        let table: &[(&[&str], bool)] = &[
            (&[""], false),
            (&["has space"], false),
            (&["tab\there"], false),
            (&[too_long.as_str()], false),
            (&[longest.as_str()], true),
            (&["one", "two"], false),
        ];
        for (values, kept) in table {
            let mut headers = HeaderMap::new();
            for value in *values {
                headers.append(X_REQUEST_ID, HeaderValue::from_str(value).expect("value"));
            }
            let id = take_or_make(&mut headers);
            let all: Vec<_> = headers.get_all(&X_REQUEST_ID).iter().collect();
            assert_eq!(all, vec![&id], "{values:?}: one id goes on");
            if *kept {
                assert_eq!(id, values[0], "{values:?}");
            } else {
                assert_eq!(id.len(), 32, "{values:?} replaced by a made id");
            }
        }
        let non_ascii = HeaderValue::from_bytes(b"caf\xc3\xa9").expect("obs-text");
        assert!(!is_sane(&non_ascii));
    }

    #[test]
    fn a_missing_id_is_made_and_set() {
        let mut headers = HeaderMap::new();
        let id = take_or_make(&mut headers);
        assert_eq!(headers[&X_REQUEST_ID], id);
    }

    #[test]
    fn made_ids_are_32_hex_digits_and_distinct() {
        let ids: std::collections::HashSet<HeaderValue> = (0..10_000).map(|_| make()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(50) {
            assert_eq!(id.len(), 32);
            assert!(
                id.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)),
                "{id:?}"
            );
        }
    }

    #[test]
    fn ids_are_formatted_high_word_first() {
        let text = format_id(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        assert_eq!(&text, b"0123456789abcdeffedcba9876543210");
    }
}
