//! Tests for the `certificate_pem` parser.
//!
//! Every key and certificate is generated at test time (rcgen for PKCS#8
//! keys and certificates, the `openssl` command line for the PKCS#1, SEC1,
//! encrypted and PKCS#12 forms other tools produce); no key is committed.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, SignatureAlgorithm,
};

use super::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The three key types a `certificate_pem` must support, with a name for
/// assertion messages.
const KEY_TYPES: [(&str, &SignatureAlgorithm); 3] = [
    ("ECDSA P-256", &PKCS_ECDSA_P256_SHA256),
    ("ECDSA P-384", &PKCS_ECDSA_P384_SHA384),
    ("RSA-2048", &PKCS_RSA_SHA256),
];

/// `2025-01-01T00:00:00Z`, the leaf's `notBefore`.
const LEAF_NOT_BEFORE: i64 = 1_735_689_600;
/// `2030-01-01T00:00:00Z`, the leaf's `notAfter`.
const LEAF_NOT_AFTER: i64 = 1_893_456_000;

/// The marker our ACME client writes, with a typical value.
const ACME_LINE: &str = "acme_issued=2026-11-25T10:00:00Z";

/// One generated certificate in both encodings.
struct Cert {
    pem: String,
    der: Vec<u8>,
}

impl Cert {
    fn new(cert: &rcgen::Certificate) -> Self {
        Self {
            pem: cert.pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// A leaf key with the leaf certificate, an intermediate and a root:
/// root → intermediate → leaf. The CAs always use P-256 (cheap); the leaf
/// key uses the algorithm under test.
struct Chain {
    key: KeyPair,
    /// PKCS#8 `-----BEGIN PRIVATE KEY-----` text.
    key_pem: String,
    leaf: Cert,
    intermediate: Cert,
    root: Cert,
}

impl Chain {
    /// The PEM text of a part by name, for order tables.
    fn part(&self, name: &str) -> &str {
        match name {
            "key" => &self.key_pem,
            "leaf" => &self.leaf.pem,
            "intermediate" => &self.intermediate.pem,
            "root" => &self.root.pem,
            other => panic!("no chain part {other:?}"),
        }
    }

    /// Joins the named parts with newlines.
    fn text(&self, parts: &[&str]) -> String {
        parts
            .iter()
            .map(|p| self.part(p))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Key, leaf, intermediate, root: the usual layout.
    fn full_text(&self) -> String {
        self.text(&["key", "leaf", "intermediate", "root"])
    }

    /// Names the certificates that `parsed` will serve, in order.
    fn served_names(&self, parsed: &ParsedPem) -> Vec<&'static str> {
        parsed
            .certified_key
            .cert
            .iter()
            .map(|c| {
                let der = c.as_ref();
                if der == self.leaf.der.as_slice() {
                    "leaf"
                } else if der == self.intermediate.der.as_slice() {
                    "intermediate"
                } else if der == self.root.der.as_slice() {
                    "root"
                } else {
                    "unknown"
                }
            })
            .collect()
    }

    /// Asserts that `parsed` serves leaf, intermediate, root with the leaf
    /// key, and that its facts describe the leaf.
    fn assert_parsed_in_order(&self, parsed: &ParsedPem, what: &str) {
        assert_eq!(
            self.served_names(parsed),
            ["leaf", "intermediate", "root"],
            "{what}: served chain"
        );
        assert_eq!(
            parsed.leaf.sha256,
            sha256_fingerprint(&self.leaf.der),
            "{what}: leaf facts"
        );
        assert!(
            parsed.certified_key.keys_match().is_ok(),
            "{what}: signing key does not belong to the served leaf"
        );
    }
}

fn generate_key(alg: &'static SignatureAlgorithm) -> KeyPair {
    KeyPair::generate_for(alg).expect("generate key")
}

/// A CA certificate's parameters with the given common name.
fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
}

/// Generates root → intermediate → leaf, the leaf key of type `alg`, the
/// leaf for `Leaf.Test` and `*.Wild.test` (mixed case on purpose), valid
/// from [`LEAF_NOT_BEFORE`] to [`LEAF_NOT_AFTER`].
fn make_chain(alg: &'static SignatureAlgorithm) -> Chain {
    let root_key = generate_key(&PKCS_ECDSA_P256_SHA256);
    let root_params = ca_params("Test Root");
    let root = root_params.self_signed(&root_key).expect("root");
    let root_issuer = Issuer::new(root_params, root_key);

    let intermediate_key = generate_key(&PKCS_ECDSA_P256_SHA256);
    let intermediate_params = ca_params("Test Intermediate");
    let intermediate = intermediate_params
        .signed_by(&intermediate_key, &root_issuer)
        .expect("intermediate");
    let intermediate_issuer = Issuer::new(intermediate_params, intermediate_key);

    let key = generate_key(alg);
    let mut leaf_params = CertificateParams::new(vec!["Leaf.Test".into(), "*.Wild.test".into()])
        .expect("leaf params");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "Leaf CN");
    leaf_params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    leaf_params.not_after = rcgen::date_time_ymd(2030, 1, 1);
    let leaf = leaf_params
        .signed_by(&key, &intermediate_issuer)
        .expect("leaf");

    Chain {
        key_pem: key.serialize_pem(),
        key,
        leaf: Cert::new(&leaf),
        intermediate: Cert::new(&intermediate),
        root: Cert::new(&root),
    }
}

/// A key of type `alg` and a self-signed certificate for `names`.
fn self_signed(alg: &'static SignatureAlgorithm, names: &[&str]) -> (KeyPair, Cert) {
    let key = generate_key(alg);
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("params");
    let cert = params.self_signed(&key).expect("self-signed");
    (key, Cert::new(&cert))
}

/// Writes `der` as a PEM block with `label` (64-column base64, own
/// implementation so the tests do not lean on the code under test).
fn pem_block(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The label and DER of the first PEM block of a well-formed text.
fn first_block(text: &str) -> (String, Vec<u8>) {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("-----BEGIN "));
    let begin = lines.next().expect("a BEGIN line");
    let label = begin
        .trim_start_matches("-----BEGIN ")
        .trim_end_matches("-----")
        .to_string();
    let body: String = lines.take_while(|l| !l.starts_with("-----END ")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("valid base64");
    (label, der)
}

/// Runs `openssl` with `args` in a fresh temporary directory, giving it
/// `input` as `-in in.pem` when present, and returns what it wrote to
/// `-out out.pem`.
fn openssl(args: &[&str], input: Option<&str>) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("out.pem");
    let mut command = Command::new("openssl");
    command.args(args);
    if let Some(input) = input {
        let in_path = dir.path().join("in.pem");
        std::fs::write(&in_path, input).expect("write openssl input");
        command.arg("-in").arg(&in_path);
    }
    command.arg("-out").arg(&out_path);
    run(&mut command);
    std::fs::read_to_string(&out_path).expect("read openssl output")
}

/// Runs a command and fails the test with its stderr if it fails.
fn run(command: &mut Command) {
    let output = command.output().expect("run openssl (is it installed?)");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The key in OpenSSL's "traditional" form: PKCS#1 for RSA, SEC1 for EC.
fn traditional(key_pem: &str) -> String {
    openssl(&["pkey", "-traditional"], Some(key_pem))
}

/// The key as an `ENCRYPTED PRIVATE KEY` (PKCS#8 with a password).
fn encrypted_pkcs8(key_pem: &str) -> String {
    openssl(
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:x",
        ],
        Some(key_pem),
    )
}

/// The key in legacy OpenSSL encryption (`Proc-Type: 4,ENCRYPTED`).
/// `tool` is `rsa` or `ec` (`openssl ec` writes SEC1 by default and has
/// no `-traditional` switch).
fn legacy_encrypted(key_pem: &str, tool: &str) -> String {
    let mut args = vec![tool, "-aes256", "-passout", "pass:x"];
    if tool == "rsa" {
        args.push("-traditional");
    }
    openssl(&args, Some(key_pem))
}

/// Flattens a text onto one line, every whitespace run becoming one space,
/// as a single-line web form does.
fn flatten(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every `\n` becomes `\r\n`.
fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

/// Appends `suffix` to every line.
fn with_line_suffix(text: &str, suffix: &str) -> String {
    text.lines()
        .map(|l| format!("{l}{suffix}\n"))
        .collect::<String>()
}

/// Replaces the 6th character of the first block's body with `*`.
fn damage_first_body(pem: &str) -> String {
    let body_start = pem.find("-----\n").expect("BEGIN line") + "-----\n".len();
    let at = body_start + 5;
    format!("{}*{}", &pem[..at], &pem[at + 1..])
}

/// Parses and fails the test with the error if that does not work.
fn parse_ok(text: &str, what: &str) -> ParsedPem {
    match parse_certificate_pem(text) {
        Ok(parsed) => parsed,
        Err(e) => panic!("{what}: expected to parse, got {e:?} ({e})\n--- text ---\n{text}"),
    }
}

/// Parses and returns the error, failing the test if parsing succeeds.
fn parse_err(text: &str, what: &str) -> PemError {
    match parse_certificate_pem(text) {
        Ok(_) => panic!("{what}: expected an error, but the text parsed"),
        Err(e) => e,
    }
}

/// Facts with only the given DNS names, for `covers` tables.
fn facts_with_names(names: &[&str]) -> CertificateFacts {
    CertificateFacts {
        subject: "CN=test".into(),
        issuer: "CN=test".into(),
        dns_names: names.iter().map(|n| n.to_string()).collect(),
        not_before: 0,
        not_after: 0,
        sha256: String::new(),
    }
}

// ---------------------------------------------------------------------------
// Accepted inputs
// ---------------------------------------------------------------------------

/// Key + leaf + intermediate + root parses for RSA-2048, P-256 and P-384
/// PKCS#8 keys, serving the leaf first and the chain after it.
#[test]
fn parses_pkcs8_key_and_chain_for_every_key_type() {
    for (name, alg) in KEY_TYPES {
        let chain = make_chain(alg);
        let parsed = parse_ok(&chain.full_text(), name);
        chain.assert_parsed_in_order(&parsed, name);
        assert_eq!(parsed.markers, Markers::default(), "{name}: no markers");
    }
}

/// The signing key has the algorithm family of the pasted key.
#[test]
fn signing_key_algorithm_follows_the_key() {
    use rustls::SignatureAlgorithm as Alg;
    let cases = [
        (&PKCS_ECDSA_P256_SHA256, Alg::ECDSA),
        (&PKCS_ECDSA_P384_SHA384, Alg::ECDSA),
        (&PKCS_RSA_SHA256, Alg::RSA),
    ];
    for (alg, expected) in cases {
        let chain = make_chain(alg);
        let parsed = parse_ok(&chain.text(&["key", "leaf"]), "key + leaf");
        assert_eq!(parsed.certified_key.key.algorithm(), expected);
    }
}

/// OpenSSL's traditional forms, PKCS#1 (`RSA PRIVATE KEY`) and SEC1
/// (`EC PRIVATE KEY`), are read for every key type.
#[test]
fn parses_traditional_pkcs1_and_sec1_keys() {
    let expected_labels = ["EC PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"];
    for ((name, alg), expected_label) in KEY_TYPES.into_iter().zip(expected_labels) {
        let chain = make_chain(alg);
        let key = traditional(&chain.key_pem);
        assert_eq!(
            first_block(&key).0,
            expected_label,
            "{name}: openssl output"
        );
        let text = format!(
            "{key}\n{}\n{}\n{}",
            chain.leaf.pem, chain.intermediate.pem, chain.root.pem
        );
        let parsed = parse_ok(&text, name);
        chain.assert_parsed_in_order(&parsed, name);
    }
}

/// The key kind is decided by the DER, not the label: every encoding is
/// read under every private-key label (texts pasted from real tools carry
/// PKCS#8 under `RSA PRIVATE KEY`).
#[test]
fn key_kind_is_decided_by_content_not_label() {
    for (name, alg) in KEY_TYPES {
        let chain = make_chain(alg);
        let pkcs8_der = chain.key.serialize_der();
        let (_, traditional_der) = first_block(&traditional(&chain.key_pem));
        let encodings = [("PKCS#8", &pkcs8_der), ("traditional", &traditional_der)];
        for (encoding, der) in encodings {
            for label in ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"] {
                let what = format!("{name} {encoding} under `{label}`");
                let text = format!("{}{}", pem_block(label, der), chain.leaf.pem);
                let parsed = parse_ok(&text, &what);
                assert_eq!(chain.served_names(&parsed), ["leaf"], "{what}");
                assert!(parsed.certified_key.keys_match().is_ok(), "{what}");
            }
        }
    }
}

/// An `EC PARAMETERS` block, which `openssl ecparam -genkey` writes before
/// the key, is skipped.
#[test]
fn ec_parameters_block_is_ignored() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let params = openssl(&["ecparam", "-name", "prime256v1"], None);
    assert!(params.contains("-----BEGIN EC PARAMETERS-----"));
    let text = format!(
        "{params}{}{}{}",
        traditional(&chain.key_pem),
        chain.leaf.pem,
        chain.intermediate.pem
    );
    let parsed = parse_ok(&text, "EC PARAMETERS + SEC1 key");
    assert_eq!(chain.served_names(&parsed), ["leaf", "intermediate"]);
}

/// `X509 CERTIFICATE` is accepted as a certificate label too.
#[test]
fn x509_certificate_label_is_accepted() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let text = format!(
        "{}{}{}",
        chain.key_pem,
        pem_block("X509 CERTIFICATE", &chain.leaf.der),
        pem_block("X509 CERTIFICATE", &chain.intermediate.der)
    );
    let parsed = parse_ok(&text, "X509 CERTIFICATE");
    assert_eq!(chain.served_names(&parsed), ["leaf", "intermediate"]);
}

/// A `TRUSTED CERTIFICATE` (OpenSSL's `x509 -trustout`, the certificate
/// followed by trust settings) is served as the plain certificate: clients
/// reject a certificate with trailing bytes, and the fingerprint must be
/// the certificate's own.
#[test]
fn trusted_certificate_is_served_without_trust_settings() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let trusted = openssl(
        &["x509", "-trustout", "-addtrust", "serverAuth"],
        Some(&chain.leaf.pem),
    );
    let (label, trusted_der) = first_block(&trusted);
    assert_eq!(label, "TRUSTED CERTIFICATE");
    assert!(
        trusted_der.len() > chain.leaf.der.len(),
        "openssl should append trust settings"
    );
    let trusted_intermediate = openssl(
        &["x509", "-trustout", "-addtrust", "serverAuth"],
        Some(&chain.intermediate.pem),
    );
    let text = format!("{}{trusted}{trusted_intermediate}", chain.key_pem);
    let parsed = parse_ok(&text, "TRUSTED CERTIFICATE");
    assert_eq!(chain.served_names(&parsed), ["leaf", "intermediate"]);
    assert_eq!(parsed.leaf.sha256, sha256_fingerprint(&chain.leaf.der));
    assert!(parsed.certified_key.keys_match().is_ok());
}

/// Free text before, between and after blocks is ignored: the exact kinds
/// of lines people paste (`date=`, PKCS#12 bag attributes, `subject=`,
/// `issuer=` with spaces and quotes).
#[test]
fn free_text_around_blocks_is_ignored() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let text = format!(
        "date=2023-11-29\n\
         Bag Attributes\n    localKeyID: 01 00 00 00 \n    friendlyName: [IIS] era\n\
         Key Attributes: <No Attributes>\n\
         {}\
         Bag Attributes\n    localKeyID: 01 00 00 00 \n    friendlyName: [IIS] era\n\
         subject=/CN=x\n\
         issuer=/C=US/O=Let's Encrypt/CN=R3\n\
         {}\
         subject=/CN=Test Intermediate\n\
         issuer=/CN=Test Root\n\n\n\
         {}\
         trailing words, a URL https://example.test/?a=b and a # comment\n\
         {}\
         the end\n",
        chain.key_pem, chain.leaf.pem, chain.intermediate.pem, chain.root.pem
    );
    let parsed = parse_ok(&text, "free text");
    chain.assert_parsed_in_order(&parsed, "free text");
    assert!(!parsed.markers.is_acme_issued());
    assert_eq!(parsed.markers.value("date"), Some("2023-11-29"));
    assert_eq!(parsed.markers.value("subject"), Some("/CN=x"));
    assert_eq!(parsed.markers.value("issuer"), Some("/C=US/O=Let's"));
    for (key, _) in &parsed.markers.pairs {
        assert!(
            !["localKeyID:", "friendlyName:", "Encrypt/CN", "Bag"].contains(&key.as_str()),
            "commentary kept as marker {key:?}"
        );
    }
}

/// The real output of `openssl pkcs12 -nodes` (certificates first, key
/// last, bag attributes everywhere) parses, with the leaf served first.
#[test]
fn openssl_pkcs12_dump_is_accepted() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let key = write("key.pem", &chain.key_pem);
    let leaf = write("leaf.pem", &chain.leaf.pem);
    let cas = write(
        "cas.pem",
        &format!("{}{}", chain.intermediate.pem, chain.root.pem),
    );
    let p12 = dir.path().join("bundle.p12");
    let dump = dir.path().join("dump.pem");
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    run(Command::new("openssl").args([
        "pkcs12",
        "-export",
        "-inkey",
        &path(&key),
        "-in",
        &path(&leaf),
        "-certfile",
        &path(&cas),
        "-name",
        "[IIS] era",
        "-passout",
        "pass:x",
        "-out",
        &path(&p12),
    ]));
    run(Command::new("openssl").args([
        "pkcs12",
        "-nodes",
        "-passin",
        "pass:x",
        "-in",
        &path(&p12),
        "-out",
        &path(&dump),
    ]));
    let text = std::fs::read_to_string(&dump).expect("read dump");
    assert!(
        text.contains("Bag Attributes"),
        "expected bag attributes:\n{text}"
    );
    let parsed = parse_ok(&text, "pkcs12 dump");
    let served = chain.served_names(&parsed);
    assert_eq!(served.len(), 3, "{served:?}");
    assert_eq!(served[0], "leaf");
    assert!(served.contains(&"intermediate") && served.contains(&"root"));
}

/// Line-ending and whitespace damage that copy and paste causes is
/// accepted: CRLF, trailing spaces and tabs, indentation, old-Mac CR, no
/// final newline, and a whole text flattened onto one line.
#[test]
fn whitespace_variants_are_accepted() {
    type Transform = fn(&str) -> String;
    let variants: [(&str, Transform); 10] = [
        ("as generated", |t| t.to_string()),
        ("CRLF", crlf),
        ("trailing spaces", |t| with_line_suffix(t, "   ")),
        ("trailing tabs", |t| with_line_suffix(t, "\t")),
        ("CRLF and trailing spaces", |t| {
            crlf(&with_line_suffix(t, " "))
        }),
        ("indented lines", |t| {
            t.lines().map(|l| format!("    {l}\n")).collect()
        }),
        ("CR only", |t| t.replace('\n', "\r")),
        ("no final newline", |t| t.trim_end().to_string()),
        ("blank lines between blocks", |t| {
            t.replace("-----\n", "-----\n\n\n")
                .replace("\n-----END", "\n\n-----END")
        }),
        ("flattened onto one line", flatten),
    ];
    for (name, alg) in KEY_TYPES {
        let chain = make_chain(alg);
        let base = format!("{ACME_LINE}\n{}", chain.full_text());
        for (variant, transform) in &variants {
            let what = format!("{name}, {variant}");
            let parsed = parse_ok(&transform(&base), &what);
            chain.assert_parsed_in_order(&parsed, &what);
            assert!(parsed.markers.is_acme_issued(), "{what}: marker lost");
        }
    }
}

/// A flattened text really is one line, blocks and base64 separated by
/// single spaces, and a flattened PKCS#1 key parses too.
#[test]
fn flattened_traditional_key_is_accepted() {
    let chain = make_chain(&PKCS_RSA_SHA256);
    let text = flatten(&format!(
        "{}{}{}",
        traditional(&chain.key_pem),
        chain.leaf.pem,
        chain.intermediate.pem
    ));
    assert!(!text.contains('\n'));
    assert!(text.contains("-----END RSA PRIVATE KEY----- -----BEGIN CERTIFICATE----- MII"));
    let parsed = parse_ok(&text, "flattened PKCS#1");
    assert_eq!(chain.served_names(&parsed), ["leaf", "intermediate"]);
}

/// Blocks may come in any order; the leaf is served first and the other
/// certificates keep the order they were given in.
#[test]
fn blocks_in_any_order_leaf_first_chain_kept_in_order() {
    let cases: [(&[&str], &[&str]); 9] = [
        (
            &["key", "leaf", "intermediate", "root"],
            &["leaf", "intermediate", "root"],
        ),
        (
            &["leaf", "key", "intermediate", "root"],
            &["leaf", "intermediate", "root"],
        ),
        (
            &["leaf", "intermediate", "root", "key"],
            &["leaf", "intermediate", "root"],
        ),
        (
            &["intermediate", "root", "leaf", "key"],
            &["leaf", "intermediate", "root"],
        ),
        (
            &["intermediate", "key", "root", "leaf"],
            &["leaf", "intermediate", "root"],
        ),
        (
            &["root", "intermediate", "leaf", "key"],
            &["leaf", "root", "intermediate"],
        ),
        (
            &["key", "root", "leaf", "intermediate"],
            &["leaf", "root", "intermediate"],
        ),
        (&["root", "key", "leaf"], &["leaf", "root"]),
        (&["leaf", "key"], &["leaf"]),
    ];
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    for (order, expected) in cases {
        let parsed = parse_ok(&chain.text(order), &format!("{order:?}"));
        assert_eq!(chain.served_names(&parsed), expected, "order {order:?}");
        assert_eq!(parsed.leaf.sha256, sha256_fingerprint(&chain.leaf.der));
    }
}

/// All 24 orders of key, leaf, intermediate and root, both multi-line and
/// flattened, follow the same rule.
#[test]
fn every_permutation_of_blocks_is_accepted() {
    fn permutations(items: &[&'static str]) -> Vec<Vec<&'static str>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            for mut tail in permutations(&rest) {
                tail.insert(0, first);
                out.push(tail);
            }
        }
        out
    }
    let chain = make_chain(&PKCS_ECDSA_P384_SHA384);
    let all = permutations(&["key", "leaf", "intermediate", "root"]);
    assert_eq!(all.len(), 24);
    for order in all {
        let mut expected = vec!["leaf"];
        expected.extend(
            order
                .iter()
                .copied()
                .filter(|p| *p != "key" && *p != "leaf"),
        );
        for text in [chain.text(&order), flatten(&chain.text(&order))] {
            let parsed = parse_ok(&text, &format!("{order:?}"));
            assert_eq!(chain.served_names(&parsed), expected, "order {order:?}");
        }
    }
}

/// When two certificates carry the key (a renewal that reused it, or the
/// leaf pasted twice), the first one given is the leaf and the other stays
/// in the chain where it was.
#[test]
fn first_certificate_for_the_key_is_the_leaf() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let mut params = CertificateParams::new(vec!["leaf.test".into()]).expect("params");
    params.not_after = rcgen::date_time_ymd(2031, 6, 1);
    let renewed = Cert::new(&params.self_signed(&chain.key).expect("renewed"));
    let text = format!(
        "{}{}{}{}",
        chain.intermediate.pem, renewed.pem, chain.key_pem, chain.leaf.pem
    );
    let parsed = parse_ok(&text, "two certificates for the key");
    let served: Vec<&[u8]> = parsed
        .certified_key
        .cert
        .iter()
        .map(|c| c.as_ref())
        .collect();
    assert_eq!(
        served,
        [
            renewed.der.as_slice(),
            chain.intermediate.der.as_slice(),
            chain.leaf.der.as_slice()
        ]
    );
    assert_eq!(parsed.leaf.sha256, sha256_fingerprint(&renewed.der));

    let twice = chain.text(&["key", "leaf", "intermediate", "leaf"]);
    let parsed = parse_ok(&twice, "leaf pasted twice");
    assert_eq!(
        chain.served_names(&parsed),
        ["leaf", "intermediate", "leaf"]
    );
}

/// The leaf is the certificate whose public key matches the key, not the
/// first one nor the one with the right name: a decoy for the same name
/// with another key, given first, ends up second.
#[test]
fn leaf_is_chosen_by_public_key() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let (_, decoy) = self_signed(&PKCS_ECDSA_P256_SHA256, &["leaf.test", "*.wild.test"]);
    let text = format!(
        "{}{}{}{}",
        decoy.pem, chain.intermediate.pem, chain.key_pem, chain.leaf.pem
    );
    let parsed = parse_ok(&text, "decoy first");
    let served: Vec<&[u8]> = parsed
        .certified_key
        .cert
        .iter()
        .map(|c| c.as_ref())
        .collect();
    assert_eq!(
        served,
        [
            chain.leaf.der.as_slice(),
            decoy.der.as_slice(),
            chain.intermediate.der.as_slice()
        ]
    );
    assert_eq!(parsed.leaf.sha256, sha256_fingerprint(&chain.leaf.der));
    assert!(parsed.certified_key.keys_match().is_ok());
}

// ---------------------------------------------------------------------------
// Markers
// ---------------------------------------------------------------------------

/// `acme_issued=...` anywhere in the free text marks the text as ACME
/// issued; without it (or with a malformed one) it is managed by hand.
#[test]
fn acme_marker_is_detected_wherever_it_is() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let key = &chain.key_pem;
    let leaf = &chain.leaf.pem;
    let cases: [(&str, String, bool); 9] = [
        ("first line", format!("{ACME_LINE}\n{key}{leaf}"), true),
        ("between blocks", format!("{key}{ACME_LINE}\n{leaf}"), true),
        (
            "after the last block",
            format!("{key}{leaf}{ACME_LINE}\n"),
            true,
        ),
        (
            "among other markers",
            format!("date=2023-11-29 {ACME_LINE} x=y\n{key}{leaf}"),
            true,
        ),
        (
            "flattened",
            flatten(&format!("{ACME_LINE}\n{key}{leaf}")),
            true,
        ),
        ("absent", format!("{key}{leaf}"), false),
        ("empty value", format!("acme_issued=\n{key}{leaf}"), false),
        (
            "upper-case key",
            format!("ACME_ISSUED=2026-11-25\n{key}{leaf}"),
            false,
        ),
        (
            "colon, not equals",
            format!("acme_issued: 2026-11-25\n{key}{leaf}"),
            false,
        ),
    ];
    for (what, text, expected) in cases {
        let parsed = parse_ok(&text, what);
        assert_eq!(parsed.markers.is_acme_issued(), expected, "{what}");
        if expected {
            assert_eq!(
                parsed.markers.value(ACME_ISSUED_MARKER),
                Some("2026-11-25T10:00:00Z"),
                "{what}"
            );
        }
    }
}

/// Marker pairs are kept in the order found; `value` gives the first of
/// duplicates and `None` for absent keys.
#[test]
fn markers_keep_order_and_value_takes_the_first() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let text = format!(
        "b=2 a=1\n{}note_1=x\n{}a=3\n",
        chain.key_pem, chain.leaf.pem
    );
    let markers = parse_ok(&text, "markers").markers;
    let pairs: Vec<(&str, &str)> = markers
        .pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(pairs, [("b", "2"), ("a", "1"), ("note_1", "x"), ("a", "3")]);
    assert_eq!(markers.value("a"), Some("1"));
    assert_eq!(markers.value("missing"), None);
    assert!(!markers.is_acme_issued());
    assert!(!Markers::default().is_acme_issued());
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Texts without any PEM block are `NoBlocks`.
#[test]
fn text_without_blocks_is_no_blocks() {
    let cases = [
        ("empty", ""),
        ("whitespace", "  \n\t\r\n "),
        ("garbage", "hello, this is not a certificate at all"),
        (
            "only markers",
            "acme_issued=2026-11-25T10:00:00Z\ndate=2023-11-29\n",
        ),
        ("dashes but no BEGIN", "----- not a block -----"),
        ("END without BEGIN", "-----END CERTIFICATE-----"),
    ];
    for (what, text) in cases {
        assert_eq!(parse_err(text, what), PemError::NoBlocks, "{what}");
    }
}

/// Missing key, missing certificate, several keys and a key for another
/// certificate are each reported as such.
#[test]
fn wrong_mix_of_blocks_is_reported() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let other_key = self_signed(&PKCS_ECDSA_P256_SHA256, &["other.test"])
        .0
        .serialize_pem();
    let key = &chain.key_pem;
    let leaf = &chain.leaf.pem;
    let intermediate = &chain.intermediate.pem;
    let root = &chain.root.pem;
    let cases: [(&str, String, PemError); 9] = [
        (
            "certificates only",
            chain.text(&["leaf", "intermediate", "root"]),
            PemError::NoPrivateKey,
        ),
        (
            "CSR and certificate",
            format!("{}{leaf}", pem_block("CERTIFICATE REQUEST", b"csr")),
            PemError::NoPrivateKey,
        ),
        ("key only", key.clone(), PemError::NoCertificate),
        (
            "key and EC PARAMETERS",
            format!("{}{key}", pem_block("EC PARAMETERS", b"p")),
            PemError::NoCertificate,
        ),
        (
            "same key twice",
            format!("{key}{leaf}{key}"),
            PemError::SeveralPrivateKeys { count: 2 },
        ),
        (
            "three keys",
            format!("{key}{other_key}{leaf}{key}"),
            PemError::SeveralPrivateKeys { count: 3 },
        ),
        (
            "PKCS#8 and its PKCS#1 twin",
            format!("{key}{}{leaf}", traditional(key)),
            PemError::SeveralPrivateKeys { count: 2 },
        ),
        (
            "key for another leaf",
            format!("{other_key}{leaf}"),
            PemError::KeyMatchesNoCertificate { certificates: 1 },
        ),
        (
            "key for no cert of a chain",
            format!("{other_key}{leaf}{intermediate}{root}"),
            PemError::KeyMatchesNoCertificate { certificates: 3 },
        ),
    ];
    for (what, text, expected) in cases {
        assert_eq!(parse_err(&text, what), expected, "{what}");
    }
}

/// Password-protected keys are `EncryptedKey`: PKCS#8 `ENCRYPTED PRIVATE
/// KEY` and legacy `Proc-Type: 4,ENCRYPTED` RSA and EC keys, also with
/// CRLF or flattened onto one line.
#[test]
fn encrypted_keys_are_reported() {
    let rsa = make_chain(&PKCS_RSA_SHA256);
    let ec = make_chain(&PKCS_ECDSA_P256_SHA256);
    let legacy_rsa = legacy_encrypted(&rsa.key_pem, "rsa");
    let legacy_ec = legacy_encrypted(&ec.key_pem, "ec");
    for legacy in [&legacy_rsa, &legacy_ec] {
        assert!(legacy.contains("Proc-Type: 4,ENCRYPTED"), "{legacy}");
        assert!(legacy.contains("DEK-Info: "), "{legacy}");
    }
    let pkcs8_rsa = encrypted_pkcs8(&rsa.key_pem);
    let pkcs8_ec = encrypted_pkcs8(&ec.key_pem);
    assert!(pkcs8_ec.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let cases = [
        (
            "encrypted PKCS#8 RSA",
            format!("{pkcs8_rsa}{}", rsa.leaf.pem),
        ),
        ("encrypted PKCS#8 EC", format!("{pkcs8_ec}{}", ec.leaf.pem)),
        (
            "encrypted PKCS#8 after the cert",
            format!("{}{pkcs8_ec}", ec.leaf.pem),
        ),
        ("legacy RSA", format!("{legacy_rsa}{}", rsa.leaf.pem)),
        ("legacy EC", format!("{legacy_ec}{}", ec.leaf.pem)),
        (
            "legacy RSA, CRLF",
            crlf(&format!("{legacy_rsa}{}", rsa.leaf.pem)),
        ),
        (
            "legacy RSA, flattened",
            flatten(&format!("{legacy_rsa}{}", rsa.leaf.pem)),
        ),
        (
            "encrypted PKCS#8, flattened",
            flatten(&format!("{pkcs8_rsa}{}", rsa.leaf.pem)),
        ),
        ("encrypted key without cert", legacy_rsa.clone()),
    ];
    for (what, text) in cases {
        assert_eq!(parse_err(&text, what), PemError::EncryptedKey, "{what}");
    }
}

/// Damaged base64 is `BadBase64` with the label and 1-based position of
/// the damaged block.
#[test]
fn damaged_base64_is_reported_with_its_block() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let key = &chain.key_pem;
    let leaf = &chain.leaf.pem;
    let intermediate = &chain.intermediate.pem;
    let bad = |label: &str, index| PemError::BadBase64 {
        label: label.into(),
        index,
    };
    // Drops one base64 character from the middle of the leaf's body.
    let dropped = {
        let at = leaf.find("-----\n").expect("BEGIN") + 6 + 70;
        format!("{}{}", &leaf[..at], &leaf[at + 1..])
    };
    let cases: [(&str, String, PemError); 6] = [
        (
            "bad character in the key",
            format!("{}{leaf}", damage_first_body(key)),
            bad("PRIVATE KEY", 1),
        ),
        (
            "bad character in the leaf",
            format!("{key}{}", damage_first_body(leaf)),
            bad("CERTIFICATE", 2),
        ),
        (
            "bad character in the third block",
            format!("{key}{leaf}{}", damage_first_body(intermediate)),
            bad("CERTIFICATE", 3),
        ),
        (
            "a character dropped",
            format!("{key}{dropped}"),
            bad("CERTIFICATE", 2),
        ),
        (
            "padding in the middle",
            format!("{key}{}", leaf.replacen("\n", "\nAA==", 2)),
            bad("CERTIFICATE", 2),
        ),
        (
            "damaged and flattened",
            flatten(&format!("{key}{}", damage_first_body(leaf))),
            bad("CERTIFICATE", 2),
        ),
    ];
    for (what, text, expected) in cases {
        assert_eq!(parse_err(&text, what), expected, "{what}");
    }
}

/// A BEGIN without its END (a text cut off, or an END with another label)
/// is `Unterminated` naming the opened block.
#[test]
fn cut_off_text_is_unterminated() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let full = chain.text(&["key", "leaf"]);
    let leaf_begin = full.find("-----BEGIN CERTIFICATE-----").expect("leaf");
    let unterminated = |label: &str| PemError::Unterminated {
        label: label.into(),
    };
    let cases: [(&str, String, PemError); 6] = [
        (
            "cut in the leaf body",
            full[..full.len() - 100].to_string(),
            unterminated("CERTIFICATE"),
        ),
        (
            "cut in the END line",
            full.trim_end().trim_end_matches('-').to_string(),
            unterminated("CERTIFICATE"),
        ),
        (
            "cut right after BEGIN",
            full[..leaf_begin + 27].to_string(),
            unterminated("CERTIFICATE"),
        ),
        (
            "cut in the key",
            chain.key_pem[..60].to_string(),
            unterminated("PRIVATE KEY"),
        ),
        (
            "cut flattened",
            flatten(&full[..full.len() - 100]),
            unterminated("CERTIFICATE"),
        ),
        (
            "END of another label",
            chain
                .key_pem
                .replace("END PRIVATE KEY", "END RSA PRIVATE KEY"),
            unterminated("PRIVATE KEY"),
        ),
    ];
    for (what, text, expected) in cases {
        assert_eq!(parse_err(&text, what), expected, "{what}");
    }
    // Cut inside the BEGIN line itself: still unterminated, naming what
    // there is of the label.
    let text = &full[..leaf_begin + "-----BEGIN CERT".len()];
    match parse_err(text, "cut in the BEGIN line") {
        PemError::Unterminated { label } => assert!(label.starts_with("CERT"), "{label:?}"),
        other => panic!("cut in the BEGIN line: got {other:?}"),
    }
}

/// A `CERTIFICATE` block whose DER is not a certificate is
/// `BadCertificate` with its 1-based position among the certificates.
#[test]
fn non_certificate_der_is_bad_certificate() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let key_as_cert = pem_block("CERTIFICATE", &chain.key.serialize_der());
    let junk = pem_block("CERTIFICATE", b"definitely not DER");
    let cases = [
        ("junk only", format!("{}{junk}", chain.key_pem), 1),
        (
            "key DER as certificate",
            format!("{}{key_as_cert}", chain.key_pem),
            1,
        ),
        (
            "junk after the leaf",
            format!("{}{}{junk}", chain.key_pem, chain.leaf.pem),
            2,
        ),
        (
            "junk between chain certs",
            format!(
                "{}{}{}{junk}{}",
                chain.key_pem, chain.leaf.pem, chain.intermediate.pem, chain.root.pem
            ),
            3,
        ),
        (
            "truncated DER",
            format!(
                "{}{}",
                chain.key_pem,
                pem_block("CERTIFICATE", &chain.leaf.der[..chain.leaf.der.len() / 2])
            ),
            1,
        ),
    ];
    for (what, text, expected_index) in cases {
        match parse_err(&text, what) {
            PemError::BadCertificate { index, reason } => {
                assert_eq!(index, expected_index, "{what}");
                assert!(!reason.is_empty(), "{what}: empty reason");
            }
            other => panic!("{what}: expected BadCertificate, got {other:?}"),
        }
    }
}

/// A key block that is none of the supported keys is `UnsupportedKey`:
/// junk, a certificate under a key label, and RSA below 2048 bits.
#[test]
fn unsupported_keys_are_reported() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let rsa_1024 = openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
        ],
        None,
    );
    let cases = [
        ("junk", pem_block("PRIVATE KEY", b"junk")),
        (
            "certificate under a key label",
            pem_block("PRIVATE KEY", &chain.leaf.der),
        ),
        (
            "empty body",
            "-----BEGIN EC PRIVATE KEY-----\n-----END EC PRIVATE KEY-----\n".to_string(),
        ),
        ("RSA-1024 PKCS#8", rsa_1024.clone()),
        ("RSA-1024 PKCS#1", traditional(&rsa_1024)),
    ];
    for (what, key) in cases {
        let text = format!("{key}{}", chain.leaf.pem);
        assert_eq!(parse_err(&text, what), PemError::UnsupportedKey, "{what}");
    }
}

/// Every error's message is non-empty, names the relevant thing and says
/// what to do.
#[test]
fn error_messages_say_what_to_do() {
    let cases: [(PemError, &[&str]); 10] = [
        (
            PemError::NoBlocks,
            &[
                "no PEM blocks",
                "-----BEGIN PRIVATE KEY-----",
                "-----BEGIN CERTIFICATE-----",
            ],
        ),
        (
            PemError::Unterminated {
                label: "CERTIFICATE".into(),
            },
            &["`CERTIFICATE`", "-----END CERTIFICATE-----", "cut off"],
        ),
        (
            PemError::BadBase64 {
                label: "PRIVATE KEY".into(),
                index: 2,
            },
            &["`PRIVATE KEY`", "block 2", "base64", "damaged"],
        ),
        (
            PemError::EncryptedKey,
            &["encrypted", "decrypt", "openssl pkey", "plain key"],
        ),
        (
            PemError::NoPrivateKey,
            &[
                "no private key",
                "-----BEGIN PRIVATE KEY-----",
                "before the certificate",
            ],
        ),
        (
            PemError::SeveralPrivateKeys { count: 3 },
            &["3 private keys", "keep only the key"],
        ),
        (
            PemError::UnsupportedKey,
            &[
                "PKCS#8",
                "PKCS#1",
                "SEC1",
                "RSA (2048 bits or more)",
                "P-256",
                "P-384",
            ],
        ),
        (
            PemError::NoCertificate,
            &[
                "no certificate",
                "-----BEGIN CERTIFICATE-----",
                "after the private key",
            ],
        ),
        (
            PemError::BadCertificate {
                index: 4,
                reason: "parser said no".into(),
            },
            &["certificate 4", "X.509", "parser said no"],
        ),
        (
            PemError::KeyMatchesNoCertificate { certificates: 2 },
            &["matches none", "2 certificate(s)", "use the key"],
        ),
    ];
    for (error, needles) in cases {
        let message = error.to_string();
        assert!(!message.trim().is_empty(), "{error:?}: empty message");
        for needle in needles {
            assert!(
                message.contains(needle),
                "{error:?}: message {message:?} lacks {needle:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// parse_key_and_chain
// ---------------------------------------------------------------------------

/// A certdir's separate `server.key` and `server.crt` give the same result
/// as the joined text, for every key type and the traditional key forms.
#[test]
fn key_and_chain_texts_are_joined() {
    for (name, alg) in KEY_TYPES {
        let chain = make_chain(alg);
        let crt = chain.text(&["leaf", "intermediate", "root"]);
        for (form, key) in [
            ("PKCS#8", chain.key_pem.clone()),
            ("traditional", traditional(&chain.key_pem)),
        ] {
            let what = format!("{name} {form}");
            let parsed =
                parse_key_and_chain(&key, &crt).unwrap_or_else(|e| panic!("{what}: {e:?}"));
            chain.assert_parsed_in_order(&parsed, &what);
        }
    }
}

/// Separate texts tolerate what the joined form tolerates: a key without a
/// final newline, a CRLF chain in any order, markers in either file.
#[test]
fn key_and_chain_texts_tolerate_paste_damage() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let key = format!("{ACME_LINE}\n{}", chain.key_pem.trim_end());
    let crt = crlf(&format!(
        "date=2023-11-29\n{}",
        chain.text(&["intermediate", "leaf", "root"])
    ));
    let parsed = parse_key_and_chain(&key, &crt).expect("parse");
    assert_eq!(
        chain.served_names(&parsed),
        ["leaf", "intermediate", "root"]
    );
    assert!(parsed.markers.is_acme_issued());
    assert_eq!(parsed.markers.value("date"), Some("2023-11-29"));

    let parsed = parse_key_and_chain(&flatten(&chain.key_pem), &flatten(&crt)).expect("flat");
    assert_eq!(
        chain.served_names(&parsed),
        ["leaf", "intermediate", "root"]
    );

    // A marker ending the key file without a newline stays separate from
    // one starting the chain file.
    let key = format!("{}{ACME_LINE}", chain.key_pem);
    let parsed = parse_key_and_chain(&key, &crt).expect("marker at the end");
    assert_eq!(
        parsed.markers.value(ACME_ISSUED_MARKER),
        Some("2026-11-25T10:00:00Z")
    );
    assert_eq!(parsed.markers.value("date"), Some("2023-11-29"));
}

/// The key text must hold a key and the chain text a certificate; a
/// swapped pair, empty files, a mismatched key and an encrypted key are
/// each reported.
#[test]
fn key_and_chain_errors() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let (other_key, _) = self_signed(&PKCS_ECDSA_P256_SHA256, &["other.test"]);
    let key = chain.key_pem.as_str();
    let crt = chain.text(&["leaf", "intermediate"]);
    let encrypted = encrypted_pkcs8(key);
    let other = other_key.serialize_pem();
    let cases: [(&str, &str, &str, PemError); 9] = [
        ("swapped", &crt, key, PemError::NoPrivateKey),
        (
            "certificate in the key file",
            &chain.leaf.pem,
            &crt,
            PemError::NoPrivateKey,
        ),
        ("key in the chain file", key, key, PemError::NoCertificate),
        ("empty key file", "", &crt, PemError::NoBlocks),
        ("empty chain file", key, "", PemError::NoBlocks),
        ("garbage key file", "not a key", &crt, PemError::NoBlocks),
        (
            "key of another certificate",
            &other,
            &crt,
            PemError::KeyMatchesNoCertificate { certificates: 2 },
        ),
        ("encrypted key", &encrypted, &crt, PemError::EncryptedKey),
        (
            "a key in both files",
            key,
            &format!("{key}{crt}"),
            PemError::SeveralPrivateKeys { count: 2 },
        ),
    ];
    for (what, key_text, chain_text, expected) in cases {
        match parse_key_and_chain(key_text, chain_text) {
            Ok(_) => panic!("{what}: expected {expected:?}, got a parse"),
            Err(e) => assert_eq!(e, expected, "{what}"),
        }
    }
}

// ---------------------------------------------------------------------------
// private_key_as_pkcs8
// ---------------------------------------------------------------------------

/// PKCS#8, PKCS#1 and SEC1 keys, under any label and with free text or
/// certificates around them, all come out as PKCS#8 DER of the same key;
/// a PKCS#8 input comes out unchanged.
#[test]
fn private_key_as_pkcs8_normalises_every_encoding() {
    for (name, alg) in KEY_TYPES {
        let (key, cert) = self_signed(alg, &["a.test"]);
        let pkcs8_pem = key.serialize_pem();
        let pkcs8_der = key.serialize_der();
        let traditional_pem = traditional(&pkcs8_pem);
        let (_, traditional_der) = first_block(&traditional_pem);
        let inputs = [
            ("PKCS#8", pkcs8_pem.clone(), true),
            (
                "PKCS#8 under RSA PRIVATE KEY",
                pem_block("RSA PRIVATE KEY", &pkcs8_der),
                true,
            ),
            (
                "PKCS#8 after the certificate",
                format!("x=y\n{}{pkcs8_pem}", cert.pem),
                true,
            ),
            (
                "PKCS#8 flattened with CRLF",
                flatten(&crlf(&pkcs8_pem)),
                true,
            ),
            ("traditional", traditional_pem.clone(), false),
            (
                "traditional under PRIVATE KEY",
                pem_block("PRIVATE KEY", &traditional_der),
                false,
            ),
            ("traditional, CRLF", crlf(&traditional_pem), false),
        ];
        for (form, text, unchanged) in inputs {
            let what = format!("{name} {form}");
            let der = private_key_as_pkcs8(&text).unwrap_or_else(|e| panic!("{what}: {e:?}"));
            if unchanged {
                assert_eq!(der, pkcs8_der, "{what}: PKCS#8 should pass through");
            }
            let pkcs8 = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone()));
            assert!(any_supported_type(&pkcs8).is_ok(), "{what}: not PKCS#8");
            let reread = KeyPair::try_from(der.as_slice())
                .unwrap_or_else(|e| panic!("{what}: rcgen cannot read the PKCS#8: {e}"));
            assert_eq!(
                reread.public_key_raw(),
                key.public_key_raw(),
                "{what}: a different key came out"
            );
            // The result pairs with the certificate again.
            let text = format!("{}{}", pem_block("PRIVATE KEY", &der), cert.pem);
            let parsed = parse_ok(&text, &what);
            assert_eq!(parsed.leaf.sha256, sha256_fingerprint(&cert.der), "{what}");
        }
    }
}

/// Found by fuzz/fuzz_targets/pem.rs: a SEC1 P-521 key (what
/// `openssl ecparam -genkey -name secp521r1` writes) parsed and was served,
/// but could not be re-encoded as PKCS#8, so `pem merge` refused it.
#[test]
fn private_key_as_pkcs8_reads_sec1_p521_keys_that_parse() {
    let (key, cert) = self_signed(&rcgen::PKCS_ECDSA_P521_SHA512, &["a.test"]);
    let sec1 = traditional(&key.serialize_pem());
    assert_eq!(first_block(&sec1).0, "EC PRIVATE KEY", "openssl output");
    let text = format!("{sec1}{}", cert.pem);
    let parsed = parse_ok(&text, "P-521 SEC1");
    let der = private_key_as_pkcs8(&text).expect("P-521 SEC1 as PKCS#8");
    let reread = KeyPair::try_from(der.as_slice()).expect("rcgen reads the PKCS#8");
    assert_eq!(reread.public_key_raw(), key.public_key_raw());
    let rendered = render_certificate_pem(&parsed.markers, &der, &parsed.certified_key.cert);
    assert_eq!(parse_ok(&rendered, "rendered").leaf, parsed.leaf);
}

/// `private_key_as_pkcs8` refuses what `parse_certificate_pem` refuses.
#[test]
fn private_key_as_pkcs8_errors() {
    let (key, cert) = self_signed(&PKCS_RSA_SHA256, &["a.test"]);
    let pem = key.serialize_pem();
    let cases = [
        (
            "encrypted PKCS#8",
            encrypted_pkcs8(&pem),
            PemError::EncryptedKey,
        ),
        (
            "legacy encrypted RSA",
            legacy_encrypted(&pem, "rsa"),
            PemError::EncryptedKey,
        ),
        ("certificate only", cert.pem.clone(), PemError::NoPrivateKey),
        ("empty", String::new(), PemError::NoBlocks),
        ("garbage", "garbage".to_string(), PemError::NoBlocks),
        (
            "junk DER",
            pem_block("PRIVATE KEY", b"junk"),
            PemError::UnsupportedKey,
        ),
        (
            "cut off",
            pem[..pem.len() / 2].to_string(),
            PemError::Unterminated {
                label: "PRIVATE KEY".into(),
            },
        ),
        (
            "damaged",
            damage_first_body(&pem),
            PemError::BadBase64 {
                label: "PRIVATE KEY".into(),
                index: 1,
            },
        ),
    ];
    for (what, text, expected) in cases {
        assert_eq!(private_key_as_pkcs8(&text), Err(expected), "{what}");
    }
}

// ---------------------------------------------------------------------------
// render_certificate_pem
// ---------------------------------------------------------------------------

/// Render then parse gives the same leaf, chain and markers, for every key
/// type, starting from a messy traditional-key text.
#[test]
fn render_round_trips() {
    for (name, alg) in KEY_TYPES {
        let chain = make_chain(alg);
        let messy = flatten(&format!(
            "{ACME_LINE} {}{}{}{}",
            chain.root.pem,
            traditional(&chain.key_pem),
            chain.intermediate.pem,
            chain.leaf.pem
        ));
        let first = parse_ok(&messy, name);
        let pkcs8 = private_key_as_pkcs8(&messy).expect("pkcs8");
        let rendered = render_certificate_pem(&first.markers, &pkcs8, &first.certified_key.cert);
        let second = parse_ok(&rendered, &format!("{name} rendered"));
        assert_eq!(second.leaf, first.leaf, "{name}: leaf facts");
        assert_eq!(second.leaf.sha256, sha256_fingerprint(&chain.leaf.der));
        assert_eq!(second.certified_key.cert.len(), 3, "{name}: chain length");
        assert_eq!(
            second.certified_key.cert, first.certified_key.cert,
            "{name}"
        );
        assert_eq!(
            chain.served_names(&second),
            ["leaf", "root", "intermediate"]
        );
        assert_eq!(second.markers, first.markers, "{name}: markers");
        assert!(second.markers.is_acme_issued());
        assert!(second.certified_key.keys_match().is_ok());

        // Rendering is canonical: doing it again changes nothing.
        let again = render_certificate_pem(
            &second.markers,
            &private_key_as_pkcs8(&rendered).expect("pkcs8 again"),
            &second.certified_key.cert,
        );
        assert_eq!(again, rendered, "{name}: render is not stable");
    }
}

/// The rendered text is canonical PEM: marker lines, then the PKCS#8 key,
/// then the certificates, 64-column base64, ending with a newline.
#[test]
fn render_writes_canonical_pem() {
    let chain = make_chain(&PKCS_RSA_SHA256);
    let markers = Markers {
        pairs: vec![
            ("acme_issued".into(), "2026-11-25T10:00:00Z".into()),
            ("date".into(), "2023-11-29".into()),
        ],
    };
    let certs = [
        CertificateDer::from(chain.leaf.der.clone()),
        CertificateDer::from(chain.intermediate.der.clone()),
    ];
    let key_der = chain.key.serialize_der();
    let text = render_certificate_pem(&markers, &key_der, &certs);

    let expected = format!(
        "acme_issued=2026-11-25T10:00:00Z\ndate=2023-11-29\n{}{}{}",
        pem_block("PRIVATE KEY", &key_der),
        pem_block("CERTIFICATE", &chain.leaf.der),
        pem_block("CERTIFICATE", &chain.intermediate.der)
    );
    assert_eq!(text, expected);
    assert!(
        text.lines().all(|l| l.len() <= 64),
        "a line is over 64 columns"
    );
    // The key is PKCS#8 as rcgen wrote it.
    assert!(
        text.contains(chain.key_pem.trim()),
        "key not in PKCS#8 PEM form"
    );
}

/// With no markers and a lone certificate the text is just the two blocks.
#[test]
fn render_without_markers() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let key_der = chain.key.serialize_der();
    let text = render_certificate_pem(
        &Markers::default(),
        &key_der,
        &[CertificateDer::from(chain.leaf.der.clone())],
    );
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
    assert!(text.ends_with("-----END CERTIFICATE-----\n"), "{text}");
    let parsed = parse_ok(&text, "rendered");
    assert_eq!(parsed.markers, Markers::default());
    assert_eq!(chain.served_names(&parsed), ["leaf"]);
}

// ---------------------------------------------------------------------------
// CertificateFacts
// ---------------------------------------------------------------------------

/// The facts of a generated leaf: lower-cased DNS names in order, subject
/// and issuer, validity in Unix seconds, fingerprint of the DER.
#[test]
fn facts_describe_the_leaf() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let facts = CertificateFacts::from_der(&chain.leaf.der).expect("facts");
    assert_eq!(facts.dns_names, ["leaf.test", "*.wild.test"]);
    assert!(facts.subject.contains("CN=Leaf CN"), "{}", facts.subject);
    assert!(
        facts.issuer.contains("CN=Test Intermediate"),
        "{}",
        facts.issuer
    );
    assert_eq!(facts.not_before, LEAF_NOT_BEFORE);
    assert_eq!(facts.not_after, LEAF_NOT_AFTER);
    assert_eq!(facts.sha256, sha256_fingerprint(&chain.leaf.der));
    assert_eq!(facts.days_left(LEAF_NOT_AFTER - 10 * 86_400), 10);
    assert!(facts.covers("leaf.test"));
    assert!(facts.covers("x.wild.test"));
    assert!(!facts.covers("wild.test"));

    // The parsed text reports the same facts.
    let parsed = parse_ok(&chain.full_text(), "full");
    assert_eq!(parsed.leaf, facts);
}

/// `from_der` refuses bytes that are not a certificate.
#[test]
fn facts_from_junk_is_an_error() {
    for junk in [&b""[..], b"junk", &[0x30, 0x82, 0x01]] {
        assert!(CertificateFacts::from_der(junk).is_err(), "{junk:?}");
    }
}

/// `covers`: exact names, a wildcard for exactly one leftmost label (not
/// the bare parent, not two labels, not an empty label), case-insensitive,
/// trailing dot ignored.
#[test]
fn covers_matches_like_a_browser() {
    let facts = facts_with_names(&["a.test", "*.wild.test", "*.UPPER.test"]);
    let cases = [
        ("a.test", true),
        ("A.TEST", true),
        ("a.test.", true),
        ("A.Test.", true),
        ("b.test", false),
        ("test", false),
        ("x.a.test", false),
        ("aa.test", false),
        ("x.wild.test", true),
        ("X.Wild.TEST", true),
        ("x.wild.test.", true),
        ("xn--bcher-kva.wild.test", true),
        ("wild.test", false),
        ("wild.test.", false),
        ("y.x.wild.test", false),
        (".wild.test", false),
        ("xwild.test", false),
        ("x.wild.test.evil", false),
        ("*.wild.test", true),
        ("x.upper.test", true),
        ("", false),
        (".", false),
    ];
    for (name, expected) in cases {
        assert_eq!(facts.covers(name), expected, "covers({name:?})");
    }
    assert!(!facts_with_names(&[]).covers("a.test"));
}

/// `days_left` counts whole days, rounding down, negative once expired.
#[test]
fn days_left_counts_whole_days() {
    let facts = CertificateFacts {
        not_after: 2_000_000_000,
        ..facts_with_names(&[])
    };
    let day = 86_400;
    let cases = [
        (2_000_000_000 - 90 * day, 90),
        (2_000_000_000 - 30 * day - 1, 30),
        (2_000_000_000 - day - 1, 1),
        (2_000_000_000 - day, 1),
        (2_000_000_000 - day + 1, 0),
        (2_000_000_000 - 1, 0),
        (2_000_000_000, 0),
        (2_000_000_000 + 1, -1),
        (2_000_000_000 + day, -1),
        (2_000_000_000 + day + 1, -2),
    ];
    for (now, expected) in cases {
        assert_eq!(
            facts.days_left(now),
            expected,
            "now = not_after {:+}",
            now - 2_000_000_000
        );
    }
}

// ---------------------------------------------------------------------------
// sha256_fingerprint
// ---------------------------------------------------------------------------

/// Known SHA-256 vectors in the `AB:CD:...` form.
#[test]
fn sha256_fingerprint_known_vectors() {
    assert_eq!(
        sha256_fingerprint(b""),
        "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:\
         27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
    );
    assert_eq!(
        sha256_fingerprint(b"abc"),
        "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
         B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
    );
}

/// A certificate's fingerprint is 32 upper-case hex pairs joined by `:`
/// and equals what `openssl x509 -fingerprint -sha256` prints.
#[test]
fn sha256_fingerprint_format_matches_openssl() {
    let chain = make_chain(&PKCS_ECDSA_P256_SHA256);
    let fingerprint = sha256_fingerprint(&chain.leaf.der);
    assert_eq!(fingerprint.len(), 95);
    let pairs: Vec<&str> = fingerprint.split(':').collect();
    assert_eq!(pairs.len(), 32);
    for pair in pairs {
        assert_eq!(pair.len(), 2, "{fingerprint}");
        assert!(
            pair.chars()
                .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)),
            "{fingerprint}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leaf.pem");
    std::fs::write(&path, &chain.leaf.pem).expect("write");
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&path)
        .output()
        .expect("openssl");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    let printed = printed.trim().rsplit('=').next().expect("a value");
    assert_eq!(fingerprint, printed);
}
