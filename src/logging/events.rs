//! sniwalk's own log lines (`log:`, README: Logs): `tracing` events to
//! standard error, as text (tracing's usual lines, RFC 3339 UTC times with
//! milliseconds) or as one JSON object per line, with stable names: `ts`,
//! `level`, `msg`, `target`, then every field of the event (and of its
//! spans) under its own name, numbers as numbers and booleans as booleans.
//!
//! A custom formatter rather than tracing-subscriber's `json` feature: that
//! one names the time `timestamp` and nests the fields under `fields` (the
//! message as `fields.message`), and cannot rename them.

use std::fmt;
use std::io::IsTerminal as _;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::json::JsonObject;
use super::timestamp::Rfc3339Millis;
use crate::config::LogFormat;

/// Installs the process's logger: `format` to standard error, filtered by
/// `RUST_LOG` when it is set and valid, else by `default_filter` (`log.level`).
/// Does nothing when a logger is installed already.
pub fn install(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_timer(Rfc3339MillisTimer)
            .try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .event_format(JsonEvents)
            .fmt_fields(JsonFields)
            .try_init(),
    };
}

/// The text lines' time: RFC 3339 UTC with milliseconds (tracing's own
/// prints microseconds).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rfc3339MillisTimer;

impl FormatTime for Rfc3339MillisTimer {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write!(w, "{}", Rfc3339Millis(SystemTime::now()))
    }
}

/// Writes each event as one JSON object on one line (see the module).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonEvents;

impl<S, N> FormatEvent<S, N> for JsonEvents
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = FieldCollector::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        let spans = ctx.event_scope().into_iter().flatten().filter_map(|span| {
            let extensions = span.extensions();
            let formatted = extensions.get::<FormattedFields<N>>()?;
            span_fields(&formatted.fields)
        });
        let line = event_line(
            SystemTime::now(),
            metadata.level(),
            metadata.target(),
            fields,
            spans,
        );
        writer.write_str(&String::from_utf8_lossy(&line))
    }
}

/// Records span fields as JSON members (`"name":value,...`, no braces),
/// which [`JsonEvents`] reads back to flatten them into the event's line.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut collected = FieldCollector::default();
        fields.record(&mut collected);
        writer.write_str(&members(collected.into_members()))
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut collected = FieldCollector::default();
        fields.record(&mut collected);
        let added = members(collected.into_members());
        if !current.fields.is_empty() && !added.is_empty() {
            current.fields.push(',');
        }
        current.fields.push_str(&added);
        Ok(())
    }
}

/// The names every JSON event line starts with; an event field of the same
/// name is written as `field_NAME` instead (never a duplicate key).
pub const RESERVED: [&str; 4] = ["ts", "level", "msg", "target"];

/// One event's JSON line: `ts`, `level`, `msg`, `target`, the event's
/// fields, then those of its spans (innermost first) whose names are not
/// taken yet.
pub fn event_line(
    now: SystemTime,
    level: &Level,
    target: &str,
    fields: FieldCollector,
    spans: impl Iterator<Item = serde_json::Map<String, serde_json::Value>>,
) -> Vec<u8> {
    let mut line = JsonObject::new();
    line.display("ts", Rfc3339Millis(now));
    line.string("level", level_name(level));
    line.string("msg", fields.message.as_deref().unwrap_or(""));
    // Events from the `log` crate (rustls) carry their real target as a
    // field; tracing's own text output shows that one too.
    line.string("target", fields.log_target.as_deref().unwrap_or(target));
    let mut written: Vec<String> = Vec::with_capacity(fields.fields.len());
    for (name, value) in &fields.fields {
        let name = unreserved(name);
        line.value(&name, value);
        written.push(name);
    }
    for span in spans {
        for (name, value) in span {
            let name = unreserved(&name);
            if !written.contains(&name) {
                line.value(&name, &value);
                written.push(name);
            }
        }
    }
    line.finish()
}

/// `field_NAME` for a name the line's first members use.
fn unreserved(name: &str) -> String {
    if RESERVED.contains(&name) {
        format!("field_{name}")
    } else {
        name.to_string()
    }
}

/// The level as JSON lines name it: lower case.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// `"a":1,"b":"x"` (JSON object members without the braces).
fn members(fields: Vec<(String, serde_json::Value)>) -> String {
    let object: serde_json::Map<String, serde_json::Value> = fields.into_iter().collect();
    let text = serde_json::Value::Object(object).to_string();
    text[1..text.len() - 1].to_string()
}

/// A span's members as [`JsonFields`] wrote them; `None` when there are
/// none (or, never expected, they do not read).
fn span_fields(members: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    if members.is_empty() {
        return None;
    }
    serde_json::from_str(&format!("{{{members}}}")).ok()
}

/// An event's (or span's) fields as JSON values, its message apart.
#[derive(Debug, Default)]
pub struct FieldCollector {
    /// The `message` field (the event's text).
    pub message: Option<String>,
    /// `log.target` of an event from the `log` crate.
    pub log_target: Option<String>,
    /// Every other field, in the order recorded.
    pub fields: Vec<(&'static str, serde_json::Value)>,
}

impl FieldCollector {
    fn push(&mut self, field: &Field, value: serde_json::Value) {
        match field.name() {
            "message" => {
                self.message = Some(match value {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                })
            }
            "log.target" => {
                if let serde_json::Value::String(target) = value {
                    self.log_target = Some(target);
                }
            }
            // The rest of the `log` crate's bookkeeping: where in the
            // dependency's source the line is, not what happened.
            "log.module_path" | "log.file" | "log.line" => {}
            name => self.fields.push((name, value)),
        }
    }

    fn into_members(self) -> Vec<(String, serde_json::Value)> {
        let mut members: Vec<(String, serde_json::Value)> = self
            .fields
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect();
        if let Some(message) = self.message {
            members.insert(0, ("message".to_string(), message.into()));
        }
        members
    }
}

impl Visit for FieldCollector {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and infinities have no JSON number: null.
        let value = serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, Into::into);
        self.push(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.into());
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value = i64::try_from(value).map_or_else(|_| value.to_string().into(), Into::into);
        self.push(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value = u64::try_from(value).map_or_else(|_| value.to_string().into(), Into::into);
        self.push(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The error and its causes on one line, as the messages in the
        // text lines read.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.push(field, text.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests;
