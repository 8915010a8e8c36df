//! What sniwalk instances share, behind one interface ([`Storage`]).
//!
//! - `api`: the interface, its conditions, locks with fencing and watches.
//! - `dir`: the state directory's files (the default engine); `dir_lock`:
//!   its lock files with a lease.
//! - `keys`: the names of what instances share; `shared`: this instance's
//!   handle on the engine (and the local cache of a remote one);
//!   `follow`: list, then watch, and apply what other instances share;
//!   `open`: the engine the configuration names; `health`: whether it
//!   can be reached; `liveness`: this instance's key on a lease;
//!   `ticket_keys`: session ticket keys rotated under a lock; `probe`:
//!   `sniwalk check`'s look at it; `document`: read-modify-write of a
//!   shared JSON document (the domain store) with a compare-and-swap.
//! - `migrate`: `sniwalk storage ls` (what a storage holds, never a value)
//!   and `sniwalk storage migrate` (one storage copied into another).
//! - `etcd`: the etcd engine (cargo feature `etcd`); `etcd_tasks`: its
//!   lease keep-alive and watch tasks, errors and keys read from etcd;
//!   `etcd_lazy`: the same, connecting on first use (started while etcd
//!   is down).

mod api;
mod dir;
pub mod dir_lock;
pub mod document;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod etcd_lazy;
#[cfg(feature = "etcd")]
mod etcd_tasks;
pub mod follow;
pub mod health;
pub mod keys;
pub mod liveness;
mod migrate;
mod open;
mod probe;
mod shared;
pub mod ticket_keys;

pub use api::{
    Change, Condition, DEFAULT_LEASE, HeldLock, Listing, Revision, Storage, StorageError, Stored,
    WATCH_BUFFER, check_key,
};
pub use dir::{DirStorage, MAX_VALUE_BYTES};
#[cfg(feature = "etcd")]
pub use etcd::{ClientIdentity, EtcdOptions, EtcdStorage};
pub use migrate::{
    CertificateInfo, Decision, Inventory, KeyInfo, KeyReport, MigrateError, MigrationReport,
    Reason, TRANSIENT, check_distinct, decide, inventory, inventory_of, is_transient, migrate,
    migrate_configs,
};
pub use open::open;
pub use probe::{StorageProbe, probe};
pub use shared::{Shared, StoreError, instance_name, write_cache, write_cache_key};
