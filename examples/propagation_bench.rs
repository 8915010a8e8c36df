//! Certificate propagation through etcd, release build, 127.0.0.1 only:
//!
//!     cargo run --release --features etcd --example propagation_bench
//!
//! Starts its own etcd (Debian's `etcd`, on free loopback ports, fast
//! ticks, data in a temporary folder; killed by PID at the end, on an
//! error and on Ctrl-C) and three in-process sniwalk instances A, B and C
//! on it (`storage: etcd`, each with its own `state_dir`, every one
//! configuring `shop.example.com` without a certificate), and lets them
//! settle for a second. Then, 20 times:
//! makes a new self-signed certificate for `shop.example.com`, stores its
//! `certificate_pem` at `<prefix>certificates/shop.example.com` as instance
//! A would (one put through `sniwalk::storage`), and polls instance C
//! with real TLS handshakes (SNI `shop.example.com`) every 5 ms until it
//! serves the new leaf.
//!
//! Reports, per iteration and as median and max, the time from just
//! before the put to C's first handshake with the new leaf, split into
//! where it goes: the put itself; a watch of the bench's own on the same
//! prefix (opened once, before the settling second) seeing the change (what each instance's follower waits for);
//! C's cached file (`state_dir/certificates/shop.example.com.pem`) holding
//! it (polled every 1 ms); C switching (between the start of the last
//! handshake that still got the old leaf and the start of the first that
//! got the new one); and C's first handshake with the new leaf done, the
//! propagation time. Target: median < 500 ms, max < 1 s. Bounded in time
//! (2 min); stops by itself.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::DigitallySignedStruct;
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sniwalk::storage::{Change, Condition};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const DOMAIN: &str = "shop.example.com";
const PREFIX: &str = "/sniwalk/";
const ITERATIONS: usize = 20;
/// How often C is asked for its certificate.
const POLL: Duration = Duration::from_millis(5);
/// How often C's cached file is read.
const FILE_POLL: Duration = Duration::from_millis(1);
/// The longest one propagation may take before the bench gives up.
const GIVE_UP: Duration = Duration::from_secs(10);
/// Wait after the instances are ready, before the first certificate.
const SETTLE: Duration = Duration::from_secs(1);
/// Quiet time between iterations, longer than the reload task's file
/// debounce (250 ms), so each iteration starts from a settled instance.
const PAUSE: Duration = Duration::from_millis(600);
/// The whole bench, etcd and instances included.
const LIMIT: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::Builder::new()
        .prefix("sniwalk-propagation-")
        .tempdir()
        .expect("a temporary folder for etcd and the instances");
    // Dropped (etcd killed by PID) whichever way the block below ends; a
    // panic unwinds through here too.
    let mut etcd = Etcd::start(dir.path()).await;
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(LIMIT, bench(dir.path(), &etcd)) => {
            outcome.map_err(|_| format!("not done within {LIMIT:?}"))
        }
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
    };
    etcd.stop();
    if let Err(why) = outcome {
        eprintln!("propagation_bench: {why}");
        std::process::exit(1);
    }
}

async fn bench(dir: &Path, etcd: &Etcd) {
    let started = Instant::now();
    let a = Instance::start(dir, "a", etcd).await;
    let b = Instance::start(dir, "b", etcd).await;
    let c = Instance::start(dir, "c", etcd).await;
    println!(
        "etcd {} and instances A, B, C ready in {:.2} s",
        etcd.endpoint(),
        started.elapsed().as_secs_f64()
    );
    // The storage as instance A opens it (its own etcd connection).
    let storage = sniwalk::storage::open(&a.config)
        .await
        .expect("open A's storage (etcd)");
    let engine = storage.engine_arc();
    let key = sniwalk::storage::keys::certificate(DOMAIN);
    let cached = c.config.state_layout().stored_certificate(DOMAIN);
    let client = client_config();
    // A watch of the bench's own on the same prefix (when a follower could
    // see a change), kept for the whole run: every value put at `key`,
    // with when it arrived.
    let listing = engine
        .list(sniwalk::storage::keys::CERTIFICATES)
        .await
        .expect("list certificates/");
    let mut changes = engine.watch(sniwalk::storage::keys::CERTIFICATES, listing.revision);
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<(Vec<u8>, Instant)>();
    let watched_key = key.clone();
    let watcher = tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            if let Change::Put { key, value, .. } = change
                && key == watched_key
                && seen_tx.send((value, Instant::now())).is_err()
            {
                return;
            }
        }
    });
    // Steady state: every watch (the instances' followers, started a few
    // ms ago while the others wrote their start-up keys, and this one) is
    // in step with etcd. A watch that starts behind etcd's revision gets
    // its events from etcd's catch-up pass, which runs every 100 ms.
    tokio::time::sleep(SETTLE).await;

    println!(
        "{:>3} {:>7} {:>8} {:>10} {:>15} {:>10} {:>6}",
        "#", "put ms", "watch ms", "C cache ms", "C switched ms", "C serves", "polls"
    );
    let mut rows: Vec<Row> = Vec::with_capacity(ITERATIONS);
    for i in 0..ITERATIONS {
        let (pem, sha256) = self_signed(DOMAIN);
        // C's cached file holding the new text.
        let (file_tx, file_rx) = oneshot::channel::<Instant>();
        let file_wanted = pem.clone().into_bytes();
        let file_path = cached.clone();
        let file_poller = tokio::spawn(async move {
            loop {
                if std::fs::read(&file_path).is_ok_and(|bytes| bytes == file_wanted) {
                    let _ = file_tx.send(Instant::now());
                    return;
                }
                tokio::time::sleep(FILE_POLL).await;
            }
        });

        let t0 = Instant::now();
        engine
            .put(&key, pem.clone().into_bytes(), Condition::Always)
            .await
            .expect("put the certificate into etcd");
        let put = t0.elapsed();
        let mut polls = 0u32;
        // When the last handshake that still got the old leaf started, and
        // the first that got the new one: C switched between the two.
        let mut last_old = None;
        let (first_new, served) = loop {
            polls += 1;
            let asked = t0.elapsed();
            match served_leaf(c.addr, &client).await {
                Ok(leaf) if leaf == sha256 => break (asked, t0.elapsed()),
                Ok(_) => last_old = Some(asked),
                Err(_) => {}
            }
            assert!(
                t0.elapsed() < GIVE_UP,
                "C did not serve the new certificate within {GIVE_UP:?}"
            );
            tokio::time::sleep(POLL).await;
        };
        let since = |at: Result<Result<Instant, _>, _>| -> Option<Duration> {
            at.ok()
                .and_then(Result::ok)
                .map(|at| at.saturating_duration_since(t0))
        };
        let wanted = pem.as_bytes();
        let watch = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some((value, at)) = seen.recv().await {
                if value == wanted {
                    return Some(at.saturating_duration_since(t0));
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let file = since(tokio::time::timeout(Duration::from_secs(2), file_rx).await);
        file_poller.abort();
        let row = Row {
            put,
            watch,
            file,
            first_new,
            served,
        };
        println!(
            "{:>3} {:>7.1} {:>8} {:>10} {:>15} {:>7.1} ms {:>6}",
            i + 1,
            ms(put),
            opt_ms(watch),
            opt_ms(file),
            format!("{} .. {:.1}", opt_ms(last_old), ms(first_new)),
            ms(served),
            polls
        );
        rows.push(row);
        tokio::time::sleep(PAUSE).await;
    }

    let column = |f: &dyn Fn(&Row) -> Option<Duration>| -> Vec<Duration> {
        let mut v: Vec<Duration> = rows.iter().filter_map(f).collect();
        v.sort();
        v
    };
    let summary = |name: &str, v: Vec<Duration>| {
        if v.is_empty() {
            println!("  {name:<34} -");
            return;
        }
        println!(
            "  {name:<34} median {:7.1} ms   min {:7.1} ms   max {:7.1} ms   (n={})",
            ms(median(&v)),
            ms(v[0]),
            ms(v[v.len() - 1]),
            v.len()
        );
    };
    println!(
        "propagation to C, {ITERATIONS} certificates, C polled every {POLL:?} (times from just before the put):"
    );
    summary("put returned", column(&|r| Some(r.put)));
    summary("a watch saw the change", column(&|r| r.watch));
    summary("C's cached file written", column(&|r| r.file));
    summary("C switched, at the latest", column(&|r| Some(r.first_new)));
    summary("C served the new leaf", column(&|r| Some(r.served)));
    summary(
        "  of which cache -> served",
        column(&|r| r.file.map(|f| r.served.saturating_sub(f))),
    );
    let served = column(&|r| Some(r.served));
    let (median_served, max_served) = (median(&served), served[served.len() - 1]);
    println!(
        "  target: median < 500 ms ({}), max < 1 s ({})",
        verdict(median_served < Duration::from_millis(500)),
        verdict(max_served < Duration::from_secs(1)),
    );

    watcher.abort();
    drop(storage);
    for instance in [a, b, c] {
        instance.stop().await;
    }
}

/// One iteration's times, from just before the put.
struct Row {
    put: Duration,
    watch: Option<Duration>,
    file: Option<Duration>,
    /// When the first poll that got the new leaf started.
    first_new: Duration,
    served: Duration,
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_string(), |d| format!("{:.1}", ms(d)))
}

fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

/// A fresh self-signed ECDSA P-256 certificate for `name`: the
/// `certificate_pem` text (key, then certificate) and the leaf's SHA-256.
fn self_signed(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key pair");
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).expect("certificate parameters");
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, name);
    params.distinguished_name = dn;
    let certificate = params.self_signed(&key).expect("self-signed certificate");
    (
        format!("{}{}", key.serialize_pem(), certificate.pem()),
        sniwalk::pem::sha256_fingerprint(certificate.der()),
    )
}

/// One in-process sniwalk instance on etcd.
struct Instance {
    config: sniwalk::config::Config,
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), sniwalk::RunError>>,
}

impl Instance {
    /// Writes `dir/<name>/proxy.yaml`, starts the instance on a port of
    /// its own and returns once it answers a TLS handshake.
    async fn start(dir: &Path, name: &str, etcd: &Etcd) -> Instance {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).expect("the instance's folder");
        let yaml = format!(
            "master_domain: example.com\nstate_dir: state\n\
             storage:\n  kind: etcd\n  endpoints: [\"{}\"]\n  prefix: {PREFIX}\n  lease: 2s\n\
             domains:\n  example.com: {{}}\n  {DOMAIN}: {{}}\n\
             listeners:\n  - name: web\n    kind: https\n    bind: 127.0.0.1:1\n    \
             access_log: false\n    routes:\n      - {{ host: \"*\", respond: {{ body: ok }} }}\n",
            etcd.endpoint()
        );
        let path = folder.join("proxy.yaml");
        std::fs::write(&path, yaml).expect("write proxy.yaml");
        let config = sniwalk::config::Config::load(&path).expect("the generated proxy.yaml loads");
        let socket = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = socket.local_addr().expect("the listener's address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(sniwalk::run(config.clone(), vec![socket], async move {
            let _ = stop.await;
        }));
        let client = client_config();
        let deadline = Instant::now() + Duration::from_secs(15);
        while served_leaf(addr, &client).await.is_err() {
            if task.is_finished() {
                let outcome = task.await;
                panic!("instance {name} stopped at start: {outcome:?}");
            }
            assert!(
                Instant::now() < deadline,
                "instance {name} answers no handshake within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Instance {
            config,
            addr,
            shutdown,
            task,
        }
    }

    /// Shuts the instance down (as SIGTERM would) and waits up to 10 s.
    async fn stop(self) {
        let _ = self.shutdown.send(());
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("an instance stopped with an error: {e}"),
            Ok(Err(e)) => eprintln!("an instance's task failed: {e}"),
            Err(_) => eprintln!("an instance did not stop within 10 s"),
        }
    }
}

/// A TLS client that accepts any certificate and never resumes (so each
/// handshake shows the certificate served now).
fn client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("rustls's default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// One handshake with SNI [`DOMAIN`]: the SHA-256 of the leaf served.
async fn served_leaf(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
) -> Result<String, String> {
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from(DOMAIN).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(client.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let chain = stream
            .get_ref()
            .1
            .peer_certificates()
            .ok_or("no certificate served")?;
        Ok(sniwalk::pem::sha256_fingerprint(chain[0].as_ref()))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .unwrap_or_else(|_| Err("no handshake within 5 s".into()))
}

/// A single-member etcd on free loopback ports, data in `dir/etcd`; killed
/// by PID when dropped.
struct Etcd {
    child: Option<Child>,
    client_port: u16,
    log: PathBuf,
}

impl Etcd {
    /// Spawns `etcd` and waits (up to 15 s) until `/health` says true.
    async fn start(dir: &Path) -> Etcd {
        let [client_port, peer_port] = free_ports();
        let log = dir.join("etcd.log");
        let log_file = std::fs::File::create(&log).expect("create etcd.log");
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut command = Command::new("etcd");
        command
            .arg("--name=bench")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=bench={peer_url}"))
            .args([
                "--initial-cluster-state=new",
                "--initial-cluster-token=bench",
            ])
            .args(["--heartbeat-interval=10", "--election-timeout=100"])
            .args(["--logger=zap", "--log-level=error", "--log-outputs=stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        // etcd reads every ETCD_* variable as a flag.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD") {
                command.env_remove(name);
            }
        }
        let child = command
            .spawn()
            .expect("spawn etcd (Debian: apt-get install etcd-server)");
        let mut etcd = Etcd {
            child: Some(child),
            client_port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(child) = etcd.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("etcd exited at start ({status}):\n{}", etcd.logs());
            }
            if etcd.healthy().await {
                return etcd;
            }
            assert!(
                Instant::now() < deadline,
                "etcd not healthy within 15 s:\n{}",
                etcd.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One `GET /health`: whether it answered `"health":"true"`.
    async fn healthy(&self) -> bool {
        let ask = async {
            let mut stream = TcpStream::connect(("127.0.0.1", self.client_port))
                .await
                .ok()?;
            let request = format!(
                "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.client_port
            );
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.ok()?;
            let answer = String::from_utf8_lossy(&answer);
            Some(answer.starts_with("HTTP/1.1 200") && answer.contains(r#""health":"true""#))
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), ask).await,
            Ok(Some(true))
        )
    }

    /// Kills etcd (SIGKILL, by its PID) and reaps it. Idempotent.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Distinct ports on 127.0.0.1 free a moment ago (bound together), never
/// etcd's well-known 2379/2380.
fn free_ports<const N: usize>() -> [u16; N] {
    loop {
        let listeners: Vec<StdTcpListener> = (0..N)
            .map(|_| StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
            .collect();
        let ports: [u16; N] = std::array::from_fn(|i| {
            listeners[i]
                .local_addr()
                .expect("a bound listener's address")
                .port()
        });
        if !ports.iter().any(|p| *p == 2379 || *p == 2380) {
            return ports;
        }
    }
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
