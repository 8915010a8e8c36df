//! The parsing of PROXY headers, valid and malformed, table by table.

use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().expect(text)
}

/// A v2 header: the signature, `command` and `family` bytes, and `body`
/// with its length.
fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(command);
    header.push(family);
    header.extend_from_slice(&(body.len() as u16).to_be_bytes());
    header.extend_from_slice(body);
    header
}

/// The address block of a TCP over IPv4 v2 header: 192.0.2.1:40000 to
/// 198.51.100.2:443.
const V4_BODY: [u8; 12] = [192, 0, 2, 1, 198, 51, 100, 2, 0x9c, 0x40, 0x01, 0xbb];

#[test]
fn first_bytes_are_recognised() {
    let cases: &[(&[u8], Start)] = &[
        (b"PROXY TCP4 ", Start::V1),
        (b"PROXY ", Start::V1),
        (b"PROXY", Start::Undecided),
        (b"P", Start::Undecided),
        (b"PROPFIND / HTTP/1.1", Start::Other),
        (b"PROXYX", Start::Other),
        (b"GET / HTTP/1.1\r\n", Start::Other),
        (&[0x16, 0x03, 0x01, 0x02, 0x00], Start::Other),
        (b"\r\n\r\n\0\r\nQUIT\n", Start::V2),
        (b"\r\n\r\n\0\r\nQUIT\n\x21\x11", Start::V2),
        (b"\r\n\r\n\0", Start::Undecided),
        (b"\r\n\r\n\0\r\nQUIX\n", Start::Other),
        // A bare CRLF CRLF (no NUL) is no signature.
        (b"\r\n\r\nGET", Start::Other),
    ];
    for (first, expected) in cases {
        assert_eq!(recognise(first), *expected, "{first:?}");
    }
}

#[test]
fn v1_length_finds_the_crlf_within_107_bytes() {
    assert_eq!(v1_length(b"PROXY UNKNOWN\r\n\x16\x03").unwrap(), Some(15));
    assert_eq!(v1_length(b"PROXY TCP4 1.2.3.4").unwrap(), None);
    assert_eq!(
        v1_length(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r").unwrap(),
        None
    );
    let longest = format!(
        "PROXY UNKNOWN {} {} 65535 65535\r\n",
        "f".repeat(39),
        "f".repeat(39)
    );
    assert_eq!(longest.len(), V1_MAX_LENGTH);
    assert_eq!(v1_length(longest.as_bytes()).unwrap(), Some(107));
    let no_crlf = format!("PROXY {}", "x".repeat(200));
    assert!(matches!(
        v1_length(no_crlf.as_bytes()),
        Err(HeaderError::V1TooLong)
    ));
    // The CRLF at bytes 108-109 is too late.
    let late = format!("PROXY {}\r\n", "x".repeat(101));
    assert!(matches!(
        v1_length(late.as_bytes()),
        Err(HeaderError::V1TooLong)
    ));
    assert!(matches!(
        v1_length(b"PROXY UNKNOWN\n"),
        Err(HeaderError::V1LineEnd)
    ));
}

#[test]
fn valid_v1_headers() {
    let cases: &[(&str, Said)] = &[
        (
            "PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\n",
            Said::Proxied {
                source: addr("192.0.2.1:40000"),
                destination: addr("198.51.100.2:443"),
            },
        ),
        (
            "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n",
            Said::Proxied {
                source: addr("[2001:db8::1]:1"),
                destination: addr("[2001:db8::2]:65535"),
            },
        ),
        ("PROXY UNKNOWN\r\n", Said::Local),
        ("PROXY UNKNOWN ::1 ::1 1 2\r\n", Said::Local),
    ];
    for (header, expected) in cases {
        assert_eq!(
            parse_v1(header.as_bytes()).expect(header),
            *expected,
            "{header}"
        );
    }
}

#[test]
fn malformed_v1_headers_are_refused() {
    let cases: &[&str] = &[
        // A bad address, a port out of range, a leading zero.
        "PROXY TCP4 192.0.2.300 198.51.100.2 40000 443\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 70000 443\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 040 443\r\n",
        // The wrong family for the addresses, both ways.
        "PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n",
        "PROXY TCP6 192.0.2.1 198.51.100.2 1 2\r\n",
        // Missing parts, extra parts, an unknown protocol.
        "PROXY TCP4 192.0.2.1 198.51.100.2 40000\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 40000 443 9\r\n",
        "PROXY UDP4 192.0.2.1 198.51.100.2 40000 443\r\n",
        "PROXY \r\n",
        "PROXY TCP4  192.0.2.1 198.51.100.2 40000 443\r\n",
    ];
    for header in cases {
        let error = parse_v1(header.as_bytes()).expect_err(header);
        assert_eq!(
            error.reason(),
            ProxyRejection::Malformed,
            "{header}: {error}"
        );
        assert!(error.to_string().contains("invalid v1 header"), "{error}");
    }
}

#[test]
fn valid_v2_headers() {
    let mut v6_body = Vec::new();
    v6_body.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v6_body.extend_from_slice(
        &"2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v6_body.extend_from_slice(&[0, 1, 0, 2]);
    // TLVs after the addresses (a NOOP of 3 bytes, an AWS VPC endpoint
    // id) are skipped.
    let mut with_tlvs = V4_BODY.to_vec();
    with_tlvs.extend_from_slice(&[0x04, 0x00, 0x03, 1, 2, 3]);
    with_tlvs.extend_from_slice(&[0xea, 0x00, 0x09, 0x01]);
    with_tlvs.extend_from_slice(b"vpce-123");
    let proxied_v4 = Said::Proxied {
        source: addr("192.0.2.1:40000"),
        destination: addr("198.51.100.2:443"),
    };
    let cases: Vec<(Vec<u8>, Said)> = vec![
        (v2(0x21, 0x11, &V4_BODY), proxied_v4),
        (v2(0x21, 0x11, &with_tlvs), proxied_v4),
        (
            v2(0x21, 0x21, &v6_body),
            Said::Proxied {
                source: addr("[2001:db8::1]:1"),
                destination: addr("[2001:db8::2]:2"),
            },
        ),
        // LOCAL: the load balancer's own connection, whatever follows.
        (v2(0x20, 0x00, &[]), Said::Local),
        (v2(0x20, 0x11, &V4_BODY), Said::Local),
        (v2(0x20, 0x99, &[1, 2, 3]), Said::Local),
        // PROXY with UNSPEC: served with the real endpoints.
        (v2(0x21, 0x00, &[]), Said::Local),
    ];
    for (header, expected) in cases {
        assert_eq!(
            v2_length(header[..16].try_into().unwrap()).unwrap(),
            header.len()
        );
        assert_eq!(parse_v2(&header).expect("valid"), expected, "{header:?}");
    }
}

#[test]
fn malformed_v2_headers_are_refused() {
    let mut bad_version = v2(0x21, 0x11, &V4_BODY);
    bad_version[12] = 0x11;
    assert!(matches!(
        v2_length(bad_version[..16].try_into().unwrap()),
        Err(HeaderError::V2Version { version: 1 })
    ));
    let mut too_long = v2(0x21, 0x11, &V4_BODY);
    too_long[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
    let error = v2_length(too_long[..16].try_into().unwrap()).expect_err("too long");
    assert!(
        matches!(error, HeaderError::V2TooLong { length: 65535 }),
        "{error}"
    );
    assert_eq!(error.reason(), ProxyRejection::Malformed);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a command other than LOCAL and PROXY",
            v2(0x22, 0x11, &V4_BODY),
        ),
        (
            "too short for IPv4 addresses",
            v2(0x21, 0x11, &V4_BODY[..8]),
        ),
        ("too short for IPv6 addresses", v2(0x21, 0x21, &V4_BODY)),
        ("an unknown family", v2(0x21, 0x41, &V4_BODY)),
        (
            "IPv4 with an unspecified transport",
            v2(0x21, 0x10, &V4_BODY),
        ),
        ("truncated", v2(0x21, 0x11, &V4_BODY)[..20].to_vec()),
    ];
    for (what, header) in cases {
        let error = parse_v2(&header).expect_err(what);
        assert_eq!(error.reason(), ProxyRejection::Malformed, "{what}: {error}");
    }
}

#[test]
fn other_transports_than_tcp_are_refused() {
    let unix = v2(0x21, 0x31, &[0; 216]);
    for header in [v2(0x21, 0x12, &V4_BODY), v2(0x21, 0x22, &[0; 36]), unix] {
        let error = parse_v2(&header).expect_err("not TCP");
        assert_eq!(
            error.reason(),
            ProxyRejection::UnsupportedTransport,
            "{error}"
        );
    }
}

#[test]
fn every_refusal_names_a_reason_and_what_to_do() {
    let missing = HeaderError::Missing { first: 0x16 };
    assert_eq!(missing.reason(), ProxyRejection::Missing);
    assert!(missing.to_string().contains("send-proxy"), "{missing}");
    let untrusted = HeaderError::Untrusted { version: 2 };
    assert_eq!(untrusted.reason(), ProxyRejection::Untrusted);
    assert!(untrusted.to_string().contains("to `from`"), "{untrusted}");
    let version = HeaderError::VersionNotAllowed { version: 1 };
    assert_eq!(version.reason(), ProxyRejection::VersionNotAllowed);
    assert!(
        version.to_string().contains("does not list v1"),
        "{version}"
    );
}
