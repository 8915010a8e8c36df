//! What can go wrong updating a zone through RFC 2136, worded for the
//! operator: every message names the server, and the key, record or zone
//! concerned, and says which setting to look at.

use std::fmt;
use std::net::SocketAddr;

/// The settings key prefix the messages point at.
const SETTINGS: &str = "acme.rfc2136";

/// An RFC 2136 update, a query or the settings went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Rfc2136Error {
    /// A setting cannot work (algorithm, secret, key name, zone).
    #[error("{SETTINGS}: {message}")]
    Settings {
        /// What is wrong and what the setting must hold.
        message: String,
    },

    /// A record name given to the updater is not a DNS name.
    #[error("{name:?} is not a DNS name ({reason})")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was not accepted.
        reason: String,
    },

    /// No answer: connection refused or reset, or nothing within the
    /// timeout. Worth retrying later ([`Rfc2136Error::is_unreachable`]).
    #[error(
        "DNS server {server} did not answer the {action} for {name} within {limit_secs}s \
         ({reason}): check {SETTINGS}.server",
        limit_secs = super::wire::OPERATION_TIMEOUT.as_secs()
    )]
    Unreachable {
        /// The server asked.
        server: SocketAddr,
        /// What was asked.
        action: Action,
        /// The record name concerned.
        name: String,
        /// What happened: `connection refused`, `no answer`, ...
        reason: String,
    },

    /// The server did not accept the request's TSIG signature (RFC 8945
    /// §5.2: BADKEY, BADSIG, BADTIME, or a NOTAUTH without a signed
    /// answer), or its answer's signature did not verify.
    #[error(
        "DNS server {server} did not accept TSIG key {key} for the {action} of {name} \
         ({reason}): check {SETTINGS}.tsig_key_name, tsig_algorithm and tsig_secret_file \
         against the key the server has"
    )]
    TsigRejected {
        /// The server asked.
        server: SocketAddr,
        /// The TSIG key name used.
        key: String,
        /// What was asked.
        action: Action,
        /// The record name concerned.
        name: String,
        /// The TSIG error (`BADSIG`, `BADKEY`, `BADTIME`, `NOTAUTH`, or an
        /// answer that did not verify) and what it means; for BADTIME, to
        /// check the clocks.
        reason: String,
    },

    /// REFUSED to a signed update: the key is known but may not change
    /// this name (RFC 2136 §3.3).
    #[error(
        "DNS server {server} refused the update of {name} in zone {zone}: allow key {key} to \
         update it (BIND: `update-policy {{ grant {key} zonesub TXT; }};` or \
         `allow-update {{ key {key}; }};` in the zone)"
    )]
    Refused {
        /// The server asked.
        server: SocketAddr,
        /// The record name concerned.
        name: String,
        /// The zone named in the update.
        zone: String,
        /// The TSIG key name used.
        key: String,
    },

    /// NOTAUTH in an answer signed with our key: the key was accepted but
    /// the server is not authoritative (primary) for the zone (RFC 2136
    /// §3.1.2).
    #[error(
        "DNS server {server} is not authoritative for zone {zone} (NOTAUTH to the update of \
         {name}): point {SETTINGS}.server at the zone's primary, or correct {SETTINGS}.zone"
    )]
    NotAuthoritative {
        /// The server asked.
        server: SocketAddr,
        /// The record name concerned.
        name: String,
        /// The zone named in the update.
        zone: String,
    },

    /// The name is not inside the zone: the configured zone does not
    /// enclose it, or the server answered NOTZONE (RFC 2136 §3.4.1.3).
    #[error(
        "{name} is not inside zone {zone} (DNS server {server}): set {SETTINGS}.zone to the \
         zone that holds it, or leave {SETTINGS}.zone out to have it discovered"
    )]
    OutsideZone {
        /// The server asked.
        server: SocketAddr,
        /// The record name concerned.
        name: String,
        /// The zone that does not hold it.
        zone: String,
    },

    /// Zone discovery found no zone on the server that holds the name.
    #[error(
        "DNS server {server} serves no zone that holds {name} ({detail}): check \
         {SETTINGS}.server, or set {SETTINGS}.zone"
    )]
    NoZone {
        /// The server asked.
        server: SocketAddr,
        /// The record name concerned.
        name: String,
        /// What the SOA query answered.
        detail: String,
    },

    /// Any other response code (SERVFAIL, FORMERR, NOTIMP, ...).
    #[error("DNS server {server} answered {rcode} to the {action} of {name}{zone}")]
    Rcode {
        /// The server asked.
        server: SocketAddr,
        /// What was asked.
        action: Action,
        /// The record name concerned.
        name: String,
        /// ` in zone Z` for an update, else empty.
        zone: String,
        /// The response code's mnemonic, e.g. `SERVFAIL`.
        rcode: String,
    },

    /// The answer could not be used: undecodable, for another request,
    /// or unsigned where a signature was required.
    #[error("DNS server {server} sent an unusable answer to the {action} for {name}: {detail}")]
    BadAnswer {
        /// The server asked.
        server: SocketAddr,
        /// What was asked.
        action: Action,
        /// The record name concerned.
        name: String,
        /// What was wrong with it.
        detail: String,
    },
}

/// What a request asked, for the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// An update (RFC 2136).
    Update,
    /// A query for the TXT rrset.
    TxtQuery,
    /// A query for the SOA, to discover the zone.
    SoaQuery,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Update => "update",
            Action::TxtQuery => "TXT query",
            Action::SoaQuery => "SOA query",
        })
    }
}

impl Rfc2136Error {
    /// Whether the server could not be reached or did not answer in time:
    /// a connection or timeout problem the caller may retry with backoff.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Rfc2136Error::Unreachable { .. })
    }

    /// A settings error saying `message`.
    pub(super) fn settings(message: impl Into<String>) -> Self {
        Rfc2136Error::Settings {
            message: message.into(),
        }
    }
}
