//! Entry points for the fuzz targets (`fuzz/fuzz_targets/admin_body.rs`):
//! the admin API's request bodies go through the same types and functions
//! as in the handlers, without a listener, a snapshot or a state directory.

use super::import::{ImportError, import_text};
use super::jobs::HostnamesError;
use crate::pem::PemError;

/// Why [`import_body`] refuses a body.
#[derive(Debug, thiserror::Error)]
pub enum ImportBodyError {
    /// No `certificate_pem` text in it.
    #[error(transparent)]
    Body(#[from] ImportError),
    /// The text is no usable certificate.
    #[error(transparent)]
    Certificate(#[from] PemError),
}

/// Reads a `POST /certificates` body as the handler does before it looks at
/// any state (see `requested_hostnames`): the normalised names without
/// duplicates, or the reason for the 400 answer.
pub fn certificates_body(bytes: &[u8]) -> Result<Vec<String>, HostnamesError> {
    super::jobs::requested_hostnames(bytes)
}

/// Turns a `PUT /domains/{name}/certificate` body into `certificate_pem`
/// text as the handler does (JSON with base64 DER, or the text itself),
/// then parses it; returns the text when it is a usable certificate.
pub fn import_body(content_type: Option<&str>, bytes: &[u8]) -> Result<String, ImportBodyError> {
    let text = import_text(content_type, bytes)?;
    crate::pem::parse_certificate_pem(&text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_bodies_are_read_like_the_handler_does() {
        let names = certificates_body(
            br#"{"hostnames":[{"hostname":"A.Example.com."},{"hostname":"a.example.com"}]}"#,
        )
        .unwrap();
        assert_eq!(names, ["a.example.com"]);
        assert!(certificates_body(br#"{"hostnames":[]}"#).is_err());
        assert!(certificates_body(br#"{"hostnames":[{"hostname":"*.x.org"}]}"#).is_err());
        assert!(certificates_body(br#"{"hostnames":[{"hostname":"a.org","x":1}]}"#).is_err());
    }

    #[test]
    fn import_bodies_that_are_no_certificate_are_refused() {
        assert!(import_body(None, b"not a certificate").is_err());
        assert!(import_body(Some("application/json"), br#"{"privatekey":"AAAA"}"#).is_err());
        assert!(import_body(None, b"\xff\xfe").is_err());
    }
}
