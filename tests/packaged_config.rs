//! The Debian package's configuration and unit agree with each other
//! (packaging/debian/; README, "Install (Debian package)"). The package
//! test (scripts/package-test.sh) runs them for real as root; this checks
//! in every `cargo test` that a change to the configuration format or to
//! one of the two files does not break the package unnoticed.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sniwalk::config::{Config, ListenerKind};

const PACKAGED_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/debian/proxy.yaml");
const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/debian/sniwalk.service"
);

/// The packaged configuration, validated as if installed.
fn packaged() -> Config {
    let text = std::fs::read_to_string(PACKAGED_CONFIG).expect("read the packaged proxy.yaml");
    Config::parse(&text, Path::new("/etc/sniwalk/proxy.yaml"))
        .unwrap_or_else(|e| panic!("packaging/debian/proxy.yaml: {e}"))
}

/// The values of `key=` in the unit, in order.
fn unit_values(key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(UNIT).expect("read the unit");
    text.lines()
        .filter_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_packaged_configuration_serves_80_and_443_from_var_lib_sniwalk() {
    let config = packaged();
    assert_eq!(config.state_dir, Path::new("/var/lib/sniwalk"));
    let binds: Vec<(ListenerKind, SocketAddr)> =
        config.listeners.iter().map(|l| (l.kind, l.bind)).collect();
    assert_eq!(
        binds,
        [
            (ListenerKind::Https, "0.0.0.0:443".parse().unwrap()),
            (ListenerKind::Http, "0.0.0.0:80".parse().unwrap()),
        ]
    );
    // No certificate anywhere: a fresh install serves the generated default.
    assert!(config.default_certificate.is_none());
    assert!(config.listeners.iter().all(|l| l.certdir.is_none()));
    let admin = config.admin.as_ref().expect("an admin: block");
    assert!(admin.bind.ip().is_loopback(), "admin on {}", admin.bind);
    // postinst creates exactly this file.
    assert_eq!(
        admin.token_file.as_deref(),
        Some(Path::new("/etc/sniwalk/admin.token"))
    );
    let postinst = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/debian/postinst"
    ))
    .expect("read postinst");
    assert!(postinst.contains("TOKEN=/etc/sniwalk/admin.token"));
}

#[test]
fn the_unit_runs_the_packaged_configuration_and_outlasts_its_drain() {
    let config = packaged();
    assert_eq!(
        unit_values("ExecStart"),
        ["/usr/bin/sniwalk run --config /etc/sniwalk/proxy.yaml"]
    );
    assert_eq!(unit_values("Type"), ["notify"]);
    // systemd must not SIGKILL a drain that is still within
    // shutdown_timeout: TimeoutStopSec= is longer.
    let stop = unit_values("TimeoutStopSec");
    let [stop] = stop.as_slice() else {
        panic!("one TimeoutStopSec= in the unit, found {stop:?}")
    };
    let stop = Duration::from_secs(
        stop.strip_suffix('s')
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("TimeoutStopSec={stop}: write it in seconds, `45s`")),
    );
    assert!(
        stop > config.shutdown_timeout,
        "TimeoutStopSec={stop:?} must be longer than shutdown_timeout {:?}",
        config.shutdown_timeout
    );
    // The writable places: the state directory, and /var/log/sniwalk
    // for access log files.
    assert_eq!(unit_values("ReadWritePaths"), ["/var/lib/sniwalk"]);
    assert_eq!(unit_values("LogsDirectory"), ["sniwalk"]);
    assert_eq!(unit_values("ProtectSystem"), ["strict"]);
}
