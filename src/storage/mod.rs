//! What sniwalk instances share, behind one interface ([`Storage`]).
//!
//! - `api`: the interface, its conditions, locks with fencing and watches.
//! - `etcd`: the etcd engine (cargo feature `etcd`); `etcd_tasks`: its
//!   lease keep-alive and watch tasks, errors and keys read from etcd.

mod api;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod etcd_tasks;

pub use api::{
    Change, Condition, DEFAULT_LEASE, HeldLock, Listing, Revision, Storage, StorageError, Stored,
    WATCH_BUFFER, check_key,
};
#[cfg(feature = "etcd")]
pub use etcd::{ClientIdentity, EtcdOptions, EtcdStorage};
