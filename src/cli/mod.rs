//! The command line's parts, one file per group of commands; `main.rs`
//! parses the arguments and calls them.

pub(crate) mod args;
pub(crate) mod certs;
pub(crate) mod config_path;
pub(crate) mod output;
pub(crate) mod run;
pub(crate) mod status;
pub(crate) mod storage;
