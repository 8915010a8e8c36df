//! Single values of `proxy.yaml`: their parsers (also used by the admin API
//! and the command line) and the serde wrappers that run them while the
//! YAML is read, so an error carries the value's line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

/// Let's Encrypt production, the default ACME directory.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Let's Encrypt staging, what `acme.directory: staging` stands for.
pub const STAGING_ACME_DIRECTORY: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// A fingerprint pin as written (any case, with or without `:`) in the
/// canonical form: lowercase hex without separators, of `hex_len` digits.
pub fn normalize_pin(pin: &str, hex_len: usize) -> Result<String, String> {
    let canonical: String = pin
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if canonical.len() != hex_len || !canonical.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "`{pin}` is not a fingerprint of {hex_len} hex digits (colons allowed)"
        ));
    }
    Ok(canonical)
}

/// Checks an ACME account contact address and returns it as written.
///
/// The CA turns it into a `mailto:` URL and rejects anything that is not one
/// address, but only when the account is created, which may be long after
/// the start; hence the shape is checked here.
pub fn parse_account_email(input: &str) -> Result<String, String> {
    let hint = "expected one address such as `ops@example.com`";
    if input
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("mailto:"))
    {
        return Err(format!(
            "`{input}`: write the address without `mailto:` (sniwalk adds it)"
        ));
    }
    if let Some(bad) = input
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>'))
    {
        let bad = if bad.is_whitespace() {
            "a space".to_string()
        } else {
            format!("`{bad}`")
        };
        return Err(format!("`{input}` contains {bad}; {hint}"));
    }
    match input.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
                return Err(format!("`{input}`: `{domain}` is not a domain; {hint}"));
            }
            Ok(input.to_string())
        }
        _ => Err(format!("`{input}` is not an email address; {hint}")),
    }
}

/// Expands the `staging` and `production` shorthands of `acme.directory`
/// and checks that anything else is an `https://` URL (RFC 8555 requires
/// HTTPS for every ACME resource).
pub fn parse_acme_directory(input: &str) -> Result<String, String> {
    let text = input.trim();
    if text.eq_ignore_ascii_case("production") {
        return Ok(DEFAULT_ACME_DIRECTORY.to_string());
    }
    if text.eq_ignore_ascii_case("staging") {
        return Ok(STAGING_ACME_DIRECTORY.to_string());
    }
    let shorthands =
        "or the shorthand `production` (Let's Encrypt) or `staging` (Let's Encrypt staging)";
    match text.strip_prefix("https://") {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !rest.contains(char::is_whitespace) =>
        {
            Ok(text.to_string())
        }
        Some(_) => Err(format!(
            "`{input}` has no host; use the CA's full directory URL, {shorthands}"
        )),
        None => Err(format!(
            "`{input}` is not an https:// URL; ACME directories are served over HTTPS only: \
             use the CA's https:// directory URL, {shorthands}"
        )),
    }
}

/// Default point in a certificate's lifetime at which renewal starts.
///
/// 2/3 is day 60 of a 90-day certificate: the widespread convention (and
/// Let's Encrypt's advice), leaving a third of the lifetime, 30 days, to get
/// through CA outages, rate limits and our own bugs before anything expires.
pub const DEFAULT_RENEW_AT: f64 = 2.0 / 3.0;

/// Parses `acme.renew_at`: a fraction strictly between 0 and 1, written as
/// a number (`0.66`) or as `A/B` (`2/3`).
pub fn parse_renew_at(input: &str) -> Result<f64, String> {
    let text = input.trim();
    let value = match text.split_once('/') {
        Some((a, b)) => {
            let a: f64 = a.trim().parse().map_err(|_| renew_at_message(input))?;
            let b: f64 = b.trim().parse().map_err(|_| renew_at_message(input))?;
            a / b
        }
        None => text.parse().map_err(|_| renew_at_message(input))?,
    };
    check_renew_at(value).map_err(|()| renew_at_message(input))
}

fn check_renew_at(value: f64) -> Result<f64, ()> {
    // NaN and infinities fail this test too.
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(())
    }
}

fn renew_at_message(input: impl fmt::Display) -> String {
    format!(
        "invalid renew_at `{input}`: the fraction of the certificate's lifetime after which it is \
         renewed, strictly between 0 and 1, e.g. 0.66 (day 60 of 90) or \"2/3\""
    )
}

/// Longest `acme.warn_days`. Public certificates last at most 398 days
/// (fewer from 2026 on), so a longer period would warn for about a
/// certificate's whole life, which is no warning at all.
pub const MAX_WARN_DAYS: u32 = 365;

/// Checks a `HOST:PORT` TCP backend.
pub(super) fn parse_tcp_backend(input: &str) -> Result<String, String> {
    if input.parse::<SocketAddr>().is_ok() {
        return Ok(input.to_string());
    }
    let (host, port) = input.rsplit_once(':').ok_or_else(|| {
        format!("`{input}` has no port; expected HOST:PORT such as `127.0.0.1:5060`")
    })?;
    port.parse::<u16>()
        .map_err(|_| format!("`{input}` has an invalid port `{port}`"))?;
    normalize_domain_name(host).map_err(|e| format!("`{input}`: {e}"))?;
    Ok(input.to_string())
}

/// Parses a duration: `250ms`, `10s`, `5m`, `1h`, or a number of seconds.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let text = input.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{input}` is not a duration; use e.g. `500ms`, `10s`, `5m`, `1h`"))?;
    let unit_ms = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(format!(
                "`{input}`: unknown unit `{other}`; use ms, s, m or h"
            ));
        }
    };
    Ok(Duration::from_millis(value.saturating_mul(unit_ms)))
}

/// Validates a DNS name used as a domain or master domain and returns its
/// canonical form (lower-case, no trailing dot).
pub fn normalize_domain_name(input: &str) -> Result<String, String> {
    let name = input.trim();
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() {
        return Err("an empty name is not a domain".into());
    }
    if name.len() > 253 {
        return Err(format!("`{input}` is longer than 253 characters"));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "`{input}` is an IP address; domains are DNS names (clients connecting by IP get the certdir)"
        ));
    }
    if let Some(parent) = name.strip_prefix("*.") {
        return Err(format!(
            "`{input}` is a wildcard; configure `{parent}` instead: names below a domain already resolve to it"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("`{input}` has an empty label (two dots in a row?)"));
        }
        if label.len() > 63 {
            return Err(format!("`{input}` has a label longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("`{input}` has a label starting or ending with `-`"));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "`{input}` contains `{bad}`; use letters, digits and `-` (IDNs in their xn-- form)"
            ));
        }
    }
    Ok(name)
}

/// Parses a listener bind: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or
/// `*:PORT` (all IPv4 addresses).
pub fn parse_bind(input: &str) -> Result<SocketAddr, String> {
    let hint = "expected IP:PORT such as `127.0.0.1:8443`, `[::1]:8443` or `0.0.0.0:443`";
    if let Ok(addr) = input.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = input
        .rsplit_once(':')
        .ok_or_else(|| format!("`{input}` has no port; {hint}"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{input}` has an invalid port `{port}`; {hint}"))?;
    let ip = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "*" | "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => return Err(format!("`{input}`: `{host}` is not an IP address; {hint}")),
    };
    Ok(SocketAddr::new(ip, port))
}

/// A duration written as `10s`, `500ms`, `5m`, `1h` or a number of seconds.
pub(super) struct DurationField(pub(super) Duration);

impl<'de> Deserialize<'de> for DurationField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = DurationField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `10s`, `500ms`, `5m` or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<DurationField, E> {
                Ok(DurationField(Duration::from_secs(secs)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<DurationField, E> {
                parse_duration(text).map(DurationField).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// `acme.directory`, with the shorthands expanded.
pub(super) struct DirectoryField(pub(super) String);

impl<'de> Deserialize<'de> for DirectoryField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(|raw: &str| {
            parse_acme_directory(raw)
                .map(DirectoryField)
                .map_err(|e| format!("invalid directory: {e}"))
        }))
    }
}

/// An optional account email, checked while it is read (for the position).
pub(super) fn account_email_field<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    struct EmailVisitor;
    impl<'de> Visitor<'de> for EmailVisitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an email address")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(CheckedStr(|raw: &str| {
                parse_account_email(raw)
                    .map(Some)
                    .map_err(|e| format!("invalid account_email: {e}"))
            }))
        }
    }
    deserializer.deserialize_option(EmailVisitor)
}

/// One path or a list of paths (`acme.ca_roots`).
pub(super) enum PathList {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for PathList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PathListVisitor;
        impl<'de> Visitor<'de> for PathListVisitor {
            type Value = PathList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path or a list of paths")
            }
            fn visit_str<E: de::Error>(self, path: &str) -> Result<PathList, E> {
                non_empty_path(path).map(PathList::One).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<PathList, A::Error> {
                let mut paths = Vec::new();
                // Each entry is checked while it is read, for its position.
                while let Some(path) = seq.next_element_seed(CheckedStr(non_empty_path))? {
                    paths.push(path);
                }
                Ok(PathList::Many(paths))
            }
        }
        deserializer.deserialize_any(PathListVisitor)
    }
}

fn non_empty_path(path: &str) -> Result<String, String> {
    if path.trim().is_empty() {
        Err("the path is empty; give a PEM file of CA certificates".into())
    } else {
        Ok(path.to_string())
    }
}

/// `acme.renew_at`: a number or an `A/B` fraction, strictly between 0 and 1.
pub(super) struct RenewAtField(pub(super) f64);

impl<'de> Deserialize<'de> for RenewAtField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Checked inside the visitor, for the position (see `CheckedStr`).
        struct RenewAtVisitor;
        impl Visitor<'_> for RenewAtVisitor {
            type Value = RenewAtField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fraction between 0 and 1 such as 0.66 or \"2/3\"")
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<RenewAtField, E> {
                check_renew_at(value)
                    .map(RenewAtField)
                    .map_err(|()| E::custom(renew_at_message(value)))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<RenewAtField, E> {
                Err(E::custom(renew_at_message(value)))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<RenewAtField, E> {
                Err(E::custom(renew_at_message(value)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RenewAtField, E> {
                parse_renew_at(text).map(RenewAtField).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(RenewAtVisitor)
    }
}

/// `acme.warn_days`: whole days, 1 to [`MAX_WARN_DAYS`].
pub(super) struct WarnDaysField(pub(super) u32);

impl<'de> Deserialize<'de> for WarnDaysField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Checked inside the visitor, for the position (see `CheckedStr`).
        struct WarnDaysVisitor;
        impl Visitor<'_> for WarnDaysVisitor {
            type Value = WarnDaysField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a whole number of days between 1 and {MAX_WARN_DAYS}")
            }
            fn visit_u64<E: de::Error>(self, days: u64) -> Result<WarnDaysField, E> {
                u32::try_from(days)
                    .ok()
                    .filter(|days| (1..=MAX_WARN_DAYS).contains(days))
                    .map(WarnDaysField)
                    .ok_or_else(|| E::custom(warn_days_message(days)))
            }
            fn visit_i64<E: de::Error>(self, days: i64) -> Result<WarnDaysField, E> {
                match u64::try_from(days) {
                    Ok(days) => self.visit_u64(days),
                    Err(_) => Err(E::custom(warn_days_message(days))),
                }
            }
        }
        deserializer.deserialize_any(WarnDaysVisitor)
    }
}

fn warn_days_message(days: impl fmt::Display) -> String {
    format!(
        "invalid warn_days `{days}`: the number of days before expiry at which a certificate is \
         reported, between 1 and {MAX_WARN_DAYS} (default {})",
        crate::expiry::DEFAULT_WARN_DAYS
    )
}

/// One of `acme.expected_addresses`.
pub(super) struct AddressField(pub(super) IpAddr);

impl<'de> Deserialize<'de> for AddressField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(|raw: &str| {
            raw.trim().parse::<IpAddr>().map(AddressField).map_err(|_| {
                format!(
                    "invalid address `{raw}`: expected an IPv4 or IPv6 address such as \
                     `203.0.113.7` or `2001:db8::7` (no port, no name)"
                )
            })
        }))
    }
}

/// A domain name, validated while deserialising so errors carry a position.
pub(super) struct DomainName(pub(super) String);

impl<'de> Deserialize<'de> for DomainName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(|raw: &str| {
            normalize_domain_name(raw)
                .map(DomainName)
                .map_err(|e| format!("invalid domain name: {e}"))
        }))
    }
}

/// Reads a string and checks it inside the visitor: the YAML parser adds the
/// line and column of a value only to errors raised while it is being read,
/// not to errors raised after `String::deserialize` has returned (those get
/// the position of the enclosing map).
pub(super) struct CheckedStr<F>(pub(super) F);

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for CheckedStr<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> DeserializeSeed<'de> for CheckedStr<F> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_str(self)
    }
}

/// A bind address and the text it was written as.
pub(super) struct Bind(pub(super) SocketAddr, pub(super) String);

impl<'de> Deserialize<'de> for Bind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(|raw: &str| {
            parse_bind(raw)
                .map(|addr| Bind(addr, raw.to_string()))
                .map_err(|e| format!("invalid bind: {e}"))
        }))
    }
}

pub(super) struct StatusCodeField(pub(super) u16);

impl<'de> Deserialize<'de> for StatusCodeField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Checked inside the visitor, for the position (see `CheckedStr`).
        struct StatusVisitor;
        impl Visitor<'_> for StatusVisitor {
            type Value = StatusCodeField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HTTP status between 100 and 599")
            }
            fn visit_u64<E: de::Error>(self, code: u64) -> Result<StatusCodeField, E> {
                u16::try_from(code)
                    .ok()
                    .filter(|code| (100..=599).contains(code))
                    .map(StatusCodeField)
                    .ok_or_else(|| {
                        E::custom(format!(
                            "invalid status `{code}`: an HTTP status is between 100 and 599"
                        ))
                    })
            }
        }
        deserializer.deserialize_u16(StatusVisitor)
    }
}

/// A string map that refuses duplicate keys (YAML allows them silently).
#[derive(Default)]
pub(super) struct UniqueMap<V>(pub(super) BTreeMap<String, V>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueVisitor<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueMap<V>, A::Error> {
                let mut out = BTreeMap::new();
                // Checked while the key is read, for its position.
                while let Some(key) = map.next_key_seed(CheckedStr(|key: &str| {
                    if out.contains_key(key) {
                        Err(format!("duplicate key `{key}`"))
                    } else {
                        Ok(key.to_string())
                    }
                }))? {
                    let value = map.next_value()?;
                    out.insert(key, value);
                }
                Ok(UniqueMap(out))
            }
        }
        deserializer.deserialize_map(UniqueVisitor(PhantomData))
    }
}
