//! TLS towards backends (`backend_tls:`), against real TLS backends on
//! 127.0.0.1 that require a client certificate: an `https://` route
//! backend and a `tls` listener's backend; the client certificate
//! hot-swaps and a broken one keeps the last good; an untrusted backend
//! certificate, a wrong name and a missing client certificate give 502;
//! `insecure_skip_verify` connects to anything.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::TestProxy;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A CA: its PEM and the issuer that signs with it.
struct Ca {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let (pem, issuer) = common::test_ca(name);
        Ca { pem, issuer }
    }

    /// A leaf for `names` (a server certificate) or, with no names, a
    /// client certificate with common name `cn`: `(certificate_pem text,
    /// SHA-256 hex)`.
    fn leaf(&self, cn: &str, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.extended_key_usages = if names.is_empty() {
            vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth]
        };
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (
            format!("{}{}", key.serialize_pem(), cert.pem()),
            sniwalk::pem::sha256_fingerprint(cert.der()),
        )
    }
}

/// A TLS server on 127.0.0.1 with `server_pem` (key + certificate) that,
/// when `client_ca` is given, requires a client certificate from it.
/// Each connection is handed to `serve` with the SHA-256 of the client
/// certificate ("-" when none) and the SNI it asked for.
async fn tls_backend<F, Fut>(server_pem: &str, client_ca: Option<&str>, serve: F) -> SocketAddr
where
    F: Fn(tokio_rustls::server::TlsStream<TcpStream>, String, String) -> Fut
        + Send
        + Sync
        + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    common::install_provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(server_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_slice(server_pem.as_bytes()).expect("key");
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(cert.expect("ca")).expect("root");
            }
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .expect("verifier"),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let serve = serve.clone();
            tokio::spawn(async move {
                // A refused handshake is what some tests expect.
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let connection = stream.get_ref().1;
                let client = connection
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map_or("-".to_string(), |c| sniwalk::pem::sha256_fingerprint(c));
                let sni = connection.server_name().unwrap_or("-").to_string();
                serve(stream, client, sni).await;
            });
        }
    });
    addr
}

/// An HTTP/1.1 backend answering every request with
/// `client=<sha256> sni=<name> path=<path>`.
async fn https_backend(server_pem: &str, client_ca: Option<&str>) -> SocketAddr {
    tls_backend(server_pem, client_ca, |stream, client, sni| async move {
        let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
            let body = format!("client={client} sni={sni} path={}", request.uri().path());
            async move {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                    body,
                ))))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
    .await
}

/// GET `path` through the proxy: status and body.
async fn get(proxy: SocketAddr, path: &str) -> (u16, String) {
    let response = common::get(proxy, "example.com", path).await;
    (response.status, response.body)
}

/// Polls `path` until the body contains `wanted` (10 s at most).
async fn until_body_contains(proxy: SocketAddr, path: &str, wanted: &str) -> String {
    common::within(Duration::from_secs(10), wanted, async {
        loop {
            let (status, body) = get(proxy, path).await;
            if status == 200 && body.contains(wanted) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backend_with_a_client_certificate_that_hot_swaps() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let backend_ca = Ca::new("backend CA");
    let client_ca = Ca::new("proxy clients CA");
    let (server_pem, _) = backend_ca.leaf("backend", &["backend.internal"]);
    let backend = https_backend(&server_pem, Some(&client_ca.pem)).await;
    let (first, first_sha) = client_ca.leaf("sniwalk one", &[]);
    let (second, second_sha) = client_ca.leaf("sniwalk two", &[]);
    std::fs::write(tmp.path().join("backend-ca.pem"), &backend_ca.pem).expect("ca");
    let client_file = tmp.path().join("client.pem");
    std::fs::write(&client_file, &first).expect("client");
    let yaml = common::proxy_yaml(
        "",
        &format!(
            "  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    access_log: false\n    routes:\n      \
             - host: \"*\"\n        backend: https://{backend}\n        backend_tls:\n          \
             ca_file: backend-ca.pem\n          client_certificate: client.pem\n          \
             server_name: backend.internal\n"
        ),
    );
    let (proxy, _reloads) = TestProxy::start_with_reload(tmp.path(), &yaml).await;
    let addr = proxy.addr();

    let (status, body) = get(addr, "/calls").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!("client={first_sha} sni=backend.internal path=/calls")
    );

    // `check` lists the client certificate like every other certificate.
    let check = std::process::Command::new(common::sniwalk_bin())
        .args(["check", "--config"])
        .arg(tmp.path().join("proxy.yaml"))
        .output()
        .expect("run check");
    let check_text = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        check_text.contains(&format!("https://{backend}")) && check_text.contains("client.pem"),
        "{check_text}"
    );

    // A renewed client certificate is used from the next connection on.
    replace(&client_file, &second);
    until_body_contains(addr, "/after-swap", &format!("client={second_sha}")).await;

    // A broken file keeps the last good certificate.
    replace(&client_file, "-----BEGIN PRIVATE KEY-----\ngarbage\n");
    let check = std::process::Command::new(common::sniwalk_bin())
        .args(["check", "--config"])
        .arg(tmp.path().join("proxy.yaml"))
        .output()
        .expect("run check");
    let check_text = String::from_utf8_lossy(&check.stdout).into_owned()
        + &String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{check_text}");
    assert!(check_text.contains("client.pem"), "{check_text}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, body) = get(addr, "/after-damage").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("client={second_sha}")), "{body}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backend_failures_are_502_and_insecure_skip_verify_connects() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let backend_ca = Ca::new("backend CA");
    let other_ca = Ca::new("some other CA");
    let client_ca = Ca::new("proxy clients CA");
    let (server_pem, _) = backend_ca.leaf("backend", &["backend.internal"]);
    let (stranger_pem, _) = other_ca.leaf("stranger", &["backend.internal"]);
    std::fs::write(tmp.path().join("backend-ca.pem"), &backend_ca.pem).expect("ca");
    // Wants a client certificate, none configured.
    let needs_cert = https_backend(&server_pem, Some(&client_ca.pem)).await;
    // Certificate from a CA the proxy does not trust.
    let untrusted = https_backend(&stranger_pem, None).await;
    // Trusted, but the proxy expects another name.
    let wrong_name = https_backend(&server_pem, None).await;
    // Untrusted, and the route says not to verify.
    let insecure = https_backend(&stranger_pem, None).await;
    let route = |path: &str, backend: SocketAddr, tls: &str| {
        format!(
            "      - host: \"*\"\n        path: {path}\n        backend: https://{backend}\n        \
             backend_tls: {tls}\n"
        )
    };
    let yaml = common::proxy_yaml(
        "",
        &format!(
            "  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    access_log: false\n    routes:\n{}{}{}{}",
            route(
                "/needs-cert",
                needs_cert,
                "{ ca_file: backend-ca.pem, server_name: backend.internal }"
            ),
            route(
                "/untrusted",
                untrusted,
                "{ ca_file: backend-ca.pem, server_name: backend.internal }"
            ),
            route(
                "/wrong-name",
                wrong_name,
                "{ ca_file: backend-ca.pem, server_name: other.internal }"
            ),
            route("/insecure", insecure, "{ insecure_skip_verify: true }"),
        ),
    );
    let proxy = TestProxy::start(tmp.path(), &yaml).await;
    let addr = proxy.addr();
    for path in ["/needs-cert", "/untrusted", "/wrong-name"] {
        let (status, body) = get(addr, path).await;
        assert_eq!(status, 502, "{path}: {body}");
    }
    let (status, body) = get(addr, "/insecure").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("sni=-"),
        "an IP address is not sent as SNI: {body}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_speaks_tls_with_a_client_certificate_to_its_backend() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let backend_ca = Ca::new("sip backend CA");
    let client_ca = Ca::new("proxy clients CA");
    let (server_pem, _) = backend_ca.leaf("sbc", &["sbc.internal"]);
    let (client_pem, client_sha) = client_ca.leaf("sniwalk", &[]);
    // Says which client certificate it saw, then echoes.
    let backend = tls_backend(
        &server_pem,
        Some(&client_ca.pem),
        |mut stream, client, _sni| async move {
            if stream
                .write_all(format!("{client}\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            let mut buf = [0u8; 1024];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = stream.shutdown().await;
        },
    )
    .await;
    std::fs::write(tmp.path().join("sbc-ca.pem"), &backend_ca.pem).expect("ca");
    std::fs::write(tmp.path().join("client.pem"), &client_pem).expect("client");
    let yaml = common::proxy_yaml(
        "",
        &format!(
            "  - name: sip\n    kind: tls\n    bind: 127.0.0.1:1\n    backend: {backend}\n    \
             backend_tls: {{ ca_file: sbc-ca.pem, client_certificate: client.pem, server_name: sbc.internal }}\n"
        ),
    );
    let proxy = TestProxy::start(tmp.path(), &yaml).await;
    let tcp = TcpStream::connect(proxy.addr()).await.expect("connect");
    let mut stream = tokio_rustls::TlsConnector::from(common::client_config(&[]))
        .connect(
            rustls::pki_types::ServerName::try_from("example.com").expect("name"),
            tcp,
        )
        .await
        .expect("handshake with sniwalk");
    stream
        .write_all(b"OPTIONS sip:sbc SIP/2.0\r\n")
        .await
        .expect("write");
    let expected = format!("{client_sha}\nOPTIONS sip:sbc SIP/2.0\r\n");
    let mut got = vec![0u8; expected.len()];
    common::within(
        Duration::from_secs(5),
        "the backend's answer",
        stream.read_exact(&mut got),
    )
    .await
    .expect("read");
    assert_eq!(String::from_utf8_lossy(&got), expected);
    drop(stream);
    proxy.stop().await;
}
