//! The immutable certificate state every handshake reads.
//!
//! A [`Snapshot`] holds the domain tree with each domain's parsed certificate,
//! each listener's certdir and the default certificate, plus every problem
//! found while loading them. It is built off the handshake path (at start,
//! and later on every reload) and published behind one `ArcSwap`.
//!
//! Problems are found here, when a snapshot is built, never during a
//! handshake (README, "How a certificate is chosen"): unreadable files, bad PEM, keys that
//! match no certificate, expired or soon-expiring certificates and
//! certificates that do not cover their own domain. A source that fails to
//! load counts as having no certificate, so the walk goes on past it; when
//! the previous snapshot had a working certificate from the same file, that
//! one keeps serving (last good), unless the file was deleted.

pub mod backend_tls;
mod build;
mod certificate;
mod default_cert;
mod last_good;
mod loaders;
mod model;
mod report;
mod roots;
mod store;
mod trust;

#[cfg(test)]
mod tests;

pub use certificate::{FileStamp, LoadedCertificate, SourceKind, SourceStamp};
pub use default_cert::{DefaultPolicy, generate_self_signed_pem, store_generated_default};
pub use last_good::Changes;
pub use loaders::{CERTDIR_CERT, CERTDIR_KEY};
pub use model::{BackendTlsEntry, Choice, ClientCa, Snapshot, SnapshotError};
pub use report::{Place, Problem, Severity, SourceReport};
pub use roots::TrustError;
pub use store::{SnapshotReader, SnapshotWriter};
