//! Load balancing over a group of backends (issue 15, in slices): which
//! backend of a route's or `tls` listener's group takes the next request
//! or tunnel.
//!
//! [`pick`] holds the choice itself as pure functions of the candidates'
//! weights, open sessions and health, with no I/O and no clock, so the
//! rules are tested on their own: smooth weighted round robin (nginx's),
//! least connections relative to weight, and client-address affinity by
//! weighted rendezvous hashing.

pub mod pick;
