//! Client certificates (README, "Client certificates") on both TLS listener kinds, with real
//! handshakes: no certificate, a certificate from another CA, the right CA
//! but not pinned, pinned; the verified certificate's headers reach the
//! backend and spoofed ones are stripped.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::TestProxy;
use common::backends::{HttpBackend, TcpEcho};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A client certificate for `name` signed by `issuer`: (DER, key DER,
/// SHA-256 lowercase hex).
fn client(
    name: &str,
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
) -> (Vec<u8>, Vec<u8>, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, name);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer).expect("signed");
    let der = cert.der().to_vec();
    let sha: String = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (der, key.serialize_der(), sha)
}

fn client_config(identity: Option<&(Vec<u8>, Vec<u8>, String)>) -> Arc<rustls::ClientConfig> {
    let base = (*common::client_config(&[b"http/1.1"])).clone();
    let Some((cert, key, _)) = identity else {
        return Arc::new(base);
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(common::AcceptAnyCertificate(provider.clone())))
        .with_client_auth_cert(
            vec![CertificateDer::from(cert.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
        )
        .expect("client cert");
    config.alpn_protocols = base.alpn_protocols.clone();
    Arc::new(config)
}

/// One GET / over a fresh TLS connection; status and body, or the error.
async fn get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    extra_header: &str,
) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("example.com").expect("name");
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let request =
        format!("GET / HTTP/1.1\r\nhost: example.com\r\n{extra_header}connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    common::within(
        Duration::from_secs(5),
        "response",
        stream.read_to_end(&mut response),
    )
    .await
    .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {text:?}"))?;
    Ok((status, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_client_certificates_pins_and_headers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ca_pem, issuer) = common::test_ca("clients CA");
    let (_, other_issuer) = common::test_ca("another CA");
    std::fs::write(tmp.path().join("clients-ca.pem"), &ca_pem).expect("ca");
    let pinned = client("pinned caller", &issuer);
    let unpinned = client("unpinned caller", &issuer);
    let stranger = client("stranger", &other_issuer);
    let backend = HttpBackend::start().await;
    // The pin written with colons and upper case, as people paste them.
    let pin_text: String = pinned
        .2
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let yaml = common::proxy_yaml(
        "",
        &format!(
            "  - name: api\n    kind: https\n    bind: 127.0.0.1:1\n    access_log: false\n    \
             client_auth: {{ mode: required, ca_file: clients-ca.pem, pinned_sha256: [\"{pin_text}\"] }}\n    \
             routes:\n      - {{ host: \"*\", backend: {} }}\n",
            backend.url()
        ),
    );
    let proxy = TestProxy::start(tmp.path(), &yaml).await;
    let addr = proxy.addr();

    let spoof = "x-client-cert-sha256: 00ff\r\nx-client-cert-subject: CN=forged\r\n";
    // No certificate: the handshake works, the request gets a reason.
    let (status, body) = get(addr, client_config(None), spoof)
        .await
        .expect("answered");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Invalid client certificate"), "{body}");
    // Another CA: rustls refuses the handshake.
    assert!(get(addr, client_config(Some(&stranger)), "").await.is_err());
    // Right CA, not pinned: 403.
    let (status, _) = get(addr, client_config(Some(&unpinned)), "")
        .await
        .expect("answered");
    assert_eq!(status, 403);
    // Pinned: through to the backend with the headers, spoofed ones gone.
    let (status, body) = get(addr, client_config(Some(&pinned)), spoof)
        .await
        .expect("answered");
    assert_eq!(status, 200, "{body}");
    let json_start = body.find('{').expect("backend echo");
    let echo: serde_json::Value = serde_json::from_str(&body[json_start..]).expect("json");
    let headers = &echo["headers"];
    assert_eq!(
        headers["x-client-cert-sha256"],
        serde_json::json!([pinned.2]),
        "{headers}"
    );
    let subject = headers["x-client-cert-subject"].to_string();
    assert!(
        subject.contains("pinned caller") && !subject.contains("forged"),
        "{subject}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_requires_a_pinned_client_certificate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ca_pem, issuer) = common::test_ca("clients CA");
    let (_, other_issuer) = common::test_ca("another CA");
    std::fs::write(tmp.path().join("clients-ca.pem"), &ca_pem).expect("ca");
    let pinned = client("pinned caller", &issuer);
    let unpinned = client("unpinned caller", &issuer);
    let stranger = client("stranger", &other_issuer);
    let echo = TcpEcho::start(false).await;
    let yaml = common::proxy_yaml(
        "",
        &format!(
            "  - name: sip\n    kind: tls\n    bind: 127.0.0.1:1\n    backend: {}\n    \
             client_auth: {{ mode: required, ca_file: clients-ca.pem, pinned_sha256: [{}] }}\n",
            echo.addr, pinned.2
        ),
    );
    let proxy = TestProxy::start(tmp.path(), &yaml).await;
    let addr = proxy.addr();
    let exchange = |identity: Option<(Vec<u8>, Vec<u8>, String)>| async move {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("example.com").expect("name");
        let mut stream = tokio_rustls::TlsConnector::from(client_config(identity.as_ref()))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        common::within(Duration::from_secs(5), "echo", stream.read_exact(&mut buf))
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(buf.to_vec())
    };
    assert!(exchange(None).await.is_err(), "no certificate: refused");
    assert!(
        exchange(Some(stranger)).await.is_err(),
        "another CA: refused"
    );
    assert!(
        exchange(Some(unpinned)).await.is_err(),
        "not pinned: closed"
    );
    assert_eq!(
        exchange(Some(pinned)).await.expect("pinned passes"),
        b"ping"
    );
    proxy.stop().await;
}

/// Polls until `attempt` gives `want` (10 s at most).
async fn until_status(
    what: &str,
    want: Result<u16, ()>,
    attempt: impl Fn() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(u16, String), String>> + Send>,
    >,
) {
    common::within(Duration::from_secs(10), what, async {
        loop {
            let got = attempt().await.map(|(status, _)| status).map_err(|_| ());
            if got == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_and_mode_reload_without_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ca_a, issuer_a) = common::test_ca("CA A");
    let (ca_b, issuer_b) = common::test_ca("CA B");
    let from_a = client("caller of A", &issuer_a);
    let from_b = client("caller of B", &issuer_b);
    let ca_file = tmp.path().join("clients-ca.pem");
    std::fs::write(&ca_file, &ca_a).expect("ca");
    let backend = HttpBackend::start().await;
    let listeners = |mode: &str| {
        format!(
            "  - name: api\n    kind: https\n    bind: 127.0.0.1:1\n    access_log: false\n    \
             client_auth: {{ mode: {mode}, ca_file: clients-ca.pem }}\n    \
             routes:\n      - {{ host: \"*\", backend: {} }}\n",
            backend.url()
        )
    };
    let yaml = common::proxy_yaml("", &listeners("required"));
    let (proxy, _reloads) = TestProxy::start_with_reload(tmp.path(), &yaml).await;
    let addr = proxy.addr();
    let with = |identity: Option<(Vec<u8>, Vec<u8>, String)>| {
        move || {
            let config = client_config(identity.as_ref());
            Box::pin(async move { get(addr, config, "").await })
                as std::pin::Pin<
                    Box<dyn std::future::Future<Output = Result<(u16, String), String>> + Send>,
                >
        }
    };
    assert_eq!(with(Some(from_a.clone()))().await.expect("A passes").0, 200);
    assert!(with(Some(from_b.clone()))().await.is_err(), "B refused");

    // The CA file is replaced: B's callers get in, A's no longer do, and
    // the listener was not rebuilt (no restart, same socket).
    let tmp_file = tmp.path().join("clients-ca.tmp");
    std::fs::write(&tmp_file, &ca_b).expect("write");
    std::fs::rename(&tmp_file, &ca_file).expect("rename");
    until_status(
        "B accepted after the CA swap",
        Ok(200),
        with(Some(from_b.clone())),
    )
    .await;
    assert!(with(Some(from_a.clone()))().await.is_err(), "A refused now");

    // A damaged CA file keeps the last good one.
    std::fs::write(&tmp_file, "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("write");
    std::fs::rename(&tmp_file, &ca_file).expect("rename");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        with(Some(from_b.clone()))()
            .await
            .expect("B still passes")
            .0,
        200
    );

    // `mode` follows the configuration: optional lets callers without a
    // certificate through.
    std::fs::write(&ca_file, &ca_b).expect("ca");
    assert_eq!(with(None)().await.expect("answered").0, 403);
    let config_tmp = tmp.path().join("proxy.yaml.tmp");
    std::fs::write(&config_tmp, common::proxy_yaml("", &listeners("optional"))).expect("write");
    std::fs::rename(&config_tmp, tmp.path().join("proxy.yaml")).expect("rename");
    until_status("no certificate accepted once optional", Ok(200), with(None)).await;
    proxy.stop().await;
}

#[test]
fn mode_off_with_a_ca_is_a_configuration_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("proxy.yaml");
    let yaml = common::proxy_yaml(
        "",
        "  - name: api\n    kind: https\n    bind: 127.0.0.1:1\n    \
         client_auth: { mode: off, ca_file: ca.pem }\n",
    );
    std::fs::write(&path, yaml).expect("write");
    let error = sniwalk::config::Config::load(&path)
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("client_auth") && error.contains("mode: off"),
        "{error}"
    );
}

/// A TLS-ALPN-01 validation never carries a client certificate: on a
/// listener that requires one it still gets the challenge certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_validation_passes_a_listener_that_requires_client_certificates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ca_pem, _) = common::test_ca("clients CA");
    std::fs::write(tmp.path().join("clients-ca.pem"), &ca_pem).expect("ca");
    let challenges = Arc::new(sniwalk::challenge::ChallengeStore::default());
    let challenge = sniwalk::challenge::tls_alpn01_certificate("shop.example.com", &[7; 32])
        .expect("challenge certificate");
    let challenge_der = challenge.end_entity_cert().expect("leaf").to_vec();
    challenges.set_tls_alpn01("shop.example.com", Arc::new(challenge));
    let yaml = common::proxy_yaml(
        "",
        "  - name: api\n    kind: https\n    bind: 127.0.0.1:1\n    \
         client_auth: { mode: required, ca_file: clients-ca.pem }\n    \
         routes:\n      - { host: \"*\", respond: { status: 200, body: ok } }\n",
    );
    let proxy = TestProxy::start_with_challenges(tmp.path(), &yaml, challenges).await;
    let tcp = TcpStream::connect(proxy.addr()).await.expect("connect");
    let mut config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LikeAValidator))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let config = Arc::new(config);
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("shop.example.com").expect("name"), tcp)
        .await
        .expect("the validation handshake completes without a client certificate");
    let connection = stream.get_ref().1;
    assert_eq!(connection.alpn_protocol(), Some(&b"acme-tls/1"[..]));
    let served = connection
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a certificate")
        .to_vec();
    assert_eq!(
        served, challenge_der,
        "the challenge certificate was served"
    );
    drop(stream);
    proxy.stop().await;
}

/// What an ACME validator needs of the handshake: no chain to a root and
/// no check of the signature's certificate (webpki refuses to parse the
/// critical `acmeIdentifier` extension; the validator reads it instead).
#[derive(Debug)]
struct LikeAValidator;

impl rustls::client::danger::ServerCertVerifier for LikeAValidator {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
