//! Handshake cost with etcd storage against dir storage, and session
//! resumption across instances with ticket keys shared through etcd;
//! release build, 127.0.0.1 only:
//!
//!     cargo run --release --features etcd --example storage_handshake_bench
//!
//! Starts its own etcd (Debian's `etcd`, on free loopback ports, fast
//! ticks, data in a temporary folder; killed by PID at the end, on an
//! error and on Ctrl-C) and three in-process sniwalk instances with the
//! same configuration but for `storage:` — D on `storage: dir`, E and F on
//! `storage: etcd` (lease 2 s, no `tls.ticket_keys_file`, so E and F share
//! session ticket keys through `<prefix>tickets/keys`). One certificate
//! for `shop.example.com` is stored through each instance's storage
//! (D's state directory, etcd for E and F) and served by all three.
//!
//! Each instance runs on an OS thread of its own with a current-thread
//! tokio runtime, so the CPU time of that thread
//! (`/proc/<pid>/task/<tid>/schedstat`) is the instance's CPU time: every
//! connection task, and, for E and F, the etcd client's lease keep-alive
//! and watches. One client task (on the main thread) does TLS 1.3
//! handshakes with SNI `shop.example.com`, each followed by one small
//! request (so the server's tickets reach the client), in five cases:
//!
//! 1. full handshakes on D (dir);
//! 2. full handshakes on E (etcd);
//! 3. resumed handshakes on E (tickets from E);
//! 4. resumed handshakes alternating E and F (every ticket comes from the
//!    other instance, sealed with the key shared through etcd);
//! 5. the control for 4: resumed handshakes alternating E and F, each with
//!    a session cache of its own (every ticket comes from the same
//!    instance). Against case 3 it shows what alternating between two
//!    server threads costs by itself; against case 4, what a ticket from
//!    the other instance costs.
//!
//! The cases run in 500 ms slices interleaved over 8 rounds (in a rotating
//! order), so a drift of this machine's speed hits them alike. Before
//! measuring it waits until a ticket from E resumes on F (the instances
//! take the shared keys from their watch a moment after they start).
//! Reports handshakes per second, the instances' CPU µs per handshake, the
//! share that resumed, and the ratios etcd / dir (target ≤ 1.02x),
//! cross-instance / same-instance (target ≥ 0.95x) and cross-instance /
//! control, overall and per round. Bounded in time (2 min); stops by
//! itself.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sniwalk::storage::Condition;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const DOMAIN: &str = "shop.example.com";
const PREFIX: &str = "/sniwalk/";
/// Each case runs in slices, interleaved round by round.
const SLICE: Duration = Duration::from_millis(500);
const ROUNDS: usize = 8;
/// The whole bench, etcd and instances included.
const LIMIT: Duration = Duration::from_secs(120);

/// The cases, in the order of the report.
const CASES: [&str; 5] = [
    "full, dir storage (D)",
    "full, etcd storage (E)",
    "resumed, same instance (E)",
    "resumed, across instances (E, F)",
    "resumed, E and F, own tickets",
];

/// How a case's client resumes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// Never: full handshakes.
    No,
    /// One session cache for every target: a ticket from one instance is
    /// offered to the next.
    Shared,
    /// A session cache per target: each instance gets its own tickets.
    PerTarget,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::Builder::new()
        .prefix("sniwalk-storage-hs-")
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
        eprintln!("storage_handshake_bench: {why}");
        std::process::exit(1);
    }
}

async fn bench(dir: &Path, etcd: &Etcd) {
    let (pem, sha256) = self_signed(DOMAIN);
    let d = Instance::start(dir, "d", None, &pem).await;
    let e = Instance::start(dir, "e", Some(etcd), &pem).await;
    let f = Instance::start(dir, "f", Some(etcd), &pem).await;
    for (name, instance) in [("D", &d), ("E", &e), ("F", &f)] {
        wait_for_leaf(name, instance.addr, &sha256).await;
    }
    // The shared ticket keys: one instance writes them, both follow.
    let waited = Instant::now();
    let mut tries = 0u32;
    loop {
        tries += 1;
        let client = connector(true);
        let _ = handshake(&client, e.addr).await;
        if handshake(&client, f.addr).await == Some(true) {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "no ticket from E resumed on F within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "D (dir), E and F (etcd {}) serve the same leaf; a ticket from E resumed on F after {:.2} s ({tries} tries)",
        etcd.endpoint(),
        waited.elapsed().as_secs_f64()
    );

    let cases: [(Vec<&Instance>, Resume); 5] = [
        (vec![&d], Resume::No),
        (vec![&e], Resume::No),
        (vec![&e], Resume::Shared),
        (vec![&e, &f], Resume::Shared),
        (vec![&e, &f], Resume::PerTarget),
    ];
    let mut totals = [Slice::default(); 5];
    // Per round: etcd / dir (CPU per handshake, rate), cross / same (rate,
    // CPU per handshake), cross / control (rate, CPU per handshake).
    let mut per_round: [Vec<f64>; 6] = Default::default();
    for round in 0..ROUNDS {
        let mut slices = [Slice::default(); 5];
        for k in 0..cases.len() {
            let i = (round + k) % cases.len();
            let slice = run_slice(&cases[i].0, cases[i].1).await;
            totals[i].add(&slice);
            slices[i] = slice;
        }
        per_round[0].push(slices[1].cpu_us() / slices[0].cpu_us());
        per_round[1].push(slices[1].rate() / slices[0].rate());
        per_round[2].push(slices[3].rate() / slices[2].rate());
        per_round[3].push(slices[3].cpu_us() / slices[2].cpu_us());
        per_round[4].push(slices[3].rate() / slices[4].rate());
        per_round[5].push(slices[3].cpu_us() / slices[4].cpu_us());
    }

    println!(
        "TLS 1.3 handshakes (+1 request each), SNI {DOMAIN}, one client task, {ROUNDS} rounds of {SLICE:?} per case, interleaved:"
    );
    for (name, total) in CASES.iter().zip(&totals) {
        println!(
            "  {name:<34} {:7.0}/s  {:6.1} µs CPU/hs  {:5.1}% resumed  ({} handshakes)",
            total.rate(),
            total.cpu_us(),
            total.resumed_share(),
            total.done
        );
    }
    let spread = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!(
            "per round: min {:.2}x, median {:.2}x, max {:.2}x",
            v[0],
            (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0,
            v[v.len() - 1]
        )
    };
    let [
        mut cpu_ratio,
        mut rate_ratio,
        mut cross_rate,
        mut cross_cpu,
        mut control_rate,
        mut control_cpu,
    ] = per_round;
    println!(
        "  etcd / dir, CPU per full handshake: {:.3}x ({}); target <= 1.02x",
        totals[1].cpu_us() / totals[0].cpu_us(),
        spread(&mut cpu_ratio)
    );
    println!(
        "  etcd / dir, full handshakes per second: {:.3}x ({})",
        totals[1].rate() / totals[0].rate(),
        spread(&mut rate_ratio)
    );
    println!(
        "  cross / same instance, resumed handshakes per second: {:.3}x ({}); target >= 0.95x",
        totals[3].rate() / totals[2].rate(),
        spread(&mut cross_rate)
    );
    println!(
        "  cross / same instance, CPU per resumed handshake: {:.3}x ({})",
        totals[3].cpu_us() / totals[2].cpu_us(),
        spread(&mut cross_cpu)
    );
    println!(
        "  cross / control (E and F, own tickets), resumed handshakes per second: {:.3}x ({})",
        totals[3].rate() / totals[4].rate(),
        spread(&mut control_rate)
    );
    println!(
        "  cross / control, CPU per resumed handshake: {:.3}x ({})",
        totals[3].cpu_us() / totals[4].cpu_us(),
        spread(&mut control_cpu)
    );
    println!(
        "  resumed / full on E: rate {:.2}x, CPU per handshake {:.2}x",
        totals[2].rate() / totals[1].rate(),
        totals[2].cpu_us() / totals[1].cpu_us()
    );

    for instance in [d, e, f] {
        instance.stop().await;
    }
}

/// What one slice did.
#[derive(Clone, Copy, Default)]
struct Slice {
    done: u64,
    resumed: u64,
    seconds: f64,
    /// CPU time of the instances' threads, nanoseconds.
    cpu_ns: u64,
}

impl Slice {
    fn add(&mut self, other: &Slice) {
        self.done += other.done;
        self.resumed += other.resumed;
        self.seconds += other.seconds;
        self.cpu_ns += other.cpu_ns;
    }
    fn rate(&self) -> f64 {
        self.done as f64 / self.seconds
    }
    fn cpu_us(&self) -> f64 {
        self.cpu_ns as f64 / 1000.0 / self.done.max(1) as f64
    }
    fn resumed_share(&self) -> f64 {
        self.resumed as f64 / self.done.max(1) as f64 * 100.0
    }
}

/// Handshakes for one slice, cycling over `targets`, with a client that
/// resumes as `resume` says; the CPU time of the targets' threads
/// meanwhile.
async fn run_slice(targets: &[&Instance], resume: Resume) -> Slice {
    let clients: Vec<tokio_rustls::TlsConnector> = match resume {
        Resume::No => vec![connector(false)],
        Resume::Shared => vec![connector(true)],
        Resume::PerTarget => targets.iter().map(|_| connector(true)).collect(),
    };
    let cpu_before: u64 = targets.iter().map(|t| t.cpu_ns()).sum();
    let started = Instant::now();
    let (mut done, mut resumed) = (0u64, 0u64);
    while started.elapsed() < SLICE {
        let turn = done as usize % targets.len();
        let client = &clients[turn % clients.len()];
        let was_resumed = handshake(client, targets[turn].addr)
            .await
            .expect("handshake and request");
        resumed += u64::from(was_resumed);
        done += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after: u64 = targets.iter().map(|t| t.cpu_ns()).sum();
    Slice {
        done,
        resumed,
        seconds,
        cpu_ns: cpu_after.saturating_sub(cpu_before),
    }
}

/// A TLS 1.3 client accepting any certificate, resuming (a session cache
/// of its own) or not.
fn connector(resume: bool) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.resumption = if resume {
        Resumption::store(Arc::new(ClientSessionMemoryCache::new(256)))
    } else {
        Resumption::disabled()
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One handshake with SNI [`DOMAIN`] and one request read to its end:
/// whether the handshake resumed; `None` when it failed.
async fn handshake(client: &tokio_rustls::TlsConnector, addr: SocketAddr) -> Option<bool> {
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let name = ServerName::try_from(DOMAIN).ok()?;
        let mut stream = client.connect(name, tcp).await.ok()?;
        let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: shop.example.com\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        answer.starts_with(b"HTTP/1.1 200").then_some(resumed)
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

/// Waits (up to 15 s) until `addr` serves the leaf `sha256` for [`DOMAIN`].
async fn wait_for_leaf(name: &str, addr: SocketAddr, sha256: &str) {
    let client = connector(false);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let served = async {
            let tcp = TcpStream::connect(addr).await.ok()?;
            let stream = client
                .connect(ServerName::try_from(DOMAIN).ok()?, tcp)
                .await
                .ok()?;
            let chain = stream.get_ref().1.peer_certificates()?;
            Some(sniwalk::pem::sha256_fingerprint(chain[0].as_ref()))
        };
        if tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .ok()
            .flatten()
            .as_deref()
            == Some(sha256)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "instance {name} does not serve the stored certificate within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
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

/// One sniwalk instance on a thread of its own (a current-thread tokio
/// runtime), so its CPU time can be read.
struct Instance {
    addr: SocketAddr,
    /// `/proc/<pid>/task/<tid>/schedstat` of its thread.
    schedstat: PathBuf,
    shutdown: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Instance {
    /// Writes `dir/<name>/proxy.yaml` (`storage: etcd` on `etcd`, else
    /// `storage: dir`), stores `pem` as [`DOMAIN`]'s certificate through
    /// that storage, and starts the instance on a port of its own.
    async fn start(dir: &Path, name: &str, etcd: Option<&Etcd>, pem: &str) -> Instance {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).expect("the instance's folder");
        let storage = match etcd {
            Some(etcd) => format!(
                "storage:\n  kind: etcd\n  endpoints: [\"{}\"]\n  prefix: {PREFIX}\n  lease: 2s\n",
                etcd.endpoint()
            ),
            None => "storage:\n  kind: dir\n".to_string(),
        };
        let yaml = format!(
            "master_domain: example.com\nstate_dir: state\n{storage}\
             domains:\n  example.com: {{}}\n  {DOMAIN}: {{}}\n\
             listeners:\n  - name: web\n    kind: https\n    bind: 127.0.0.1:1\n    \
             access_log: false\n    routes:\n      - {{ host: \"*\", respond: {{ body: ok }} }}\n"
        );
        let path = folder.join("proxy.yaml");
        std::fs::write(&path, yaml).expect("write proxy.yaml");
        let config = sniwalk::config::Config::load(&path).expect("the generated proxy.yaml loads");
        // The certificate, stored as an ACME result or an import would be:
        // one put at certificates/<domain> (a file of the state directory,
        // or a key in etcd).
        {
            let shared = sniwalk::storage::open(&config)
                .await
                .expect("open the instance's storage");
            shared
                .engine()
                .put(
                    &sniwalk::storage::keys::certificate(DOMAIN),
                    pem.as_bytes().to_vec(),
                    Condition::Always,
                )
                .await
                .expect("store the certificate");
        }
        let socket = StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        socket
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = socket.local_addr().expect("the listener's address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let (ready, thread_path) = oneshot::channel::<PathBuf>();
        let label = name.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("instance-{name}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the instance's runtime");
                let _ = ready.send(
                    std::fs::read_link("/proc/thread-self")
                        .map(|tid| Path::new("/proc").join(tid).join("schedstat"))
                        .expect("/proc/thread-self (Linux)"),
                );
                let outcome = runtime.block_on(async move {
                    let socket = tokio::net::TcpListener::from_std(socket)?;
                    sniwalk::run(config, vec![socket], async move {
                        let _ = stop.await;
                    })
                    .await
                    .map_err(std::io::Error::other)
                });
                if let Err(e) = outcome {
                    eprintln!("instance {label} stopped: {e}");
                }
            })
            .expect("spawn the instance's thread");
        let schedstat = thread_path.await.expect("the instance's thread started");
        Instance {
            addr,
            schedstat,
            shutdown,
            thread,
        }
    }

    /// CPU time of the instance's thread so far, nanoseconds (the first
    /// field of schedstat).
    fn cpu_ns(&self) -> u64 {
        std::fs::read_to_string(&self.schedstat)
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse().ok())
            .expect("the instance thread's schedstat")
    }

    /// Shuts the instance down (as SIGTERM would) and joins its thread
    /// once it ended (waits up to 10 s).
    async fn stop(self) {
        let _ = self.shutdown.send(());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.thread.is_finished() {
            if Instant::now() >= deadline {
                eprintln!("an instance did not stop within 10 s");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if self.thread.join().is_err() {
            eprintln!("an instance's thread panicked");
        }
    }
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
