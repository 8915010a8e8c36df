//! On-demand certificates, measured against a real Pebble on 127.0.0.1
//! (README, "On-demand certificates"):
//!
//!     cargo bench --bench on_demand
//!
//! Starts Debian's Pebble (on free ports, data in a temporary folder,
//! stopped by its PID at the end), an `ask` endpoint of its own that allows
//! every name and counts the questions, and the release `sniwalk` binary as
//! its own process (pinned to CPU 0 with `taskset` when there is one), with
//! `acme.on_demand: { ask, rate: 10/min, burst: 20 }` and the default
//! `wait` (5 s). Then:
//!
//! 1. **Time to the issued certificate**, 10 times: a new allowed name's
//!    first handshake, then handshakes every 20 ms until one verifies up
//!    to Pebble's root; the time from the start of the first handshake to
//!    the end of that one (median and max), and how long the first was
//!    held.
//! 2. **A flood of 10,000 random unknown names**, interleaved in 5 rounds
//!    with 10,000 handshakes for a known name (2,000 of each per round, 8
//!    clients at a time, no resumption): the proxy's CPU time per
//!    handshake (utime + stime from `/proc/PID/stat`) for each, and their
//!    ratio per round (target: unknown within 1.1x of known); and the
//!    orders placed (`sniwalk_acme_on_demand_total{outcome="ordered"}`)
//!    against what `rate` and `burst` allow since the start.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it is a smoke
//! run: 1 name, 2 rounds of 100, the same checks. Bounded in time (5 min);
//! stops by itself.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::pebble::{PebbleEnv, PebbleOptions};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(300);
const CLIENTS: usize = 8;
const KNOWN: &str = "known.example.test";

struct Sizes {
    names: usize,
    rounds: usize,
    per_round: usize,
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full {
        Sizes {
            names: 10,
            rounds: 5,
            per_round: 2_000,
        }
    } else {
        Sizes {
            names: 1,
            rounds: 2,
            per_round: 100,
        }
    };
    common::install_provider();
    let dir = tempfile::Builder::new()
        .prefix("sniwalk-on-demand-")
        .tempdir()
        .expect("a temporary folder");
    let outcome = tokio::time::timeout(LIMIT, bench(dir.path(), &sizes)).await;
    if outcome.is_err() {
        eprintln!("on_demand bench: not done within {LIMIT:?}");
        std::process::exit(1);
    }
}

/// The proxy process, killed by its PID when dropped.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn bench(dir: &Path, sizes: &Sizes) {
    let http_port = free_port();
    let https_port = free_port();
    let admin_port = free_port();
    let mut env = PebbleEnv::start_with(
        &dir.join("pebble"),
        PebbleOptions {
            http_port: Some(http_port),
            ..PebbleOptions::default()
        },
    )
    .await;
    let pebble_client = common::pebble::client_trusting(&env.root_pem().await);
    let (ask_url, asked) = ask_server().await;
    let known = common::cert(&[KNOWN]);
    let config = format!(
        "master_domain: example.test\nstate_dir: state\ndomains:\n  example.test: {{}}\n  \
         {KNOWN}:\n    certificate_pem: |\n{}\
         acme:\n  directory: {}\n  ca_roots: {}\n  account_email: ops@example.test\n  \
         on_demand: {{ ask: \"{ask_url}\", rate: 10/min, burst: 20 }}\n\
         admin: {{ bind: \"127.0.0.1:{admin_port}\" }}\n\
         log: {{ level: warn }}\n\
         listeners:\n  - {{ name: plain, kind: http, bind: \"127.0.0.1:{http_port}\", access_log: false }}\n  \
         - name: web\n    kind: https\n    bind: \"127.0.0.1:{https_port}\"\n    access_log: false\n    \
         routes:\n      - {{ host: \"*\", respond: {{ body: hello }} }}\n",
        known.yaml_block(6),
        env.directory_url(),
        env.ca_pem_path().display()
    );
    let config_path = dir.join("proxy.yaml");
    std::fs::write(&config_path, config).expect("write proxy.yaml");
    let mut command = if Path::new("/usr/bin/taskset").exists() {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", common::sniwalk_bin()]);
        c
    } else {
        Command::new(common::sniwalk_bin())
    };
    let child = command
        .args(["run", "--config"])
        .arg(&config_path)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("proxy.log")).expect("log file"))
        .spawn()
        .expect("start sniwalk");
    let proxy = Proxy(child);
    let pid = proxy.0.id();
    let https: SocketAddr = format!("127.0.0.1:{https_port}").parse().expect("addr");
    let started_at = Instant::now();
    while try_handshake(https, KNOWN).await.is_err() {
        assert!(
            started_at.elapsed() < Duration::from_secs(20),
            "the proxy never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 1. Time from the first handshake to the issued certificate.
    let mut times = Vec::new();
    for i in 0..sizes.names {
        let name = format!("tenant{i}.allowed.test");
        let start = Instant::now();
        let _ = try_handshake(https, &name).await;
        let held = start.elapsed();
        loop {
            if verified(https, &name, &pebble_client).await {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{name} never issued:\n{}\n{}",
                std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default(),
                env.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let total = start.elapsed();
        println!(
            "{name}: first handshake held {:.0} ms; issued certificate served after {:.0} ms",
            held.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3
        );
        times.push(total);
    }
    times.sort();
    println!(
        "time to the issued certificate over {} names: median {:.0} ms, max {:.0} ms",
        times.len(),
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );

    // 2. The flood, interleaved with known names.
    let asked_before = asked.load(Ordering::Relaxed);
    let mut ratios = Vec::new();
    let mut unknown_total = 0;
    let (mut known_sum, mut unknown_sum) = (0.0, 0.0);
    for round in 0..sizes.rounds {
        let known_cpu = cpu_per_handshake(pid, https, sizes.per_round, |_| KNOWN.to_string()).await;
        let unknown_cpu = cpu_per_handshake(pid, https, sizes.per_round, |i| {
            format!("r{:016x}.flood.test", random_u64() ^ i as u64)
        })
        .await;
        unknown_total += sizes.per_round;
        known_sum += known_cpu;
        unknown_sum += unknown_cpu;
        let ratio = unknown_cpu / known_cpu;
        println!(
            "round {}: known {:.1} us CPU/handshake, unknown {:.1} us, ratio {ratio:.3}",
            round + 1,
            known_cpu * 1e6,
            unknown_cpu * 1e6
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let elapsed_min = started_at.elapsed().as_secs_f64() / 60.0;
    let ordered = metric(admin_port, "ordered").await;
    let allowed_orders = 20.0 + (10.0 * elapsed_min).ceil();
    println!(
        "flood: {unknown_total} unknown names; ask asked {} times; unknown/known CPU ratio median \
         {:.3} (min {:.3}, max {:.3}; all rounds together, the orders' work included: {:.3}); \
         orders placed since the start {ordered} (rate and burst allow {allowed_orders}); \
         ask_busy {}, rate_limited {}",
        asked.load(Ordering::Relaxed) - asked_before,
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
        unknown_sum / known_sum,
        metric(admin_port, "ask_busy").await,
        metric(admin_port, "rate_limited").await,
    );
    assert!(
        ordered <= allowed_orders,
        "{ordered} orders, more than rate and burst allow ({allowed_orders})"
    );
    drop(proxy);
    env.stop();
}

/// The proxy's CPU seconds per handshake over `count` handshakes (named by
/// `name(i)`), `CLIENTS` at a time.
async fn cpu_per_handshake(
    pid: u32,
    addr: SocketAddr,
    count: usize,
    name: impl Fn(usize) -> String,
) -> f64 {
    let names: Arc<Vec<String>> = Arc::new((0..count).map(name).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let before = cpu_seconds(pid);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (names, next) = (names.clone(), next.clone());
        clients.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(name) = names.get(i) else { return };
                if let Err(e) = try_handshake(addr, name).await {
                    panic!("handshake for {name}: {e}");
                }
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.expect("client");
    }
    (cpu_seconds(pid) - before) / count as f64
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    (ticks(11) + ticks(12)) / 100.0
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    hasher.finish()
}

/// One handshake (no verification, no resumption), then closed.
async fn try_handshake(addr: SocketAddr, name: &str) -> Result<(), String> {
    let connector = tokio_rustls::TlsConnector::from(common::client_config(&[b"http/1.1"]));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let mut stream =
        tokio::time::timeout(Duration::from_secs(10), connector.connect(server_name, tcp))
            .await
            .map_err(|_| "handshake timed out".to_string())?
            .map_err(|e| e.to_string())?;
    let _ = stream.shutdown().await;
    Ok(())
}

/// Whether a handshake for `name` verifies up to Pebble's root.
async fn verified(addr: SocketAddr, name: &str, client: &Arc<rustls::ClientConfig>) -> bool {
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    let Ok(tcp) = TcpStream::connect(addr).await else {
        return false;
    };
    let Ok(server_name) = ServerName::try_from(name.to_string()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(10), connector.connect(server_name, tcp)).await,
        Ok(Ok(_))
    )
}

/// An `ask` endpoint allowing every name; the URL and the question count.
async fn ask_server() -> (String, Arc<AtomicUsize>) {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind ask");
    let addr = socket.local_addr().expect("addr");
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = socket.accept().await {
            let count = count.clone();
            // Keep-alive, as a real endpoint would: one request at a time
            // on each connection (a GET has no body).
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let end = request
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(request.len(), |p| p + 4);
                    request.drain(..end);
                    count.fetch_add(1, Ordering::Relaxed);
                    if tcp
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}/allowed"), asked)
}

/// `sniwalk_acme_on_demand_total{outcome=...}` from the admin API.
async fn metric(admin_port: u16, outcome: &str) -> f64 {
    let mut tcp = TcpStream::connect(("127.0.0.1", admin_port))
        .await
        .expect("admin");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.expect("read");
    let needle = format!("sniwalk_acme_on_demand_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {needle} in /metrics"))
}
