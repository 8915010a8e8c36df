//! `proxy.yaml`: raw serde structures, then validated types.
//!
//! Every YAML call of the crate lives here. Values that can be checked on
//! their own (domain names, binds, status codes) are checked while
//! deserialising, so the YAML parser's error carries the line and column of
//! the bad value. Checks across fields (the master domain among the domains,
//! unknown `alias://` names, duplicate listeners) run afterwards and find
//! their position by looking the offending text up in the file.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

/// Where `state_dir` is when the configuration does not say.
pub const DEFAULT_STATE_DIR: &str = "state";

/// The prefix of a path alias (seed 003: `alias://paths/default_certdir`).
pub const ALIAS_PREFIX: &str = "alias://paths/";

/// Let's Encrypt production, the default ACME directory.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Why a configuration could not be used. `run` refuses to start on these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read the configuration: {source}")]
    Read {
        /// The configuration file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or a value is invalid; the message names the
    /// field and carries line and column.
    #[error("{file}: {message}")]
    Invalid {
        /// The configuration file.
        file: PathBuf,
        /// What is wrong, where, and what to do.
        message: String,
    },
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// The master domain: root of every chain in the domain tree.
    pub master_domain: String,
    /// Where ACME results, the account and the generated default live.
    pub state_dir: PathBuf,
    /// A `certificate_pem` file to serve when nothing else applies.
    pub default_certificate: Option<PathBuf>,
    /// The configured domains, in file order; the master is among them.
    pub domains: Vec<DomainConfig>,
    /// The listeners, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// Global ACME settings.
    pub acme: AcmeConfig,
}

/// One configured domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainConfig {
    /// Lower-case name without a trailing dot.
    pub name: String,
    /// Where its certificate comes from, if it has one.
    pub certificate: CertificateSource,
    /// Per-domain ACME settings.
    pub acme: Option<DomainAcme>,
}

/// Where a domain's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// No certificate set by hand (ACME may provide one).
    None,
    /// `certificate_pem` given inline in the configuration.
    Inline(String),
    /// `certificate_file`: a file in the `certificate_pem` format.
    File(PathBuf),
}

/// Per-domain ACME switch (seed 003: `acme_enabled`, `acme_account_email`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainAcme {
    /// Whether sniwalk should obtain and renew this domain's certificate.
    #[serde(default)]
    pub enabled: bool,
    /// Contact address for the ACME account.
    #[serde(default)]
    pub account_email: Option<String>,
}

/// Global ACME settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The ACME directory URL.
    pub directory: String,
}

/// The kinds of listener (DESIGN.md, "Traffic").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// TLS, then HTTP/1.1 or HTTP/2 routed by host.
    Https,
    /// TLS, then raw TCP to one backend (SIP over TLS).
    Tls,
    /// Plain HTTP: ACME HTTP-01 answers and redirects to HTTPS.
    Http,
}

impl ListenerKind {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Https => "https",
            ListenerKind::Tls => "tls",
            ListenerKind::Http => "http",
        }
    }

    /// Whether connections on this kind start with a TLS handshake.
    pub fn terminates_tls(self) -> bool {
        matches!(self, ListenerKind::Https | ListenerKind::Tls)
    }
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Unique name, used by `resolve --listener` and in logs.
    pub name: String,
    /// What it serves.
    pub kind: ListenerKind,
    /// Address to bind.
    pub bind: SocketAddr,
    /// Directory holding `server.key` and `server.crt`, the fallback after
    /// the domain tree.
    pub certdir: Option<PathBuf>,
    /// Routes of an `https` listener, first match wins.
    pub routes: Vec<Route>,
    /// Whether each request is logged.
    pub access_log: bool,
}

/// One route of an `https` listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Which Host header values it matches.
    pub host: HostPattern,
    /// Optional path prefix it is limited to.
    pub path_prefix: Option<String>,
    /// What it does.
    pub action: RouteAction,
}

/// Which hosts a route matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: every host.
    Any,
    /// `*.example.com`: any name below `example.com` (not the name itself).
    Suffix(String),
    /// One exact name.
    Exact(String),
}

impl HostPattern {
    /// Whether a lower-case host name (no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(name) => name == host,
            HostPattern::Suffix(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

/// What a route does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Answer with a fixed status and body.
    Respond {
        /// HTTP status code (100-599).
        status: u16,
        /// Body text.
        body: String,
    },
    /// Answer with a small HTML page about the proxy and the certificate
    /// served on this connection.
    StatusPage,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates configuration text; `path` names the file in errors and
    /// anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: path.to_path_buf(),
            message,
        };
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let paths = PathResolver {
            file: path,
            base: &base,
            aliases: &raw.paths.0,
            text,
        };

        let master = raw.master_domain.0;
        if !raw.domains.0.iter().any(|(name, _)| name.0 == master) {
            return Err(invalid(format!(
                "master_domain: `{master}` is not among `domains`; add `{master}: {{}}` under `domains`{}",
                locate(text, "master_domain:")
            )));
        }

        let mut domains = Vec::with_capacity(raw.domains.0.len());
        for (name, raw_domain) in raw.domains.0 {
            let raw_domain = raw_domain.unwrap_or_default();
            let field = format!("domains.{}", name.0);
            let certificate = match (raw_domain.certificate_pem, raw_domain.certificate_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "{field}: set either `certificate_pem` or `certificate_file`, not both{}",
                        locate_entry(text, &name.0, "", 0)
                    )));
                }
                (Some(pem), None) => CertificateSource::Inline(pem),
                (None, Some(file)) => CertificateSource::File(
                    paths.resolve(&file, &format!("{field}.certificate_file"))?,
                ),
                (None, None) => CertificateSource::None,
            };
            domains.push(DomainConfig {
                name: name.0,
                certificate,
                acme: raw_domain.acme,
            });
        }

        let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(raw.listeners.len());
        let mut raw_binds: Vec<String> = Vec::with_capacity(raw.listeners.len());
        for raw_listener in raw.listeners {
            let field = format!("listeners.{}", raw_listener.name);
            if raw_listener.name.is_empty() {
                return Err(invalid(
                    "listeners: every listener needs a non-empty `name`".into(),
                ));
            }
            if listeners.iter().any(|l| l.name == raw_listener.name) {
                return Err(invalid(format!(
                    "{field}: the listener name `{}` is used twice; names must be unique{}",
                    raw_listener.name,
                    locate_entry(text, "name", &raw_listener.name, 1)
                )));
            }
            let bind = raw_listener.bind.0;
            if let Some(other) = listeners.iter().find(|l| l.bind == bind) {
                let raw_bind = &raw_listener.bind.1;
                let earlier = raw_binds.iter().filter(|b| *b == raw_bind).count();
                return Err(invalid(format!(
                    "{field}.bind: `{bind}` is already bound by listener `{}`{}",
                    other.name,
                    locate_entry(text, "bind", raw_bind, earlier)
                )));
            }
            raw_binds.push(raw_listener.bind.1);
            let kind = raw_listener.kind;
            if kind != ListenerKind::Https && !raw_listener.routes.is_empty() {
                return Err(invalid(format!(
                    "{field}.routes: only `https` listeners have routes (this one is `{}`)",
                    kind.as_str()
                )));
            }
            if kind == ListenerKind::Http && raw_listener.certdir.is_some() {
                return Err(invalid(format!(
                    "{field}.certdir: an `http` listener serves no certificate; remove `certdir`"
                )));
            }
            if kind != ListenerKind::Https {
                return Err(invalid(format!(
                    "{field}.kind: `{}` listeners are not available in this version yet; \
                     use `https` or remove the listener",
                    kind.as_str()
                )));
            }
            let certdir = match raw_listener.certdir {
                Some(dir) => Some(paths.resolve(&dir, &format!("{field}.certdir"))?),
                None => None,
            };
            let mut routes = Vec::with_capacity(raw_listener.routes.len());
            for (i, r) in raw_listener.routes.into_iter().enumerate() {
                let action = match (r.respond, r.status_page) {
                    (Some(respond), false) => RouteAction::Respond {
                        status: respond.status.0,
                        body: respond.body,
                    },
                    (None, true) => RouteAction::StatusPage,
                    (Some(_), true) => {
                        return Err(invalid(format!(
                            "{field}.routes[{i}]: set one of `respond` or `status_page`, not both"
                        )));
                    }
                    (None, false) => {
                        return Err(invalid(format!(
                            "{field}.routes[{i}]: says nothing to do; add `respond: {{ status: 200, body: ... }}` \
                             or `status_page: true`"
                        )));
                    }
                };
                routes.push(Route {
                    host: r.host.0,
                    path_prefix: r.path,
                    action,
                });
            }
            listeners.push(ListenerConfig {
                name: raw_listener.name,
                kind,
                bind,
                certdir,
                routes,
                access_log: raw_listener.access_log.unwrap_or(true),
            });
        }

        let state_dir = paths.resolve(
            raw.state_dir.as_deref().unwrap_or(DEFAULT_STATE_DIR),
            "state_dir",
        )?;
        let default_certificate = match raw.default_certificate {
            Some(file) => Some(paths.resolve(&file, "default_certificate")?),
            None => None,
        };
        let acme = AcmeConfig {
            directory: raw
                .acme
                .and_then(|a| a.directory)
                .unwrap_or_else(|| DEFAULT_ACME_DIRECTORY.to_string()),
        };
        Ok(Config {
            file: path.to_path_buf(),
            master_domain: master,
            state_dir,
            default_certificate,
            domains,
            listeners,
            acme,
        })
    }

    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerConfig> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

/// Turns configured path strings into paths: aliases first, then relative
/// paths against the configuration file's folder.
struct PathResolver<'a> {
    file: &'a Path,
    base: &'a Path,
    aliases: &'a BTreeMap<String, String>,
    text: &'a str,
}

impl PathResolver<'_> {
    fn resolve(&self, value: &str, field: &str) -> Result<PathBuf, ConfigError> {
        let expanded = match value.strip_prefix(ALIAS_PREFIX) {
            Some(rest) => {
                let (alias, tail) = rest.split_once('/').unwrap_or((rest, ""));
                let Some(target) = self.aliases.get(alias) else {
                    let known: Vec<&str> = self.aliases.keys().map(String::as_str).collect();
                    return Err(ConfigError::Invalid {
                        file: self.file.to_path_buf(),
                        message: format!(
                            "{field}: unknown alias `{alias}` in `{value}`; define it under `paths:` \
                             (known: {}){}",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            },
                            locate(self.text, value)
                        ),
                    });
                };
                if tail.is_empty() {
                    PathBuf::from(target)
                } else {
                    Path::new(target).join(tail)
                }
            }
            None => PathBuf::from(value),
        };
        if expanded.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                file: self.file.to_path_buf(),
                message: format!("{field}: the path is empty{}", locate(self.text, field)),
            });
        }
        Ok(if expanded.is_absolute() {
            expanded
        } else {
            self.base.join(expanded)
        })
    }
}

/// ` at line L column C` for the first occurrence of `needle`, or nothing.
fn locate(text: &str, needle: &str) -> String {
    locate_nth(text, needle, 0)
}

/// Like [`locate`], for the occurrence after `skip` earlier ones.
fn locate_nth(text: &str, needle: &str, skip: usize) -> String {
    text.match_indices(needle)
        .nth(skip)
        .map_or_else(String::new, |(offset, _)| position(text, offset))
}

/// Like [`locate_nth`], for the entry `key: value` (value plain or quoted;
/// an empty `value` finds the key whatever follows it). Unlike a bare
/// substring search, `name: ws` does not find `name: ws2` nor `hostname: ws`,
/// and `example.com:` does not find `www.example.com:`.
fn locate_entry(text: &str, key: &str, value: &str, skip: usize) -> String {
    let needles: Vec<String> = if value.is_empty() {
        vec![format!("{key}:")]
    } else {
        ["", "\"", "'"]
            .iter()
            .map(|q| format!("{key}: {q}{value}{q}"))
            .collect()
    };
    let mut offsets: Vec<usize> = needles
        .iter()
        .flat_map(|needle| text.match_indices(needle.as_str()))
        .filter(|&(offset, needle)| {
            let before = text[..offset].chars().next_back();
            let after = text[offset + needle.len()..].chars().next();
            before.is_none_or(|c| c.is_whitespace() || c == '{' || c == ',')
                && after.is_none_or(|c| c.is_whitespace() || c == ',' || c == '}' || c == '#')
        })
        .map(|(offset, _)| offset)
        .collect();
    offsets.sort_unstable();
    offsets
        .get(skip)
        .map_or_else(String::new, |&offset| position(text, offset))
}

/// ` at line L column C` for a byte offset into `text`.
fn position(text: &str, offset: usize) -> String {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map_or(0, |nl| nl + 1) + 1;
    format!(" at line {line} column {column}")
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

/// Parses a route's host pattern.
fn parse_host_pattern(input: &str) -> Result<HostPattern, String> {
    let trimmed = input.trim();
    if trimmed == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some(suffix) = trimmed.strip_prefix("*.") {
        return normalize_domain_name(suffix).map(HostPattern::Suffix);
    }
    let name = trimmed
        .strip_suffix('.')
        .unwrap_or(trimmed)
        .to_ascii_lowercase();
    if name.parse::<IpAddr>().is_ok() || name == "localhost" {
        return Ok(HostPattern::Exact(name));
    }
    normalize_domain_name(&name).map(HostPattern::Exact)
}

// ---- raw serde structures -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    master_domain: DomainName,
    #[serde(default)]
    state_dir: Option<String>,
    #[serde(default)]
    paths: UniqueMap<String>,
    #[serde(default)]
    default_certificate: Option<String>,
    domains: DomainMap,
    #[serde(default)]
    listeners: Vec<RawListener>,
    #[serde(default)]
    acme: Option<RawAcme>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    #[serde(default)]
    certificate_pem: Option<String>,
    #[serde(default)]
    certificate_file: Option<String>,
    #[serde(default)]
    acme: Option<DomainAcme>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    #[serde(default)]
    directory: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    name: String,
    kind: ListenerKind,
    bind: Bind,
    #[serde(default)]
    certdir: Option<String>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    access_log: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    host: HostPatternField,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    respond: Option<RawRespond>,
    #[serde(default)]
    status_page: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRespond {
    #[serde(default = "default_respond_status")]
    status: StatusCodeField,
    #[serde(default)]
    body: String,
}

fn default_respond_status() -> StatusCodeField {
    StatusCodeField(200)
}

/// A domain name, validated while deserialising so errors carry a position.
struct DomainName(String);

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
struct CheckedStr<F>(F);

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
struct Bind(SocketAddr, String);

impl<'de> Deserialize<'de> for Bind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(|raw: &str| {
            parse_bind(raw)
                .map(|addr| Bind(addr, raw.to_string()))
                .map_err(|e| format!("invalid bind: {e}"))
        }))
    }
}

struct HostPatternField(HostPattern);

impl<'de> Deserialize<'de> for HostPatternField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(|raw: &str| {
            parse_host_pattern(raw)
                .map(HostPatternField)
                .map_err(|e| format!("invalid route host: {e}"))
        }))
    }
}

struct StatusCodeField(u16);

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

/// `domains:` in file order, refusing names that are equal once normalised.
struct DomainMap(Vec<(DomainName, Option<RawDomain>)>);

impl<'de> Deserialize<'de> for DomainMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DomainMapVisitor;
        impl<'de> Visitor<'de> for DomainMapVisitor {
            type Value = DomainMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from domain name to its settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DomainMap, A::Error> {
                let mut entries: Vec<(DomainName, Option<RawDomain>)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                // The key is checked while it is read, so errors carry its
                // position rather than that of the `domains:` map.
                while let Some(name) = map.next_key_seed(CheckedStr(|raw: &str| {
                    let name = normalize_domain_name(raw).map_err(|e| format!("invalid domain name: {e}"))?;
                    if seen.contains(&name) {
                        return Err(format!(
                            "duplicate domain `{name}` (names are compared lower-case, without a trailing dot); \
                             keep one entry"
                        ));
                    }
                    Ok(name)
                }))? {
                    seen.insert(name.clone());
                    let value = map.next_value::<Option<RawDomain>>()?;
                    entries.push((DomainName(name), value));
                }
                Ok(DomainMap(entries))
            }
        }
        deserializer.deserialize_map(DomainMapVisitor)
    }
}

/// A string map that refuses duplicate keys (YAML allows them silently).
#[derive(Default)]
struct UniqueMap<V>(BTreeMap<String, V>);

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

#[cfg(test)]
mod tests;
