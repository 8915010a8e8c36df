//! The JSON event lines through a real `tracing` subscriber.

use std::io;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing_subscriber::fmt::MakeWriter;

use super::*;

/// What the subscriber wrote.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

/// The lines `emit` logs through the JSON formatter, each parsed.
fn json_lines(emit: impl FnOnce()) -> Vec<Map<String, Value>> {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .event_format(JsonEvents)
        .fmt_fields(JsonFields)
        .finish();
    tracing::subscriber::with_default(subscriber, emit);
    let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("UTF-8");
    assert!(text.ends_with('\n'), "whole lines: {text:?}");
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[test]
fn an_event_is_one_object_with_typed_fields() {
    let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let lines = json_lines(|| {
        tracing::info!(
            domain = "a.example.com",
            count = 3u64,
            offset = -2i64,
            ratio = 0.5,
            ok = true,
            %peer,
            tricky = "quote \" backslash \\ newline \n end",
            "certificate loaded"
        );
    });
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    let keys: Vec<&str> = line.keys().map(String::as_str).collect();
    for key in ["ts", "level", "msg", "target", "domain", "count", "ok"] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    let ts = line["ts"].as_str().expect("ts is text");
    OffsetDateTime::parse(ts, &Rfc3339).expect("ts is RFC 3339");
    assert!(
        ts.ends_with('Z') && ts.len() == 24,
        "UTC, milliseconds: {ts}"
    );
    assert_eq!(line["level"], "info");
    assert_eq!(line["msg"], "certificate loaded");
    assert_eq!(line["target"], module_path!());
    assert_eq!(line["domain"], "a.example.com");
    assert_eq!(line["count"], 3);
    assert_eq!(line["offset"], -2);
    assert_eq!(line["ratio"], 0.5);
    assert_eq!(line["ok"], true);
    assert_eq!(line["peer"], "127.0.0.1:40000");
    assert_eq!(line["tricky"], "quote \" backslash \\ newline \n end");
}

#[test]
fn the_message_is_formatted_and_levels_are_lower_case() {
    let lines = json_lines(|| {
        tracing::warn!(file = "/etc/x.pem", "cannot read {}: {}", "x", 5);
        tracing::error!("plain");
        tracing::debug!(n = 1u64, "debug");
    });
    assert_eq!(lines[0]["msg"], "cannot read x: 5");
    assert_eq!(lines[0]["level"], "warn");
    assert_eq!(lines[0]["file"], "/etc/x.pem");
    assert_eq!(lines[1]["level"], "error");
    assert_eq!(lines[2]["level"], "debug");
}

#[test]
fn a_field_with_a_reserved_name_does_not_replace_the_line_s_own() {
    let lines = json_lines(|| tracing::info!(ts = 5u64, msg = "mine", "the message"));
    let line = &lines[0];
    assert_eq!(line["msg"], "the message");
    assert!(line["ts"].is_string());
    assert_eq!(line["field_ts"], 5);
    assert_eq!(line["field_msg"], "mine");
}

#[test]
fn span_fields_are_flattened_and_the_event_s_own_win() {
    let lines = json_lines(|| {
        let span = tracing::info_span!("connection", listener = "ws", port = 4000u64);
        span.in_scope(|| {
            let inner = tracing::info_span!("request", path = "/a");
            inner.record("path", "/b");
            inner.in_scope(|| tracing::info!(port = 1u64, "in a span"));
        });
    });
    let line = &lines[0];
    assert_eq!(line["listener"], "ws");
    assert_eq!(line["port"], 1, "the event's own value");
    assert!(
        line["path"] == "/a" || line["path"] == "/b",
        "a recorded span field: {line:?}"
    );
}

#[derive(Debug, thiserror::Error)]
#[error("cannot load the key")]
struct Outer(#[source] io::Error);

#[test]
fn an_error_field_carries_its_causes() {
    let error = Outer(io::Error::other("permission denied"));
    let lines = json_lines(|| {
        tracing::error!(
            error = &error as &(dyn std::error::Error + 'static),
            "failed"
        )
    });
    assert_eq!(lines[0]["error"], "cannot load the key: permission denied");
}

#[test]
fn the_text_timer_writes_rfc3339_milliseconds() {
    let mut text = String::new();
    Rfc3339MillisTimer
        .format_time(&mut Writer::new(&mut text))
        .expect("format");
    assert_eq!(text.len(), 24, "{text}");
    assert!(text.ends_with('Z'), "{text}");
    OffsetDateTime::parse(&text, &Rfc3339).expect("RFC 3339");
}
