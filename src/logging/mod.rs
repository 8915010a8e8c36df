//! Logs (README: Logs): sniwalk's own events as text or JSON lines on
//! standard error, and the access log (one line per request, and one per
//! WebSocket or `tls` tunnel when it ends) as text, `combined` or JSON, to
//! standard error or a file reopened on SIGUSR1.
//!
//! The files, from the bottom up:
//! - `timestamp`: RFC 3339 UTC with milliseconds, and the common log
//!   format's time;
//! - `json`: one JSON object per line, strings escaped by serde_json;
//! - `events`: the `tracing` formatters (text times, JSON events) and
//!   [`events::install`];
//! - `record`: what an access-log line says and the line in each format
//!   (pure);
//! - `writer`: one writer thread per destination, SIGUSR1 reopening;
//! - `access`: a listener's access log and the cache that follows reloads.

pub mod access;
pub mod events;
pub mod json;
pub mod record;
pub mod timestamp;
pub mod writer;
