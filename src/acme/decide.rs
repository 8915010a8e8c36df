//! The pure decision for one ACME domain: leave it alone, wait until its
//! renewal point, or order now, and why. No I/O (but
//! [`StoredFile::read`], which the caller runs first) and no clock of its
//! own, so every case is a plain unit test.

use super::schedule::{self, RenewalBasis, RenewalWindow};

/// Whether the `stored` certificate (leaf `sha256`) makes an order
/// needless: it is not the `baseline` the decision to order was made on,
/// and [`decide`] would leave it alone until its renewal point.
pub fn usable_instead_of_ordering(
    stored: ServedView<'_>,
    sha256: &str,
    baseline: Option<&str>,
    directory: &str,
    now: i64,
    renew_at: f64,
) -> bool {
    if baseline == Some(sha256) {
        return false;
    }
    let view = DomainView {
        configured_by_hand: false,
        served: Some(stored),
        stored: StoredFile::Ours,
        broken: false,
    };
    // The middle of the jitter range: the point matters little for a
    // certificate just issued, far from its renewal.
    matches!(
        decide(view, false, directory, None, now, renew_at, 0.5),
        Decision::WaitUntil(_)
    )
}

/// What is known about one ACME domain, for [`decide`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DomainView<'a> {
    /// Set by hand in the configuration (inline or `certificate_file`).
    pub configured_by_hand: bool,
    /// The certificate served for the domain itself, if any.
    pub served: Option<ServedView<'a>>,
    /// The state of the stored file when nothing is served from it.
    pub stored: StoredFile,
    /// Whether the source has an error (unreadable, expired, ...).
    pub broken: bool,
}

/// The served certificate, as far as [`decide`] cares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServedView<'a> {
    /// Validity start (Unix seconds).
    pub not_before: i64,
    /// Validity end (Unix seconds).
    pub not_after: i64,
    /// Carries the `acme_issued=` marker.
    pub acme_issued: bool,
    /// Its `acme_directory=` marker.
    pub directory: Option<&'a str>,
    /// Whether it covers every name to order for (the domain's `names`,
    /// else its own name).
    pub names_match: bool,
}

/// Whether a certificate for `dns_names` covers every name of `wanted`
/// (any order and case). Names the CA added (some add `www.`) do not
/// count against it: a re-order would get them again, in a loop.
pub fn names_match(dns_names: &[String], wanted: &[String]) -> bool {
    wanted
        .iter()
        .all(|w| dns_names.iter().any(|n| n.eq_ignore_ascii_case(w)))
}

/// The stored certificate file of an ACME domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredFile {
    /// Not there.
    Missing,
    /// There, with our marker (so ours to replace).
    Ours,
    /// There, without our marker: placed by hand.
    NotOurs,
}

impl StoredFile {
    /// Whether the stored file at `path` is there and ours.
    pub fn read(path: &std::path::Path) -> StoredFile {
        match crate::fsio::read_cert_text(path) {
            Ok(text) if text.contains(&format!("{}=", crate::pem::ACME_ISSUED_MARKER)) => {
                StoredFile::Ours
            }
            Ok(_) => StoredFile::NotOurs,
            Err(e) if e.is_not_found() => StoredFile::Missing,
            // Unreadable (permissions, a folder): not ours to overwrite.
            Err(_) => StoredFile::NotOurs,
        }
    }
}

/// Why a domain gets an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No certificate yet.
    NoCertificate,
    /// The stored certificate is unreadable, or expired.
    Broken,
    /// The renewal point has come.
    Renewal(RenewalBasis),
    /// It was issued by another ACME directory (e.g. staging → production).
    DirectoryChanged,
    /// The configured `names` are not the ones it covers.
    NamesChanged,
    /// `sniwalk renew`.
    Forced,
}

impl Reason {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoCertificate => "no certificate yet",
            Reason::Broken => "the stored certificate is unusable",
            Reason::Renewal(RenewalBasis::Ari) => "renewal window from the CA (ARI)",
            Reason::Renewal(RenewalBasis::Lifetime) => "renewal point of its lifetime",
            Reason::Renewal(RenewalBasis::InvalidValidity) => "nonsense validity period",
            Reason::DirectoryChanged => "issued by another ACME directory",
            Reason::NamesChanged => "issued for other names than `names` lists",
            Reason::Forced => "renewal requested",
        }
    }
}

/// What to do about one domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Managed by hand: leave it alone.
    LeaveAlone,
    /// Nothing until `at` (Unix seconds).
    WaitUntil(i64),
    /// Order now (subject to the retry backoff unless forced).
    Issue(Reason),
}

/// Decides what to do about one ACME-enabled domain at `now`.
///
/// `renew_at` and `jitter` go to [`schedule::renewal`]; `ari` is the CA's
/// window if it gave one; `directory` is the configured ACME directory.
pub fn decide(
    view: DomainView<'_>,
    forced: bool,
    directory: &str,
    ari: Option<RenewalWindow>,
    now: i64,
    renew_at: f64,
    jitter: f64,
) -> Decision {
    if view.configured_by_hand {
        return Decision::LeaveAlone;
    }
    let Some(served) = view.served else {
        return match view.stored {
            StoredFile::NotOurs => Decision::LeaveAlone,
            StoredFile::Ours => Decision::Issue(if forced {
                Reason::Forced
            } else {
                Reason::Broken
            }),
            StoredFile::Missing => Decision::Issue(if forced {
                Reason::Forced
            } else {
                Reason::NoCertificate
            }),
        };
    };
    if !served.acme_issued {
        return Decision::LeaveAlone;
    }
    if forced {
        return Decision::Issue(Reason::Forced);
    }
    if view.broken {
        return Decision::Issue(Reason::Broken);
    }
    if served.directory.is_some_and(|d| d != directory) {
        return Decision::Issue(Reason::DirectoryChanged);
    }
    if !served.names_match {
        return Decision::Issue(Reason::NamesChanged);
    }
    let renewal = schedule::renewal(
        served.not_before,
        served.not_after,
        ari,
        now,
        renew_at,
        jitter,
    );
    if renewal.due {
        Decision::Issue(Reason::Renewal(renewal.basis))
    } else {
        Decision::WaitUntil(renewal.at)
    }
}
