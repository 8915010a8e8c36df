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
