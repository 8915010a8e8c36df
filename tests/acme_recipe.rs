//! The README's "Try ACME locally" recipe, run as a reader would run it:
//! `deploy/pebble/try-acme-locally.sh` (shown whole in the README) starts
//! Debian's Pebble and pebble-challtestsrv and `sniwalk run`, and ends once
//! curl trusts the certificate Pebble issued for shop.test. Free ports on
//! 127.0.0.1; the script's process group is killed whatever happens.

mod common;

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::instances::free_port;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/pebble/try-acme-locally.sh"
);

#[test]
fn the_readme_shows_the_whole_recipe() {
    let script = std::fs::read_to_string(SCRIPT).expect("the script");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    assert!(
        readme.contains(&format!("```sh\n{script}```")),
        "README.md must show deploy/pebble/try-acme-locally.sh whole, in a ```sh block"
    );
}

#[test]
fn the_recipe_gets_a_certificate_from_pebble_and_serves_it() {
    let work = tempfile::tempdir().expect("tempdir");
    let port = || free_port("127.0.0.1").to_string();
    let mut child = Command::new("sh")
        .arg(SCRIPT)
        .env("ONESHOT", "1")
        .env("WORK", work.path())
        .env("SNIWALK", common::sniwalk_bin())
        .env("HTTP_PORT", port())
        .env("HTTPS_PORT", port())
        .env("ACME_PORT", port())
        .env("ADMIN_PORT", port())
        .env("DNS_PORT", port())
        .env("DNS_ADMIN_PORT", port())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: Pebble and sniwalk go with it.
        .process_group(0)
        .spawn()
        .expect("sh runs the recipe");
    let group = child.id();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(150) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // The script's trap stops its children; this makes sure of it.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .status();
    let out = child.wait_with_output().expect("output");
    let logs = ["sniwalk.log", "pebble.log"]
        .map(|f| std::fs::read_to_string(work.path().join(f)).unwrap_or_default())
        .join("\n---\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.is_some_and(|s| s.success()),
        "the recipe failed ({status:?}):\n{stdout}\n{stderr}\n{logs}"
    );
    assert!(
        stdout.contains("shop.test is served with a certificate from Pebble"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stored (acme)"),
        "check shows the ACME certificate: {stdout}"
    );
}
