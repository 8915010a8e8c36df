//! The settings of `log:` and `access_log:` (README: Logs) as the rest of
//! the crate reads them; a leaf, so the listener type can hold its access
//! log's settings. They are read and checked in `logs`.

use std::path::PathBuf;

use serde::Deserialize;

/// `log:`, read once at start (a change needs a restart: the logger is
/// installed before anything else runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// How each event line is written.
    pub format: LogFormat,
    /// The filter used when `RUST_LOG` is not set (`RUST_LOG` wins): a
    /// level (`info`) or `tracing` directives (`info,sniwalk::proxy=debug`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: DEFAULT_LOG_LEVEL.to_string(),
        }
    }
}

/// The filter when neither `log.level` nor `RUST_LOG` says.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `tracing`'s usual lines, with RFC 3339 UTC times in milliseconds.
    Text,
    /// One JSON object per line (README: Logs, the field table).
    Json,
}

/// `access_log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// Like the event lines: time, level, target, then `key=value` pairs.
    Text,
    /// Apache's and nginx's `combined` format, for GoAccess and the parsers
    /// that read it.
    Combined,
    /// One JSON object per line, with the fields of the README's table.
    Json,
}

impl AccessLogFormat {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLogFormat::Text => "text",
            AccessLogFormat::Combined => "combined",
            AccessLogFormat::Json => "json",
        }
    }
}

impl From<LogFormat> for AccessLogFormat {
    /// The access log's format when none is given: that of `log:`, so a
    /// `log: { format: json }` stderr holds JSON lines only.
    fn from(format: LogFormat) -> Self {
        match format {
            LogFormat::Text => AccessLogFormat::Text,
            LogFormat::Json => AccessLogFormat::Json,
        }
    }
}

/// A listener's access log, when it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// How each line is written.
    pub format: AccessLogFormat,
    /// The file lines are appended to (created 0640, reopened on SIGUSR1);
    /// `None`: standard error.
    pub file: Option<PathBuf>,
}
