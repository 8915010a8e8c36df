//! A listener's access log: its format and its destination's writer
//! ([`super::writer`]), and the cache that keeps it in step with the
//! listener's current settings (a reload may change the format or the file;
//! the new settings apply from the next request or tunnel on).

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;

use super::record::{
    LineTime, RequestRecord, TlsTunnelRecord, TunnelOutcome, request_line, tls_tunnel_line,
};
use super::writer::{AccessWriter, Destination, writer_for};
use crate::config::{AccessLogConfig, AccessLogFormat};

/// Writes access-log lines in one format to one destination.
#[derive(Debug)]
pub struct AccessLog {
    format: AccessLogFormat,
    writer: Arc<AccessWriter>,
}

impl AccessLog {
    /// The access log `config` asks for; its destination's writer is shared
    /// with every other log writing there.
    pub fn open(config: &AccessLogConfig) -> Self {
        let destination = match &config.file {
            Some(path) => Destination::File(path.clone()),
            None => Destination::Stderr,
        };
        AccessLog {
            format: config.format,
            writer: writer_for(&destination),
        }
    }

    /// The line of a request whose response body is done (`bytes` sent), or
    /// of a WebSocket that ended (`tunnel`).
    pub fn request(&self, record: &RequestRecord, bytes: u64, tunnel: Option<&TunnelOutcome>) {
        let time = LineTime {
            now: SystemTime::now(),
            duration: record.started.elapsed(),
        };
        self.writer
            .write(request_line(self.format, record, bytes, tunnel, time));
    }

    /// The line of a `tls` listener's connection that ended.
    pub fn tls_tunnel(&self, record: &TlsTunnelRecord, outcome: &TunnelOutcome) {
        let time = LineTime {
            now: SystemTime::now(),
            duration: record.started.elapsed(),
        };
        self.writer
            .write(tls_tunnel_line(self.format, record, outcome, time));
    }
}

/// A listener's [`AccessLog`] for its current settings, made again only
/// when they change. Read only while the log is on: with `access_log:
/// false` a request never touches it.
#[derive(Debug, Default)]
pub struct AccessLogSlot {
    current: ArcSwapOption<(AccessLogConfig, Arc<AccessLog>)>,
}

impl AccessLogSlot {
    /// A slot opened for `config` already, so the file is created (or its
    /// error logged) when the listener starts, not at its first request.
    pub fn new(config: Option<&AccessLogConfig>) -> Self {
        let slot = AccessLogSlot::default();
        if let Some(config) = config {
            slot.get(config);
        }
        slot
    }

    /// The access log for `config`.
    pub fn get(&self, config: &AccessLogConfig) -> Arc<AccessLog> {
        if let Some(current) = &*self.current.load()
            && current.0 == *config
        {
            return current.1.clone();
        }
        let log = Arc::new(AccessLog::open(config));
        self.current
            .store(Some(Arc::new((config.clone(), log.clone()))));
        log
    }
}
