//! DNS-01 through RFC 2136 dynamic updates signed with TSIG (RFC 8945):
//! adds and removes the `_acme-challenge` TXT records at the zone's
//! primary server, and asks it what it serves.
//!
//! Every operation opens a fresh TCP connection to the configured server
//! (updates are rare) and is bounded by [`OPERATION_TIMEOUT`]. Every
//! request is signed with the configured key and every answer's
//! signature verified ([`wire`]). An update adds one value to the TXT
//! rrset or deletes one value from it (RFC 2136 §2.5.1, §2.5.4), never
//! replaces the rrset: a wildcard and its base name need two values at
//! the same name at once.

mod error;
mod wire;

pub use error::{Action, Rfc2136Error};
pub use wire::OPERATION_TIMEOUT;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use hickory_proto::op::{Message, OpCode, Query, ResponseCode, update_message};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm as HickoryAlgorithm;
use hickory_proto::rr::{Name, RData, Record, RecordSet, RecordType, TSigner};

use wire::WireError;

/// The clock skew the server may allow our signatures, in seconds (RFC
/// 8945 §10 recommends 300).
pub const TSIG_FUDGE: u16 = 300;

/// The shortest secret accepted, in bytes (RFC 8945 §6: at least half
/// the HMAC output; `tsig-keygen` makes 32).
pub const MIN_SECRET_LEN: usize = 16;

/// The HMAC algorithm of the TSIG key (RFC 8945 §6), the ones that are
/// still safe to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TsigAlgorithm {
    /// `hmac-sha256`, what `tsig-keygen` makes by default.
    #[default]
    HmacSha256,
    /// `hmac-sha384`.
    HmacSha384,
    /// `hmac-sha512`.
    HmacSha512,
}

impl TsigAlgorithm {
    /// The names [`TsigAlgorithm::parse`] accepts.
    pub const ACCEPTED: [&'static str; 3] = ["hmac-sha256", "hmac-sha384", "hmac-sha512"];

    /// Reads `tsig_algorithm` (case-insensitive); an unknown or unsafe
    /// algorithm (hmac-md5, hmac-sha1, ...) is an error listing the
    /// accepted ones.
    pub fn parse(text: &str) -> Result<Self, Rfc2136Error> {
        match text.trim().to_ascii_lowercase().as_str() {
            "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
            "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
            "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
            _ => Err(Rfc2136Error::settings(format!(
                "tsig_algorithm {text:?} is not supported: use one of {}",
                Self::ACCEPTED.join(", ")
            ))),
        }
    }

    /// The algorithm's name as BIND writes it, e.g. `hmac-sha256`.
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }

    /// The same algorithm for hickory's signer.
    fn hickory(self) -> HickoryAlgorithm {
        match self {
            TsigAlgorithm::HmacSha256 => HickoryAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384 => HickoryAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512 => HickoryAlgorithm::HmacSha512,
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `tsig_secret_file` must hold, for the error messages.
const SECRET_FILE_HOLDS: &str = "tsig_secret_file must hold the base64 secret alone, or the \
     block `tsig-keygen` prints (key \"NAME\" { algorithm ...; secret \"BASE64\"; };)";

/// Reads the content of `tsig_secret_file`: the base64 secret alone, or
/// the whole block `tsig-keygen` prints, from which the `secret "..."`
/// statement is taken. Empty, not base64 or shorter than
/// [`MIN_SECRET_LEN`] bytes is an error saying what the file must hold.
pub fn parse_tsig_secret(text: &str) -> Result<Vec<u8>, Rfc2136Error> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Rfc2136Error::settings(format!(
            "tsig_secret_file is empty: {SECRET_FILE_HOLDS}"
        )));
    }
    let encoded = if text.contains('{') {
        secret_statement(text).ok_or_else(|| {
            Rfc2136Error::settings(format!(
                "tsig_secret_file has a key block without a `secret \"...\";` statement: \
                 {SECRET_FILE_HOLDS}"
            ))
        })?
    } else {
        text
    };
    let secret = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| {
            Rfc2136Error::settings(format!(
                "the secret in tsig_secret_file is not base64 ({e}): {SECRET_FILE_HOLDS}"
            ))
        })?;
    if secret.len() < MIN_SECRET_LEN {
        return Err(Rfc2136Error::settings(format!(
            "the secret in tsig_secret_file is {} bytes, at least {MIN_SECRET_LEN} are needed \
             (tsig-keygen makes 32): {SECRET_FILE_HOLDS}",
            secret.len()
        )));
    }
    Ok(secret)
}

/// The quoted value of the first `secret "..."` statement of a BIND key
/// block; statements end at `;`, `{` or `}`.
fn secret_statement(block: &str) -> Option<&str> {
    block.split([';', '{', '}']).find_map(|statement| {
        let rest = statement.trim().strip_prefix("secret")?;
        let rest = rest.trim_start().strip_prefix('"')?;
        rest.split('"').next()
    })
}

/// What a `tsig-keygen` block declares besides its secret; both `None`
/// when the file holds the secret alone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeyBlock {
    /// The key's name (`key "NAME" { ... }`).
    pub name: Option<String>,
    /// Its `algorithm` statement.
    pub algorithm: Option<String>,
}

/// The key name and algorithm of a BIND key block, as far as it gives
/// them.
pub fn key_block(text: &str) -> KeyBlock {
    let text = text.trim();
    if !text.contains('{') {
        return KeyBlock::default();
    }
    let name = text.strip_prefix("key").and_then(|rest| {
        let rest = rest.trim_start();
        let name = match rest.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next()?,
            None => rest.split(|c: char| c.is_whitespace() || c == '{').next()?,
        };
        (!name.is_empty()).then(|| name.to_string())
    });
    let algorithm = text.split([';', '{', '}']).find_map(|statement| {
        let value = statement.trim().strip_prefix("algorithm")?.trim();
        (!value.is_empty()).then(|| value.trim_matches('"').to_string())
    });
    KeyBlock { name, algorithm }
}

/// Where and how to send updates: the zone's primary server and the TSIG
/// key it accepts.
#[derive(Clone)]
pub struct Rfc2136Settings {
    /// The primary server of the zone (TCP).
    pub server: SocketAddr,
    /// The TSIG key's name, as the server knows it.
    pub key_name: String,
    /// The TSIG key's algorithm.
    pub algorithm: TsigAlgorithm,
    /// The TSIG key's secret (see [`parse_tsig_secret`]).
    pub secret: Vec<u8>,
    /// The zone to update; `None` discovers it with an SOA query for each
    /// name ([`DnsUpdater::zone_of`]).
    pub zone: Option<String>,
}

impl fmt::Debug for Rfc2136Settings {
    /// Everything but the secret, of which only the length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc2136Settings")
            .field("server", &self.server)
            .field("key_name", &self.key_name)
            .field("algorithm", &self.algorithm)
            .field(
                "secret",
                &format_args!("<{} bytes hidden>", self.secret.len()),
            )
            .field("zone", &self.zone)
            .finish()
    }
}

/// Adds and removes TXT records on one server with one key. Cheap to
/// clone (shared inside); each operation uses a connection of its own.
#[derive(Clone)]
pub struct DnsUpdater {
    inner: Arc<Inner>,
}

/// What every clone of a [`DnsUpdater`] shares.
struct Inner {
    server: SocketAddr,
    key_name: String,
    signer: TSigner,
    zone: Option<Name>,
}

impl fmt::Debug for DnsUpdater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsUpdater")
            .field("server", &self.inner.server)
            .field("key_name", &self.inner.key_name)
            .field("zone", &self.inner.zone.as_ref().map(shown))
            .finish_non_exhaustive()
    }
}

impl DnsUpdater {
    /// An updater for `settings`: checks the key name, secret and zone.
    pub fn new(settings: Rfc2136Settings) -> Result<Self, Rfc2136Error> {
        if settings.secret.len() < MIN_SECRET_LEN {
            return Err(Rfc2136Error::settings(format!(
                "the TSIG secret is {} bytes, at least {MIN_SECRET_LEN} are needed",
                settings.secret.len()
            )));
        }
        let key = absolute(&settings.key_name)
            .map_err(|e| Rfc2136Error::settings(format!("tsig_key_name is not a DNS name: {e}")))?;
        let zone = match &settings.zone {
            Some(zone) => Some(
                absolute(zone)
                    .map_err(|e| Rfc2136Error::settings(format!("zone is not a DNS name: {e}")))?,
            ),
            None => None,
        };
        let signer = TSigner::new(
            settings.secret,
            settings.algorithm.hickory(),
            key,
            TSIG_FUDGE,
        )
        .map_err(|e| Rfc2136Error::settings(format!("TSIG key not usable: {e}")))?;
        Ok(DnsUpdater {
            inner: Arc::new(Inner {
                server: settings.server,
                key_name: settings.key_name.trim_end_matches('.').to_string(),
                signer,
                zone,
            }),
        })
    }

    /// The server updates go to.
    pub fn server(&self) -> SocketAddr {
        self.inner.server
    }

    /// Adds one TXT record `name` → `value` with `ttl` to the rrset (RFC
    /// 2136 §2.5.1: the other values at `name` stay). `name` is absolute,
    /// without the trailing dot, e.g. `_acme-challenge.tenant.example`.
    pub async fn add_txt(&self, name: &str, value: &str, ttl: u32) -> Result<(), Rfc2136Error> {
        let owner = record_name(name)?;
        self.bounded(Action::Update, name, async {
            let zone = self.zone_name(&owner, name).await?;
            let record = Record::from_rdata(owner.clone(), ttl, RData::TXT(txt(value)));
            let message =
                update_message::append(RecordSet::from(record), zone.clone(), false, false);
            self.update(message, name, &zone).await
        })
        .await
    }

    /// Removes exactly the TXT record `name` → `value` (RFC 2136 §2.5.4:
    /// other values at `name` stay; an absent one is no error).
    pub async fn remove_txt(&self, name: &str, value: &str) -> Result<(), Rfc2136Error> {
        let owner = record_name(name)?;
        self.bounded(Action::Update, name, async {
            let zone = self.zone_name(&owner, name).await?;
            let record = Record::from_rdata(owner.clone(), 0, RData::TXT(txt(value)));
            let message =
                update_message::delete_by_rdata(RecordSet::from(record), zone.clone(), false);
            self.update(message, name, &zone).await
        })
        .await
    }

    /// The TXT values the server serves at `name` (none when the name or
    /// the rrset does not exist): whether an update is visible yet.
    pub async fn txt_values(&self, name: &str) -> Result<Vec<String>, Rfc2136Error> {
        let owner = record_name(name)?;
        self.bounded(Action::TxtQuery, name, async {
            let answer = self
                .query(&owner, RecordType::TXT, Action::TxtQuery, name)
                .await?;
            match answer.metadata.response_code {
                ResponseCode::NoError | ResponseCode::NXDomain => Ok(txt_of(&answer, &owner)),
                code => Err(self.rcode_error(Action::TxtQuery, name, String::new(), code)),
            }
        })
        .await
    }

    /// The zone that holds `name`, without the trailing dot: the
    /// configured zone (an error if it does not enclose `name`), else the
    /// owner of the SOA record the server answers for `name`.
    pub async fn zone_of(&self, name: &str) -> Result<String, Rfc2136Error> {
        let owner = record_name(name)?;
        self.bounded(Action::SoaQuery, name, self.zone_name(&owner, name))
            .await
            .map(|zone| shown(&zone))
    }

    /// Runs `operation` within [`OPERATION_TIMEOUT`].
    async fn bounded<T>(
        &self,
        action: Action,
        name: &str,
        operation: impl Future<Output = Result<T, Rfc2136Error>>,
    ) -> Result<T, Rfc2136Error> {
        tokio::time::timeout(OPERATION_TIMEOUT, operation)
            .await
            .unwrap_or_else(|_| Err(self.unreachable(action, name, "no answer".into())))
    }

    /// The configured zone if it encloses `owner`, else the discovered one.
    async fn zone_name(&self, owner: &Name, name: &str) -> Result<Name, Rfc2136Error> {
        match &self.inner.zone {
            Some(zone) if zone.zone_of(owner) => Ok(zone.clone()),
            Some(zone) => Err(Rfc2136Error::OutsideZone {
                server: self.inner.server,
                name: name.to_string(),
                zone: shown(zone),
            }),
            None => self.discover_zone(owner, name).await,
        }
    }

    /// Asks the server for the SOA of `owner`: the owner of the SOA record
    /// in the answer (at the apex) or authority section (below it, RFC
    /// 2308 §3) is the zone.
    async fn discover_zone(&self, owner: &Name, name: &str) -> Result<Name, Rfc2136Error> {
        let answer = self
            .query(owner, RecordType::SOA, Action::SoaQuery, name)
            .await?;
        let no_zone = |detail: String| Rfc2136Error::NoZone {
            server: self.inner.server,
            name: name.to_string(),
            detail,
        };
        let code = answer.metadata.response_code;
        if !matches!(code, ResponseCode::NoError | ResponseCode::NXDomain) {
            return Err(no_zone(format!(
                "it answered {} to the SOA query",
                rcode(code)
            )));
        }
        let soa = answer
            .answers
            .iter()
            .chain(&answer.authorities)
            .find(|record| record.record_type() == RecordType::SOA);
        match soa {
            Some(soa) if soa.name.zone_of(owner) => Ok(soa.name.clone()),
            Some(soa) => Err(no_zone(format!(
                "the SOA it answered is for {}",
                shown(&soa.name)
            ))),
            None => Err(no_zone(
                "its answer to the SOA query holds no SOA record (is the name delegated?)".into(),
            )),
        }
    }

    /// Sends a signed update for `name` in `zone` and reads its result
    /// (RFC 2136 §3.8, §2.2 response codes).
    async fn update(&self, message: Message, name: &str, zone: &Name) -> Result<(), Rfc2136Error> {
        tracing::debug!(server = %self.inner.server, name, zone = %shown(zone), "RFC 2136 update");
        let answer = self.send(message, Action::Update, name).await?;
        let server = self.inner.server;
        match answer.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            ResponseCode::Refused => Err(Rfc2136Error::Refused {
                server,
                name: name.to_string(),
                zone: shown(zone),
                key: self.inner.key_name.clone(),
            }),
            ResponseCode::NotAuth => Err(Rfc2136Error::NotAuthoritative {
                server,
                name: name.to_string(),
                zone: shown(zone),
            }),
            ResponseCode::NotZone => Err(Rfc2136Error::OutsideZone {
                server,
                name: name.to_string(),
                zone: shown(zone),
            }),
            code => Err(self.rcode_error(
                Action::Update,
                name,
                format!(" in zone {}", shown(zone)),
                code,
            )),
        }
    }

    /// Sends a signed query for `owner`'s `kind` records.
    async fn query(
        &self,
        owner: &Name,
        kind: RecordType,
        action: Action,
        name: &str,
    ) -> Result<Message, Rfc2136Error> {
        let mut message = Message::query();
        message.metadata.op_code = OpCode::Query;
        message.metadata.recursion_desired = false;
        message.add_query(Query::query(owner.clone(), kind));
        self.send(message, action, name).await
    }

    /// One signed exchange, its failures put in context.
    async fn send(
        &self,
        message: Message,
        action: Action,
        name: &str,
    ) -> Result<Message, Rfc2136Error> {
        wire::exchange(self.inner.server, &self.inner.signer, message)
            .await
            .map_err(|e| self.wire_error(e, action, name))
    }

    /// A [`WireError`] as the operator reads it.
    fn wire_error(&self, error: WireError, action: Action, name: &str) -> Rfc2136Error {
        let server = self.inner.server;
        let tsig = |reason: String| Rfc2136Error::TsigRejected {
            server,
            key: self.inner.key_name.clone(),
            action,
            name: name.to_string(),
            reason,
        };
        match error {
            WireError::Io(reason) => self.unreachable(action, name, reason),
            WireError::Tsig(code, hint) => tsig(format!("{code}: {hint}")),
            WireError::Unverified(detail) => tsig(format!(
                "the answer's signature did not verify with this key: {detail}"
            )),
            WireError::Request(detail) | WireError::Malformed(detail) => Rfc2136Error::BadAnswer {
                server,
                action,
                name: name.to_string(),
                detail,
            },
        }
    }

    /// The server did not answer `action` for `name`.
    fn unreachable(&self, action: Action, name: &str, reason: String) -> Rfc2136Error {
        Rfc2136Error::Unreachable {
            server: self.inner.server,
            action,
            name: name.to_string(),
            reason,
        }
    }

    /// Any other response code.
    fn rcode_error(
        &self,
        action: Action,
        name: &str,
        zone: String,
        code: ResponseCode,
    ) -> Rfc2136Error {
        Rfc2136Error::Rcode {
            server: self.inner.server,
            action,
            name: name.to_string(),
            zone,
            rcode: rcode(code),
        }
    }
}

/// A record name given by the caller, as an absolute name.
fn record_name(name: &str) -> Result<Name, Rfc2136Error> {
    absolute(name).map_err(|reason| Rfc2136Error::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// `name` (with or without the trailing dot) as an absolute DNS name.
fn absolute(name: &str) -> Result<Name, String> {
    let trimmed = name.trim().trim_end_matches('.');
    if trimmed.is_empty() {
        return Err("empty".into());
    }
    let mut parsed = Name::from_ascii(trimmed).map_err(|e| e.to_string())?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// A name as the messages show it: without the trailing dot.
fn shown(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_string()
}

/// TXT data for `value`: character-strings of at most 255 bytes (RFC
/// 1035 §3.3.14), so a long value is split the same way every time.
fn txt(value: &str) -> TXT {
    if value.is_empty() {
        return TXT::from_bytes(vec![b""]);
    }
    TXT::from_bytes(value.as_bytes().chunks(255).collect())
}

/// The TXT values at `owner` in `answer`, each one's strings joined.
fn txt_of(answer: &Message, owner: &Name) -> Vec<String> {
    answer
        .answers
        .iter()
        .filter(|record| record.name == *owner)
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// A response code's mnemonic (RFC 1035 §4.1.1, RFC 2136 §2.2).
fn rcode(code: ResponseCode) -> String {
    let mnemonic = match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        other => return format!("rcode {} ({})", u16::from(other), other.to_str()),
    };
    mnemonic.to_string()
}

#[cfg(test)]
mod tests;
