//! Hot reload end to end: files replaced under a running proxy the ways
//! people and tools replace them (rename over, write in place, the
//! Kubernetes `..data` swap, an editor saving `proxy.yaml`, SIGHUP), each
//! checked with real TLS handshakes on 127.0.0.1 by the served leaf's
//! fingerprint.
//!
//! Nothing here sleeps for a fixed time to let a reload happen: a change is
//! awaited by polling handshakes with a deadline ([`PICKUP`]), and "keeps
//! serving" is checked by handshakes over a window ([`HOLD`]) longer than
//! the reload task's debounce, so a wrong reload inside it would be seen.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::backends::HttpBackend;
use common::{TestCert, TestProxy, cert, https_get, sniwalk_bin, try_served_leaf, within, ws};
use sniwalk::reload::Reload;

/// How long a change may take to be served: the debounce is 250 ms, so this
/// leaves room for a loaded machine.
const PICKUP: Duration = Duration::from_secs(5);

/// How long "the old certificate keeps serving" is watched: past the
/// debounce and a rebuild, so the reload of the bad state has happened.
const HOLD: Duration = Duration::from_millis(1200);

/// The name served from the certdir in the certdir tests (the master has
/// no certificate there, so the walk ends at the certdir).
const SWAP_NAME: &str = "swap.example.com";

// ---- helpers ---------------------------------------------------------------

/// Labels for fingerprints, so failures say "pair B" instead of a hash.
#[derive(Default)]
struct Known(Vec<(String, String)>);

impl Known {
    fn add(&mut self, label: &str, cert: &TestCert) {
        self.0.push((label.to_string(), cert.sha256.clone()));
    }

    fn label(&self, sha: &str) -> String {
        self.0
            .iter()
            .find(|(_, s)| s == sha)
            .map(|(l, _)| l.clone())
            .unwrap_or_else(|| format!("an unknown leaf {sha}"))
    }
}

/// Polls handshakes until `to` is served for `sni`, at most [`PICKUP`].
/// Every handshake meanwhile must succeed and serve `from` or `to`; once
/// `to` is served, the next handshakes must serve it too. Returns how long
/// the change took to show.
async fn wait_served(
    addr: SocketAddr,
    sni: Option<&str>,
    from: &TestCert,
    to: &TestCert,
    known: &Known,
    what: &str,
) -> Duration {
    wait_served_via(addr, sni, &[from], to, known, what).await
}

/// [`wait_served`] where any of `meanwhile` may be served before `to`.
async fn wait_served_via(
    addr: SocketAddr,
    sni: Option<&str>,
    meanwhile: &[&TestCert],
    to: &TestCert,
    known: &Known,
    what: &str,
) -> Duration {
    let start = Instant::now();
    loop {
        let sha = try_served_leaf(addr, sni)
            .await
            .unwrap_or_else(|e| panic!("{what}: a handshake failed while waiting: {e}"));
        if sha == to.sha256 {
            break;
        }
        assert!(
            meanwhile.iter().any(|c| c.sha256 == sha),
            "{what}: served {} while waiting for {} (SNI {sni:?})",
            known.label(&sha),
            known.label(&to.sha256)
        );
        assert!(
            start.elapsed() < PICKUP,
            "{what}: still {} after {PICKUP:?}, expected {} (SNI {sni:?})",
            known.label(&sha),
            known.label(&to.sha256)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    for _ in 0..3 {
        let sha = try_served_leaf(addr, sni)
            .await
            .unwrap_or_else(|e| panic!("{what}: a handshake failed after the change: {e}"));
        assert_eq!(
            sha,
            to.sha256,
            "{what}: went back to {} after {} was served",
            known.label(&sha),
            known.label(&to.sha256)
        );
    }
    took
}

/// Handshakes for [`HOLD`]: every one must succeed and serve `expected`.
async fn hold_served(
    addr: SocketAddr,
    sni: Option<&str>,
    expected: &TestCert,
    known: &Known,
    what: &str,
) {
    let start = Instant::now();
    let mut handshakes = 0;
    while start.elapsed() < HOLD {
        let sha = try_served_leaf(addr, sni)
            .await
            .unwrap_or_else(|e| panic!("{what}: handshake {handshakes} failed: {e}"));
        assert_eq!(
            sha,
            expected.sha256,
            "{what}: handshake {handshakes} ({:?} in) served {}, expected {} (SNI {sni:?})",
            start.elapsed(),
            known.label(&sha),
            known.label(&expected.sha256)
        );
        handshakes += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(handshakes >= 5, "{what}: only {handshakes} handshakes");
}

/// The served leaf, which must be `expected`, right now.
async fn assert_served(
    addr: SocketAddr,
    sni: Option<&str>,
    expected: &TestCert,
    known: &Known,
    what: &str,
) {
    let sha = try_served_leaf(addr, sni)
        .await
        .unwrap_or_else(|e| panic!("{what}: handshake failed: {e}"));
    assert_eq!(
        sha,
        expected.sha256,
        "{what}: served {}, expected {} (SNI {sni:?})",
        known.label(&sha),
        known.label(&expected.sha256)
    );
}

/// How a file gets its new content.
#[derive(Debug, Clone, Copy)]
enum Write {
    /// A temporary file in the same directory, renamed over the target
    /// (editors, `mv`, `install`).
    RenameOver,
    /// Truncated and rewritten, same inode (`cp` over, `cat >`).
    InPlace,
}

impl Write {
    fn write(self, path: &Path, contents: impl AsRef<[u8]>) {
        match self {
            Write::RenameOver => rename_over(path, contents.as_ref()),
            Write::InPlace => write_in_place(path, contents.as_ref()),
        }
    }
}

fn rename_over(path: &Path, contents: &[u8]) {
    let name = path.file_name().expect("file name").to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).expect("write temporary file");
    std::fs::rename(&tmp, path).expect("rename over");
}

fn write_in_place(path: &Path, contents: &[u8]) {
    use std::os::unix::fs::MetadataExt;
    let before = std::fs::metadata(path).expect("file exists").ino();
    std::fs::write(path, contents).expect("write in place");
    let after = std::fs::metadata(path).expect("file exists").ino();
    assert_eq!(before, after, "an in-place write keeps the inode");
}

/// `sniwalk check --config FILE`: exit code and stdout + stderr.
async fn sniwalk_check(config: &Path) -> (Option<i32>, String) {
    let config = config.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(sniwalk_bin())
            .args(["check", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .output()
            .expect("sniwalk runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    })
    .await
    .expect("check task")
}

/// A listener entry; `certdir` may be empty for none.
fn listener(name: &str, port: u16, certdir: &str, routes: &str) -> String {
    let certdir = if certdir.is_empty() {
        String::new()
    } else {
        format!("    certdir: {certdir}\n")
    };
    format!(
        "  - name: {name}\n    kind: https\n    bind: 127.0.0.1:{port}\n{certdir}    access_log: false\n    routes:\n{routes}"
    )
}

const HELLO_ROUTE: &str =
    "      - host: \"*\"\n        respond: { status: 200, body: \"hello\\n\" }\n";

/// A configuration with `domains` (the lines under `domains:`, the master
/// `example.com` among them), a `default_certificate`, a listener `ws` with
/// the certdir `certs/ws` and a listener `bare` without a certdir.
fn config_yaml(domains: &str) -> String {
    format!(
        "master_domain: example.com\nstate_dir: state\ndefault_certificate: certs/default.pem\n\
         domains:\n{domains}listeners:\n{}{}",
        listener("ws", 1, "certs/ws", HELLO_ROUTE),
        listener("bare", 2, "", HELLO_ROUTE),
    )
}

const MASTER_WITHOUT_CERT: &str = "  example.com: {}\n";
const MASTER_WITH_FILE: &str =
    "  example.com:\n    certificate_file: certs/domains/example.com.pem\n";

fn file_domain(name: &str, file: &str) -> String {
    format!("  {name}:\n    certificate_file: {file}\n")
}

fn inline_domain(name: &str, cert: &TestCert) -> String {
    format!("  {name}:\n    certificate_pem: |\n{}", cert.yaml_block(6))
}

fn certdir_paths(dir: &Path) -> (PathBuf, PathBuf) {
    let certdir = dir.join("certs/ws");
    (certdir.join("server.key"), certdir.join("server.crt"))
}

/// `count` certificates for `names`, labelled `label 0`, `label 1`...
fn certs(count: usize, names: &[&str], label: &str, known: &mut Known) -> Vec<TestCert> {
    (0..count)
        .map(|i| {
            let c = cert(names);
            known.add(&format!("{label} {i}"), &c);
            c
        })
        .collect()
}

/// A certdir setup: the master has no certificate, the certdir holds
/// `first`, the default is `default`. Returns the configuration text.
fn certdir_setup(dir: &Path, first: &TestCert, default: &TestCert) -> String {
    first.write_certdir(&dir.join("certs/ws"));
    default.write_pem(&dir.join("certs/default.pem"));
    config_yaml(MASTER_WITHOUT_CERT)
}

// ---- 1. certdir swaps ------------------------------------------------------

/// A → B key first, B → C certificate first; between the two files the pair
/// does not match and the previous pair must keep serving.
async fn certdir_swap_both_orders(how: Write) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut known = Known::default();
    let pairs = certs(3, &[SWAP_NAME], "pair", &mut known);
    let default = cert(&["default.invalid"]);
    known.add("the default", &default);
    let yaml = certdir_setup(dir.path(), &pairs[0], &default);
    let (proxy, _reload) = TestProxy::start_with_reload(dir.path(), &yaml).await;
    let addr = proxy.addr();
    let sni = Some(SWAP_NAME);
    let (key, crt) = certdir_paths(dir.path());
    assert_served(addr, sni, &pairs[0], &known, "at start").await;

    how.write(&key, &pairs[1].key_pem);
    assert_served(addr, sni, &pairs[0], &known, "right after the new key").await;
    hold_served(addr, sni, &pairs[0], &known, "new key, old certificate").await;
    how.write(&crt, &pairs[1].cert_pem);
    let took = wait_served(addr, sni, &pairs[0], &pairs[1], &known, "key then cert").await;
    eprintln!("{how:?}: key then certificate served after {took:?}");

    how.write(&crt, &pairs[2].cert_pem);
    assert_served(addr, sni, &pairs[1], &known, "right after the new cert").await;
    hold_served(addr, sni, &pairs[1], &known, "new certificate, old key").await;
    how.write(&key, &pairs[2].key_pem);
    let took = wait_served(addr, sni, &pairs[1], &pairs[2], &known, "cert then key").await;
    eprintln!("{how:?}: certificate then key served after {took:?}");

    // No SNI takes the same certdir.
    assert_served(addr, None, &pairs[2], &known, "no SNI").await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certdir_pair_renamed_over_in_both_orders() {
    within(Duration::from_secs(60), "test", async {
        certdir_swap_both_orders(Write::RenameOver).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certdir_pair_written_in_place_in_both_orders() {
    within(Duration::from_secs(60), "test", async {
        certdir_swap_both_orders(Write::InPlace).await;
    })
    .await;
}

/// Lays out version `version` of a Kubernetes Secret volume in `certdir`
/// holding `files` (name, contents) and points `..data` at it (atomically, as the kubelet does: a
/// `..data_tmp` symlink renamed over `..data`).
fn k8s_publish(certdir: &Path, version: &str, files: &[(&str, &str)]) {
    let versioned = certdir.join(version);
    std::fs::create_dir_all(&versioned).expect("create version dir");
    for (name, contents) in files {
        std::fs::write(versioned.join(name), contents).expect("write version file");
    }
    let tmp = certdir.join("..data_tmp");
    std::os::unix::fs::symlink(version, &tmp).expect("symlink ..data_tmp");
    std::fs::rename(&tmp, certdir.join("..data")).expect("rename ..data_tmp over ..data");
}

/// The user-visible names of a Secret volume: `name -> ..data/name`.
fn k8s_link_names(dir: &Path, names: &[&str]) {
    for name in names {
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name))
            .expect("symlink a name into ..data");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certdir_kubernetes_data_symlink_swap() {
    within(Duration::from_secs(60), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut known = Known::default();
        let pairs = certs(3, &[SWAP_NAME], "pair", &mut known);
        let default = cert(&["default.invalid"]);
        known.add("the default", &default);
        default.write_pem(&dir.path().join("certs/default.pem"));
        let certdir = dir.path().join("certs/ws");
        std::fs::create_dir_all(&certdir).expect("certdir");
        let publish = |version: &str, pair: &TestCert| {
            let files = [
                ("server.key", pair.key_pem.as_str()),
                ("server.crt", pair.cert_pem.as_str()),
            ];
            k8s_publish(&certdir, version, &files);
        };
        publish("..2026_v1", &pairs[0]);
        k8s_link_names(&certdir, &["server.key", "server.crt"]);
        assert!(
            std::fs::symlink_metadata(certdir.join("server.key"))
                .expect("link")
                .file_type()
                .is_symlink()
        );
        let yaml = config_yaml(MASTER_WITHOUT_CERT);
        let (proxy, _reload) = TestProxy::start_with_reload(dir.path(), &yaml).await;
        let addr = proxy.addr();
        let sni = Some(SWAP_NAME);
        assert_served(addr, sni, &pairs[0], &known, "at start").await;

        publish("..2026_v2", &pairs[1]);
        // The kubelet removes the old version once `..data` moved on.
        std::fs::remove_dir_all(certdir.join("..2026_v1")).expect("remove v1");
        let took = wait_served(addr, sni, &pairs[0], &pairs[1], &known, "..data to v2").await;
        eprintln!("kubernetes swap served after {took:?}");

        publish("..2026_v3", &pairs[2]);
        std::fs::remove_dir_all(certdir.join("..2026_v2")).expect("remove v2");
        wait_served(addr, sni, &pairs[1], &pairs[2], &known, "..data to v3").await;
        proxy.stop().await;
    })
    .await;
}

// ---- 2. a domain's certificate_file ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_certificate_file_replaced() {
    within(Duration::from_secs(60), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut known = Known::default();
        let master = cert(&["example.com", "*.example.com"]);
        known.add("the master", &master);
        let t1 = certs(3, &["t1.example.com", "*.t1.example.com"], "t1", &mut known);
        let k8s = certs(2, &["k8s.example.com"], "k8s", &mut known);
        let default = cert(&["default.invalid"]);
        known.add("the default", &default);
        let other = cert(&[SWAP_NAME]);
        other.write_certdir(&dir.path().join("certs/ws"));
        default.write_pem(&dir.path().join("certs/default.pem"));
        master.write_pem(&dir.path().join("certs/domains/example.com.pem"));
        let t1_file = dir.path().join("certs/domains/t1.pem");
        t1[0].write_pem(&t1_file);
        // A certificate_file inside a Kubernetes ConfigMap/Secret volume.
        let volume = dir.path().join("certs/volume");
        std::fs::create_dir_all(&volume).expect("volume");
        k8s_publish(&volume, "..2026_v1", &[("tls.pem", &k8s[0].pem)]);
        k8s_link_names(&volume, &["tls.pem"]);
        let yaml = config_yaml(&format!(
            "{MASTER_WITH_FILE}{}{}",
            file_domain("t1.example.com", "certs/domains/t1.pem"),
            file_domain("k8s.example.com", "certs/volume/tls.pem"),
        ));
        let (proxy, _reload) = TestProxy::start_with_reload(dir.path(), &yaml).await;
        let (ws, bare) = (proxy.addrs[0], proxy.addrs[1]);
        let t1_sni = Some("t1.example.com");
        assert_served(ws, t1_sni, &t1[0], &known, "at start").await;

        Write::RenameOver.write(&t1_file, &t1[1].pem);
        let took = wait_served(ws, t1_sni, &t1[0], &t1[1], &known, "renamed over").await;
        eprintln!("certificate_file renamed over: served after {took:?}");
        // The whole subtree and every listener see it; others do not change.
        assert_served(bare, t1_sni, &t1[1], &known, "the other listener").await;
        assert_served(ws, Some("x.t1.example.com"), &t1[1], &known, "below t1").await;
        assert_served(ws, Some("example.com"), &master, &known, "the master").await;

        Write::InPlace.write(&t1_file, &t1[2].pem);
        wait_served(ws, t1_sni, &t1[1], &t1[2], &known, "written in place").await;

        let k8s_sni = Some("k8s.example.com");
        assert_served(ws, k8s_sni, &k8s[0], &known, "volume at start").await;
        k8s_publish(&volume, "..2026_v2", &[("tls.pem", &k8s[1].pem)]);
        std::fs::remove_dir_all(volume.join("..2026_v1")).expect("remove v1");
        wait_served(ws, k8s_sni, &k8s[0], &k8s[1], &known, "volume ..data swap").await;
        assert_served(ws, t1_sni, &t1[2], &known, "t1 unchanged").await;
        proxy.stop().await;
    })
    .await;
}

// ---- 3. configuration edits -----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_added_and_removed_by_editing_the_configuration() {
    within(Duration::from_secs(90), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut known = Known::default();
        let master = cert(&["example.com", "*.example.com"]);
        let certdir = cert(&[SWAP_NAME]);
        let default = cert(&["default.invalid"]);
        let new = cert(&["new.example.com"]);
        let other = cert(&["other.org"]);
        let hup = cert(&["hup.example.com"]);
        for (label, c) in [
            ("the master", &master),
            ("the certdir", &certdir),
            ("the default", &default),
            ("new.example.com", &new),
            ("other.org", &other),
            ("hup.example.com", &hup),
        ] {
            known.add(label, c);
        }
        certdir.write_certdir(&dir.path().join("certs/ws"));
        default.write_pem(&dir.path().join("certs/default.pem"));
        master.write_pem(&dir.path().join("certs/domains/example.com.pem"));
        new.write_pem(&dir.path().join("certs/domains/new.pem"));
        hup.write_pem(&dir.path().join("certs/domains/hup.pem"));
        let config = dir.path().join("proxy.yaml");
        let (proxy, reload) =
            TestProxy::start_with_reload(dir.path(), &config_yaml(MASTER_WITH_FILE)).await;
        let (ws, bare) = (proxy.addrs[0], proxy.addrs[1]);
        let new_sni = Some("new.example.com");
        let other_sni = Some("other.org");
        let hup_sni = Some("hup.example.com");
        assert_served(ws, new_sni, &master, &known, "before: walk to the master").await;
        assert_served(ws, other_sni, &master, &known, "before: not in the tree").await;

        // An editor saving by rename: a domain with a certificate_file.
        let new_domain = file_domain("new.example.com", "certs/domains/new.pem");
        Write::RenameOver.write(
            &config,
            config_yaml(&format!("{MASTER_WITH_FILE}{new_domain}")),
        );
        let took = wait_served(ws, new_sni, &master, &new, &known, "domain added").await;
        eprintln!("domain added by a renamed-over proxy.yaml: served after {took:?}");
        assert_served(bare, new_sni, &new, &known, "added, other listener").await;

        // Written in place: a domain outside the master, inline.
        let other_domain = inline_domain("other.org", &other);
        Write::InPlace.write(
            &config,
            config_yaml(&format!("{MASTER_WITH_FILE}{new_domain}{other_domain}")),
        );
        wait_served(
            ws,
            other_sni,
            &master,
            &other,
            &known,
            "inline domain added",
        )
        .await;
        assert_served(ws, Some("www.other.org"), &other, &known, "below it").await;

        // A configuration that does not parse: everything stays.
        Write::InPlace.write(&config, "master_domain: [unclosed\n  domains: {{\n");
        hold_served(ws, other_sni, &other, &known, "broken proxy.yaml").await;
        assert_served(ws, new_sni, &new, &known, "broken proxy.yaml").await;

        // The SIGHUP path, with the watcher seeing the same change.
        let hup_domain = file_domain("hup.example.com", "certs/domains/hup.pem");
        Write::InPlace.write(
            &config,
            config_yaml(&format!(
                "{MASTER_WITH_FILE}{new_domain}{other_domain}{hup_domain}"
            )),
        );
        for _ in 0..3 {
            reload.send(Reload::All);
        }
        let took = wait_served(ws, hup_sni, &master, &hup, &known, "SIGHUP").await;
        eprintln!("domain added, then SIGHUP: served after {took:?}");
        assert_served(ws, new_sni, &new, &known, "after SIGHUP").await;
        assert_served(ws, other_sni, &other, &known, "after SIGHUP").await;

        // Removed again: the names fall back by the resolution rules.
        Write::RenameOver.write(
            &config,
            config_yaml(&format!("{MASTER_WITH_FILE}{other_domain}{hup_domain}")),
        );
        wait_served(ws, new_sni, &new, &master, &known, "removed: the master").await;
        assert_served(bare, new_sni, &master, &known, "removed, other listener").await;
        Write::InPlace.write(
            &config,
            config_yaml(&format!("{MASTER_WITH_FILE}{hup_domain}")),
        );
        reload.send(Reload::All);
        wait_served(
            ws,
            other_sni,
            &other,
            &master,
            &known,
            "outside removed: master",
        )
        .await;

        // The master loses its certificate: certdir, or default without one.
        let x_sni = Some("x.example.com");
        assert_served(ws, x_sni, &master, &known, "before").await;
        Write::RenameOver.write(
            &config,
            config_yaml(&format!("{MASTER_WITHOUT_CERT}{hup_domain}")),
        );
        wait_served(ws, x_sni, &master, &certdir, &known, "certdir").await;
        assert_served(bare, x_sni, &default, &known, "no certdir: default").await;
        assert_served(bare, other_sni, &default, &known, "no certdir: default").await;
        assert_served(ws, Some("a.hup.example.com"), &hup, &known, "hup stays").await;
        proxy.stop().await;
    })
    .await;
}

// ---- 4. damaged files keep the last good certificate -----------------------

/// How many ways [`damages`] has.
const DAMAGE_KINDS: usize = 5;

/// Ways of damaging a file, given the certificate it should hold and
/// another one: (what, contents).
fn damages(text: &str, other_key: &str, own_cert: &str) -> Vec<(&'static str, Vec<u8>)> {
    // Damage a base64 line in the middle of the first block.
    let mut corrupt: Vec<String> = text.lines().map(str::to_string).collect();
    corrupt[2] = format!("!!{}??", &corrupt[2][4..]);
    let corrupt = corrupt.join("\n") + "\n";
    vec![
        ("corrupt base64", corrupt.into_bytes()),
        ("truncated", text.as_bytes()[..text.len() / 2].to_vec()),
        ("empty", Vec::new()),
        (
            "binary garbage",
            (0..600u32).map(|i| (i * 37 % 256) as u8 | 0x80).collect(),
        ),
        (
            "mismatched key",
            format!("{other_key}{own_cert}").into_bytes(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_certdir_keeps_the_last_good_pair() {
    within(Duration::from_secs(120), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut known = Known::default();
        let pairs = certs(6, &[SWAP_NAME], "pair", &mut known);
        let stranger = cert(&["stranger.example.com"]);
        let default = cert(&["default.invalid"]);
        known.add("the default", &default);
        let yaml = certdir_setup(dir.path(), &pairs[0], &default);
        let config = dir.path().join("proxy.yaml");
        let (proxy, _reload) = TestProxy::start_with_reload(dir.path(), &yaml).await;
        let addr = proxy.addr();
        let sni = Some(SWAP_NAME);
        let (key, crt) = certdir_paths(dir.path());
        let certdir = dir.path().join("certs/ws");
        assert_served(addr, sni, &pairs[0], &known, "at start").await;

        for i in 0..DAMAGE_KINDS {
            let current = &pairs[i];
            // Alternate the damaged file and the way it is written; the
            // mismatched key is a key.
            let on_key = i % 2 == 1 || i == 4;
            let (target, name, text) = if on_key {
                (&key, "server.key", &current.key_pem)
            } else {
                (&crt, "server.crt", &current.cert_pem)
            };
            let (what, contents) = damages(text, &stranger.key_pem, "").swap_remove(i);
            let how = if i % 2 == 0 {
                Write::InPlace
            } else {
                Write::RenameOver
            };
            let what = format!("{what} {name} ({how:?})");
            how.write(target, &contents);
            hold_served(addr, sni, current, &known, &what).await;
            let (code, out) = sniwalk_check(&config).await;
            assert_eq!(code, Some(1), "{what}: check exits 1:\n{out}");
            // "certdir DIR: server.key: ..." or "DIR/server.key is not text".
            let names_it = out.contains(&format!("{}: {name}", certdir.display()))
                || out.contains(&certdir.join(name).display().to_string());
            assert!(names_it, "{what}: check names the damaged file:\n{out}");

            // Fixed: the next pair, key first.
            let next = &pairs[i + 1];
            Write::RenameOver.write(&key, &next.key_pem);
            Write::RenameOver.write(&crt, &next.cert_pem);
            wait_served(addr, sni, current, next, &known, &format!("{what}, fixed")).await;
        }
        let (code, out) = sniwalk_check(&config).await;
        assert_eq!(code, Some(0), "check is happy again:\n{out}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_certificate_file_keeps_the_last_good_certificate() {
    within(Duration::from_secs(120), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut known = Known::default();
        let master = cert(&["example.com", "*.example.com"]);
        known.add("the master", &master);
        let t1 = certs(6, &["t1.example.com"], "t1", &mut known);
        let stranger = cert(&["stranger.example.com"]);
        let default = cert(&["default.invalid"]);
        known.add("the default", &default);
        cert(&[SWAP_NAME]).write_certdir(&dir.path().join("certs/ws"));
        default.write_pem(&dir.path().join("certs/default.pem"));
        master.write_pem(&dir.path().join("certs/domains/example.com.pem"));
        let t1_file = dir.path().join("certs/domains/t1.pem");
        t1[0].write_pem(&t1_file);
        let yaml = config_yaml(&format!(
            "{MASTER_WITH_FILE}{}",
            file_domain("t1.example.com", "certs/domains/t1.pem")
        ));
        let config = dir.path().join("proxy.yaml");
        let (proxy, _reload) = TestProxy::start_with_reload(dir.path(), &yaml).await;
        let addr = proxy.addr();
        let sni = Some("t1.example.com");
        assert_served(addr, sni, &t1[0], &known, "at start").await;

        for i in 0..DAMAGE_KINDS {
            let current = &t1[i];
            let (what, contents) =
                damages(&current.pem, &stranger.key_pem, &current.cert_pem).swap_remove(i);
            let how = if i % 2 == 0 {
                Write::RenameOver
            } else {
                Write::InPlace
            };
            let what = format!("{what} ({how:?})");
            how.write(&t1_file, &contents);
            hold_served(addr, sni, current, &known, &what).await;
            assert_served(addr, Some("a.t1.example.com"), current, &known, &what).await;
            let (code, out) = sniwalk_check(&config).await;
            assert_eq!(code, Some(1), "{what}: check exits 1:\n{out}");
            assert!(
                out.contains(&t1_file.display().to_string()) && out.contains("t1.example.com"),
                "{what}: check names the domain and the file:\n{out}"
            );

            let next = &t1[i + 1];
            Write::RenameOver.write(&t1_file, &next.pem);
            wait_served(addr, sni, current, next, &known, &format!("{what}, fixed")).await;
        }
        let (code, out) = sniwalk_check(&config).await;
        assert_eq!(code, Some(0), "check is happy again:\n{out}");
        proxy.stop().await;
    })
    .await;
}

// ---- 5. deletion is intent -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_files_fall_through_and_come_back() {
    within(Duration::from_secs(90), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut known = Known::default();
        let master = cert(&["example.com", "*.example.com"]);
        known.add("the master", &master);
        let pairs = certs(3, &[SWAP_NAME], "pair", &mut known);
        let t1 = certs(2, &["t1.example.com"], "t1", &mut known);
        let default = cert(&["default.invalid"]);
        known.add("the default", &default);
        pairs[0].write_certdir(&dir.path().join("certs/ws"));
        default.write_pem(&dir.path().join("certs/default.pem"));
        master.write_pem(&dir.path().join("certs/domains/example.com.pem"));
        let t1_file = dir.path().join("certs/domains/t1.pem");
        t1[0].write_pem(&t1_file);
        let yaml = config_yaml(&format!(
            "{MASTER_WITH_FILE}{}",
            file_domain("t1.example.com", "certs/domains/t1.pem")
        ));
        let (proxy, _reload) = TestProxy::start_with_reload(dir.path(), &yaml).await;
        let (ws, bare) = (proxy.addrs[0], proxy.addrs[1]);
        let t1_sni = Some("t1.example.com");
        let (key, crt) = certdir_paths(dir.path());
        // Without SNI the walk does not run: the certdir serves.
        assert_served(ws, None, &pairs[0], &known, "at start").await;
        assert_served(ws, t1_sni, &t1[0], &known, "at start").await;

        // A domain's file deleted: its names walk up to the master.
        std::fs::remove_file(&t1_file).expect("delete t1.pem");
        let took = wait_served(ws, t1_sni, &t1[0], &master, &known, "t1.pem deleted").await;
        eprintln!("certificate_file deleted: parent served after {took:?}");
        assert_served(ws, Some("x.t1.example.com"), &master, &known, "below t1").await;
        assert_served(bare, t1_sni, &master, &known, "other listener").await;
        // ... and back when a file appears again.
        t1[1].write_pem(&t1_file);
        wait_served(ws, t1_sni, &master, &t1[1], &known, "t1.pem written again").await;

        // A certdir's files deleted: the default serves.
        std::fs::remove_file(&key).expect("delete server.key");
        std::fs::remove_file(&crt).expect("delete server.crt");
        wait_served(ws, None, &pairs[0], &default, &known, "certdir emptied").await;
        hold_served(ws, None, &default, &known, "certdir still empty").await;
        pairs[1].write_certdir(&dir.path().join("certs/ws"));
        wait_served(
            ws,
            None,
            &default,
            &pairs[1],
            &known,
            "certdir filled again",
        )
        .await;

        assert_served(ws, t1_sni, &t1[1], &known, "t1 unchanged").await;
        proxy.stop().await;
    })
    .await;
}

/// A certdir or the folder of a certificate_file removed as a whole (a
/// deploy that replaces the directory) and made again: served again, and
/// later changes inside are still seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_and_recreated_directories_are_watched_again() {
    within(Duration::from_secs(90), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut known = Known::default();
        let master = cert(&["example.com", "*.example.com"]);
        known.add("the master", &master);
        let pairs = certs(7, &[SWAP_NAME], "pair", &mut known);
        let t1 = certs(5, &["t1.example.com"], "t1", &mut known);
        let default = cert(&["default.invalid"]);
        known.add("the default", &default);
        // Folders of their own, so no other watch covers their parents.
        let certdir = dir.path().join("tls/ws");
        let t1_dir = dir.path().join("domains/t1");
        let t1_file = t1_dir.join("t1.pem");
        pairs[0].write_certdir(&certdir);
        default.write_pem(&dir.path().join("certs/default.pem"));
        master.write_pem(&dir.path().join("certs/domains/example.com.pem"));
        t1[0].write_pem(&t1_file);
        let yaml = config_yaml(&format!(
            "{MASTER_WITH_FILE}{}",
            file_domain("t1.example.com", "domains/t1/t1.pem")
        ))
        .replace("certdir: certs/ws", "certdir: tls/ws");
        let (proxy, _reload) = TestProxy::start_with_reload(dir.path(), &yaml).await;
        let ws = proxy.addr();
        let t1_sni = Some("t1.example.com");
        assert_served(ws, None, &pairs[0], &known, "at start").await;
        assert_served(ws, t1_sni, &t1[0], &known, "at start").await;

        for round in 0..2 {
            let (old, new, newer) = (
                &pairs[2 * round],
                &pairs[2 * round + 1],
                &pairs[2 * round + 2],
            );
            std::fs::remove_dir_all(&certdir).expect("delete the certdir");
            wait_served(ws, None, old, &default, &known, "certdir removed").await;
            new.write_certdir(&certdir);
            wait_served(ws, None, &default, new, &known, "certdir made again").await;
            Write::RenameOver.write(&certdir.join("server.key"), &newer.key_pem);
            Write::RenameOver.write(&certdir.join("server.crt"), &newer.cert_pem);
            wait_served(ws, None, new, newer, &known, "a swap in the new certdir").await;

            let (old, new, newer) = (&t1[2 * round], &t1[2 * round + 1], &t1[2 * round + 2]);
            std::fs::remove_dir_all(&t1_dir).expect("delete t1's folder");
            wait_served(ws, t1_sni, old, &master, &known, "t1's folder removed").await;
            new.write_pem(&t1_file);
            wait_served(ws, t1_sni, &master, new, &known, "t1's folder made again").await;
            Write::RenameOver.write(&t1_file, &newer.pem);
            wait_served(
                ws,
                t1_sni,
                new,
                newer,
                &known,
                "t1 replaced in the new folder",
            )
            .await;
        }

        // A new certdir moved into place, the old one moved aside.
        let staged = dir.path().join("tls/ws.new");
        pairs[5].write_certdir(&staged);
        std::fs::rename(&certdir, dir.path().join("tls/ws.old")).expect("move the old aside");
        std::fs::rename(&staged, &certdir).expect("move the new into place");
        // Between the two moves there is no certdir: the default may serve.
        let meanwhile = [&pairs[4], &default];
        wait_served_via(ws, None, &meanwhile, &pairs[5], &known, "certdir moved in").await;
        Write::RenameOver.write(&certdir.join("server.key"), &pairs[6].key_pem);
        Write::RenameOver.write(&certdir.join("server.crt"), &pairs[6].cert_pem);
        wait_served(
            ws,
            None,
            &pairs[5],
            &pairs[6],
            &known,
            "a swap in the moved-in certdir",
        )
        .await;
        proxy.stop().await;
    })
    .await;
}

/// Nothing reloads without a cause: reading a source (the reload task's
/// own reads, `sniwalk check`) is no change. So a change the watcher
/// cannot see (a certdir whose files are symlinks into an unwatched folder,
/// rewritten there) waits for SIGHUP, which then picks it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_no_change_and_sighup_sees_what_the_watcher_cannot() {
    within(Duration::from_secs(60), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut known = Known::default();
        let pairs = certs(2, &[SWAP_NAME], "pair", &mut known);
        let marker = cert(&["marker.example.com"]);
        known.add("the marker", &marker);
        let default = cert(&["default.invalid"]);
        known.add("the default", &default);
        default.write_pem(&dir.path().join("certs/default.pem"));
        let outside = dir.path().join("outside");
        pairs[0].write_certdir(&outside);
        let certdir = dir.path().join("certs/ws");
        std::fs::create_dir_all(&certdir).expect("certdir");
        for name in ["server.key", "server.crt"] {
            std::os::unix::fs::symlink(outside.join(name), certdir.join(name))
                .expect("symlink into the unwatched folder");
        }
        let config = dir.path().join("proxy.yaml");
        let (proxy, reload) =
            TestProxy::start_with_reload(dir.path(), &config_yaml(MASTER_WITHOUT_CERT)).await;
        let addr = proxy.addr();
        let sni = Some(SWAP_NAME);
        assert_served(addr, sni, &pairs[0], &known, "at start").await;

        // A configuration save, seen once it is served: the reload read
        // proxy.yaml and every source.
        let marker_domain = inline_domain("marker.example.com", &marker);
        Write::InPlace.write(
            &config,
            config_yaml(&format!("{MASTER_WITHOUT_CERT}{marker_domain}")),
        );
        let marker_sni = Some("marker.example.com");
        wait_served(addr, marker_sni, &pairs[0], &marker, &known, "config saved").await;

        // The certdir's targets rewritten where nothing watches.
        write_in_place(&outside.join("server.key"), pairs[1].key_pem.as_bytes());
        write_in_place(&outside.join("server.crt"), pairs[1].cert_pem.as_bytes());
        hold_served(addr, sni, &pairs[0], &known, "no reload after the last one").await;
        let (code, out) = sniwalk_check(&config).await;
        assert_eq!(code, Some(0), "{out}");
        hold_served(
            addr,
            sni,
            &pairs[0],
            &known,
            "no reload after `check` read the files",
        )
        .await;

        reload.send(Reload::All);
        let took = wait_served(addr, sni, &pairs[0], &pairs[1], &known, "SIGHUP").await;
        eprintln!("a change only SIGHUP sees: served {took:?} after SIGHUP");
        assert_served(addr, marker_sni, &marker, &known, "after SIGHUP").await;
        proxy.stop().await;
    })
    .await;
}

// ---- 6. swaps under load ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_swaps_under_handshake_load_and_an_open_websocket() {
    within(Duration::from_secs(120), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut known = Known::default();
        let pairs = certs(3, &[SWAP_NAME], "pair", &mut known);
        let default = cert(&["default.invalid"]);
        known.add("the default", &default);
        let backend = HttpBackend::start().await;
        pairs[0].write_certdir(&dir.path().join("certs/ws"));
        default.write_pem(&dir.path().join("certs/default.pem"));
        let route = format!(
            "      - host: \"*\"\n        backend: \"{}\"\n",
            backend.url()
        );
        let yaml = format!(
            "master_domain: example.com\nstate_dir: state\ndefault_certificate: certs/default.pem\n\
             domains:\n{MASTER_WITHOUT_CERT}listeners:\n{}",
            listener("ws", 1, "certs/ws", &route)
        );
        let (proxy, reload) = TestProxy::start_with_reload(dir.path(), &yaml).await;
        let addr = proxy.addr();
        let valid: Arc<Vec<String>> = Arc::new(pairs.iter().map(|p| p.sha256.clone()).collect());
        let known = Arc::new(known);

        // A WebSocket through the proxy, opened before the swaps.
        let mut socket = common::connect(addr, Some(SWAP_NAME), &[b"http/1.1"]).await;
        within(
            Duration::from_secs(10),
            "WebSocket handshake",
            ws::client_handshake(&mut socket, SWAP_NAME, "/ws"),
        )
        .await;
        echo(&mut socket, "before the swaps".into()).await;

        // Four clients handshaking in a loop until the swaps are done.
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (stop, valid, known) = (stop.clone(), valid.clone(), known.clone());
                tokio::spawn(async move {
                    let mut handshakes = 0usize;
                    let mut failures: Vec<String> = Vec::new();
                    let mut seen: Vec<String> = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match try_served_leaf(addr, Some(SWAP_NAME)).await {
                            Ok(sha) if valid.contains(&sha) => {
                                if seen.last() != Some(&sha) {
                                    seen.push(sha);
                                }
                            }
                            Ok(sha) => failures.push(format!("served {}", known.label(&sha))),
                            Err(e) => failures.push(e),
                        }
                        handshakes += 1;
                    }
                    (handshakes, failures, seen)
                })
            })
            .collect();

        // 100 swaps: key and certificate renamed over one at a time, in
        // alternating order, a few ms apart and 20-50 ms between swaps.
        // Renames of one file closer than the debounce postpone its event,
        // so every 20th swap holds the half-swapped pair for longer than
        // the debounce: the watcher then reloads a mismatched pair.
        let certdir = dir.path().join("certs/ws");
        let swap_pairs = pairs.clone();
        let stop_hups = Arc::new(AtomicBool::new(false));
        let last_swap_alone = stop_hups.clone();
        let swapping = tokio::task::spawn_blocking(move || {
            let (key, crt) = (certdir.join("server.key"), certdir.join("server.crt"));
            let started = Instant::now();
            for i in 1..=100usize {
                if i == 100 {
                    // The last swap is the watcher's alone to pick up.
                    last_swap_alone.store(true, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                }
                let pair = &swap_pairs[i % swap_pairs.len()];
                let (first, second) = if i % 2 == 0 {
                    ((&key, &pair.key_pem), (&crt, &pair.cert_pem))
                } else {
                    ((&crt, &pair.cert_pem), (&key, &pair.key_pem))
                };
                rename_over(first.0, first.1.as_bytes());
                let half = if i % 20 == 0 { 400 } else { i * 7 % 11 };
                std::thread::sleep(Duration::from_millis(half as u64));
                rename_over(second.0, second.1.as_bytes());
                std::thread::sleep(Duration::from_millis(20 + (i * 13 % 31) as u64));
            }
            started.elapsed()
        });
        // SIGHUP-style reloads meanwhile, so rebuilds also read the certdir
        // at arbitrary moments of the swaps, until the last one.
        let hups = {
            let reload = reload.clone();
            let stop = stop_hups.clone();
            tokio::spawn(async move {
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    reload.send(Reload::All);
                    sent += 1;
                    tokio::time::sleep(Duration::from_millis(17 + sent % 23)).await;
                }
                sent
            })
        };
        // The tunnel echoes while the swaps go on.
        let mut echoes = 0;
        while !swapping.is_finished() {
            echo(&mut socket, format!("during the swaps {echoes}")).await;
            echoes += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let swaps_took = swapping.await.expect("swapping thread");
        let swaps_done = Instant::now();
        let hups = hups.await.expect("SIGHUP task");
        let last = &pairs[100 % pairs.len()];
        // Whichever pair served last before, the last one must come.
        let deadline = Instant::now() + PICKUP;
        loop {
            let sha = try_served_leaf(addr, Some(SWAP_NAME))
                .await
                .unwrap_or_else(|e| panic!("handshake after the swaps failed: {e}"));
            assert!(
                valid.contains(&sha),
                "after the swaps: {}",
                known.label(&sha)
            );
            if sha == last.sha256 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the last pair is not served {PICKUP:?} after the swaps: {}",
                known.label(&sha)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let last_took = swaps_done.elapsed();
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        let mut failures = Vec::new();
        let mut changes = 0;
        for client in clients {
            let (handshakes, failed, seen) = client.await.expect("client task");
            total += handshakes;
            failures.extend(failed);
            changes += seen.len().saturating_sub(1);
        }
        eprintln!(
            "100 swaps in {swaps_took:?}; {total} handshakes by 4 clients, {} failed; \
             {changes} leaf changes seen; {hups} SIGHUP-style reloads; {echoes} WebSocket \
             echoes during the swaps; the last pair served {last_took:?} after the swaps ended",
            failures.len()
        );
        assert!(
            failures.is_empty(),
            "{} of {total} handshakes failed or served a wrong leaf, e.g. {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        assert!(total >= 100, "only {total} handshakes during the swaps");
        assert!(
            changes >= 20,
            "the clients saw only {changes} leaf changes: were the swaps picked up under load?"
        );
        assert!(echoes >= 5, "only {echoes} echoes during the swaps");

        // The tunnel opened before the swaps is still there.
        echo(&mut socket, "after the swaps".into()).await;
        ws::write_frame(
            &mut socket,
            ws::CLOSE,
            &1000u16.to_be_bytes(),
            Some([1, 2, 3, 4]),
        )
        .await
        .expect("send close");
        let (opcode, _) = within(
            Duration::from_secs(5),
            "close echoed",
            ws::read_frame(&mut socket),
        )
        .await
        .expect("close echoed");
        assert_eq!(opcode, ws::CLOSE);
        drop(socket);
        proxy.stop().await;
    })
    .await;
}

/// Sends a text frame over a WebSocket and expects it back within 5 s.
async fn echo(socket: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>, text: String) {
    let mask = Some([0x0a, 0x1b, 0x2c, 0x3d]);
    ws::write_frame(socket, ws::TEXT, text.as_bytes(), mask)
        .await
        .expect("send frame");
    let (opcode, got) = within(
        Duration::from_secs(5),
        "WebSocket echo",
        ws::read_frame(socket),
    )
    .await
    .expect("echo");
    assert_eq!((opcode, got), (ws::TEXT, text.into_bytes()));
}

// ---- 7. a listener's bind survives a configuration edit --------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_bind_is_kept_and_route_change_applies() {
    within(Duration::from_secs(60), "test", async {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = HttpBackend::start().await;
        let free_port = || {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            socket.local_addr().expect("addr").port()
        };
        let (new_port, extra_port) = (free_port(), free_port());
        let yaml = |bind: &str, body: &str, extra: &str| {
            format!(
                "master_domain: example.com\nstate_dir: state\ndomains:\n  example.com: {{}}\n\
                 listeners:\n  - name: web\n    kind: https\n    bind: {bind}\n    access_log: false\n\
                 \x20   routes:\n      - host: api.example.com\n        backend: \"{}\"\n\
                 \x20     - host: \"*\"\n        respond: {{ status: 200, body: \"{body}\\n\" }}\n{extra}",
                backend.url()
            )
        };
        let (proxy, _reload) =
            TestProxy::start_with_reload(dir.path(), &yaml("127.0.0.1:1", "v1", "")).await;
        let addr = proxy.addr();
        let (status, body) = https_get(addr, Some("example.com"), "example.com", "/").await;
        assert_eq!((status, body.as_str()), (200, "v1\n"));

        // One edit: a new bind, a new listener, a changed route.
        let extra = format!(
            "  - name: extra\n    kind: https\n    bind: 127.0.0.1:{extra_port}\n    routes:\n      - host: \"*\"\n        status_page: true\n"
        );
        let config = dir.path().join("proxy.yaml");
        Write::RenameOver.write(
            &config,
            yaml(&format!("127.0.0.1:{new_port}"), "v2", &extra),
        );
        let start = Instant::now();
        loop {
            let (status, body) = https_get(addr, Some("example.com"), "example.com", "/").await;
            assert_eq!(status, 200, "the old bind answers: {body}");
            if body == "v2\n" {
                break;
            }
            assert_eq!(body, "v1\n");
            assert!(
                start.elapsed() < PICKUP,
                "the route change is not applied after {PICKUP:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("route change applied after {:?}", start.elapsed());
        // The listener keeps its socket; nothing is bound for the edit.
        for port in [new_port, extra_port] {
            assert!(
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_err(),
                "port {port} of the edited configuration is bound without a restart"
            );
        }
        hold_route(addr).await;
        let (status, seen) = https_get(addr, Some("api.example.com"), "api.example.com", "/x").await;
        assert_eq!(status, 200, "the backend route still works: {seen}");
        assert!(seen.contains("\"target\":\"/x\""), "{seen}");
        proxy.stop().await;
    })
    .await;
}

/// The new route keeps answering for [`HOLD`] (a reload must not undo it).
async fn hold_route(addr: SocketAddr) {
    let start = Instant::now();
    while start.elapsed() < HOLD {
        let (status, body) = https_get(addr, Some("example.com"), "example.com", "/").await;
        assert_eq!((status, body.as_str()), (200, "v2\n"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
