//! Admin API request bodies: `POST /certificates` (JSON list of hostnames)
//! and `PUT /domains/{name}/certificate` (JSON with base64 DER, or
//! `certificate_pem` text), read as the handlers read them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sniwalk::admin::fuzz::{certificates_body, import_body};
use sniwalk::config::normalize_domain_name;

fuzz_target!(|data: &[u8]| {
    if let Ok(names) = certificates_body(data) {
        assert!(!names.is_empty() && names.len() <= sniwalk::admin::MAX_HOSTNAMES);
        for name in &names {
            // What is queued for ACME and written to domains.json is
            // already canonical, so domains.json reads back.
            assert_eq!(normalize_domain_name(name).as_deref(), Ok(name.as_str()));
        }
    }
    // The handler takes the JSON path for this content type, or for a body
    // starting with `{`; try both ways the header can send it.
    let _ = import_body(Some("application/json"), data);
    if let Ok(text) = import_body(None, data) {
        assert!(text.contains("-----BEGIN"));
    }
});
