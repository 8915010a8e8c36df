//! Session resumption across instances, release build, 127.0.0.1 only:
//!
//!     cargo run --release --example ticket_bench
//!
//! Two in-process sniwalk instances share one `tls.ticket_keys_file`. One
//! client task does TLS 1.3 handshakes, each followed by one small request
//! (so the server's tickets reach the client), for a fixed time per case:
//! full handshakes on A; resumed handshakes on A (tickets from A); resumed
//! handshakes alternating A and B (every ticket comes from the other
//! instance). Reports handshakes per second, the share that resumed, and
//! cross-instance / same-instance. Bounded in time; stops by itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const PER_CASE: Duration = Duration::from_secs(4);

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("ticket.keys");
    sniwalk::tickets::rotate(&keys, 3).expect("keys");
    let a = instance(dir.path(), "a", &keys).await;
    let b = instance(dir.path(), "b", &keys).await;

    let (full, _) = case(&[a], false).await;
    let (same, same_resumed) = case(&[a], true).await;
    let (cross, cross_resumed) = case(&[a, b], true).await;
    println!("TLS 1.3 handshakes (+1 request each), one client task, {PER_CASE:?} per case:");
    println!("  full, one instance:            {full:8.0}/s");
    println!(
        "  resumed, same instance:        {same:8.0}/s ({:.1}% resumed)",
        same_resumed * 100.0
    );
    println!(
        "  resumed, across two instances: {cross:8.0}/s ({:.1}% resumed)",
        cross_resumed * 100.0
    );
    println!(
        "  cross / same: {:.2}x   resumed / full: {:.2}x",
        cross / same,
        same / full
    );
}

async fn instance(dir: &std::path::Path, name: &str, keys: &std::path::Path) -> SocketAddr {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).expect("dir");
    let yaml = format!(
        "master_domain: example.com\nstate_dir: state\ndomains:\n  example.com: {{}}\n\
         tls:\n  ticket_keys_file: {}\nlisteners:\n  - name: web\n    kind: https\n    \
         bind: 127.0.0.1:1\n    access_log: false\n    routes:\n      - {{ host: \"*\", respond: {{ body: ok }} }}\n",
        keys.display()
    );
    let path = folder.join("proxy.yaml");
    std::fs::write(&path, yaml).expect("config");
    let config = sniwalk::config::Config::load(&path).expect("valid");
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(sniwalk::run(
        config,
        vec![socket],
        std::future::pending::<()>(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    addr
}

/// Handshakes per second and the share resumed, cycling over `targets`.
async fn case(targets: &[SocketAddr], resume: bool) -> (f64, f64) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.resumption = if resume {
        Resumption::store(Arc::new(ClientSessionMemoryCache::new(256)))
    } else {
        Resumption::disabled()
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("example.com").expect("name");
    let started = Instant::now();
    let (mut done, mut resumed) = (0u64, 0u64);
    while started.elapsed() < PER_CASE {
        let target = targets[done as usize % targets.len()];
        let tcp = TcpStream::connect(target).await.expect("connect");
        let mut stream = connector
            .connect(name.clone(), tcp)
            .await
            .expect("handshake");
        if stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            resumed += 1;
        }
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
        done += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    (done as f64 / secs, resumed as f64 / done.max(1) as f64)
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
