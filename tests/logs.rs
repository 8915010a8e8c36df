//! Logs (README: Logs), over real sockets: a `sniwalk run` process with
//! `log: { format: json }` writes JSON lines only, with RFC 3339 times;
//! the access log in JSON has every field for HTTP/1.1 and HTTP/2, with the
//! request id the backend and the client got (made, or the client's);
//! `combined` is what GoAccess reads; SIGUSR1 after a rename starts a fresh
//! file; a WebSocket closed by its client and a `tls` tunnel each get one
//! line when they end, with the bytes each way.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::backends::{HttpBackend, TcpEcho, empty};
use common::instances::{Instance, addr, free_port};
use common::{TestProxy, cert, connect, h1_client, h2_client, proxy_yaml, send_h1, send_h2, ws};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Complete lines of `path` (a line still being written is left out).
fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .map(|line| line.trim_end_matches('\n').to_string())
        .collect()
}

/// Waits (up to 10 s) for a line of `path` holding every one of `needles`.
async fn line_with(path: &Path, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = lines(path)
            .into_iter()
            .find(|line| needles.iter().all(|n| line.contains(n)))
        {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needles:?} in {} within 10 s:\n{}",
            path.display(),
            lines(path).join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`line_with`], parsed as a JSON object.
async fn json_line_with(path: &Path, needles: &[&str]) -> Map<String, Value> {
    let line = line_with(path, needles).await;
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn assert_rfc3339_millis(value: &Value, what: &str) {
    let text = value.as_str().unwrap_or_else(|| panic!("{what}: {value}"));
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{what} {text:?}: {e}"));
    assert!(
        text.ends_with('Z') && text.len() == 24,
        "{what}: UTC with milliseconds: {text}"
    );
}

/// An `https` listener whose every request goes to `backend`, with extra
/// settings.
fn web_listener(name: &str, port: u16, backend: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    kind: https\n    bind: 127.0.0.1:{port}\n{extra}    routes:\n      \
         - host: \"*\"\n        backend: {backend}\n"
    )
}

/// `access_log: { format: FORMAT, file: DIR/access.log }`.
fn access_log(format: &str, dir: &Path) -> String {
    format!(
        "    access_log: {{ format: {format}, file: \"{}\" }}\n",
        dir.join("access.log").display()
    )
}

/// Sends SIGUSR1 to `pid` with kill(1).
fn sigusr1(pid: u32) {
    let status = Command::new("kill")
        .args(["-USR1", &pid.to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -USR1 {pid}: {status}");
}

#[tokio::test]
async fn a_json_log_writes_json_lines_only_with_rfc3339_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = HttpBackend::start().await;
    cert(&["example.com"]).write_pem(&dir.path().join("example.com.pem"));
    let port = free_port("127.0.0.1");
    let yaml = format!(
        "master_domain: example.com\nstate_dir: state\nlog: {{ format: json }}\ndomains:\n  \
         example.com:\n    certificate_file: example.com.pem\nlisteners:\n{}",
        web_listener("web", port, &backend.url(), "")
    );
    let instance = Instance::start("json", dir.path(), &yaml, addr("127.0.0.1", port)).await;
    let response = common::get(instance.https, "example.com", "/hello").await;
    assert_eq!(response.status, 200);
    let log = dir.path().join("sniwalk.log");
    // The access log follows `log:` to stderr: JSON too.
    let request = json_line_with(&log, &["\"msg\":\"request\"", "/hello"]).await;
    assert_eq!(request["target"], "sniwalk::access");

    let loaded = json_line_with(&log, &["certificate loaded"]).await;
    assert_eq!(loaded["level"], "info");
    assert_eq!(loaded["target"], "sniwalk::reload::changes");
    assert!(
        loaded["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("example.com.pem")),
        "{loaded:?}"
    );
    assert_rfc3339_millis(&loaded["ts"], "ts");
    let not_after = loaded["not_after"].as_str().expect("not_after is text");
    OffsetDateTime::parse(not_after, &Rfc3339)
        .unwrap_or_else(|e| panic!("not_after {not_after:?} is RFC 3339: {e}"));

    let all = lines(&log);
    assert!(all.len() >= 3, "{all:?}");
    for line in &all {
        let object: Map<String, Value> = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a line that is no JSON object ({e}): {line}"));
        assert_rfc3339_millis(&object["ts"], "ts");
        for key in ["level", "msg", "target"] {
            assert!(object[key].is_string(), "{key} in {line}");
        }
    }
    let limit = json_line_with(&log, &["open file limit"]).await;
    assert!(limit["soft"].is_u64(), "numbers stay numbers: {limit:?}");
}

#[tokio::test]
async fn the_json_access_log_has_every_field_and_the_request_id_goes_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = HttpBackend::start().await;
    let yaml = proxy_yaml(
        "",
        &format!(
            "{}{}",
            web_listener("web", 1, &backend.url(), &access_log("json", dir.path())),
            web_listener("quiet", 2, &backend.url(), "    access_log: false\n"),
        ),
    );
    let proxy = TestProxy::start(dir.path(), &yaml).await;
    let file = dir.path().join("access.log");

    // HTTP/1.1, no id from the client: one is made.
    let mut h1 = h1_client(proxy.addr(), "example.com").await;
    let request = hyper::Request::get("/one?secret=1")
        .header("host", "example.com")
        .header("user-agent", "logs-test/1.0 (\"quoted\")")
        .header("referer", "https://example.com/start")
        .body(empty())
        .expect("request");
    let response = send_h1(&mut h1, request).await;
    assert_eq!(response.status, 200);
    let id = response
        .header("x-request-id")
        .expect("the id comes back")
        .to_string();
    assert_eq!(id.len(), 32, "{id}");
    let seen = response.json();
    assert_eq!(
        seen["headers"]["x-request-id"],
        serde_json::json!([id]),
        "the backend got it"
    );
    let line = json_line_with(&file, &[&id]).await;
    let expected = [
        ("msg", Value::from("request")),
        ("target", "sniwalk::access".into()),
        ("level", "info".into()),
        ("listener", "web".into()),
        ("request_id", id.clone().into()),
        ("method", "GET".into()),
        ("host", "example.com".into()),
        ("path", "/one".into()),
        ("protocol", "HTTP/1.1".into()),
        ("status", 200.into()),
        ("bytes", (response.body.len() as u64).into()),
        ("user_agent", "logs-test/1.0 (\"quoted\")".into()),
        ("referer", "https://example.com/start".into()),
        ("sni", "example.com".into()),
        ("cert", "default".into()),
        ("backend", backend.addr.to_string().into()),
    ];
    for (key, value) in expected {
        assert_eq!(line[key], value, "{key} in {line:?}");
    }
    assert_rfc3339_millis(&line["ts"], "ts");
    assert!(
        line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
        "{line:?}"
    );
    let peer = line["peer"].as_str().expect("peer");
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");

    // HTTP/2 with the client's own id: passed through.
    let mut h2 = h2_client(proxy.addr(), "example.com").await;
    let request = hyper::Request::get("https://example.com/two")
        .header("x-request-id", "client-chosen-42")
        .body(empty())
        .expect("request");
    let response = send_h2(&mut h2, request).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-request-id"), Some("client-chosen-42"));
    assert_eq!(
        response.json()["headers"]["x-request-id"],
        serde_json::json!(["client-chosen-42"])
    );
    let line = json_line_with(&file, &["client-chosen-42"]).await;
    assert_eq!(line["protocol"], "HTTP/2");
    assert_eq!(line["path"], "/two");
    assert!(
        line["user_agent"].is_null() && line["referer"].is_null(),
        "{line:?}"
    );

    // A listener without an access log makes no id.
    let quiet = common::get(proxy.addrs[1], "example.com", "/three").await;
    assert_eq!(quiet.status, 200);
    assert_eq!(quiet.header("x-request-id"), None);
    assert!(quiet.json()["headers"].get("x-request-id").is_none());
    proxy.stop().await;
}

/// Apache's and nginx's `combined`: `$remote_addr - $remote_user
/// [$time_local] "$request" $status $body_bytes_sent "$http_referer"
/// "$http_user_agent"`, split here as GoAccess's `COMBINED` format does.
fn parse_combined(line: &str) -> Option<[String; 7]> {
    let (addr, rest) = line.split_once(" - - [")?;
    let (time, rest) = rest.split_once("] \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let (status, rest) = rest.split_once(' ')?;
    let (bytes, rest) = rest.split_once(" \"")?;
    let (referer, rest) = rest.split_once("\" \"")?;
    let agent = rest.strip_suffix('"')?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let time_ok = time.len() == 26 && time.ends_with(" +0000") && time.as_bytes()[2] == b'/';
    (numeric(status) && numeric(bytes) && time_ok)
        .then(|| [addr, time, request, status, bytes, referer, agent].map(str::to_string))
}

#[tokio::test]
async fn combined_lines_are_what_goaccess_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = HttpBackend::start().await;
    let yaml = proxy_yaml(
        "",
        &web_listener(
            "web",
            1,
            &backend.url(),
            &access_log("combined", dir.path()),
        ),
    );
    let proxy = TestProxy::start(dir.path(), &yaml).await;
    let mut h1 = h1_client(proxy.addr(), "example.com").await;
    let request = hyper::Request::get("/page")
        .header("host", "example.com")
        .header("user-agent", "Mozilla/5.0 (X11)")
        .body(empty())
        .expect("request");
    let response = send_h1(&mut h1, request).await;
    assert_eq!(response.status, 200);
    let line = line_with(&dir.path().join("access.log"), &["/page"]).await;
    let [addr, time, request, status, bytes, referer, agent] =
        parse_combined(&line).unwrap_or_else(|| panic!("not a combined line: {line}"));
    assert_eq!(addr, "127.0.0.1");
    let now = OffsetDateTime::now_utc();
    assert!(time.contains(&format!("/{}:", now.year())), "{time}");
    assert_eq!(request, "GET /page HTTP/1.1");
    assert_eq!(status, "200");
    assert_eq!(bytes, response.body.len().to_string());
    assert_eq!(referer, "-");
    assert_eq!(agent, "Mozilla/5.0 (X11)");
    proxy.stop().await;
}

#[tokio::test]
async fn sigusr1_after_a_rename_starts_a_fresh_access_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = HttpBackend::start().await;
    let port = free_port("127.0.0.1");
    let yaml = proxy_yaml(
        "",
        &web_listener("web", port, &backend.url(), &access_log("text", dir.path())),
    );
    let instance = Instance::start("rotate", dir.path(), &yaml, addr("127.0.0.1", port)).await;
    let file = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");

    assert_eq!(
        common::get(instance.https, "example.com", "/before")
            .await
            .status,
        200
    );
    line_with(&file, &["path=/before"]).await;
    std::fs::rename(&file, &rotated).expect("rename, as logrotate does");
    sigusr1(instance.pid().expect("running"));
    line_with(&dir.path().join("sniwalk.log"), &["access log reopened"]).await;
    assert!(file.exists(), "a fresh file at the path");

    assert_eq!(
        common::get(instance.https, "example.com", "/after")
            .await
            .status,
        200
    );
    line_with(&file, &["path=/after"]).await;
    assert!(
        !lines(&file).iter().any(|l| l.contains("path=/before")),
        "the fresh file starts empty"
    );
    let old = lines(&rotated);
    assert!(old.iter().any(|l| l.contains("path=/before")), "{old:?}");
    assert!(!old.iter().any(|l| l.contains("path=/after")), "{old:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o007, 0, "not readable by others: {mode:o}");
    }
}

#[tokio::test]
async fn a_websocket_closed_by_its_client_gets_one_line_when_it_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = HttpBackend::start().await;
    let yaml = proxy_yaml(
        "",
        &web_listener("web", 1, &backend.url(), &access_log("json", dir.path())),
    );
    let proxy = TestProxy::start(dir.path(), &yaml).await;
    let file = dir.path().join("access.log");

    let mut tls = connect(proxy.addr(), Some("example.com"), &[b"http/1.1"]).await;
    ws::client_handshake(&mut tls, "example.com", "/ws").await;
    let messages: [&[u8]; 3] = [b"hello", b"a longer message through the tunnel", b"!"];
    for message in messages {
        ws::write_frame(&mut tls, ws::TEXT, message, Some([1, 2, 3, 4]))
            .await
            .expect("send");
        let (opcode, echoed) = ws::read_frame(&mut tls).await.expect("echo");
        assert_eq!((opcode, echoed.as_slice()), (ws::TEXT, message));
    }
    // Nothing is logged while the WebSocket is open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !lines(&file).iter().any(|l| l.contains("/ws")),
        "{:?}",
        lines(&file)
    );
    tls.shutdown().await.expect("the client closes");
    let mut rest = Vec::new();
    let _ = common::within(
        Duration::from_secs(10),
        "the end",
        tls.read_to_end(&mut rest),
    )
    .await;

    let line = json_line_with(&file, &["/ws"]).await;
    // Masked client frames: 2 + 4 + length; the backend's: 2 + length.
    let up: usize = messages.iter().map(|m| 6 + m.len()).sum();
    let down: usize = messages.iter().map(|m| 2 + m.len()).sum();
    assert_eq!(line["msg"], "tunnel", "{line:?}");
    assert_eq!(line["status"], 101);
    assert_eq!(line["method"], "GET");
    assert_eq!(line["backend"], backend.addr.to_string());
    assert_eq!(line["up"], up as u64, "{line:?}");
    assert_eq!(line["down"], down as u64, "{line:?}");
    assert_eq!(line["bytes"], down as u64);
    assert_eq!(line["end"], "client_closed");
    assert!(line["request_id"].as_str().is_some_and(|id| id.len() == 32));
    assert!(
        line["duration_ms"].as_f64().is_some_and(|d| d >= 300.0),
        "{line:?}"
    );
    let count = lines(&file).iter().filter(|l| l.contains("/ws")).count();
    assert_eq!(count, 1, "one line per WebSocket");
    proxy.stop().await;
}

#[tokio::test]
async fn a_tls_tunnel_gets_one_line_when_it_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = TcpEcho::start(false).await;
    let listener = format!(
        "  - name: sip\n    kind: tls\n    bind: 127.0.0.1:1\n    backend: \"{}\"\n{}",
        echo.addr,
        access_log("json", dir.path())
    );
    let proxy = TestProxy::start(dir.path(), &proxy_yaml("", &listener)).await;
    let mut tls = connect(proxy.addr(), Some("sip.example.com"), &[]).await;
    let messages: [&[u8]; 2] = [
        b"OPTIONS sip:a SIP/2.0\r\n\r\n",
        b"REGISTER sip:b SIP/2.0\r\n\r\n",
    ];
    for message in messages {
        tls.write_all(message).await.expect("send");
        let mut echoed = vec![0u8; message.len()];
        common::within(Duration::from_secs(10), "echo", tls.read_exact(&mut echoed))
            .await
            .expect("echo");
    }
    tls.shutdown()
        .await
        .expect("the phone closes (with close_notify)");
    let mut rest = Vec::new();
    let _ = common::within(
        Duration::from_secs(10),
        "the end",
        tls.read_to_end(&mut rest),
    )
    .await;
    let report = echo.next_report().await;
    assert!(report.saw_eof);

    let line = json_line_with(&dir.path().join("access.log"), &["\"listener\":\"sip\""]).await;
    let up: usize = messages.iter().map(|m| m.len()).sum();
    assert_eq!(line["msg"], "tunnel");
    assert_eq!(line["up"], up as u64, "{line:?}");
    // The echo's goodbye after the client's end may or may not reach a
    // client that is gone.
    let down = line["down"].as_u64().expect("down");
    let goodbye = common::backends::ECHO_GOODBYE.len();
    assert!(
        down == up as u64 || down == (up + goodbye) as u64,
        "{line:?}"
    );
    assert_eq!(line["end"], "client_closed");
    assert_eq!(line["sni"], "sip.example.com");
    assert_eq!(line["cert"], "default");
    assert_eq!(line["backend"], echo.addr.to_string());
    assert!(line["duration_ms"].is_number());
    proxy.stop().await;
}
