//! What decides a request's answer before a route is taken, and the route
//! itself: the `Host` checks (RFC 9110 §7.2, RFC 9112 §3.2, RFC 9113
//! §8.3.1), the 421 rule for a host the connection's certificate does not
//! cover, and the first route matching host and path prefix (README,
//! "Traffic"). Pure functions of the request and the listener's settings.

use std::borrow::Cow;
use std::net::IpAddr;

use hyper::Request;
use hyper::header::{HOST, HeaderValue};

use crate::config::Route;
use crate::pem::CertificateFacts;

/// The first route of `routes` whose host pattern matches `host` and whose
/// path prefix, if any, starts `path`: first match wins. Its position
/// finds its backend group in the snapshot.
#[inline]
pub(super) fn find_route<'a>(
    routes: &'a [Route],
    host: &str,
    path: &str,
) -> Option<(usize, &'a Route)> {
    routes.iter().enumerate().find(|(_, route)| {
        route.host.matches(host)
            && route
                .path_prefix
                .as_deref()
                .is_none_or(|prefix| path.starts_with(prefix))
    })
}

/// Whether `value` is a `Host` value: `uri-host [ ":" port ]` (RFC 9110
/// §7.2), a reg-name or an IP literal; no userinfo, no path, no spaces. A
/// byte scan, not a parse: it runs on every request.
#[inline]
fn is_host_value(value: &str) -> bool {
    let (host_ok, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let Some((literal, after)) = rest.split_once(']') else {
                return false;
            };
            let port = match after.strip_prefix(':') {
                Some(port) => port,
                None if after.is_empty() => "",
                None => return false,
            };
            let ip_literal = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
            (!literal.is_empty() && literal.bytes().all(ip_literal), port)
        }
        None => {
            let (name, port) = value.rsplit_once(':').unwrap_or((value, ""));
            let reg_name = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
            (!name.is_empty() && name.bytes().all(reg_name), port)
        }
    };
    host_ok && port.bytes().all(|b| b.is_ascii_digit())
}

/// What the `Allow` header of a 405 lists.
pub(super) const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH";

/// RFC 9112 §3.2: a request with more than one `Host` line, or a `Host`
/// that is not valid, is answered 400; and RFC 9113 §8.3.1: an HTTP/2
/// request whose `Host` names another host than its `:authority` is
/// malformed. Without this, the first `Host` would route while a backend
/// that reads the last one serves another site.
#[inline]
pub(super) fn check_host_headers<B>(request: &Request<B>) -> Result<(), &'static str> {
    let mut hosts = request.headers().get_all(HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    let Some(first) = first else {
        return Ok(());
    };
    let Ok(value) = first.to_str() else {
        return Err("invalid Host header");
    };
    if !is_host_value(value) {
        return Err("invalid Host header");
    }
    if let Some(authority) = request.uri().authority()
        && request.version() == hyper::Version::HTTP_2
        && !authority.as_str().eq_ignore_ascii_case(value)
    {
        return Err("Host header and :authority differ");
    }
    Ok(())
}

/// The 421 rule: a request whose host the served certificate does not
/// cover was meant for another connection (HTTP/2 reuses connections for
/// every name a certificate covers). Asking for exactly the SNI name is
/// never misdirected, nor is an IP literal on a connection without SNI.
#[inline]
pub(super) fn is_misdirected(served: &CertificateFacts, sni: Option<&str>, host: &str) -> bool {
    if served.covers(host) {
        return false;
    }
    match sni {
        Some(sni) => !sni.eq_ignore_ascii_case(host),
        None => host.trim_matches(['[', ']']).parse::<IpAddr>().is_err(),
    }
}

/// The host asked for, with its port if given: the URI authority (HTTP/2,
/// absolute-form) or the `Host` header; empty when there is neither.
#[inline]
pub(super) fn request_host<B>(request: &Request<B>) -> HeaderValue {
    if let Some(authority) = request.uri().authority() {
        // An authority holds only RFC 3986 characters, all valid in a
        // header value.
        return HeaderValue::from_str(authority.as_str()).unwrap_or(HeaderValue::from_static(""));
    }
    // The client's own header, shared rather than copied: it is what the
    // backend gets as `Host` and `X-Forwarded-Host`.
    request
        .headers()
        .get(HOST)
        .cloned()
        .unwrap_or(HeaderValue::from_static(""))
}

/// Lower-case host without port or trailing dot; borrowed unless it had
/// upper-case letters.
#[inline]
pub(super) fn normalize_host(host: &str) -> Cow<'_, str> {
    let bare = strip_port(host).trim_end_matches('.');
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(bare.to_ascii_lowercase())
    } else {
        Cow::Borrowed(bare)
    }
}

/// `host` without its port (`[::1]:8443` → `::1`).
#[inline]
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values() {
        for good in [
            "example.com",
            "example.com:8443",
            "EXAMPLE.com.",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:8443",
            "a_b.example.com",
        ] {
            assert!(is_host_value(good), "{good}");
        }
        for bad in [
            "",
            ":443",
            "user@example.com",
            "example.com/path",
            "example.com:80x",
            "exa mple.com",
            "[::1",
            "[::1]x",
            "[]:1",
            "[zz]",
            "a[b].example.com",
        ] {
            assert!(!is_host_value(bad), "{bad}");
        }
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:8443"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8443"), "::1");
        assert_eq!(strip_port("127.0.0.1:1"), "127.0.0.1");
        assert_eq!(normalize_host("Example.COM.:443"), "example.com");
    }

    /// A connection's SNI and the facts of a certificate for `names`.
    fn connection(sni: Option<&str>, names: &[&str]) -> (Option<String>, CertificateFacts) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let text =
            crate::snapshot::generate_self_signed_pem(&names, 1, false).expect("certificate");
        let parsed = crate::pem::parse_certificate_pem(&text).expect("parses");
        (sni.map(str::to_owned), parsed.leaf)
    }

    fn is_misdirected_on(connection: &(Option<String>, CertificateFacts), host: &str) -> bool {
        is_misdirected(&connection.1, connection.0.as_deref(), host)
    }

    #[test]
    fn misdirected_requests() {
        let c = connection(
            Some("a.example.com"),
            &["a.example.com", "*.shop.example.com"],
        );
        assert!(!is_misdirected_on(&c, "a.example.com"));
        assert!(
            !is_misdirected_on(&c, "x.shop.example.com"),
            "covered by the wildcard"
        );
        assert!(
            is_misdirected_on(&c, "b.example.com"),
            "another name, not covered"
        );
        let wrong_cert = connection(Some("b.example.com"), &["a.example.com"]);
        assert!(
            !is_misdirected_on(&wrong_cert, "b.example.com"),
            "the SNI itself is never misdirected"
        );
        let by_ip = connection(None, &["a.example.com"]);
        assert!(!is_misdirected_on(&by_ip, "127.0.0.1"));
        assert!(!is_misdirected_on(&by_ip, "[::1]"));
        assert!(is_misdirected_on(&by_ip, "b.example.com"));
    }
}
