//! One JSON object on one line, written field by field: the shape of every
//! JSON log line (events and the access log). Strings are escaped by
//! `serde_json`, so a path, a user agent or an error message with quotes,
//! backslashes or control characters never breaks a line.

use std::fmt::{self, Write as _};

/// A JSON object being written, fields in the order they are added.
#[derive(Debug)]
pub struct JsonObject {
    out: Vec<u8>,
    /// For values that are written through `Display` (an address, a time):
    /// formatted here, then escaped into `out`; kept for the whole line.
    scratch: String,
    empty: bool,
}

impl Default for JsonObject {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonObject {
    /// An empty object (`{`).
    pub fn new() -> Self {
        let mut out = Vec::with_capacity(512);
        out.push(b'{');
        JsonObject {
            out,
            scratch: String::new(),
            empty: true,
        }
    }

    /// `"key":"value"`.
    pub fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        self.escaped(value);
    }

    /// `"key":"value"`, or `"key":null` for `None`.
    pub fn optional_string(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(value) => self.string(key, value),
            None => self.null(key),
        }
    }

    /// `"key":"value"` with `value` written by its `Display`.
    pub fn display(&mut self, key: &str, value: impl fmt::Display) {
        self.scratch.clear();
        // Writing into a String cannot fail.
        let _ = write!(self.scratch, "{value}");
        self.key(key);
        let scratch = std::mem::take(&mut self.scratch);
        self.escaped(&scratch);
        self.scratch = scratch;
    }

    /// `"key":N`.
    pub fn unsigned(&mut self, key: &str, value: u64) {
        self.key(key);
        let _ = write!(Bytes(&mut self.out), "{value}");
    }

    /// `"key":N.NNN`: a non-negative amount written with three decimals
    /// (a duration in milliseconds, to the microsecond).
    pub fn thousandths(&mut self, key: &str, thousandths: u64) {
        self.key(key);
        let _ = write!(
            Bytes(&mut self.out),
            "{}.{:03}",
            thousandths / 1000,
            thousandths % 1000
        );
    }

    /// `"key":null`.
    pub fn null(&mut self, key: &str) {
        self.key(key);
        self.out.extend_from_slice(b"null");
    }

    /// `"key":` and a value already serialised as JSON.
    pub fn value(&mut self, key: &str, value: &serde_json::Value) {
        self.key(key);
        // Serialising a `Value` into memory cannot fail.
        let _ = serde_json::to_writer(&mut self.out, value);
    }

    /// The object closed, with the line's `\n`.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"}\n");
        self.out
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.escaped(key);
        self.out.push(b':');
    }

    fn escaped(&mut self, text: &str) {
        // Serialising a string into memory cannot fail.
        let _ = serde_json::to_writer(&mut self.out, text);
    }
}

/// `fmt::Write` into a byte buffer (numbers are ASCII).
struct Bytes<'a>(&'a mut Vec<u8>);

impl fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: Vec<u8>) -> serde_json::Map<String, serde_json::Value> {
        assert_eq!(line.last(), Some(&b'\n'), "one line");
        assert_eq!(
            line.iter().filter(|&&b| b == b'\n').count(),
            1,
            "no raw newline inside"
        );
        serde_json::from_slice(&line).expect("valid JSON")
    }

    #[test]
    fn values_keep_their_types_and_strings_are_escaped() {
        let nasty = "quote \" backslash \\ newline \n tab \t bell \u{7} é 日本";
        let mut object = JsonObject::new();
        object.string("text", nasty);
        object.optional_string("absent", None);
        object.display(
            "peer",
            "127.0.0.1:9".parse::<std::net::SocketAddr>().expect("addr"),
        );
        object.unsigned("bytes", 12345);
        object.thousandths("duration_ms", 1_234_567);
        object.thousandths("short_ms", 7);
        object.value("flag", &serde_json::Value::Bool(true));
        let map = parsed(object.finish());
        assert_eq!(map["text"], nasty);
        assert!(map["absent"].is_null());
        assert_eq!(map["peer"], "127.0.0.1:9");
        assert_eq!(map["bytes"], 12345);
        assert_eq!(map["duration_ms"].as_f64(), Some(1234.567));
        assert_eq!(map["short_ms"].as_f64(), Some(0.007));
        assert_eq!(map["flag"], true);
    }

    #[test]
    fn fields_stay_in_the_order_written() {
        let mut object = JsonObject::new();
        object.string("ts", "t");
        object.string("level", "info");
        object.string("msg", "m");
        let line = String::from_utf8(object.finish()).expect("utf-8");
        assert_eq!(line, "{\"ts\":\"t\",\"level\":\"info\",\"msg\":\"m\"}\n");
    }

    #[test]
    fn an_empty_object_is_valid() {
        assert!(parsed(JsonObject::new().finish()).is_empty());
    }
}
