//! Certificate lookup cost against snapshots of 1, 1,000 and 1,000,000
//! domains, plus snapshot build time and memory for 100,000 domains.
//!
//! The lookup must not grow with the number of domains (README, "Performance"): the
//! 1,000,000-domain lookup is to stay within 1.5x of the 1-domain one and
//! under 1 us. Run with `cargo bench --bench resolve`. Resident memory is
//! measured in a fresh process by `cargo run --release --example
//! snapshot_memory`.
//!
//! Names per case, identical at every size so the walks are identical:
//! - `exact`: `example.com`, the master, which has a certificate (1 probe);
//! - `ancestor`: `x.y.example.com`, two unconfigured labels above the
//!   nearest configured domain (3 probes);
//! - `master`: `www.other.org`, outside the tree, ends at the master
//!   (3 probes, all misses);
//! - `miss`: a 7-label name under no configured domain (7 probes).
//!
//! With more than one domain, `filler exact` / `filler ancestor` hit one of
//! the generated domains (`d0000123.example.com`), and `spread` rotates
//! over 4,096 different generated names so the hash table is not hot in the
//! CPU cache, the honest worst case at 1,000,000 domains.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
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

fn filler(i: usize) -> String {
    format!("d{i:07}.example.com")
}

/// A snapshot of `count` domains: the master, then generated domains of
/// which every second has a certificate (all sharing one `Arc`).
fn snapshot(count: usize) -> Snapshot {
    let master = certificate("example.com");
    let shared = certificate("filler.example.com");
    let mut domains = Vec::with_capacity(count);
    domains.push(("example.com".to_string(), Some(master.clone())));
    for i in 1..count {
        domains.push((filler(i), (i % 2 == 1).then(|| shared.clone())));
    }
    Snapshot::from_parts(
        "example.com",
        domains,
        vec![("ws".to_string(), None)],
        certificate("default.invalid"),
    )
    .expect("snapshot builds")
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("resolve");
    for count in [1usize, 1_000, 1_000_000] {
        let snap = snapshot(count);
        let cases: &[(&str, &str)] = &[
            ("exact", "example.com"),
            ("ancestor", "x.y.example.com"),
            ("master", "www.other.org"),
            ("miss", "a.b.c.d.e.f.example.net"),
        ];
        for (case, name) in cases {
            group.bench_with_input(BenchmarkId::new(*case, count), name, |b, name| {
                b.iter(|| {
                    let choice = snap.choose(0, Some(black_box(name)));
                    black_box(Arc::clone(&choice.certificate.certified_key))
                })
            });
        }
        if count > 1 {
            let hit = filler(count / 2 + 1);
            let below = format!("x.{hit}");
            group.bench_with_input(BenchmarkId::new("filler exact", count), &hit, |b, name| {
                b.iter(|| {
                    black_box(Arc::clone(
                        &snap
                            .choose(0, Some(black_box(name)))
                            .certificate
                            .certified_key,
                    ))
                })
            });
            group.bench_with_input(
                BenchmarkId::new("filler ancestor", count),
                &below,
                |b, name| {
                    b.iter(|| {
                        black_box(Arc::clone(
                            &snap
                                .choose(0, Some(black_box(name)))
                                .certificate
                                .certified_key,
                        ))
                    })
                },
            );
            let names: Vec<String> = (0..4096)
                .map(|i| filler(1 + (i * 7919) % (count - 1)))
                .collect();
            let mut next = 0usize;
            group.bench_function(BenchmarkId::new("spread", count), |b| {
                b.iter(|| {
                    next = (next + 1) & 4095;
                    black_box(Arc::clone(
                        &snap.choose(0, Some(&names[next])).certificate.certified_key,
                    ))
                })
            });
        }
        drop(snap);
    }
    group.finish();
}

fn build_100k(c: &mut Criterion) {
    const COUNT: usize = 100_000;
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    let master = certificate("example.com");
    let shared = certificate("filler.example.com");
    let default = certificate("default.invalid");
    group.bench_function("snapshot 100k domains", |b| {
        b.iter(|| {
            let mut domains = Vec::with_capacity(COUNT);
            domains.push(("example.com".to_string(), Some(master.clone())));
            for i in 1..COUNT {
                domains.push((filler(i), (i % 2 == 1).then(|| shared.clone())));
            }
            black_box(
                Snapshot::from_parts(
                    "example.com",
                    domains,
                    vec![("ws".to_string(), None)],
                    default.clone(),
                )
                .expect("snapshot builds"),
            )
        })
    });
    // The full path `run` takes: parse proxy.yaml, then build.
    let dir = std::env::temp_dir().join(format!("sniwalk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut yaml =
        String::from("master_domain: example.com\nstate_dir: state\ndomains:\n  example.com: {}\n");
    for i in 1..COUNT {
        yaml.push_str("  ");
        yaml.push_str(&filler(i));
        yaml.push_str(": {}\n");
    }
    yaml.push_str("listeners: []\n");
    let path = dir.join("proxy.yaml");
    std::fs::write(&path, &yaml).expect("write config");
    // Generate the default once so the loop measures loading, not keygen.
    let config = sniwalk::config::Config::load(&path).expect("config");
    sniwalk::snapshot::store_generated_default(&config, sniwalk::unix_now())
        .expect("store the default");
    group.bench_function("config parse + snapshot build, 100k domains", |b| {
        b.iter(|| {
            let config = sniwalk::config::Config::load(&path).expect("config");
            black_box(
                Snapshot::build(
                    &config,
                    None,
                    sniwalk::snapshot::DefaultPolicy::Persist,
                    sniwalk::unix_now(),
                )
                .expect("build"),
            )
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, lookups, build_100k);
criterion_main!(benches);
