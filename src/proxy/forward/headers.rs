//! The header rewriting a proxy owes (RFC 9110 §7.6): hop-by-hop fields
//! removed, `X-Forwarded-For` appended, and the upgrades a route allows.

use std::net::SocketAddr;

use hyper::Request;
use hyper::Version;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Forwarded-For` and friends.
pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The `Upgrade` value to pass on for an HTTP/1.1 upgrade request
/// (`Connection: upgrade` plus `Upgrade: ...`): the tokens whose protocol
/// name is in `allowed`, in the client's order; `None` when it is no
/// upgrade request or none is allowed.
pub(super) fn upgrade_protocol<B>(request: &Request<B>, allowed: &[String]) -> Option<HeaderValue> {
    if request.version() != Version::HTTP_11 {
        return None;
    }
    let asks = request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !asks {
        return None;
    }
    let kept: Vec<&str> = request
        .headers()
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| {
            allowed
                .iter()
                .any(|name| protocol_name(token).eq_ignore_ascii_case(name))
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

/// `websocket` of `websocket` or `websocket/13` (RFC 9110 §7.8:
/// protocol-name ["/" protocol-version]).
pub(super) fn protocol_name(token: &str) -> &str {
    token.split('/').next().unwrap_or(token).trim()
}

/// Whether a 101's `Upgrade` value names a protocol of the `asked` list.
pub(super) fn answers_upgrade(switched_to: &HeaderValue, asked: &HeaderValue) -> bool {
    let (Ok(to), Ok(asked)) = (switched_to.to_str(), asked.to_str()) else {
        return false;
    };
    let to = to.trim();
    !to.is_empty()
        && !to.contains(',')
        && asked
            .split(',')
            .any(|token| protocol_name(token).eq_ignore_ascii_case(protocol_name(to)))
}

/// Whether a header describes one hop (RFC 9110 §7.6.1), is one of the
/// obsolete ones proxies are expected to drop, or is `Upgrade` (which the
/// caller passes on itself, and only when the route allows it).
pub(super) fn is_hop_by_hop(name: &HeaderName) -> bool {
    // One match on the (lowercase) name, which the compiler turns into a
    // switch on its length: cheaper than comparing it with nine names, on
    // every header of every request and response.
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes hop-by-hop headers, including those the `Connection` header
/// names.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names, which hashes nothing: most requests carry
    // none of these, and then nothing is looked up or removed; a response
    // from nginx carries `Connection: keep-alive` alone, and then nothing
    // is allocated either (a `Vec` of no names allocates nothing).
    let mut present = headers.keys().filter(|name| is_hop_by_hop(name));
    let Some(first) = present.next().cloned() else {
        return;
    };
    let mut found: Vec<HeaderName> = present.cloned().collect();
    if (first == header::CONNECTION || found.contains(&header::CONNECTION))
        && !names_no_header(headers)
    {
        found.extend(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                // `keep-alive` was found above if present, and `Close` is
                // a reserved field name (RFC 9110 §7.6.1), not a header to
                // look for: neither is worth parsing into a name.
                .filter(|token| {
                    !token.eq_ignore_ascii_case("keep-alive")
                        && !token.eq_ignore_ascii_case("close")
                })
                .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok()),
        );
    }
    headers.remove(first);
    for name in found {
        headers.remove(name);
    }
}

/// Whether the `Connection` header is the usual lone `keep-alive` or
/// `close`, which names no header to remove (`keep-alive` is removed as a
/// hop-by-hop header anyway).
pub(super) fn names_no_header(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONNECTION).iter();
    match (values.next(), values.next()) {
        (Some(only), None) => {
            let only = only.as_bytes();
            only.eq_ignore_ascii_case(b"keep-alive") || only.eq_ignore_ascii_case(b"close")
        }
        _ => false,
    }
}

/// Appends the client address to `X-Forwarded-For` (keeping what earlier
/// proxies put there, as the header's convention is).
pub(super) fn append_forwarded_for(headers: &mut HeaderMap, ip: &HeaderValue) {
    // One lookup (the entry) rather than a `get` and an `insert`.
    match headers.entry(X_FORWARDED_FOR) {
        header::Entry::Vacant(vacant) => {
            vacant.insert(ip.clone());
        }
        header::Entry::Occupied(mut occupied) => {
            let joined = match occupied.get().to_str() {
                Ok(existing) if !existing.trim().is_empty() => HeaderValue::from_str(&format!(
                    "{existing}, {}",
                    ip.to_str().unwrap_or_default()
                ))
                .ok(),
                _ => None,
            };
            // `insert` replaces every value the client sent.
            occupied.insert(joined.unwrap_or_else(|| ip.clone()));
        }
    }
}

/// A client's IP address as an `X-Forwarded-For` value.
pub fn client_ip_header(peer: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.ip().to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}
