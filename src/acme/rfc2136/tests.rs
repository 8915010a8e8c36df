//! The settings parsers and the Debug output, without a server.

use super::*;

/// 32 bytes, base64: what `tsig-keygen -a hmac-sha256` makes.
const SECRET_B64: &str = "5MKmwS50gsmu6JlowpSazRevmQmunfrbf624E1OUS+Q=";

fn secret_bytes() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(SECRET_B64)
        .expect("test secret is base64")
}

fn message(error: Rfc2136Error) -> String {
    error.to_string()
}

#[test]
fn a_bare_base64_secret_is_read_with_whitespace_trimmed() {
    let secret = parse_tsig_secret(&format!("  {SECRET_B64}\n\n")).expect("bare secret");
    assert_eq!(secret, secret_bytes());
}

#[test]
fn the_secret_is_taken_from_a_tsig_keygen_block() {
    let block = format!(
        "key \"my-secret-key\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{SECRET_B64}\";\n}};\n"
    );
    assert_eq!(parse_tsig_secret(&block).expect("block"), secret_bytes());
    let one_line = format!("key \"k\" {{ algorithm hmac-sha512; secret  \"{SECRET_B64}\"; }};");
    assert_eq!(
        parse_tsig_secret(&one_line).expect("one line"),
        secret_bytes()
    );
}

#[test]
fn a_block_without_a_secret_says_what_the_file_must_hold() {
    let text =
        message(parse_tsig_secret("key \"k\" { algorithm hmac-sha256; };").expect_err("no secret"));
    assert!(text.contains("secret"), "{text}");
    assert!(text.contains("tsig-keygen"), "{text}");
}

#[test]
fn garbage_is_not_base64() {
    let text = message(parse_tsig_secret("this is not a secret!").expect_err("garbage"));
    assert!(text.contains("not base64"), "{text}");
    assert!(text.contains("tsig_secret_file must hold"), "{text}");
}

#[test]
fn an_empty_file_is_an_error() {
    for empty in ["", "  \n\t\n"] {
        let text = message(parse_tsig_secret(empty).expect_err("empty"));
        assert!(text.contains("tsig_secret_file is empty"), "{text}");
        assert!(text.contains("base64 secret"), "{text}");
    }
}

#[test]
fn a_short_secret_is_an_error() {
    // 8 bytes.
    let text = message(parse_tsig_secret("AAECAwQFBgc=").expect_err("short"));
    assert!(text.contains("8 bytes"), "{text}");
    assert!(text.contains("at least 16"), "{text}");
}

#[test]
fn the_three_sha2_algorithms_parse_case_insensitively() {
    assert_eq!(
        TsigAlgorithm::parse("hmac-sha256").ok(),
        Some(TsigAlgorithm::HmacSha256)
    );
    assert_eq!(
        TsigAlgorithm::parse("HMAC-SHA384").ok(),
        Some(TsigAlgorithm::HmacSha384)
    );
    assert_eq!(
        TsigAlgorithm::parse("Hmac-Sha512").ok(),
        Some(TsigAlgorithm::HmacSha512)
    );
    assert_eq!(TsigAlgorithm::default(), TsigAlgorithm::HmacSha256);
    for algorithm in [
        TsigAlgorithm::HmacSha256,
        TsigAlgorithm::HmacSha384,
        TsigAlgorithm::HmacSha512,
    ] {
        assert_eq!(
            TsigAlgorithm::parse(algorithm.as_str()).ok(),
            Some(algorithm)
        );
    }
}

#[test]
fn an_unknown_algorithm_is_named_with_the_accepted_ones() {
    for unknown in ["hmac-md5", "hmac-sha1", "sha256", ""] {
        let text = message(TsigAlgorithm::parse(unknown).expect_err("unknown"));
        assert!(text.contains(&format!("{unknown:?}")), "{text}");
        assert!(
            text.contains("hmac-sha256, hmac-sha384, hmac-sha512"),
            "{text}"
        );
    }
}

fn settings() -> Rfc2136Settings {
    Rfc2136Settings {
        server: "127.0.0.1:53".parse().expect("address"),
        key_name: "acme-key".into(),
        algorithm: TsigAlgorithm::HmacSha256,
        secret: secret_bytes(),
        zone: Some("example.test".into()),
    }
}

#[test]
fn debug_does_not_print_the_secret() {
    let settings = settings();
    let shown = format!("{settings:?}");
    assert!(!shown.contains(SECRET_B64), "{shown}");
    assert!(
        !shown.contains(&format!("{:?}", settings.secret)),
        "{shown}"
    );
    assert!(shown.contains("32 bytes hidden"), "{shown}");
    assert!(shown.contains("acme-key"), "{shown}");
    let updater = DnsUpdater::new(settings).expect("updater");
    let shown = format!("{updater:?}");
    assert!(!shown.contains(SECRET_B64), "{shown}");
    assert!(shown.contains("example.test"), "{shown}");
}

#[test]
fn new_rejects_a_short_secret_and_a_bad_key_name() {
    let short = Rfc2136Settings {
        secret: vec![1; 8],
        ..settings()
    };
    assert!(message(DnsUpdater::new(short).expect_err("short")).contains("8 bytes"));
    let bad_name = Rfc2136Settings {
        key_name: "a..b".into(),
        ..settings()
    };
    let text = message(DnsUpdater::new(bad_name).expect_err("bad name"));
    assert!(text.contains("tsig_key_name"), "{text}");
}

#[tokio::test]
async fn a_name_outside_the_configured_zone_is_refused_before_sending() {
    let updater = DnsUpdater::new(settings()).expect("updater");
    let error = updater
        .add_txt("_acme-challenge.other.test", "v", 60)
        .await
        .expect_err("outside");
    let text = error.to_string();
    assert!(matches!(error, Rfc2136Error::OutsideZone { .. }), "{text}");
    assert!(text.contains("_acme-challenge.other.test"), "{text}");
    assert!(text.contains("zone example.test"), "{text}");
    assert_eq!(
        updater.zone_of("x.example.test").await.expect("inside"),
        "example.test"
    );
}

#[test]
fn a_long_value_is_split_into_character_strings() {
    let value = "a".repeat(300);
    let data = txt(&value);
    assert_eq!(data.txt_data.len(), 2);
    assert_eq!(data.txt_data[0].len(), 255);
}
