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

use super::field_error::{DomainNameError, FieldError};

/// Let's Encrypt production, the default ACME directory.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Let's Encrypt staging, what `acme.directory: staging` stands for.
pub const STAGING_ACME_DIRECTORY: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// A value refused while the YAML is read (see [`CheckedStr`]); serde_yaml
/// adds the field and the position to its message.
#[derive(Debug, thiserror::Error)]
pub(super) enum ValueError {
    /// A parser's error, prefixed with what was being read.
    #[error("invalid {what}: {error}")]
    Invalid {
        /// What the value is (`directory`, `bind`, `domain name`...).
        what: &'static str,
        /// Why the parser refused it.
        error: FieldError,
    },
    /// A parser's error as it is.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// A key written twice in a map.
    #[error("duplicate key `{key}`")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A domain written twice under `domains:`.
    #[error(
        "duplicate domain `{name}` (names are compared lower-case, without a trailing dot); \
         keep one entry"
    )]
    DuplicateDomain {
        /// The name, normalised.
        name: String,
    },
    /// An `acme.expected_addresses` entry that is no IP address.
    #[error(
        "invalid address `{raw}`: expected an IPv4 or IPv6 address such as `203.0.113.7` or \
         `2001:db8::7` (no port, no name)"
    )]
    Address {
        /// The entry as written.
        raw: String,
    },
    /// An HTTP status outside 100-599.
    #[error("invalid status `{code}`: an HTTP status is between 100 and 599")]
    Status {
        /// The number as written.
        code: u64,
    },
    /// `acme.warn_days` outside 1 to [`MAX_WARN_DAYS`].
    #[error(
        "invalid warn_days `{days}`: the number of days before expiry at which a certificate is \
         reported, between 1 and {} (default {})",
        MAX_WARN_DAYS,
        crate::expiry::DEFAULT_WARN_DAYS
    )]
    WarnDays {
        /// The number as written.
        days: i128,
    },
}

impl ValueError {
    /// `error` of the parser of `what`, as `invalid WHAT: ...`.
    pub(super) fn invalid<E: Into<FieldError>>(what: &'static str) -> impl FnOnce(E) -> ValueError {
        move |error| ValueError::Invalid {
            what,
            error: error.into(),
        }
    }
}

/// A fingerprint pin as written (any case, with or without `:`) in the
/// canonical form: lowercase hex without separators, of `hex_len` digits.
pub fn normalize_pin(pin: &str, hex_len: usize) -> Result<String, FieldError> {
    let canonical: String = pin
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if canonical.len() != hex_len || !canonical.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FieldError::Pin {
            pin: pin.to_string(),
            hex_len,
        });
    }
    Ok(canonical)
}

/// Checks an ACME account contact address and returns it as written.
///
/// The CA turns it into a `mailto:` URL and rejects anything that is not one
/// address, but only when the account is created, which may be long after
/// the start; hence the shape is checked here.
pub fn parse_account_email(input: &str) -> Result<String, FieldError> {
    if input
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("mailto:"))
    {
        return Err(FieldError::EmailMailto {
            input: input.to_string(),
        });
    }
    if let Some(bad) = input
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>'))
    {
        return Err(FieldError::EmailCharacter {
            input: input.to_string(),
            bad,
        });
    }
    match input.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
                return Err(FieldError::EmailDomain {
                    input: input.to_string(),
                    domain: domain.to_string(),
                });
            }
            Ok(input.to_string())
        }
        _ => Err(FieldError::NotEmail {
            input: input.to_string(),
        }),
    }
}

/// Expands the `staging` and `production` shorthands of `acme.directory`
/// and checks that anything else is an `https://` URL (RFC 8555 requires
/// HTTPS for every ACME resource).
pub fn parse_acme_directory(input: &str) -> Result<String, FieldError> {
    let text = input.trim();
    if text.eq_ignore_ascii_case("production") {
        return Ok(DEFAULT_ACME_DIRECTORY.to_string());
    }
    if text.eq_ignore_ascii_case("staging") {
        return Ok(STAGING_ACME_DIRECTORY.to_string());
    }
    match text.strip_prefix("https://") {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !rest.contains(char::is_whitespace) =>
        {
            Ok(text.to_string())
        }
        Some(_) => Err(FieldError::DirectoryHost {
            input: input.to_string(),
        }),
        None => Err(FieldError::DirectoryScheme {
            input: input.to_string(),
        }),
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
pub fn parse_renew_at(input: &str) -> Result<f64, FieldError> {
    let text = input.trim();
    let refused = |_| renew_at_error(input);
    let value = match text.split_once('/') {
        Some((a, b)) => {
            let a: f64 = a.trim().parse().map_err(refused)?;
            let b: f64 = b.trim().parse().map_err(refused)?;
            a / b
        }
        None => text.parse().map_err(refused)?,
    };
    check_renew_at(value).map_err(|()| renew_at_error(input))
}

fn check_renew_at(value: f64) -> Result<f64, ()> {
    // NaN and infinities fail this test too.
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(())
    }
}

fn renew_at_error(input: impl fmt::Display) -> FieldError {
    FieldError::RenewAt {
        input: input.to_string(),
    }
}

/// Longest `acme.warn_days`. Public certificates last at most 398 days
/// (fewer from 2026 on), so a longer period would warn for about a
/// certificate's whole life, which is no warning at all.
pub const MAX_WARN_DAYS: u32 = 365;

/// Checks a `HOST:PORT` TCP backend.
pub(super) fn parse_tcp_backend(input: &str) -> Result<String, FieldError> {
    if input.parse::<SocketAddr>().is_ok() {
        return Ok(input.to_string());
    }
    let (host, port) = input
        .rsplit_once(':')
        .ok_or_else(|| FieldError::BackendNoPort {
            input: input.to_string(),
        })?;
    port.parse::<u16>().map_err(|_| FieldError::BackendPort {
        input: input.to_string(),
        port: port.to_string(),
    })?;
    normalize_domain_name(host).map_err(|error| FieldError::BackendHost {
        input: input.to_string(),
        error,
    })?;
    Ok(input.to_string())
}

/// Parses a duration: `250ms`, `10s`, `5m`, `1h`, or a number of seconds.
pub fn parse_duration(input: &str) -> Result<Duration, FieldError> {
    let text = input.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| FieldError::Duration {
        input: input.to_string(),
    })?;
    let unit_ms = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(FieldError::DurationUnit {
                input: input.to_string(),
                unit: other.to_string(),
            });
        }
    };
    Ok(Duration::from_millis(value.saturating_mul(unit_ms)))
}

/// Validates a DNS name used as a domain or master domain and returns its
/// canonical form (lower-case, no trailing dot).
pub fn normalize_domain_name(input: &str) -> Result<String, DomainNameError> {
    let name = input.trim();
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let as_written = || input.to_string();
    if name.is_empty() {
        return Err(DomainNameError::Empty);
    }
    if name.len() > 253 {
        return Err(DomainNameError::TooLong {
            input: as_written(),
        });
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(DomainNameError::IpAddress {
            input: as_written(),
        });
    }
    if let Some(parent) = name.strip_prefix("*.") {
        return Err(DomainNameError::Wildcard {
            input: as_written(),
            parent: parent.to_string(),
        });
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(DomainNameError::EmptyLabel {
                input: as_written(),
            });
        }
        if label.len() > 63 {
            return Err(DomainNameError::LongLabel {
                input: as_written(),
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(DomainNameError::Hyphen {
                input: as_written(),
            });
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(DomainNameError::Character {
                input: as_written(),
                bad,
            });
        }
    }
    Ok(name)
}

/// Parses a listener bind: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or
/// `*:PORT` (all IPv4 addresses).
pub fn parse_bind(input: &str) -> Result<SocketAddr, FieldError> {
    if let Ok(addr) = input.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = input
        .rsplit_once(':')
        .ok_or_else(|| FieldError::BindNoPort {
            input: input.to_string(),
        })?;
    let port: u16 = port.parse().map_err(|_| FieldError::BindPort {
        input: input.to_string(),
        port: port.to_string(),
    })?;
    let ip = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "*" | "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => {
            return Err(FieldError::BindHost {
                input: input.to_string(),
                host: host.to_string(),
            });
        }
    };
    Ok(SocketAddr::new(ip, port))
}

/// A duration written as `10s`, `500ms`, `5m`, `1h` or a number of seconds.
#[derive(Debug)]
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
                .map_err(ValueError::invalid("directory"))
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
                    .map_err(ValueError::invalid("account_email"))
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

fn non_empty_path(path: &str) -> Result<String, FieldError> {
    if path.trim().is_empty() {
        Err(FieldError::EmptyPath)
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
                    .map_err(|()| E::custom(renew_at_error(value)))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<RenewAtField, E> {
                Err(E::custom(renew_at_error(value)))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<RenewAtField, E> {
                Err(E::custom(renew_at_error(value)))
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
                    .ok_or_else(|| E::custom(ValueError::WarnDays { days: days.into() }))
            }
            fn visit_i64<E: de::Error>(self, days: i64) -> Result<WarnDaysField, E> {
                match u64::try_from(days) {
                    Ok(days) => self.visit_u64(days),
                    Err(_) => Err(E::custom(ValueError::WarnDays { days: days.into() })),
                }
            }
        }
        deserializer.deserialize_any(WarnDaysVisitor)
    }
}

/// One of `acme.expected_addresses`.
pub(super) struct AddressField(pub(super) IpAddr);

impl<'de> Deserialize<'de> for AddressField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(|raw: &str| {
            raw.trim()
                .parse::<IpAddr>()
                .map(AddressField)
                .map_err(|_| ValueError::Address {
                    raw: raw.to_string(),
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
                .map_err(ValueError::invalid("domain name"))
        }))
    }
}

/// Reads a string and checks it inside the visitor: the YAML parser adds the
/// line and column of a value only to errors raised while it is being read,
/// not to errors raised after `String::deserialize` has returned (those get
/// the position of the enclosing map). The check's error becomes the YAML
/// error's message.
pub(super) struct CheckedStr<F>(pub(super) F);

impl<'de, T, E: fmt::Display, F: FnOnce(&str) -> Result<T, E>> Visitor<'de> for CheckedStr<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<D: de::Error>(self, v: &str) -> Result<T, D> {
        (self.0)(v).map_err(D::custom)
    }
}

impl<'de, T, E: fmt::Display, F: FnOnce(&str) -> Result<T, E>> DeserializeSeed<'de>
    for CheckedStr<F>
{
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
                .map_err(ValueError::invalid("bind"))
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
                    .ok_or_else(|| E::custom(ValueError::Status { code }))
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
                        Err(ValueError::DuplicateKey {
                            key: key.to_string(),
                        })
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
