//! What an access-log line says, and the line itself in each format
//! (README: Logs): `text` (like the event lines: time, level, target, then
//! `key=value` pairs), `combined` (Apache's and nginx's, for GoAccess and
//! the parsers that read it) and `json` (one object per line). The field
//! names are a contract with whatever reads the logs (Loki, ELK): they are
//! listed in the README and never renamed silently.
//!
//! Pure: the time of the line and the duration are parameters, the result
//! is the line's bytes with its `\n`, written by one `write`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use hyper::header::HeaderValue;
use hyper::{Method, Version};

use super::json::JsonObject;
use super::timestamp::{CommonLogTime, Rfc3339Millis};
use crate::config::AccessLogFormat;
use crate::tree::Step;

/// The target access-log lines carry (`target` in JSON, after the level in
/// text), as event lines carry their module's.
pub const ACCESS_TARGET: &str = "sniwalk::access";

/// One HTTP request (or WebSocket) as the access log tells it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// The listener's name.
    pub listener: String,
    /// The client's address and port.
    pub peer: SocketAddr,
    /// The SNI the client sent (TLS listeners).
    pub sni: Option<String>,
    /// How the connection's certificate was chosen (TLS listeners).
    pub cert: Option<Step>,
    /// The request id: the client's `X-Request-Id` when it was sane, else
    /// one made for the request; the backend and the client got it too.
    pub request_id: HeaderValue,
    /// The request method.
    pub method: Method,
    /// The host asked for, lower case, without port.
    pub host: String,
    /// The path asked for, without the query (it may carry secrets).
    pub path: String,
    /// HTTP/1.1 or HTTP/2.
    pub protocol: Version,
    /// The client's `User-Agent`.
    pub user_agent: Option<HeaderValue>,
    /// The client's `Referer`.
    pub referer: Option<HeaderValue>,
    /// The response status.
    pub status: u16,
    /// The backend the request went to last (`HOST:PORT`).
    pub backend: Option<String>,
    /// When the request arrived.
    pub started: Instant,
}

/// A connection of a `tls` listener as the access log tells it, when it
/// ends.
#[derive(Debug, Clone)]
pub struct TlsTunnelRecord {
    /// The listener's name.
    pub listener: String,
    /// The client's address and port.
    pub peer: SocketAddr,
    /// The SNI the client sent.
    pub sni: Option<String>,
    /// How the certificate was chosen.
    pub cert: Step,
    /// The backend the bytes went to (`HOST:PORT`).
    pub backend: String,
    /// When the connection was accepted.
    pub started: Instant,
}

/// How a tunnel (WebSocket or `tls`) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelOutcome {
    /// Bytes from the client to the backend.
    pub up: u64,
    /// Bytes from the backend to the client.
    pub down: u64,
    /// `client_closed`, `backend_closed`, `idle_timeout`, `shutdown` or
    /// `error: ...`.
    pub end: String,
}

/// When a line is written: the time it carries and how long its request
/// or tunnel took.
#[derive(Debug, Clone, Copy)]
pub struct LineTime {
    /// The time written in the line (when the response or tunnel ended).
    pub now: SystemTime,
    /// From the request's arrival (the connection's, for `tls`) to now.
    pub duration: Duration,
}

/// The line for a request: `bytes` is the response body sent; a WebSocket
/// has its `tunnel` outcome too (its one line is written when it ends).
pub fn request_line(
    format: AccessLogFormat,
    record: &RequestRecord,
    bytes: u64,
    tunnel: Option<&TunnelOutcome>,
    time: LineTime,
) -> Vec<u8> {
    let msg = if tunnel.is_some() {
        "tunnel"
    } else {
        "request"
    };
    match format {
        AccessLogFormat::Combined => combined(record, bytes, time.now),
        AccessLogFormat::Json => {
            let mut line = json_start(msg, time.now);
            line.string("listener", &record.listener);
            line.display("peer", record.peer);
            line.string("request_id", &lossy(&record.request_id));
            line.string("method", record.method.as_str());
            line.string("host", &record.host);
            line.string("path", &record.path);
            line.string("protocol", protocol_name(record.protocol));
            line.unsigned("status", u64::from(record.status));
            line.unsigned("bytes", bytes);
            line.thousandths("duration_ms", micros(time.duration));
            line.optional_string(
                "user_agent",
                record.user_agent.as_ref().map(lossy).as_deref(),
            );
            line.optional_string("referer", record.referer.as_ref().map(lossy).as_deref());
            line.optional_string("sni", record.sni.as_deref());
            line.optional_string("cert", record.cert.map(Step::as_str));
            line.optional_string("backend", record.backend.as_deref());
            if let Some(tunnel) = tunnel {
                json_tunnel(&mut line, tunnel);
            }
            line.finish()
        }
        AccessLogFormat::Text => {
            let mut line = text_start(msg, time.now);
            pair(&mut line, "listener", Some(&record.listener));
            pair(&mut line, "peer", Some(&record.peer.to_string()));
            pair(&mut line, "request_id", Some(&lossy(&record.request_id)));
            pair(&mut line, "method", Some(record.method.as_str()));
            pair(&mut line, "host", Some(&record.host));
            pair(&mut line, "path", Some(&record.path));
            pair(&mut line, "protocol", Some(protocol_name(record.protocol)));
            let _ = write!(
                line,
                " status={} bytes={bytes} duration_ms={}",
                record.status,
                Thousandths(micros(time.duration))
            );
            pair(
                &mut line,
                "user_agent",
                record.user_agent.as_ref().map(lossy).as_deref(),
            );
            pair(
                &mut line,
                "referer",
                record.referer.as_ref().map(lossy).as_deref(),
            );
            pair(&mut line, "sni", record.sni.as_deref());
            pair(&mut line, "cert", record.cert.map(Step::as_str));
            pair(&mut line, "backend", record.backend.as_deref());
            if let Some(tunnel) = tunnel {
                text_tunnel(&mut line, tunnel);
            }
            line.push('\n');
            line.into_bytes()
        }
    }
}

/// The line for a `tls` listener's connection, when it ends. The
/// configuration refuses `combined` there (no HTTP request to write); were
/// it asked for anyway, the text line is written.
pub fn tls_tunnel_line(
    format: AccessLogFormat,
    record: &TlsTunnelRecord,
    outcome: &TunnelOutcome,
    time: LineTime,
) -> Vec<u8> {
    match format {
        AccessLogFormat::Json => {
            let mut line = json_start("tunnel", time.now);
            line.string("listener", &record.listener);
            line.display("peer", record.peer);
            line.optional_string("sni", record.sni.as_deref());
            line.string("cert", record.cert.as_str());
            line.string("backend", &record.backend);
            line.thousandths("duration_ms", micros(time.duration));
            json_tunnel(&mut line, outcome);
            line.finish()
        }
        AccessLogFormat::Text | AccessLogFormat::Combined => {
            let mut line = text_start("tunnel", time.now);
            pair(&mut line, "listener", Some(&record.listener));
            pair(&mut line, "peer", Some(&record.peer.to_string()));
            pair(&mut line, "sni", record.sni.as_deref());
            pair(&mut line, "cert", Some(record.cert.as_str()));
            pair(&mut line, "backend", Some(&record.backend));
            let _ = write!(line, " duration_ms={}", Thousandths(micros(time.duration)));
            text_tunnel(&mut line, outcome);
            line.push('\n');
            line.into_bytes()
        }
    }
}

/// `$remote_addr - $remote_user [$time_local] "$request" $status
/// $body_bytes_sent "$http_referer" "$http_user_agent"`, exactly as nginx
/// writes it (no user: `-`; an absent header: `-`), with nginx's escaping:
/// `"`, `\` and bytes outside printable ASCII as `\xHH`.
fn combined(record: &RequestRecord, bytes: u64, now: SystemTime) -> Vec<u8> {
    let mut line = Vec::with_capacity(256);
    let _ = std::io::Write::write_fmt(
        &mut line,
        format_args!("{} - - [{}] \"", record.peer.ip(), CommonLogTime(now)),
    );
    escape_combined(&mut line, record.method.as_str().as_bytes());
    line.push(b' ');
    escape_combined(&mut line, record.path.as_bytes());
    line.push(b' ');
    line.extend_from_slice(combined_protocol(record.protocol).as_bytes());
    let _ = std::io::Write::write_fmt(&mut line, format_args!("\" {} {bytes} \"", record.status));
    quoted_header(&mut line, record.referer.as_ref());
    line.extend_from_slice(b"\" \"");
    quoted_header(&mut line, record.user_agent.as_ref());
    line.extend_from_slice(b"\"\n");
    line
}

fn quoted_header(line: &mut Vec<u8>, value: Option<&HeaderValue>) {
    match value.map(HeaderValue::as_bytes) {
        Some(bytes) if !bytes.is_empty() => escape_combined(line, bytes),
        _ => line.push(b'-'),
    }
}

/// nginx's default escaping of logged variables.
fn escape_combined(line: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..=0x7e).contains(&b) {
            let _ = std::io::Write::write_fmt(line, format_args!("\\x{b:02X}"));
        } else {
            line.push(b);
        }
    }
}

/// The protocol in `text` and `json` lines.
fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// The protocol in `combined` lines, as nginx's `$server_protocol`.
fn combined_protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        other => protocol_name(other),
    }
}

fn json_start(msg: &str, now: SystemTime) -> JsonObject {
    let mut line = JsonObject::new();
    line.display("ts", Rfc3339Millis(now));
    line.string("level", "info");
    line.string("msg", msg);
    line.string("target", ACCESS_TARGET);
    line
}

fn json_tunnel(line: &mut JsonObject, tunnel: &TunnelOutcome) {
    line.unsigned("up", tunnel.up);
    line.unsigned("down", tunnel.down);
    line.string("end", &tunnel.end);
}

/// `2026-03-01T12:34:56.789Z  INFO sniwalk::access: request`, as tracing's
/// text lines start.
fn text_start(msg: &str, now: SystemTime) -> String {
    let mut line = String::with_capacity(320);
    let _ = write!(line, "{}  INFO {ACCESS_TARGET}: {msg}", Rfc3339Millis(now));
    line
}

fn text_tunnel(line: &mut String, tunnel: &TunnelOutcome) {
    let _ = write!(line, " up={} down={}", tunnel.up, tunnel.down);
    pair(line, "end", Some(&tunnel.end));
}

/// ` key=value`: `-` when absent; quoted (with `\"`, `\\` and `\n`, `\r`,
/// `\t`, `\xHH` escapes) when empty or holding a space, `"`, `=`, `\` or a
/// control character, so every line splits back into its pairs.
fn pair(line: &mut String, key: &str, value: Option<&str>) {
    line.push(' ');
    line.push_str(key);
    line.push('=');
    let Some(value) = value else {
        line.push('-');
        return;
    };
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control());
    if plain {
        line.push_str(value);
        return;
    }
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(line, "\\x{:02X}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// A header value as text: a header may hold bytes outside ASCII, which
/// are kept as UTF-8 where they are, else replaced.
fn lossy(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// `1234.567` from 1234567 thousandths.
struct Thousandths(u64);

impl std::fmt::Display for Thousandths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

#[cfg(test)]
mod tests;
