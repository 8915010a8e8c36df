//! The `certificate_pem` scanner and everything behind it: block scanning,
//! base64, key loading, X.509 parsing, chain ordering, markers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Texts arrive as UTF-8 (YAML, files read as strings, admin bodies).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = sniwalk::pem::parse_certificate_pem(text) {
        // A parsed text must survive its own canonical rendering: that is
        // how the admin API and ACME store certificates.
        let key = sniwalk::pem::private_key_as_pkcs8(text)
            .expect("a key that parse_certificate_pem accepted re-encodes as PKCS#8");
        let rendered =
            sniwalk::pem::render_certificate_pem(&parsed.markers, &key, &parsed.certified_key.cert);
        let again = sniwalk::pem::parse_certificate_pem(&rendered)
            .expect("the canonical rendering of a parsed certificate_pem parses");
        assert_eq!(again.leaf, parsed.leaf);
        assert_eq!(again.markers, parsed.markers);
    } else {
        let _ = sniwalk::pem::private_key_as_pkcs8(text);
    }
    // The split form (certdir server.key + server.crt): cut at a data byte.
    if let Some((&cut, _)) = data.split_first() {
        let at = usize::from(cut) % text.len().max(1);
        if text.is_char_boundary(at) {
            let (key, chain) = text.split_at(at);
            let _ = sniwalk::pem::parse_key_and_chain(key, chain);
        }
    }
});
