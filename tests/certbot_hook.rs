//! The certbot deploy hook (`deploy/certbot/sniwalk-deploy-hook`, README
//! "Certificates from certbot") on certbot's own layout: `live/NAME/*.pem`
//! symlinks into `archive/NAME/`, as certbot leaves them after a renewal.
//! The hook runs under `sh` as certbot runs it; a running sniwalk serves
//! what it wrote without a reload, in both layouts.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{TestCert, TestProxy, cert, served_leaf, within};

const HOOK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/certbot/sniwalk-deploy-hook"
);

/// Lays out lineage `name` the way certbot does after its `n`-th issuance:
/// `archive/NAME/privkeyN.pem` and `fullchainN.pem`, with `live/NAME/`
/// symlinks to them (replaced, as certbot replaces them).
fn certbot_issues(letsencrypt: &Path, name: &str, n: u32, cert: &TestCert) -> PathBuf {
    let archive = letsencrypt.join("archive").join(name);
    let live = letsencrypt.join("live").join(name);
    std::fs::create_dir_all(&archive).expect("archive");
    std::fs::create_dir_all(&live).expect("live");
    for (file, text) in [("privkey", &cert.key_pem), ("fullchain", &cert.cert_pem)] {
        let target = archive.join(format!("{file}{n}.pem"));
        std::fs::write(&target, text).expect("archive file");
        let link = live.join(format!("{file}.pem"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("../../archive/{name}/{file}{n}.pem"), &link)
            .expect("live symlink");
    }
    live
}

/// Runs the hook as certbot would, for `lineage`, writing into `certs`.
fn run_hook(lineage: &Path, certs: &Path, layout: &str) {
    let out = Command::new("sh")
        .arg(HOOK)
        .env("RENEWED_LINEAGE", lineage)
        .env("RENEWED_DOMAINS", "example.test")
        .env("SNIWALK_CERTS", certs)
        .env("SNIWALK_LAYOUT", layout)
        // No such user here: the files stay the test's own.
        .env("SNIWALK_USER", "no-such-user-sniwalk-test")
        .env("SNIWALK_BIN", common::sniwalk_bin())
        .output()
        .expect("sh runs the hook");
    assert!(
        out.status.success(),
        "hook failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("written")
        .permissions()
        .mode()
        & 0o777
}

async fn served_becomes(addr: std::net::SocketAddr, sni: &str, sha256: &str) {
    within(
        Duration::from_secs(10),
        "the renewed certificate served",
        async {
            while served_leaf(addr, Some(sni)).await != sha256 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_renewal_is_served_through_a_certificate_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let letsencrypt = tmp.path().join("letsencrypt");
    let certs = tmp.path().join("certs");
    let first = cert(&["example.test"]);
    let lineage = certbot_issues(&letsencrypt, "example.test", 1, &first);
    run_hook(&lineage, &certs, "pem");
    let file = certs.join("example.test.pem");
    assert_eq!(mode(&file), 0o600);

    let yaml = format!(
        "master_domain: example.test\nstate_dir: state\ndomains:\n  example.test:\n    \
         certificate_file: {}\nlisteners:\n  - name: web\n    kind: https\n    \
         bind: 127.0.0.1:1\n    routes:\n      - host: \"*\"\n        respond: {{ body: hi }}\n",
        file.display()
    );
    let (proxy, _reload) = TestProxy::start_with_reload(tmp.path(), &yaml).await;
    assert_eq!(
        served_leaf(proxy.addr(), Some("example.test")).await,
        first.sha256
    );

    // certbot renews: a second archive generation, the live links moved.
    let second = cert(&["example.test"]);
    certbot_issues(&letsencrypt, "example.test", 2, &second);
    run_hook(&lineage, &certs, "pem");
    served_becomes(proxy.addr(), "example.test", &second.sha256).await;
    assert_eq!(mode(&file), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(&certs)
        .expect("certs")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_renewal_is_served_through_a_certdir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let letsencrypt = tmp.path().join("letsencrypt");
    let certs = tmp.path().join("certs");
    let first = cert(&["sip.example.test"]);
    let lineage = certbot_issues(&letsencrypt, "sip.example.test", 1, &first);
    run_hook(&lineage, &certs, "certdir");
    let certdir = certs.join("sip.example.test");
    assert_eq!(mode(&certdir.join("server.key")), 0o600);

    let yaml = format!(
        "master_domain: example.test\nstate_dir: state\ndomains:\n  example.test: {{}}\n\
         listeners:\n  - name: web\n    kind: https\n    bind: 127.0.0.1:1\n    certdir: {}\n    \
         routes:\n      - host: \"*\"\n        respond: {{ body: hi }}\n",
        certdir.display()
    );
    let (proxy, _reload) = TestProxy::start_with_reload(tmp.path(), &yaml).await;
    assert_eq!(
        served_leaf(proxy.addr(), Some("sip.example.test")).await,
        first.sha256
    );

    let second = cert(&["sip.example.test"]);
    certbot_issues(&letsencrypt, "sip.example.test", 2, &second);
    run_hook(&lineage, &certs, "certdir");
    served_becomes(proxy.addr(), "sip.example.test", &second.sha256).await;

    // A broken renewal (a key that is not the certificate's) changes
    // nothing: the hook refuses it before touching the certdir.
    let other = cert(&["sip.example.test"]);
    let mixed = TestCert {
        key_pem: other.key_pem.clone(),
        ..second.clone()
    };
    certbot_issues(&letsencrypt, "sip.example.test", 3, &mixed);
    let out = Command::new("sh")
        .arg(HOOK)
        .env("RENEWED_LINEAGE", &lineage)
        .env("SNIWALK_CERTS", &certs)
        .env("SNIWALK_LAYOUT", "certdir")
        .env("SNIWALK_USER", "no-such-user-sniwalk-test")
        .env("SNIWALK_BIN", common::sniwalk_bin())
        .output()
        .expect("hook");
    assert!(!out.status.success(), "a mismatched pair is refused");
    assert_eq!(
        std::fs::read_to_string(certdir.join("server.key")).expect("key"),
        second.key_pem,
        "the certdir is untouched"
    );
    proxy.stop().await;
}

#[test]
fn the_hook_makes_private_folders_and_refuses_open_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let letsencrypt = tmp.path().join("letsencrypt");
    let lineage = certbot_issues(&letsencrypt, "example.test", 1, &cert(&["example.test"]));
    // Made by the hook: 0750.
    let certs = tmp.path().join("made");
    run_hook(&lineage, &certs, "certdir");
    assert_eq!(mode(&certs), 0o750);
    assert_eq!(mode(&certs.join("example.test")), 0o750);

    // A folder others may write to: refused, nothing written.
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = Command::new("sh")
        .arg(HOOK)
        .env("RENEWED_LINEAGE", &lineage)
        .env("SNIWALK_CERTS", &open)
        .env("SNIWALK_USER", "no-such-user-sniwalk-test")
        .env("SNIWALK_BIN", common::sniwalk_bin())
        .output()
        .expect("hook");
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("writable by nobody else"), "{message}");
    assert_eq!(
        std::fs::read_dir(&open).expect("dir").count(),
        0,
        "nothing written"
    );
}
