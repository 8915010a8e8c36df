//! Session resumption across instances, release build, 127.0.0.1 only:
//!
//!     cargo run --release --example ticket_bench
//!
//! Two in-process sniwalk instances share one `tls.ticket_keys_file`. One
//! client task does TLS 1.3 handshakes, each followed by one small request
//! (so the server's tickets reach the client), in three cases: full
//! handshakes on A; resumed handshakes on A (tickets from A); resumed
//! handshakes alternating A and B (every ticket comes from the other
//! instance). The cases run in 500 ms slices, interleaved over 8 rounds, so
//! a machine whose speed drifts slows them alike. Reports handshakes per
//! second, the share that resumed, and cross-instance / same-instance
//! (overall and per round). Bounded in time (12 s); stops by itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Each case runs in slices, interleaved round by round (in a rotating
/// order), so a drift of the machine's speed hits all cases alike.
const SLICE: Duration = Duration::from_millis(500);
const ROUNDS: usize = 8;

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("ticket.keys");
    sniwalk::tickets::rotate(&keys, 3).expect("keys");
    let a = instance(dir.path(), "a", &keys).await;
    let b = instance(dir.path(), "b", &keys).await;

    // (done, seconds, resumed) per case: full, same instance, across two.
    let cases: [(&[SocketAddr], bool); 3] = [(&[a], false), (&[a], true), (&[a, b], true)];
    let mut totals = [(0u64, 0f64, 0u64); 3];
    let mut ratios = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let mut rates = [0f64; 3];
        for k in 0..3 {
            let i = (round + k) % 3;
            let (done, secs, resumed) = case(cases[i].0, cases[i].1).await;
            totals[i].0 += done;
            totals[i].1 += secs;
            totals[i].2 += resumed;
            rates[i] = done as f64 / secs;
        }
        ratios.push(rates[2] / rates[1]);
    }
    ratios.sort_by(f64::total_cmp);
    let rate = |i: usize| totals[i].0 as f64 / totals[i].1;
    let share = |i: usize| totals[i].2 as f64 / totals[i].0.max(1) as f64 * 100.0;
    let (full, same, cross) = (rate(0), rate(1), rate(2));
    println!(
        "TLS 1.3 handshakes (+1 request each), one client task, {ROUNDS} rounds of {SLICE:?} per case, interleaved:"
    );
    println!("  full, one instance:            {full:8.0}/s");
    println!(
        "  resumed, same instance:        {same:8.0}/s ({:.1}% resumed)",
        share(1)
    );
    println!(
        "  resumed, across two instances: {cross:8.0}/s ({:.1}% resumed)",
        share(2)
    );
    println!(
        "  cross / same: {:.2}x (per round: min {:.2}x, median {:.2}x, max {:.2}x)   resumed / full: {:.2}x",
        cross / same,
        ratios[0],
        ratios[ROUNDS / 2],
        ratios[ROUNDS - 1],
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

/// Handshakes done in one slice, the seconds it took, and how many
/// resumed, cycling over `targets`.
async fn case(targets: &[SocketAddr], resume: bool) -> (u64, f64, u64) {
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
    while started.elapsed() < SLICE {
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
    (done, started.elapsed().as_secs_f64(), resumed)
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
