//! `log:` and `access_log:` of `proxy.yaml`: how sniwalk's own events are
//! written, and where and how each listener's access log goes (README:
//! Logs). A top-level `access_log:` is the default every listener inherits;
//! a listener's own `access_log:` replaces it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::log_settings::{
    AccessLogConfig, AccessLogFormat, DEFAULT_LOG_LEVEL, LogConfig, LogFormat,
};
use super::paths::{PathError, PathResolver};
use super::types::ListenerKind;

/// Why `log:` or an `access_log:` is refused; each message names the field.
#[derive(Debug, thiserror::Error)]
pub enum LogsConfigError {
    /// `log.level` that `tracing` cannot read.
    #[error(
        "log.level: `{level}` is not a log filter ({error}); use error, warn, info, debug or \
         trace, or directives such as `info,sniwalk::proxy=debug`"
    )]
    Level {
        /// The value as written.
        level: String,
        /// What the filter parser said.
        error: String,
    },
    /// An access-log file whose folder does not exist.
    #[error(
        "{field}: the folder `{}` does not exist; create it (sniwalk creates the file in it, \
         mode 0640, but not the folder)",
        folder.display()
    )]
    NoFolder {
        /// `access_log.file` or `listeners.NAME.access_log.file`.
        field: String,
        /// The folder.
        folder: PathBuf,
    },
    /// An access-log file that is a folder.
    #[error("{field}: `{}` is a folder; name a file in it, e.g. `{}`", file.display(), file.join("access.log").display())]
    FileIsFolder {
        /// `access_log.file` or `listeners.NAME.access_log.file`.
        field: String,
        /// The path as resolved.
        file: PathBuf,
    },
    /// `format: combined` for a `tls` listener, which has no HTTP requests.
    #[error(
        "{field}: the `combined` format{inherited} is for HTTP requests, and a `tls` listener \
         logs tunnels; give this listener `access_log: {{ format: text }}` or `json` (with the \
         same `file` if you want), or `access_log: false`"
    )]
    CombinedOnTls {
        /// The listener's field (`listeners.NAME.access_log`).
        field: String,
        /// ` (inherited from the top-level access_log)`, or empty.
        inherited: &'static str,
    },
    /// A path that cannot be used.
    #[error(transparent)]
    Path(#[from] PathError),
}

/// `log:` as written.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Log")]
pub(super) struct RawLog {
    /// `text` (default) or `json` (one object per line: ts, level, msg, target, fields).
    #[serde(default)]
    pub(super) format: Option<LogFormat>,
    /// A filter like RUST_LOG (`info`, `warn,sniwalk=debug`); RUST_LOG wins when set.
    #[serde(default)]
    pub(super) level: Option<String>,
}

/// `access_log:` as written: `true`, `false` or `{ format, file }`.
pub(super) enum RawAccessLog {
    /// `true` or `false`.
    Switch(bool),
    /// `{ format, file }`: on, with these settings.
    Settings(RawAccessLogSettings),
}

/// `access_log: { format, file }`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AccessLogSettings")]
pub(super) struct RawAccessLogSettings {
    /// `text`, `combined` (Apache/nginx) or `json`; default: like `log.format`.
    #[serde(default)]
    pub(super) format: Option<AccessLogFormat>,
    /// Write to this file (created 0640, reopened on SIGUSR1) instead of standard error.
    #[serde(default)]
    pub(super) file: Option<String>,
}

impl<'de> Deserialize<'de> for RawAccessLog {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor rather than `#[serde(untagged)]`, whose error ("did not
        // match any variant") would name neither form.
        struct RawAccessLogVisitor;
        impl<'de> Visitor<'de> for RawAccessLogVisitor {
            type Value = RawAccessLog;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean (true or false) or a map `{ format, file }`")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<RawAccessLog, E> {
                Ok(RawAccessLog::Switch(on))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawAccessLog, A::Error> {
                RawAccessLogSettings::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawAccessLog::Settings)
            }
        }
        deserializer.deserialize_any(RawAccessLogVisitor)
    }
}

/// The validated `log:` block (its defaults when absent).
pub(super) fn log_from_raw(raw: Option<RawLog>) -> Result<LogConfig, LogsConfigError> {
    let raw = raw.unwrap_or_default();
    let level = raw
        .level
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string());
    // An empty filter parses, and would silence everything but errors.
    let parsed = match level.as_str() {
        "" => Err("it is empty".to_string()),
        text => tracing_subscriber::EnvFilter::builder()
            .parse(text)
            .map(drop)
            .map_err(|e| e.to_string()),
    };
    if let Err(error) = parsed {
        return Err(LogsConfigError::Level { level, error });
    }
    Ok(LogConfig {
        format: raw.format.unwrap_or(LogFormat::Text),
        level,
    })
}

/// The top-level `access_log:`, the default of every listener: absent or
/// `true` is on, to standard error, in the format of `log:`.
pub(super) fn default_access_log(
    raw: Option<RawAccessLog>,
    log: &LogConfig,
    paths: &PathResolver<'_>,
) -> Result<Option<AccessLogConfig>, LogsConfigError> {
    match raw {
        None | Some(RawAccessLog::Switch(true)) => Ok(Some(to_stderr(log))),
        Some(RawAccessLog::Switch(false)) => Ok(None),
        Some(RawAccessLog::Settings(settings)) => {
            settings_from_raw(settings, log, paths, "access_log").map(Some)
        }
    }
}

/// A listener's access log: its own `access_log:` (a map replaces the
/// top-level one; `true` takes the top-level one, or the built-in default
/// when that one is `false`), else the top-level one.
pub(super) fn listener_access_log(
    raw: Option<RawAccessLog>,
    default: Option<&AccessLogConfig>,
    log: &LogConfig,
    kind: ListenerKind,
    listener_field: &str,
    paths: &PathResolver<'_>,
) -> Result<Option<AccessLogConfig>, LogsConfigError> {
    let field = format!("{listener_field}.access_log");
    let (chosen, inherited) = match raw {
        None => (default.cloned(), true),
        Some(RawAccessLog::Switch(false)) => (None, false),
        Some(RawAccessLog::Switch(true)) => (
            Some(default.cloned().unwrap_or_else(|| to_stderr(log))),
            default.is_some(),
        ),
        Some(RawAccessLog::Settings(settings)) => (
            Some(settings_from_raw(settings, log, paths, &field)?),
            false,
        ),
    };
    if kind == ListenerKind::Tls
        && chosen
            .as_ref()
            .is_some_and(|c| c.format == AccessLogFormat::Combined)
    {
        return Err(LogsConfigError::CombinedOnTls {
            field,
            inherited: if inherited {
                " (inherited from the top-level access_log)"
            } else {
                ""
            },
        });
    }
    Ok(chosen)
}

/// On, to standard error, in the format of `log:`.
fn to_stderr(log: &LogConfig) -> AccessLogConfig {
    AccessLogConfig {
        format: log.format.into(),
        file: None,
    }
}

/// `{ format, file }` checked: the file's folder must exist (the file
/// itself is created when the proxy starts).
fn settings_from_raw(
    raw: RawAccessLogSettings,
    log: &LogConfig,
    paths: &PathResolver<'_>,
    field: &str,
) -> Result<AccessLogConfig, LogsConfigError> {
    let file = match raw.file {
        None => None,
        Some(file) => {
            let field = format!("{field}.file");
            let file = paths.resolve(&file, &field)?;
            check_log_file(&file, &field)?;
            Some(file)
        }
    };
    Ok(AccessLogConfig {
        format: raw.format.unwrap_or(log.format.into()),
        file,
    })
}

/// A log file may be created where its folder exists, and is no folder.
fn check_log_file(file: &Path, field: &str) -> Result<(), LogsConfigError> {
    if file.is_dir() {
        return Err(LogsConfigError::FileIsFolder {
            field: field.to_string(),
            file: file.to_path_buf(),
        });
    }
    match file.parent() {
        Some(folder) if !folder.as_os_str().is_empty() && !folder.is_dir() => {
            Err(LogsConfigError::NoFolder {
                field: field.to_string(),
                folder: folder.to_path_buf(),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
