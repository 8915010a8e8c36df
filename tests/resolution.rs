//! The resolution rules of the README ("How a certificate is chosen"), each as a real TLS handshake on
//! 127.0.0.1 with the fingerprint of the served leaf asserted.

mod common;

use std::process::Command;

use common::{TestCert, TestProxy, cert, served_leaf};

/// The certificates of the worked example, plus a certdir and a default.
struct Certs {
    master: TestCert,
    t1: TestCert,
    a_t2: TestCert,
    customer: TestCert,
    certdir: TestCert,
    default: TestCert,
}

fn certs() -> Certs {
    Certs {
        master: cert(&["example.com"]),
        t1: cert(&["t1.example.com"]),
        a_t2: cert(&["a.t2.example.com"]),
        customer: cert(&["customer.org"]),
        certdir: cert(&["certdir.example.com"]),
        default: cert(&["default.invalid"]),
    }
}

/// Writes the files and returns a configuration with two https listeners:
/// `ws` with a certdir, `bare` without one. `master_has_cert` switches the
/// master's certificate; `certdir` names the ws listener's certdir path.
fn setup(dir: &std::path::Path, c: &Certs, master_has_cert: bool, certdir: &str) -> String {
    c.master
        .write_pem(&dir.join("certs/domains/example.com.pem"));
    c.certdir.write_certdir(&dir.join("certs/ws"));
    c.default.write_pem(&dir.join("certs/default.pem"));
    let master = if master_has_cert {
        "  example.com:\n    certificate_file: certs/domains/example.com.pem\n"
    } else {
        "  example.com: {}\n"
    };
    format!(
        "master_domain: example.com\n\
         state_dir: state\n\
         paths:\n  default_certdir: certs/ws\n\
         default_certificate: certs/default.pem\n\
         domains:\n\
         {master}\
         \x20 t1.example.com:\n    certificate_pem: |\n{t1}\
         \x20 t2.example.com: {{}}\n\
         \x20 a.t2.example.com:\n    certificate_pem: |\n{a_t2}\
         \x20 customer.org:\n    certificate_pem: |\n{customer}\
         listeners:\n\
         \x20 - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    certdir: {certdir}\n    access_log: false\n\
         \x20   routes:\n      - host: \"*\"\n        respond: {{ status: 200, body: \"hello\\n\" }}\n\
         \x20 - name: bare\n    kind: https\n    bind: 127.0.0.1:2\n    routes:\n      - host: \"*\"\n        status_page: true\n",
        t1 = c.t1.yaml_block(6),
        a_t2 = c.a_t2.yaml_block(6),
        customer = c.customer.yaml_block(6),
    )
}

#[tokio::test]
async fn worked_example_table_over_real_handshakes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = certs();
    let yaml = setup(dir.path(), &c, true, "alias://paths/default_certdir");
    let proxy = TestProxy::start(dir.path(), &yaml).await;
    let ws = proxy.addrs[0];
    let bare = proxy.addrs[1];

    let rows: &[(&str, Option<&str>, &TestCert)] = &[
        ("exact match has a cert", Some("t1.example.com"), &c.t1),
        (
            "nearest configured ancestor",
            Some("x.t1.example.com"),
            &c.t1,
        ),
        (
            "t2 has none: walk up to master",
            Some("t2.example.com"),
            &c.master,
        ),
        (
            "nearest configured ancestor has one",
            Some("b.a.t2.example.com"),
            &c.a_t2,
        ),
        ("not in the tree: master last", Some("other.org"), &c.master),
        ("master itself", Some("example.com"), &c.master),
        ("upper case", Some("T1.EXAMPLE.com"), &c.t1),
        (
            "two levels below a certless domain",
            Some("x.y.t2.example.com"),
            &c.master,
        ),
        (
            "a domain outside the master",
            Some("customer.org"),
            &c.customer,
        ),
        (
            "below a domain outside the master",
            Some("www.customer.org"),
            &c.customer,
        ),
        ("no SNI: the certdir", None, &c.certdir),
    ];
    for (why, sni, expected) in rows {
        assert_eq!(
            served_leaf(ws, *sni).await,
            expected.sha256,
            "{why} (SNI {sni:?})"
        );
    }
    // A listener without certdir: no SNI gets the default certificate.
    assert_eq!(
        served_leaf(bare, None).await,
        c.default.sha256,
        "no SNI, no certdir: default"
    );
    assert_eq!(served_leaf(bare, Some("t1.example.com")).await, c.t1.sha256);
    proxy.stop().await;
}

#[tokio::test]
async fn master_without_certificate_falls_to_certdir_then_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = certs();
    let yaml = setup(dir.path(), &c, false, "certs/ws");
    let proxy = TestProxy::start(dir.path(), &yaml).await;
    let (ws, bare) = (proxy.addrs[0], proxy.addrs[1]);
    for sni in [
        Some("t2.example.com"),
        Some("other.org"),
        Some("example.com"),
        None,
    ] {
        assert_eq!(
            served_leaf(ws, sni).await,
            c.certdir.sha256,
            "certdir for {sni:?}"
        );
        assert_eq!(
            served_leaf(bare, sni).await,
            c.default.sha256,
            "default for {sni:?}"
        );
    }
    // Subtrees with their own certificate are unaffected.
    assert_eq!(
        served_leaf(ws, Some("z.a.t2.example.com")).await,
        c.a_t2.sha256
    );
    proxy.stop().await;
}

#[tokio::test]
async fn missing_certdir_falls_back_to_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = certs();
    let yaml = setup(dir.path(), &c, false, "certs/does-not-exist");
    let proxy = TestProxy::start(dir.path(), &yaml).await;
    assert_eq!(served_leaf(proxy.addr(), None).await, c.default.sha256);
    assert_eq!(
        served_leaf(proxy.addr(), Some("other.org")).await,
        c.default.sha256
    );
    proxy.stop().await;
}

#[tokio::test]
async fn invalid_certdir_falls_back_to_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = certs();
    let yaml = setup(dir.path(), &c, false, "certs/ws");
    // A key that belongs to another certificate: the certdir is invalid.
    std::fs::write(dir.path().join("certs/ws/server.key"), &c.t1.key_pem).expect("write key");
    let proxy = TestProxy::start(dir.path(), &yaml).await;
    assert_eq!(served_leaf(proxy.addr(), None).await, c.default.sha256);
    // Garbage instead of the certificate: still the default, still running.
    proxy.stop().await;
    std::fs::write(
        dir.path().join("certs/ws/server.crt"),
        b"\x00\xffnot a certificate",
    )
    .expect("write");
    let proxy = TestProxy::start(dir.path(), &yaml).await;
    assert_eq!(served_leaf(proxy.addr(), None).await, c.default.sha256);
    proxy.stop().await;
}

#[tokio::test]
async fn broken_domain_certificate_walks_on_to_the_parent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = certs();
    let yaml = setup(dir.path(), &c, true, "certs/ws");
    // t1's certificate becomes one whose key matches nothing: t1 then
    // counts as having none, and the walk reaches the master.
    let broken = format!("{}{}", c.master.key_pem, c.t1.cert_pem);
    let yaml = yaml.replace(
        &c.t1.yaml_block(6),
        &TestCert {
            pem: broken,
            ..c.t1.clone()
        }
        .yaml_block(6),
    );
    let proxy = TestProxy::start(dir.path(), &yaml).await;
    assert_eq!(
        served_leaf(proxy.addr(), Some("t1.example.com")).await,
        c.master.sha256
    );
    assert_eq!(
        served_leaf(proxy.addr(), Some("x.t1.example.com")).await,
        c.master.sha256
    );
    assert_eq!(
        served_leaf(proxy.addr(), Some("a.t2.example.com")).await,
        c.a_t2.sha256
    );
    proxy.stop().await;
}

#[tokio::test]
async fn generated_default_is_stored_private_and_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = "master_domain: local.test\n\
                domains:\n  local.test: {}\n\
                listeners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    routes:\n      - host: \"*\"\n        status_page: true\n";
    let proxy = TestProxy::start(dir.path(), yaml).await;
    let first = served_leaf(proxy.addr(), Some("local.test")).await;
    let stored = dir.path().join("state/default.pem");
    let parsed = sniwalk::pem::parse_certificate_pem(
        &std::fs::read_to_string(&stored).expect("stored default"),
    )
    .expect("stored default parses");
    assert_eq!(
        parsed.leaf.sha256, first,
        "the stored default is the one served"
    );
    assert!(parsed.leaf.covers("local.test") && parsed.leaf.covers("localhost"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&stored)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the generated key file is private");
    }
    proxy.stop().await;
    let proxy = TestProxy::start(dir.path(), yaml).await;
    assert_eq!(
        served_leaf(proxy.addr(), None).await,
        first,
        "reused after a restart"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn routes_answer_and_status_page_names_the_choice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = certs();
    let yaml = setup(dir.path(), &c, true, "certs/ws");
    let proxy = TestProxy::start(dir.path(), &yaml).await;
    let (status, body) = common::https_get(
        proxy.addrs[0],
        Some("t1.example.com"),
        "t1.example.com",
        "/",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "hello\n"));
    let (status, body) = common::https_get(
        proxy.addrs[1],
        Some("x.t1.example.com"),
        "x.t1.example.com",
        "/",
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("sniwalk is running"), "{body}");
    assert!(
        body.contains("ancestor") && body.contains("t1.example.com"),
        "{body}"
    );
    assert!(
        body.contains(&c.t1.sha256),
        "the page shows the served fingerprint"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn alpn_offers_h2_then_http11() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = certs();
    let yaml = setup(dir.path(), &c, true, "certs/ws");
    let proxy = TestProxy::start(dir.path(), &yaml).await;
    let h2 = common::connect(proxy.addr(), Some("t1.example.com"), &[b"h2", b"http/1.1"]).await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let h1 = common::connect(proxy.addr(), Some("t1.example.com"), &[b"http/1.1"]).await;
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    proxy.stop().await;
}

/// A raw trailing dot in the SNI (rustls clients strip it, OpenSSL sends
/// it as given): served like the name without the dot.
#[tokio::test]
async fn trailing_dot_sni_from_openssl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = certs();
    let yaml = setup(dir.path(), &c, true, "certs/ws");
    let proxy = TestProxy::start(dir.path(), &yaml).await;
    let addr = proxy.addr();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-servername",
                "x.t1.example.com.",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl s_client runs")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&output.stdout);
    let pem_start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("openssl printed the leaf");
    let pem_end = text.find("-----END CERTIFICATE-----").expect("end of leaf")
        + "-----END CERTIFICATE-----".len();
    let der =
        rustls::pki_types::pem::PemObject::from_pem_slice(text[pem_start..pem_end].as_bytes())
            .map(|d: rustls::pki_types::CertificateDer<'static>| d.to_vec())
            .expect("leaf PEM decodes");
    assert_eq!(sniwalk::pem::sha256_fingerprint(&der), c.t1.sha256);
    proxy.stop().await;
}
