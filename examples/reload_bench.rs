//! Measures hot reload, release build, on 127.0.0.1 only:
//!
//!     cargo run --release --example reload_bench
//!
//! 1. the time from renaming a new `server.key` + `server.crt` into a
//!    certdir to the first handshake that serves the new leaf (median and
//!    max over 50 swaps, default debounce);
//! 2. handshake throughput of 4 client tasks during a swap storm (a swap
//!    every 300 ms, each one picked up: the debounce is 250 ms) against the
//!    same without swaps;
//! 3. the cost of rebuilding a snapshot of 100,000 domains when one
//!    certificate file changed (the file watcher's path), and when nothing
//!    is known (SIGHUP and the periodic re-scan: every file is stat'ed).
//!
//! Everything is bounded in count and time and stops by itself.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sniwalk::config::Config;
use sniwalk::snapshot::{Changes, DefaultPolicy, Snapshot, generate_self_signed_pem};

const SWAPS: usize = 50;
const CLIENTS: usize = 4;
const STORM: Duration = Duration::from_secs(6);
/// Time between swaps in the storm: just above the debounce, so every swap
/// is served (faster renames postpone the debounced event until they pause).
const STORM_GAP: Duration = Duration::from_millis(300);
const DOMAINS: usize = 100_000;
const DISTINCT_FILES: usize = 1_000;

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("sniwalk-reload-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    swap_latency_and_storm(&dir).await;
    rebuild_cost(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Key text, certificate text and leaf fingerprint of one certificate.
type Pair = (String, String, String);

/// A fresh certificate for `name`.
fn pair(name: &str) -> Pair {
    let text = generate_self_signed_pem(&[name.to_string()], 30, false).expect("generate");
    let at = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("certificate block");
    let parsed = sniwalk::pem::parse_certificate_pem(&text).expect("parse");
    (
        text[..at].to_string(),
        text[at..].to_string(),
        parsed.leaf.sha256,
    )
}

/// Installs a pair the way editors and deploy tools do: temporary files,
/// then rename over, key first.
fn install(certdir: &Path, key: &str, cert: &str) {
    std::fs::write(certdir.join(".server.key.new"), key).expect("write key");
    std::fs::write(certdir.join(".server.crt.new"), cert).expect("write cert");
    std::fs::rename(certdir.join(".server.key.new"), certdir.join("server.key"))
        .expect("rename key");
    std::fs::rename(certdir.join(".server.crt.new"), certdir.join("server.crt"))
        .expect("rename cert");
}

async fn swap_latency_and_storm(dir: &Path) {
    let certdir = dir.join("certs/ws");
    std::fs::create_dir_all(&certdir).expect("certdir");
    let pairs: Vec<_> = (0..4).map(|i| pair(&format!("swap{i}.test"))).collect();
    install(&certdir, &pairs[0].0, &pairs[0].1);
    let config_path = dir.join("proxy.yaml");
    std::fs::write(
        &config_path,
        "master_domain: bench.test\ndomains:\n  bench.test: {}\nlisteners:\n  - name: ws\n    kind: https\n    \
         bind: 127.0.0.1:1\n    certdir: certs/ws\n    access_log: false\n    routes:\n      - host: \"*\"\n        \
         respond: { status: 200, body: ok }\n",
    )
    .expect("config");
    let config = Config::load(&config_path).expect("config loads");
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let proxy = tokio::spawn(sniwalk::run(config, vec![socket], async move {
        let _ = stop_rx.await;
    }));
    let client = tls_client();
    wait_for(&client, addr, &pairs[0].2, Duration::from_secs(5)).await;

    // 1. rename to first handshake serving the new leaf
    let mut latencies = Vec::with_capacity(SWAPS);
    for i in 0..SWAPS {
        let (key, cert, sha) = &pairs[(i + 1) % pairs.len()];
        install(&certdir, key, cert);
        let started = Instant::now();
        wait_for(&client, addr, sha, Duration::from_secs(10)).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "rename -> first handshake with the new leaf, {SWAPS} swaps: median {:.0} ms, max {:.0} ms",
        latencies[SWAPS / 2].as_secs_f64() * 1e3,
        latencies[SWAPS - 1].as_secs_f64() * 1e3
    );

    // 2. throughput with and without a swap storm
    let valid: Arc<HashSet<String>> = Arc::new(pairs.iter().map(|p| p.2.clone()).collect());
    let quiet = handshake_load(&client, addr, &valid, None).await;
    let storm = handshake_load(&client, addr, &valid, Some((&certdir, pairs.as_slice()))).await;
    println!(
        "handshakes/s with {CLIENTS} clients: {:.0} without swaps, {:.0} during a swap every {} ms ({} swaps, {} leaf changes seen per client): {:.2}x; failures {} and {}",
        quiet.0,
        storm.0,
        STORM_GAP.as_millis(),
        storm.2,
        storm.3,
        storm.0 / quiet.0,
        quiet.1,
        storm.1
    );
    let _ = stop_tx.send(());
    let _ = proxy.await;
}

/// Runs the client tasks for [`STORM`]; returns (handshakes/s, failures,
/// swaps done, leaf changes each client saw).
async fn handshake_load(
    client: &Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    valid: &Arc<HashSet<String>>,
    swaps: Option<(&Path, &[Pair])>,
) -> (f64, u64, usize, u64) {
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let changes_seen = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, valid, done, count, failures, changes_seen) = (
            client.clone(),
            valid.clone(),
            done.clone(),
            count.clone(),
            failures.clone(),
            changes_seen.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut last = String::new();
            while !done.load(Ordering::Relaxed) {
                match leaf(&client, addr).await {
                    Some(sha) if valid.contains(&sha) => {
                        if sha != last {
                            changes_seen.fetch_add(1, Ordering::Relaxed);
                            last = sha;
                        }
                        count.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let started = Instant::now();
    let mut swapped = 0;
    while started.elapsed() < STORM {
        match swaps {
            Some((certdir, pairs)) => {
                let (key, cert, _) = &pairs[swapped % pairs.len()];
                let certdir = certdir.to_path_buf();
                let (key, cert) = (key.clone(), cert.clone());
                tokio::task::spawn_blocking(move || install(&certdir, &key, &cert))
                    .await
                    .expect("install");
                swapped += 1;
                tokio::time::sleep(STORM_GAP).await;
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    done.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    (
        count.load(Ordering::Relaxed) as f64 / elapsed,
        failures.load(Ordering::Relaxed),
        swapped,
        changes_seen.load(Ordering::Relaxed) / CLIENTS as u64,
    )
}

async fn wait_for(
    client: &Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    sha: &str,
    limit: Duration,
) {
    let started = Instant::now();
    loop {
        if leaf(client, addr).await.as_deref() == Some(sha) {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "the new certificate was not served within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One full handshake; the served leaf's fingerprint.
async fn leaf(client: &Arc<rustls::ClientConfig>, addr: std::net::SocketAddr) -> Option<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from("bench.test").ok()?;
    let tls = tokio_rustls::TlsConnector::from(client.clone())
        .connect(name, tcp)
        .await
        .ok()?;
    let der = tls.get_ref().1.peer_certificates()?.first()?.clone();
    Some(sniwalk::pem::sha256_fingerprint(der.as_ref()))
}

fn rebuild_cost(dir: &Path) {
    let certs = dir.join("domains");
    std::fs::create_dir_all(&certs).expect("dir");
    let files: Vec<PathBuf> = (0..DISTINCT_FILES)
        .map(|i| {
            let path = certs.join(format!("c{i}.pem"));
            let text = generate_self_signed_pem(&[format!("c{i}.example.com")], 30, false)
                .expect("generate");
            std::fs::write(&path, text).expect("write");
            path
        })
        .collect();
    let mut yaml =
        String::from("master_domain: example.com\nstate_dir: state\ndomains:\n  example.com: {}\n");
    for i in 1..DOMAINS {
        yaml.push_str(&format!(
            "  d{i:06}.example.com:\n    certificate_file: domains/c{}.pem\n",
            i % DISTINCT_FILES
        ));
    }
    let config_path = dir.join("many.yaml");
    std::fs::write(&config_path, yaml).expect("config");
    let config = Config::load(&config_path).expect("config loads");
    let now = sniwalk::unix_now();
    let started = Instant::now();
    let first = Snapshot::build(&config, None, DefaultPolicy::InMemory, now).expect("build");
    let cold = started.elapsed();

    let changed_file = &files[7];
    let text =
        generate_self_signed_pem(&["c7.example.com".to_string()], 30, false).expect("generate");
    std::fs::write(changed_file, text).expect("rewrite");
    let changed: HashSet<PathBuf> = [changed_file.clone()].into();
    let mut one = Vec::new();
    let mut all = Vec::new();
    let mut previous = first;
    for _ in 0..5 {
        let started = Instant::now();
        let next = Snapshot::build_changed(
            &config,
            Some(&previous),
            Changes(Some(&changed)),
            DefaultPolicy::InMemory,
            now,
        )
        .expect("build");
        one.push(started.elapsed());
        let started = Instant::now();
        let rescanned = Snapshot::build_changed(
            &config,
            Some(&next),
            Changes(None),
            DefaultPolicy::InMemory,
            now,
        )
        .expect("build");
        all.push(started.elapsed());
        previous = rescanned;
    }
    one.sort();
    all.sort();
    println!(
        "snapshot of {DOMAINS} domains ({DISTINCT_FILES} distinct certificate files): cold build {:.0} ms; \
         rebuild after one file changed {:.0} ms (median of 5); full re-scan (stat every file) {:.0} ms",
        cold.as_secs_f64() * 1e3,
        one[2].as_secs_f64() * 1e3,
        all[2].as_secs_f64() * 1e3
    );
}

/// Accepts any server certificate: the benchmark checks fingerprints.
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

fn tls_client() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    // Full handshakes every time: no resumption.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}
