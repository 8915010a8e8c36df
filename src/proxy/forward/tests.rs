use super::headers::*;
use super::*;
use hyper::header::{HeaderMap, HeaderName};

/// The names `strip_hop_by_hop` leaves, in order.
fn left_after_strip(mut headers: HeaderMap) -> Vec<String> {
    strip_hop_by_hop(&mut headers);
    headers.keys().map(|k| k.as_str().to_owned()).collect()
}

#[test]
fn hop_by_hop_headers_and_connection_named_ones_are_removed() {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONNECTION,
        HeaderValue::from_static("keep-alive, x-secret"),
    );
    headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    headers.insert("x-secret", HeaderValue::from_static("1"));
    headers.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert("x-kept", HeaderValue::from_static("yes"));
    assert_eq!(left_after_strip(headers), ["x-kept"]);
}

#[test]
fn a_lone_keep_alive_or_close_is_removed_and_nothing_else() {
    for value in ["keep-alive", "Close"] {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static(value));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        assert_eq!(
            left_after_strip(headers),
            ["content-length"],
            "Connection: {value}"
        );
    }
}

#[test]
fn names_in_any_connection_header_are_removed() {
    let mut headers = HeaderMap::new();
    headers.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    headers.append(header::CONNECTION, HeaderValue::from_static("X-Hop"));
    headers.insert("x-hop", HeaderValue::from_static("1"));
    headers.insert("x-kept", HeaderValue::from_static("yes"));
    assert_eq!(left_after_strip(headers), ["x-kept"]);
}

#[test]
fn hop_by_hop_names_are_recognised_and_others_are_not() {
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        let name = HeaderName::from_static(name);
        assert!(is_hop_by_hop(&name), "{name}");
    }
    for name in ["host", "content-length", "x-connection", "t", "trailers"] {
        let name = HeaderName::from_static(name);
        assert!(!is_hop_by_hop(&name), "{name}");
    }
}

fn upgrade_request(connection: &str, upgrade: &str) -> Request<()> {
    Request::builder()
        .header(header::CONNECTION, connection)
        .header(header::UPGRADE, upgrade)
        .body(())
        .expect("request")
}

#[test]
fn only_allowed_upgrades_are_passed_on() {
    let websocket = ["websocket".to_string()];
    let pass = |connection: &str, upgrade: &str, allowed: &[String]| {
        upgrade_protocol(&upgrade_request(connection, upgrade), allowed)
            .map(|v| v.to_str().expect("ascii").to_string())
    };
    assert_eq!(
        pass("Upgrade", "websocket", &websocket).as_deref(),
        Some("websocket")
    );
    assert_eq!(
        pass("keep-alive, upgrade", "WebSocket/13", &websocket).as_deref(),
        Some("WebSocket/13")
    );
    assert_eq!(
        pass("Upgrade, HTTP2-Settings", "h2c", &websocket),
        None,
        "h2c is stripped"
    );
    assert_eq!(
        pass("Upgrade", "h2c, websocket", &websocket).as_deref(),
        Some("websocket"),
        "only the allowed token is kept"
    );
    assert_eq!(
        pass("keep-alive", "websocket", &websocket),
        None,
        "no Connection: upgrade"
    );
    assert_eq!(
        pass("Upgrade", "websocket", &[]),
        None,
        "the route allows none"
    );
}

#[test]
fn a_101_must_answer_the_upgrade_asked_for() {
    let asked = HeaderValue::from_static("websocket");
    assert!(answers_upgrade(
        &HeaderValue::from_static("WebSocket"),
        &asked
    ));
    assert!(!answers_upgrade(&HeaderValue::from_static("h2c"), &asked));
    assert!(!answers_upgrade(&HeaderValue::from_static(""), &asked));
    assert!(!answers_upgrade(
        &HeaderValue::from_static("websocket, h2c"),
        &asked
    ));
}

#[test]
fn forwarded_for_is_appended() {
    let peer = client_ip_header("192.0.2.7:5555".parse().expect("addr"));
    let mut headers = HeaderMap::new();
    append_forwarded_for(&mut headers, &peer);
    assert_eq!(headers[&X_FORWARDED_FOR], "192.0.2.7");
    headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.1"));
    append_forwarded_for(&mut headers, &peer);
    assert_eq!(headers[&X_FORWARDED_FOR], "203.0.113.1, 192.0.2.7");
    let mut two = HeaderMap::new();
    two.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.1"));
    two.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.2"));
    append_forwarded_for(&mut two, &peer);
    assert_eq!(two.get_all(&X_FORWARDED_FOR).iter().count(), 1);
    assert_eq!(two[&X_FORWARDED_FOR], "198.51.100.1, 192.0.2.7");
    let v6 = client_ip_header("[2001:db8::1]:443".parse().expect("addr"));
    assert_eq!(v6, "2001:db8::1");
}

/// An error with a cause, as hyper-util's `ConnectError` is.
#[derive(Debug)]
struct Wrapping(std::io::Error);

impl std::fmt::Display for Wrapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tcp connect error")
    }
}

impl std::error::Error for Wrapping {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[tokio::test]
async fn timeouts_are_told_by_type_anywhere_in_the_chain() {
    use std::io::{Error, ErrorKind};
    // What hyper-util's connector makes of its connect timeout.
    let elapsed = tokio::time::timeout(Duration::ZERO, std::future::pending::<()>())
        .await
        .expect_err("elapsed");
    let connect_timeout = Wrapping(Error::new(ErrorKind::TimedOut, elapsed));
    assert!(is_timeout(&connect_timeout));
    // The kernel's (ETIMEDOUT), reported directly.
    assert!(is_timeout(&Error::from(ErrorKind::TimedOut)));
    assert!(!is_timeout(&Wrapping(Error::from(
        ErrorKind::ConnectionRefused
    ))));
    // The text alone says nothing.
    assert!(!is_timeout(&Wrapping(Error::other("timed out"))));
    // The pool's connect timeout: 504, "connect timed out".
    let pool_timeout =
        SendError::Connect(Error::new(ErrorKind::TimedOut, "no connection within 5 s"));
    assert!(is_timeout(&pool_timeout));
    assert_eq!(
        describe_client_error(&pool_timeout, true),
        "connect timed out: no connection within 5 s"
    );
    let refused = SendError::Connect(Error::from(ErrorKind::ConnectionRefused));
    assert!(!is_timeout(&refused) && !is_tls_failure(&refused));
    assert!(describe_client_error(&refused, false).starts_with("cannot connect: "));
}
