//! The `certificate_pem` format: one text holding a private key, a
//! certificate and its chain.
//!
//! We are liberal in what we accept because these texts are pasted by people
//! from many tools (README, "The `certificate_pem` format"):
//!
//! 1. Free text before or between blocks is ignored (`date=...`, OpenSSL's
//!    `Bag Attributes`, `subject=...`), except `key=value` marker lines,
//!    which are kept as [`Markers`] (ACME writes `acme_issued=...`).
//! 2. Blocks may come in any order; CRLF, trailing spaces and a whole PEM
//!    flattened onto one line by a web form are accepted, because the base64
//!    body is read with every kind of whitespace removed.
//! 3. The key kind is decided by the DER content, not by the label, since
//!    texts pasted from real tools carry PKCS#8 under `RSA PRIVATE KEY`.
//! 4. The leaf is the certificate whose public key matches the private key;
//!    the other certificates follow it in the order they were given.
//!
//! Bytes in, parsed values out: this file does no I/O.

use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::sign::{CertifiedKey, SigningKey};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use x509_parser::error::X509Error;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Why a `certificate_pem` text could not be turned into a certificate.
///
/// The messages say what is wrong and what to do; the caller adds which
/// domain or file the text came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// Nothing that looks like a PEM block at all.
    #[error(
        "no PEM blocks found; expected a private key followed by a certificate \
         (-----BEGIN PRIVATE KEY----- ... -----BEGIN CERTIFICATE----- ...)"
    )]
    NoBlocks,
    /// A `-----BEGIN X-----` without its `-----END X-----`.
    #[error(
        "the `{label}` block has no matching `-----END {label}-----` line; the text looks cut off"
    )]
    Unterminated {
        /// Label of the block that was opened.
        label: String,
    },
    /// The body of a block is not valid base64.
    #[error("the `{label}` block (block {index}) is not valid base64; the text looks damaged")]
    BadBase64 {
        /// Label of the damaged block.
        label: String,
        /// 1-based position of the block in the text.
        index: usize,
    },
    /// A password-protected key, which a server cannot unlock unattended.
    #[error(
        "the private key is encrypted; decrypt it first \
         (`openssl pkey -in key.pem -out plain.pem`) and paste the plain key"
    )]
    EncryptedKey,
    /// No private key block in the text.
    #[error(
        "no private key found; put the private key (-----BEGIN PRIVATE KEY-----) before the certificate"
    )]
    NoPrivateKey,
    /// More than one private key block, so the pairing is ambiguous.
    #[error("{count} private keys found; keep only the key that belongs to the certificate")]
    SeveralPrivateKeys {
        /// How many key blocks were found.
        count: usize,
    },
    /// The key block is not a PKCS#8, PKCS#1 or SEC1 key we can sign with.
    #[error(
        "the private key could not be read as PKCS#8, PKCS#1 (RSA) or SEC1 (EC); \
         supported keys are RSA (2048 bits or more) and ECDSA P-256/P-384/P-521"
    )]
    UnsupportedKey,
    /// No certificate block in the text.
    #[error(
        "no certificate found; put the certificate (-----BEGIN CERTIFICATE-----) after the private key"
    )]
    NoCertificate,
    /// A certificate block whose DER is not an X.509 certificate.
    #[error("certificate {index} is not a valid X.509 certificate: {reason}")]
    BadCertificate {
        /// 1-based position among the certificate blocks.
        index: usize,
        /// What the X.509 parser said.
        reason: String,
    },
    /// The private key belongs to none of the certificates.
    #[error(
        "the private key matches none of the {certificates} certificate(s); \
         use the key that was generated with this certificate's request"
    )]
    KeyMatchesNoCertificate {
        /// How many certificates were checked.
        certificates: usize,
    },
}

/// A parsed `certificate_pem`: what rustls needs to serve it, plus the facts
/// about the leaf that `check`, status and logs show.
#[derive(Debug, Clone)]
pub struct ParsedPem {
    /// Leaf first, then the chain in the given order, with the signing key.
    pub certified_key: Arc<CertifiedKey>,
    /// Facts about the leaf certificate.
    pub leaf: CertificateFacts,
    /// `key=value` lines found outside the PEM blocks.
    pub markers: Markers,
}

/// Facts about one certificate, read once when it is loaded so nothing needs
/// parsing during a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Subject as OpenSSL prints it, e.g. `CN=example.com`.
    pub subject: String,
    /// Issuer as OpenSSL prints it.
    pub issuer: String,
    /// DNS names from the subjectAltName extension, lower-case.
    pub dns_names: Vec<String>,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the DER, upper-case hex pairs joined by `:`.
    pub sha256: String,
}

/// `key=value` marker lines kept from the free text of a `certificate_pem`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Markers {
    /// Pairs in the order they were found.
    pub pairs: Vec<(String, String)>,
}

/// Marker that says a stored certificate was issued by our ACME client.
pub const ACME_ISSUED_MARKER: &str = "acme_issued";

/// Marker naming the ACME directory that issued a stored certificate.
pub const ACME_DIRECTORY_MARKER: &str = "acme_directory";

impl Markers {
    /// The value of the first marker named `key`.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the text was written by sniwalk's ACME client; a text without
    /// the marker is managed by hand and ACME leaves it alone (README,
    /// "The `certificate_pem` format").
    pub fn is_acme_issued(&self) -> bool {
        self.value(ACME_ISSUED_MARKER).is_some()
    }
}

impl CertificateFacts {
    /// Reads the facts from a DER certificate; the error is what the
    /// X.509 parser said.
    pub fn from_der(der: &[u8]) -> Result<Self, x509_parser::nom::Err<X509Error>> {
        let (_, cert) = X509Certificate::from_der(der)?;
        let mut dns_names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(dns) = name {
                    dns_names.push(dns.to_ascii_lowercase());
                }
            }
        }
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            dns_names,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            sha256: sha256_fingerprint(der),
        })
    }

    /// Whether the certificate's DNS names cover `name` (exact, or a
    /// wildcard standing for exactly one leftmost label, as browsers match).
    pub fn covers(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.dns_names.iter().any(|pattern| {
            if let Some(suffix) = pattern.strip_prefix("*.") {
                match name.split_once('.') {
                    Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(suffix),
                    None => false,
                }
            } else {
                pattern.eq_ignore_ascii_case(name)
            }
        })
    }

    /// Whole days from `now` until the end of validity (negative once expired).
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }
}

/// SHA-256 fingerprint of a DER blob in the usual `AB:CD:...` form.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = String::with_capacity(95);
    for (i, byte) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{byte:02X}");
    }
    out
}

/// Parses a `certificate_pem` text (see the module documentation for what is
/// accepted).
pub fn parse_certificate_pem(text: &str) -> Result<ParsedPem, PemError> {
    let scanned = scan(text)?;
    let mut keys = Vec::new();
    let mut certs = Vec::new();
    for block in scanned.blocks {
        match block.label.as_str() {
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => certs.push(block.der),
            "ENCRYPTED PRIVATE KEY" => return Err(PemError::EncryptedKey),
            label if label.ends_with("PRIVATE KEY") => {
                if block.encrypted_headers {
                    return Err(PemError::EncryptedKey);
                }
                keys.push(block.der)
            }
            // Parameters (`EC PARAMETERS`), CSRs and the like carry nothing
            // we serve; OpenSSL often writes EC PARAMETERS before the key.
            _ => {}
        }
    }
    let key_der = match keys.len() {
        0 => return Err(PemError::NoPrivateKey),
        1 => keys.remove(0),
        count => return Err(PemError::SeveralPrivateKeys { count }),
    };
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    let signing_key = load_signing_key(key_der)?;
    let chain = order_chain(certs, signing_key.as_ref())?;
    let leaf =
        CertificateFacts::from_der(chain[0].as_ref()).map_err(|e| PemError::BadCertificate {
            index: 1,
            reason: e.to_string(),
        })?;
    Ok(ParsedPem {
        certified_key: Arc::new(CertifiedKey::new(chain, signing_key)),
        leaf,
        markers: scanned.markers,
    })
}

/// Parses a key and a certificate chain given as separate texts (a certdir's
/// `server.key` and `server.crt`, or `sniwalk pem merge`).
pub fn parse_key_and_chain(key_text: &str, chain_text: &str) -> Result<ParsedPem, PemError> {
    let key = scan(key_text)?;
    if !key.blocks.iter().any(|b| b.label.ends_with("PRIVATE KEY")) {
        return Err(PemError::NoPrivateKey);
    }
    let chain = scan(chain_text)?;
    if !chain
        .blocks
        .iter()
        .any(|b| b.label.ends_with("CERTIFICATE"))
    {
        return Err(PemError::NoCertificate);
    }
    let mut joined = String::with_capacity(key_text.len() + chain_text.len() + 1);
    joined.push_str(key_text);
    joined.push('\n');
    joined.push_str(chain_text);
    parse_certificate_pem(&joined)
}

/// Writes a parsed certificate back as a canonical `certificate_pem`:
/// marker lines, the PKCS#8 key, the leaf, then the chain.
pub fn render_certificate_pem(
    markers: &Markers,
    key_pkcs8_der: &[u8],
    chain: &[CertificateDer<'_>],
) -> String {
    let mut out = String::new();
    for (k, v) in &markers.pairs {
        let _ = writeln!(out, "{k}={v}");
    }
    push_block(&mut out, "PRIVATE KEY", key_pkcs8_der);
    for cert in chain {
        push_block(&mut out, "CERTIFICATE", cert.as_ref());
    }
    out
}

/// Appends one PEM block (RFC 7468: base64 in lines of 64, between
/// BEGIN/END lines) of `der` labelled `label` to `out`.
pub fn push_block(out: &mut String, label: &str, der: &[u8]) {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let _ = writeln!(out, "-----BEGIN {label}-----");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
}

/// Re-encodes any key that [`parse_certificate_pem`] accepts as PKCS#8 DER,
/// so that stored texts are uniform.
pub fn private_key_as_pkcs8(text: &str) -> Result<Vec<u8>, PemError> {
    let scanned = scan(text)?;
    let Some(block) = scanned
        .blocks
        .into_iter()
        .find(|b| b.label.ends_with("PRIVATE KEY"))
    else {
        return Err(PemError::NoPrivateKey);
    };
    if block.label == "ENCRYPTED PRIVATE KEY" || block.encrypted_headers {
        return Err(PemError::EncryptedKey);
    }
    let der = block.der;
    if any_supported_type(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone()))).is_ok() {
        return Ok(der);
    }
    // PKCS#1 and SEC1 keys are wrapped by hand would mean writing ASN.1; ask
    // aws-lc-rs, which knows both, to do the conversion.
    let rsa = aws_lc_rs::rsa::KeyPair::from_der(&der)
        .ok()
        .and_then(|k| {
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&k).ok()
        })
        .map(|d| d.as_ref().to_vec());
    if let Some(pkcs8) = rsa {
        return Ok(pkcs8);
    }
    for alg in [
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        // rustls serves P-521 too, so `parse_certificate_pem` accepts it;
        // without it here, `pem merge` refused a SEC1 P-521 key that the
        // proxy serves (found by fuzz/fuzz_targets/pem.rs).
        &aws_lc_rs::signature::ECDSA_P521_SHA512_ASN1_SIGNING,
    ] {
        if let Ok(key) = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(alg, &der)
            && let Ok(doc) = key.to_pkcs8v1()
        {
            return Ok(doc.as_ref().to_vec());
        }
    }
    Err(PemError::UnsupportedKey)
}

/// Tries the three key encodings in turn: the label is not trusted.
fn load_signing_key(der: Vec<u8>) -> Result<Arc<dyn SigningKey>, PemError> {
    let candidates = [
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone())),
        PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der.clone())),
        PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
    ];
    candidates
        .iter()
        .find_map(|candidate| any_supported_type(candidate).ok())
        .ok_or(PemError::UnsupportedKey)
}

/// Puts the certificate matching the key first, keeping the others in order.
fn order_chain(
    mut certs: Vec<Vec<u8>>,
    key: &dyn SigningKey,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let key_spki = key.public_key().ok_or(PemError::UnsupportedKey)?;
    let mut leaf_index = None;
    for (index, der) in certs.iter_mut().enumerate() {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| PemError::BadCertificate {
                index: index + 1,
                reason: e.to_string(),
            })?;
        if leaf_index.is_none() && cert.tbs_certificate.subject_pki.raw == key_spki.as_ref() {
            leaf_index = Some(index);
        }
        // A `TRUSTED CERTIFICATE` carries OpenSSL trust settings after the
        // certificate; serve (and fingerprint) the certificate alone.
        let cert_len = der.len() - rest.len();
        der.truncate(cert_len);
    }
    let count = certs.len();
    let leaf_index = leaf_index.ok_or(PemError::KeyMatchesNoCertificate {
        certificates: count,
    })?;
    let mut chain = Vec::with_capacity(count);
    let mut rest = Vec::with_capacity(count - 1);
    for (index, der) in certs.into_iter().enumerate() {
        if index == leaf_index {
            chain.push(CertificateDer::from(der));
        } else {
            rest.push(CertificateDer::from(der));
        }
    }
    chain.extend(rest);
    Ok(chain)
}

/// One decoded PEM block.
struct Block {
    label: String,
    der: Vec<u8>,
    /// Legacy OpenSSL encryption headers (`Proc-Type: 4,ENCRYPTED`).
    encrypted_headers: bool,
}

/// The blocks and the marker pairs of a text.
struct Scanned {
    blocks: Vec<Block>,
    markers: Markers,
}

const BEGIN: &str = "-----BEGIN ";
const DASHES: &str = "-----";

/// Splits a text into PEM blocks and free text without caring about lines,
/// which is what makes one-line and CRLF input work.
fn scan(text: &str) -> Result<Scanned, PemError> {
    let mut blocks = Vec::new();
    let mut markers = Markers::default();
    let mut rest = text;
    loop {
        let Some(begin) = rest.find(BEGIN) else {
            collect_markers(rest, &mut markers);
            break;
        };
        collect_markers(&rest[..begin], &mut markers);
        let after_begin = &rest[begin + BEGIN.len()..];
        let Some(label_end) = after_begin.find(DASHES) else {
            return Err(PemError::Unterminated {
                label: after_begin.chars().take(30).collect(),
            });
        };
        let label = after_begin[..label_end].trim().to_string();
        let body_and_more = &after_begin[label_end + DASHES.len()..];
        let end_line = format!("-----END {label}-----");
        let Some(end) = body_and_more.find(&end_line) else {
            return Err(PemError::Unterminated { label });
        };
        let body = &body_and_more[..end];
        let (encrypted_headers, base64_body) = split_headers(body);
        let compact: String = base64_body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| PemError::BadBase64 {
                label: label.clone(),
                index: blocks.len() + 1,
            })?;
        blocks.push(Block {
            label,
            der,
            encrypted_headers,
        });
        rest = &body_and_more[end + end_line.len()..];
    }
    if blocks.is_empty() {
        return Err(PemError::NoBlocks);
    }
    Ok(Scanned { blocks, markers })
}

/// Separates RFC 1421 headers (`Proc-Type:`, `DEK-Info:`) from the base64.
fn split_headers(body: &str) -> (bool, &str) {
    if !body.contains("Proc-Type:") && !body.contains("DEK-Info:") {
        return (false, body);
    }
    let encrypted = body.contains("ENCRYPTED");
    // Headers end at the first blank line; on a flattened one-line text the
    // last header value is followed directly by the base64.
    match body.find("\n\n").or_else(|| body.find("\r\n\r\n")) {
        Some(pos) => (encrypted, &body[pos..]),
        None => (encrypted, ""),
    }
}

/// Keeps `key=value` tokens of free text; everything else is commentary.
fn collect_markers(free_text: &str, markers: &mut Markers) {
    for token in free_text.split_whitespace() {
        let Some((key, value)) = token.split_once('=') else {
            continue;
        };
        let is_marker_key = !key.is_empty()
            && key.starts_with(|c: char| c.is_ascii_lowercase())
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if is_marker_key && !value.is_empty() {
            markers.pairs.push((key.to_string(), value.to_string()));
        }
    }
}

#[cfg(test)]
mod tests;
