//! The rustls certificate resolver: one per TLS listener, all reading the
//! same snapshot.
//!
//! Invariants (README: Layout):
//! 1. All certificate state sits in one snapshot; this file only loads it
//!    through a [`SnapshotReader`]. Only the reload task
//!    holds the `SnapshotWriter`.
//! 2. `resolve()` never does I/O, never locks, allocates nothing beyond an
//!    `Arc` clone and never logs above debug. What must be logged about a
//!    choice (the first use of the default certificate) is flagged here and
//!    logged by the connection task, see [`HandshakeEvents`].
//! 3. A ClientHello offering ALPN `acme-tls/1` for a name with a pending
//!    TLS-ALPN-01 challenge gets the challenge certificate (RFC 8737); the
//!    connection is closed after the handshake.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::challenge::{ACME_TLS_ALPN, ChallengeStore};
use crate::snapshot::SnapshotReader;
use crate::tree::Step;

/// Flags raised by resolvers for connection tasks to log.
#[derive(Debug, Default)]
pub struct HandshakeEvents {
    default_served: AtomicU8,
}

const DEFAULT_NEVER_SERVED: u8 = 0;
const DEFAULT_SERVED_UNLOGGED: u8 = 1;
const DEFAULT_SERVED_LOGGED: u8 = 2;

impl HandshakeEvents {
    /// Records that the default certificate was chosen.
    fn default_chosen(&self) {
        let _ = self.default_served.compare_exchange(
            DEFAULT_NEVER_SERVED,
            DEFAULT_SERVED_UNLOGGED,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// True exactly once: the first time a caller asks after the default
    /// certificate was first served. The caller logs the warning.
    pub fn take_first_default_use(&self) -> bool {
        self.default_served
            .compare_exchange(
                DEFAULT_SERVED_UNLOGGED,
                DEFAULT_SERVED_LOGGED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

/// Picks the certificate for each ClientHello on one listener.
pub struct SniResolver {
    listener: usize,
    store: SnapshotReader,
    events: Arc<HandshakeEvents>,
    challenges: Option<Arc<ChallengeStore>>,
}

impl SniResolver {
    /// A resolver for listener number `listener` (its position in the
    /// configuration, which indexes the snapshot's certdirs).
    pub fn new(listener: usize, store: SnapshotReader, events: Arc<HandshakeEvents>) -> Self {
        Self {
            listener,
            store,
            events,
            challenges: None,
        }
    }

    /// Also answers TLS-ALPN-01 validations from `challenges` (for
    /// listeners that offer ALPN `acme-tls/1`).
    pub fn with_challenges(mut self, challenges: Arc<ChallengeStore>) -> Self {
        self.challenges = Some(challenges);
        self
    }

    /// The pending TLS-ALPN-01 certificate for this ClientHello, if it asks
    /// for one.
    fn acme_challenge(&self, client_hello: &ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let challenges = self.challenges.as_ref()?;
        let mut alpn = client_hello.alpn()?;
        if !alpn.any(|protocol| protocol == ACME_TLS_ALPN) {
            return None;
        }
        challenges.tls_alpn01(client_hello.server_name()?)
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(challenge) = self.acme_challenge(&client_hello) {
            tracing::debug!(
                sni = client_hello.server_name().unwrap_or(""),
                "tls-alpn-01 challenge certificate chosen"
            );
            return Some(challenge);
        }
        let snapshot = self.store.load();
        let choice = snapshot.choose(self.listener, client_hello.server_name());
        if choice.step == Step::Default {
            self.events.default_chosen();
        }
        tracing::debug!(
            sni = client_hello.server_name().unwrap_or(""),
            step = choice.step.as_str(),
            "certificate chosen"
        );
        Some(Arc::clone(&choice.certificate.certified_key))
    }
}
