//! Resident memory and build time of a snapshot of many domains, measured
//! in a fresh process (an allocator that already grew would hide it):
//!
//!     cargo run --release --example snapshot_memory [-- COUNT]
//!
//! Half of the domains have a certificate (all sharing one, as many names
//! behind one wildcard would); the figure is the cost of the tree itself.

use std::sync::Arc;
use std::time::Instant;

use sniwalk::snapshot::{LoadedCertificate, Snapshot, SourceKind, generate_self_signed_pem};

fn certificate(name: &str) -> Arc<LoadedCertificate> {
    let text = generate_self_signed_pem(&[name.to_string()], 90, false).expect("generate");
    let parsed = sniwalk::pem::parse_certificate_pem(&text).expect("parse");
    Arc::new(LoadedCertificate::from_parsed(
        parsed,
        SourceKind::Inline,
        None,
    ))
}

/// Resident set size of this process in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let master = certificate("example.com");
    let shared = certificate("filler.example.com");
    let default = certificate("default.invalid");
    let before = rss_kib();
    let started = Instant::now();
    let mut domains = Vec::with_capacity(count);
    domains.push(("example.com".to_string(), Some(master)));
    for i in 1..count {
        domains.push((
            format!("d{i:07}.example.com"),
            (i % 2 == 1).then(|| shared.clone()),
        ));
    }
    let snapshot = Snapshot::from_parts("example.com", domains, vec![("ws".into(), None)], default)
        .expect("snapshot builds");
    let elapsed = started.elapsed();
    let after = rss_kib();
    let delta = after.saturating_sub(before);
    println!(
        "{count} domains: snapshot built in {:.1} ms; resident memory +{:.1} MiB ({} bytes per domain)",
        elapsed.as_secs_f64() * 1e3,
        delta as f64 / 1024.0,
        delta * 1024 / count as u64
    );
    std::hint::black_box(&snapshot);
}
