//! Each format's line for fixed records and a fixed time.

use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::*;

/// 2000-10-10T13:55:36.250Z, Apache's documentation example.
fn at() -> LineTime {
    LineTime {
        now: UNIX_EPOCH + Duration::from_millis(971_186_136_250),
        duration: Duration::from_micros(1_234_567),
    }
}

fn record() -> RequestRecord {
    RequestRecord {
        listener: "ws".into(),
        peer: "192.0.2.7:40000".parse().expect("addr"),
        sni: Some("app.example.com".into()),
        cert: Some(Step::Ancestor),
        request_id: HeaderValue::from_static("0123456789abcdef0123456789abcdef"),
        method: Method::GET,
        host: "app.example.com".into(),
        path: "/api/items".into(),
        protocol: Version::HTTP_11,
        user_agent: Some(HeaderValue::from_static(
            "Mozilla/5.0 (X11; Linux) \"quoted\"",
        )),
        referer: None,
        status: 200,
        backend: Some("10.0.0.5:8080".into()),
        started: Instant::now(),
    }
}

fn tls_record() -> TlsTunnelRecord {
    TlsTunnelRecord {
        listener: "sip".into(),
        peer: "[2001:db8::7]:5070".parse().expect("addr"),
        sni: None,
        cert: Step::Certdir,
        backend: "127.0.0.1:5060".into(),
        started: Instant::now(),
    }
}

fn outcome() -> TunnelOutcome {
    TunnelOutcome {
        up: 812,
        down: 4096,
        end: "client_closed".into(),
    }
}

fn text(line: Vec<u8>) -> String {
    let line = String::from_utf8(line).expect("UTF-8");
    assert!(line.ends_with('\n'));
    assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
    line
}

fn json(line: Vec<u8>) -> Map<String, Value> {
    serde_json::from_str(&text(line)).expect("JSON")
}

/// Asserts that `line` (JSON) has exactly `keys`, in this order.
fn assert_keys_in_order(line: &[u8], keys: &[&str]) {
    let text = std::str::from_utf8(line).expect("UTF-8");
    let map: Map<String, Value> = serde_json::from_str(text).expect("JSON");
    assert_eq!(map.len(), keys.len(), "{text}");
    let positions: Vec<usize> = keys
        .iter()
        .map(|key| {
            text.find(&format!("\"{key}\":"))
                .unwrap_or_else(|| panic!("{key} in {text}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "the documented order {keys:?}: {text}"
    );
}

#[test]
fn combined_is_exactly_nginx_s() {
    let line = text(request_line(
        AccessLogFormat::Combined,
        &record(),
        5120,
        None,
        at(),
    ));
    assert_eq!(
        line,
        "192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] \"GET /api/items HTTP/1.1\" 200 5120 \"-\" \
         \"Mozilla/5.0 (X11; Linux) \\x22quoted\\x22\"\n"
    );
}

#[test]
fn combined_escapes_like_nginx_and_names_http2_as_it_does() {
    let mut record = record();
    record.protocol = Version::HTTP_2;
    record.method = Method::POST;
    record.path = "/a\"b\\c".into();
    record.referer = Some(HeaderValue::from_bytes(b"https://x/\xc3\xa9\t").expect("obs-text"));
    record.user_agent = None;
    record.peer = "[2001:db8::1]:443".parse().expect("addr");
    let line = text(request_line(
        AccessLogFormat::Combined,
        &record,
        0,
        None,
        at(),
    ));
    assert_eq!(
        line,
        "2001:db8::1 - - [10/Oct/2000:13:55:36 +0000] \"POST /a\\x22b\\x5Cc HTTP/2.0\" 200 0 \
         \"https://x/\\xC3\\xA9\\x09\" \"-\"\n"
    );
}

#[test]
fn combined_writes_a_websocket_as_its_101_with_the_bytes_sent() {
    let mut record = record();
    record.status = 101;
    let line = text(request_line(
        AccessLogFormat::Combined,
        &record,
        4096,
        Some(&outcome()),
        at(),
    ));
    assert!(
        line.contains("\"GET /api/items HTTP/1.1\" 101 4096 "),
        "{line}"
    );
}

#[test]
fn json_has_every_field_with_its_type() {
    let bytes = request_line(AccessLogFormat::Json, &record(), 5120, None, at());
    assert_keys_in_order(
        &bytes,
        &[
            "ts",
            "level",
            "msg",
            "target",
            "listener",
            "peer",
            "request_id",
            "method",
            "host",
            "path",
            "protocol",
            "status",
            "bytes",
            "duration_ms",
            "user_agent",
            "referer",
            "sni",
            "cert",
            "backend",
        ],
    );
    let line = json(bytes);
    assert_eq!(line["ts"], "2000-10-10T13:55:36.250Z");
    assert_eq!(line["level"], "info");
    assert_eq!(line["msg"], "request");
    assert_eq!(line["target"], "sniwalk::access");
    assert_eq!(line["peer"], "192.0.2.7:40000");
    assert_eq!(line["request_id"], "0123456789abcdef0123456789abcdef");
    assert_eq!(line["protocol"], "HTTP/1.1");
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes"], 5120);
    assert_eq!(line["duration_ms"].as_f64(), Some(1234.567));
    assert_eq!(line["user_agent"], "Mozilla/5.0 (X11; Linux) \"quoted\"");
    assert!(line["referer"].is_null());
    assert_eq!(line["cert"], "ancestor");
    assert_eq!(line["backend"], "10.0.0.5:8080");
}

#[test]
fn json_of_a_websocket_adds_the_tunnel() {
    let mut record = record();
    record.status = 101;
    record.protocol = Version::HTTP_2;
    let line = json(request_line(
        AccessLogFormat::Json,
        &record,
        4096,
        Some(&outcome()),
        at(),
    ));
    assert_eq!(line["msg"], "tunnel");
    assert_eq!(line["status"], 101);
    assert_eq!(line["protocol"], "HTTP/2");
    assert_eq!(line["up"], 812);
    assert_eq!(line["down"], 4096);
    assert_eq!(line["end"], "client_closed");
}

#[test]
fn text_splits_back_into_its_pairs() {
    let mut record = record();
    record.path = "/with space=and\"quote".into();
    record.sni = None;
    let line = text(request_line(AccessLogFormat::Text, &record, 5, None, at()));
    assert!(
        line.starts_with("2000-10-10T13:55:36.250Z  INFO sniwalk::access: request listener=ws "),
        "{line}"
    );
    for pair in [
        " peer=192.0.2.7:40000 ",
        " request_id=0123456789abcdef0123456789abcdef ",
        " method=GET ",
        " path=\"/with space=and\\\"quote\" ",
        " protocol=HTTP/1.1 ",
        " status=200 bytes=5 duration_ms=1234.567 ",
        " user_agent=\"Mozilla/5.0 (X11; Linux) \\\"quoted\\\"\" ",
        " referer=- sni=- cert=ancestor backend=10.0.0.5:8080\n",
    ] {
        assert!(line.contains(pair), "{pair:?} in {line}");
    }
}

#[test]
fn text_quotes_empty_values_and_escapes_control_characters() {
    let mut record = record();
    record.host = String::new();
    record.user_agent = Some(HeaderValue::from_bytes(b"a\tb").expect("tab is allowed"));
    let line = text(request_line(AccessLogFormat::Text, &record, 0, None, at()));
    assert!(line.contains(" host=\"\" "), "{line}");
    assert!(line.contains(" user_agent=\"a\\tb\" "), "{line}");
}

#[test]
fn a_tls_tunnel_line_in_text_and_json() {
    let line = text(tls_tunnel_line(
        AccessLogFormat::Text,
        &tls_record(),
        &TunnelOutcome {
            end: "error: connection reset by peer".into(),
            ..outcome()
        },
        at(),
    ));
    assert_eq!(
        line,
        "2000-10-10T13:55:36.250Z  INFO sniwalk::access: tunnel listener=sip \
         peer=[2001:db8::7]:5070 sni=- cert=certdir backend=127.0.0.1:5060 duration_ms=1234.567 \
         up=812 down=4096 end=\"error: connection reset by peer\"\n"
    );
    let bytes = tls_tunnel_line(AccessLogFormat::Json, &tls_record(), &outcome(), at());
    assert_keys_in_order(
        &bytes,
        &[
            "ts",
            "level",
            "msg",
            "target",
            "listener",
            "peer",
            "sni",
            "cert",
            "backend",
            "duration_ms",
            "up",
            "down",
            "end",
        ],
    );
    let line = json(bytes);
    assert!(line["sni"].is_null());
    assert_eq!(line["up"], 812);
    assert_eq!(line["end"], "client_closed");
}
