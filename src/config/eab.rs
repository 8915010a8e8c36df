//! External Account Binding as the rest of the crate sees it (`acme.eab`,
//! the MAC key decoded): a leaf of `config/`, so the validated types use
//! it without using what reads it.

use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;

/// External Account Binding (RFC 8555 §7.3.4): binds a new ACME account
/// to an account the operator has at the CA.
#[derive(Clone, PartialEq, Eq)]
pub struct EabConfig {
    /// The key identifier the CA gave.
    pub kid: String,
    /// The file the MAC key was read from (for messages).
    pub hmac_key_file: PathBuf,
    /// The MAC key, decoded.
    pub hmac_key: Vec<u8>,
}

// The key is a credential: never in logs or debug output.
impl fmt::Debug for EabConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EabConfig")
            .field("kid", &self.kid)
            .field("hmac_key_file", &self.hmac_key_file)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

/// The MAC key of a key file's content: base64url with or without `=`
/// padding (what ZeroSSL, Google and Sectigo hand out), else standard
/// base64; surrounding whitespace is ignored.
pub fn decode_mac_key(content: &[u8]) -> Result<Vec<u8>, &'static str> {
    let text = std::str::from_utf8(content).map_err(|_| "is not text")?;
    let text = text.trim().trim_end_matches('=');
    if text.is_empty() {
        return Err("is empty");
    }
    if text.contains(char::is_whitespace) {
        return Err("holds more than one word");
    }
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let standard = base64::engine::general_purpose::STANDARD_NO_PAD;
    url.decode(text)
        .or_else(|_| standard.decode(text))
        .map_err(|_| "is not base64url")
}
