//! External Account Binding (`acme.eab`) and the staging check
//! (`acme.fallback_to_staging`) against real Pebble CAs: Pebble requiring
//! EAB refuses an account without it (and the status says to set
//! `acme.eab`), issues with the right kid and key (served on a real
//! handshake), refuses a wrong key; a key file that is no base64url is a
//! configuration error naming the file. With a "production" CA that fails
//! every order and a working staging CA, the third failure runs one
//! staging check that works, and nothing from staging is stored or served.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::acme_proxy::AcmeProxy;
use common::pebble::{PebbleEnv, PebbleOptions};
use rustls::pki_types::ServerName;
use sniwalk::state_layout::StateLayout;
use tokio::net::{TcpListener, TcpStream};

const SHOP: &str = "shop.example.test";
const KID: &str = "kid-sniwalk-1";
const KID_2: &str = "kid-sniwalk-2";

/// `proxy.yaml` for SHOP with ACME against `directory`, trusting
/// `ca_roots`, with the extra `acme` lines given; an `http` and an
/// `https` listener.
fn yaml(directory: &str, ca_roots: &[&Path], acme: &str) -> String {
    let roots = ca_roots
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "master_domain: example.test\nstate_dir: state\ndomains:\n  example.test: {{}}\n  \
         {SHOP}:\n    acme: {{ enabled: true }}\nacme:\n  directory: {directory}\n  \
         ca_roots: [{roots}]\n  account_email: ops@example.test\n{acme}\
         listeners:\n  - name: plain\n    kind: http\n    bind: 127.0.0.1:1\n    access_log: false\n  \
         - name: web\n    kind: https\n    bind: 127.0.0.1:2\n    access_log: false\n    routes:\n      \
         - {{ host: \"*\", respond: {{ body: hello }} }}\n"
    )
}

async fn bind() -> (TcpListener, SocketAddr) {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    (socket, addr)
}

/// Waits (up to `limit`) for a handshake to SHOP that verifies against
/// `client`'s roots; the leaf's SHA-256.
async fn served_verified(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    limit: Duration,
    env: &PebbleEnv,
) -> String {
    let started = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    loop {
        let attempt = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let name = ServerName::try_from(SHOP.to_string()).map_err(|e| e.to_string())?;
            connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(stream) => {
                let chain = stream.get_ref().1.peer_certificates().expect("chain");
                return sniwalk::pem::sha256_fingerprint(chain[0].as_ref());
            }
            Err(e) if started.elapsed() > limit => {
                panic!(
                    "{SHOP} never served a certificate from Pebble: {e}\n{}",
                    env.logs()
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// A fresh 32-byte MAC key, base64url without padding (as CAs hand out).
fn mac_key() -> String {
    let key: [u8; 32] = std::array::from_fn(|i| {
        (sniwalk::unix_now() as u8)
            .wrapping_mul(31)
            .wrapping_add(i as u8 * 7)
    });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn eab_lines(dir: &Path, kid: &str, key: &str) -> String {
    std::fs::create_dir_all(dir).expect("dir");
    let file = dir.join("eab.key");
    // As saved from a dashboard: with a trailing newline.
    std::fs::write(&file, format!("{key}\n")).expect("key file");
    format!(
        "  eab: {{ kid: {kid}, hmac_key_file: {} }}\n",
        file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eab_required_missing_right_and_wrong() {
    common::within(Duration::from_secs(150), "EAB against Pebble", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (http_socket, http_addr) = bind().await;
        let (https_socket, https) = bind().await;
        let key = mac_key();
        let key_2 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([42u8; 32]);
        let env = PebbleEnv::start_with(
            &tmp.path().join("pebble"),
            PebbleOptions {
                http_port: Some(http_addr.port()),
                eab_required: true,
                eab_keys: vec![
                    (KID.to_string(), key.clone()),
                    (KID_2.to_string(), key_2.clone()),
                ],
                ..PebbleOptions::default()
            },
        )
        .await;
        let directory = env.directory_url();
        let roots = [env.ca_pem_path()];

        // 1. No `acme.eab`: the account is refused, the status says why
        //    and what to set.
        let proxy = AcmeProxy::start(
            &tmp.path().join("without"),
            &yaml(&directory, &roots, ""),
            vec![http_socket, https_socket],
        );
        let status = proxy
            .wait_status_for(SHOP, Duration::from_secs(30), |s| s.last_error.is_some())
            .await;
        let error = status.last_error.expect("error");
        eprintln!("without EAB reads: {}", error.message);
        assert_eq!(error.code, "AccountFailed", "{error:?}");
        assert!(
            error.message.contains("externalAccountRequired"),
            "{}",
            error.message
        );
        assert!(error.message.contains("acme.eab"), "{}", error.message);
        assert!(error.message.contains("hmac_key_file"), "{}", error.message);
        proxy.stop().await;

        // 2. A wrong MAC key for the kid: a clear account error.
        let wrong = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
        let dir = tmp.path().join("wrong");
        let (http_socket, _) = bind().await;
        let (https_socket, _) = bind().await;
        let proxy = AcmeProxy::start(
            &dir,
            &yaml(&directory, &roots, &eab_lines(&dir, KID, &wrong)),
            vec![http_socket, https_socket],
        );
        let status = proxy
            .wait_status_for(SHOP, Duration::from_secs(30), |s| s.last_error.is_some())
            .await;
        let error = status.last_error.expect("error");
        eprintln!("wrong EAB key reads: {}", error.message);
        assert_eq!(error.code, "AccountFailed", "{error:?}");
        assert!(
            error.message.contains("registering the account"),
            "{}",
            error.message
        );
        assert!(error.message.contains("acme.eab"), "{}", error.message);
        proxy.stop().await;

        // 3. The right kid and key: issued, stored and served.
        let dir = tmp.path().join("right");
        let http_socket = TcpListener::bind(http_addr).await.expect("rebind http");
        let (https_socket, https2) = bind().await;
        let _ = https;
        let proxy = AcmeProxy::start(
            &dir,
            &yaml(&directory, &roots, &eab_lines(&dir, KID, &key)),
            vec![http_socket, https_socket],
        );
        let pebble = common::pebble::client_trusting(&env.root_pem().await);
        let leaf = served_verified(https2, &pebble, Duration::from_secs(60), &env).await;
        let stored =
            std::fs::read_to_string(StateLayout::new(&proxy.state_dir).stored_certificate(SHOP))
                .expect("stored");
        let parsed = sniwalk::pem::parse_certificate_pem(&stored).expect("parses");
        assert_eq!(parsed.leaf.sha256, leaf);
        proxy.stop().await;

        // 3b. The same state with another kid (the CA account changed): a
        //     new account bound to it, not the stored one.
        let http_socket = TcpListener::bind(http_addr).await.expect("rebind http");
        let (https_socket, _) = bind().await;
        let proxy = AcmeProxy::start(
            &dir,
            &yaml(&directory, &roots, &eab_lines(&dir, KID_2, &key_2)),
            vec![http_socket, https_socket],
        );
        proxy.force_order(SHOP);
        let stored_path = StateLayout::new(&proxy.state_dir).stored_certificate(SHOP);
        let status = proxy
            .wait_status_for(SHOP, Duration::from_secs(60), |s| {
                let renewed = std::fs::read_to_string(&stored_path).is_ok_and(|t| t != stored);
                s.in_flight.is_none() && (renewed || s.last_error.is_some())
            })
            .await;
        assert!(status.last_error.is_none(), "{status:?}");
        let accounts = std::fs::read_dir(proxy.state_dir.join("acme/accounts"))
            .expect("accounts")
            .count();
        assert_eq!(accounts, 2, "one account per kid");
        proxy.stop().await;

        // 4. A key file that is no base64url: refused when the
        //    configuration loads, naming the file.
        let dir = tmp.path().join("bad");
        std::fs::create_dir_all(&dir).expect("dir");
        let text = yaml(&directory, &roots, &eab_lines(&dir, KID, "not*base64!"));
        std::fs::write(dir.join("proxy.yaml"), text).expect("config");
        let error = sniwalk::config::Config::load(&dir.join("proxy.yaml"))
            .expect_err("refused")
            .to_string();
        eprintln!("bad key file reads: {error}");
        assert!(error.contains("acme.eab.hmac_key_file"), "{error}");
        assert!(error.contains("eab.key"), "{error}");
        assert!(error.contains("base64url"), "{error}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_to_staging_checks_the_setup_and_stores_nothing() {
    common::within(Duration::from_secs(90), "the staging check", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (http_socket, http_addr) = bind().await;
        let (https_socket, https) = bind().await;
        // "Production": requires EAB, none configured: every order fails
        // at the account.
        let production = PebbleEnv::start_with(
            &tmp.path().join("production"),
            PebbleOptions {
                eab_required: true,
                ..PebbleOptions::default()
            },
        )
        .await;
        // Staging works and validates through sniwalk's http listener.
        let staging = PebbleEnv::start_with(
            &tmp.path().join("staging"),
            PebbleOptions {
                http_port: Some(http_addr.port()),
                ..PebbleOptions::default()
            },
        )
        .await;
        let config = yaml(
            &production.directory_url(),
            &[production.ca_pem_path(), staging.ca_pem_path()],
            &format!(
                "  fallback_to_staging: true\n  staging_directory: {}\n",
                staging.directory_url()
            ),
        );
        let proxy = AcmeProxy::start(
            &tmp.path().join("proxy"),
            &config,
            vec![http_socket, https_socket],
        );
        for failures in 1..=2 {
            let status = proxy
                .wait_status_for(SHOP, Duration::from_secs(20), |s| s.failures == failures)
                .await;
            assert!(status.staging_check.is_none(), "not yet: {status:?}");
            proxy.force_order(SHOP);
        }
        let status = proxy
            .wait_status_for(SHOP, Duration::from_secs(40), |s| s.staging_check.is_some())
            .await;
        let check = status.staging_check.clone().expect("check");
        eprintln!("staging check: {check:?}");
        assert!(check.ok, "staging worked: {check:?}\n{}", staging.logs());
        assert_eq!(check.failures, 3, "{check:?}");
        assert_eq!(check.directory, staging.directory_url());
        assert_eq!(status.failures, 3);
        assert_eq!(
            status.last_error.expect("production error").code,
            "AccountFailed"
        );
        // Nothing from staging is stored or served: the parent chain (the
        // generated default) still serves SHOP.
        assert!(
            !StateLayout::new(&proxy.state_dir)
                .stored_certificate(SHOP)
                .exists(),
            "a staging certificate was stored"
        );
        let leaf = common::served_leaf(https, Some(SHOP)).await;
        let default =
            std::fs::read_to_string(proxy.state_dir.join("default.pem")).expect("default");
        let default = sniwalk::pem::parse_certificate_pem(&default).expect("default parses");
        assert_eq!(leaf, default.leaf.sha256, "the default still serves");
        // A separate account at staging, stored like any.
        let accounts = std::fs::read_dir(proxy.state_dir.join("acme/accounts"))
            .expect("accounts")
            .count();
        assert_eq!(accounts, 1, "the staging account (production refused one)");
        proxy.stop().await;
    })
    .await;
}
