use std::time::{Duration, Instant};

use super::ask::question_url;
use super::rate::TokenBucket;
use super::refused::{MAX_REFUSED, RefusedNames};
use crate::config::{Rate, parse_rate};

fn rate(text: &str) -> Rate {
    parse_rate(text).expect("rate")
}

#[test]
fn the_bucket_allows_the_burst_then_the_rate() {
    let start = Instant::now();
    let mut bucket = TokenBucket::new(rate("10/min"), 3, start);
    assert!(bucket.take(start));
    assert!(bucket.take(start));
    assert!(bucket.take(start));
    assert!(!bucket.take(start), "the burst is spent");
    assert_eq!(bucket.next_token_in(start), Duration::from_secs(6));
    assert!(!bucket.take(start + Duration::from_secs(5)));
    assert!(bucket.take(start + Duration::from_secs(6)), "one every 6 s");
    assert!(!bucket.take(start + Duration::from_secs(7)));
    // A long quiet time refills up to the burst, not beyond.
    let later = start + Duration::from_secs(3600);
    let taken = (0..10).filter(|_| bucket.take(later)).count();
    assert_eq!(taken, 3);
}

#[test]
fn a_reload_keeps_the_tokens_left() {
    let start = Instant::now();
    let mut bucket = TokenBucket::new(rate("1/min"), 3, start);
    assert!(bucket.take(start));
    assert!(bucket.take(start));
    // One left: a larger burst does not refill it, a smaller one caps it.
    bucket.retune(rate("1/min"), 10, start);
    assert!(bucket.take(start));
    assert!(!bucket.take(start));
    bucket.retune(rate("1/s"), 1, start);
    assert!(!bucket.take(start));
    assert!(bucket.take(start + Duration::from_secs(5)));
    assert!(
        !bucket.take(start + Duration::from_secs(5)),
        "capped at the new burst"
    );
}

#[test]
fn refusals_expire_and_stay_bounded() {
    let now = Instant::now();
    let mut refused = RefusedNames::default();
    refused.refuse("a.example", now + Duration::from_secs(60), now);
    assert!(refused.is_refused("a.example", now));
    assert!(!refused.is_refused("b.example", now));
    assert!(!refused.is_refused("a.example", now + Duration::from_secs(61)));
    for i in 0..MAX_REFUSED + 10 {
        refused.refuse(&format!("n{i}.example"), now + Duration::from_secs(60), now);
    }
    assert!(refused.len() <= MAX_REFUSED, "{}", refused.len());
    assert!(refused.is_refused(&format!("n{}.example", MAX_REFUSED + 9), now));
}

#[test]
fn the_question_adds_the_domain_to_the_query() {
    assert_eq!(
        question_url("http://127.0.0.1:9000/allowed", "phone.customer.org"),
        "http://127.0.0.1:9000/allowed?domain=phone.customer.org"
    );
    assert_eq!(
        question_url("https://t.example/check?zone=eu", "xn--bcher-kva.example"),
        "https://t.example/check?zone=eu&domain=xn--bcher-kva.example"
    );
}

#[test]
fn looking_at_the_bucket_takes_nothing() {
    let start = Instant::now();
    let mut bucket = TokenBucket::new(rate("1/min"), 1, start);
    assert!(bucket.has_token(start));
    assert!(bucket.has_token(start));
    assert!(bucket.take(start));
    assert!(!bucket.has_token(start));
    assert!(bucket.has_token(start + Duration::from_secs(60)));
}

#[test]
fn a_full_memory_keeps_what_has_not_expired_when_a_fifth_is_free() {
    let now = Instant::now();
    let later = now + Duration::from_secs(60);
    let mut refused = RefusedNames::default();
    // A fifth of the names expired: dropped, the rest kept.
    for i in 0..MAX_REFUSED {
        let until = if i % 5 == 0 { now } else { later };
        refused.refuse(&format!("n{i}.example"), until, now);
    }
    refused.refuse("new.example", later, now);
    assert_eq!(refused.len(), MAX_REFUSED - MAX_REFUSED / 5 + 1);
    assert!(refused.is_refused("n1.example", now));
    // Hardly any expired: everything goes, so the next scans are far off.
    let mut refused = RefusedNames::default();
    for i in 0..MAX_REFUSED {
        let until = if i % 50 == 0 { now } else { later };
        refused.refuse(&format!("n{i}.example"), until, now);
    }
    refused.refuse("new.example", later, now);
    assert_eq!(refused.len(), 1);
}

#[test]
fn only_host_names_a_ca_issues_for_are_orderable() {
    for name in [
        "phone.customer.org",
        "a-b.example",
        "xn--bcher-kva.example",
        "1.example",
        "x.y.z.example123",
    ] {
        assert!(super::orderable(name), "{name}");
    }
    let long_label = format!("{}.example", "a".repeat(64));
    let long_name = format!("{}example", "abcdefghi.".repeat(25));
    for name in [
        "localhost",
        "192.168.1.10",
        "foo.123",
        "under_score.example",
        "-lead.example",
        "trail-.example",
        "a..example",
        ".example",
        "example.",
        "*.example",
        "::1",
        "UPPER.example",
        long_label.as_str(),
        long_name.as_str(),
    ] {
        assert!(!super::orderable(name), "{name}");
    }
}
