//! What sniwalk instances share, behind one interface ([`Storage`]).
//!
//! - `api`: the interface, its conditions, locks with fencing and watches.

mod api;

pub use api::{
    Change, Condition, DEFAULT_LEASE, HeldLock, Listing, Revision, Storage, StorageError, Stored,
    WATCH_BUFFER, check_key,
};
