//! The names of what instances share, in one place (README, "Running
//! several instances"). Every key is relative to the storage's prefix;
//! with `storage: dir` each one is a file of the state directory
//! (`StateLayout::key_path`).

/// Issued and imported certificates: `certificates/<domain>` holds the
/// domain's `certificate_pem` (markers, key, chain), written in one put.
pub const CERTIFICATES: &str = "certificates/";

/// Pending HTTP-01 answers: `http-01/<token>` holds the key authorization.
pub const HTTP01: &str = "http-01/";

/// Pending TLS-ALPN-01 challenges: `tls-alpn-01/<domain>` holds the
/// SHA-256 digest of the key authorization (64 hex digits), from which
/// every instance makes the same validation certificate (RFC 8737 §3).
pub const TLS_ALPN01: &str = "tls-alpn-01/";

/// The key of `domain`'s stored certificate.
pub fn certificate(domain: &str) -> String {
    format!("{CERTIFICATES}{domain}")
}

/// The name of `domain`'s order lock.
pub fn order_lock(domain: &str) -> String {
    format!("orders/{domain}")
}

/// The key of the HTTP-01 answer for `token`.
pub fn http01(token: &str) -> String {
    format!("{HTTP01}{token}")
}

/// The key of `domain`'s pending TLS-ALPN-01 challenge.
pub fn tls_alpn01(domain: &str) -> String {
    format!("{TLS_ALPN01}{domain}")
}

/// Shared configuration: `config/domains` is the domain store (domains
/// added through the admin API), JSON.
pub const CONFIG: &str = "config/";

/// The key of the domain store.
pub const DOMAINS: &str = crate::state_layout::DOMAINS_KEY;

/// The key of the drain store (backends drained through the admin API).
pub const DRAINS: &str = crate::state_layout::DRAINS_KEY;

/// Session ticket keys (with a remote storage): `tickets/keys`.
pub const TICKETS: &str = "tickets/";

/// The key of the session ticket keys: JSON `{rotated_at, keys}`, `keys`
/// in the text of a `tls.ticket_keys_file`.
pub const TICKET_KEYS: &str = "tickets/keys";

/// The name of the lock under which one instance rotates them.
pub const TICKET_ROTATION_LOCK: &str = "tickets";

/// Each live instance's status, `status/<instance id>`: JSON
/// `{instance, updated, acme}`, kept on the instance's liveness lease.
pub const STATUS: &str = "status/";
