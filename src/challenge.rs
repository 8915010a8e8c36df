//! Pending ACME challenge answers, read by the listeners.
//!
//! Small and separate from the certificate snapshot (STYLE.md invariant 2):
//! HTTP-01 key authorizations by token, served by `http` listeners at
//! `/.well-known/acme-challenge/<token>`. ACME is the only writer; readers
//! never lock.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

/// HTTP-01 answers by token.
#[derive(Debug, Default)]
pub struct ChallengeStore {
    http01: ArcSwap<HashMap<String, Arc<str>>>,
}

impl ChallengeStore {
    /// The key authorization to answer for `token`, if one is pending.
    pub fn http01(&self, token: &str) -> Option<Arc<str>> {
        self.http01.load().get(token).cloned()
    }

    /// Publishes the answer for `token`.
    pub fn set_http01(&self, token: &str, key_authorization: &str) {
        let answer: Arc<str> = key_authorization.into();
        self.http01.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(token.to_string(), answer.clone());
            next
        });
    }

    /// Withdraws the answer for `token` once the challenge is over.
    pub fn remove_http01(&self, token: &str) {
        self.http01.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.remove(token);
            next
        });
    }
}

/// Whether `token` can be an ACME token (base64url, RFC 8555 §8.3): a
/// cheap guard before any lookup with network input.
pub fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_come_and_go() {
        let store = ChallengeStore::default();
        assert_eq!(store.http01("abc"), None);
        store.set_http01("abc", "abc.thumb");
        assert_eq!(store.http01("abc").as_deref(), Some("abc.thumb"));
        store.remove_http01("abc");
        assert_eq!(store.http01("abc"), None);
    }

    #[test]
    fn tokens_are_base64url() {
        assert!(is_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"));
        assert!(!is_token(""));
        assert!(!is_token("../etc/passwd"));
        assert!(!is_token("a b"));
    }
}
