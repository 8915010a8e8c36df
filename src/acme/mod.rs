//! ACME certificate issuance and renewal.
//!
//! `schedule` decides *when* (renewal points, retry backoff, expiry
//! warnings) as pure functions of the times it is given, so the client that
//! talks to the CA only has to do what it says.

pub mod schedule;
