//! DNS-01 through RFC 2136 against a real BIND 9 and a real Pebble that
//! resolves through it (`-dnsserver`): one order covers a name, its
//! wildcard and a name in another zone; the certificate is served to
//! `a.` and `b.tenant.test` and the other listed name (checked by a client
//! that verifies the name against Pebble's root), not to `x.y.tenant.test`
//! (a wildcard covers one label); the TXT records are gone from the zone
//! after validation. With the DNS server down a renewal fails at
//! `answer_challenge` naming the server, is put on the retry backoff, and
//! the old certificate keeps serving; once the server is back an order
//! goes through.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::acme_proxy::AcmeProxy;
use common::bind::BindServer;
use common::pebble::{PebbleEnv, PebbleOptions};
use rustls::pki_types::ServerName;
use sniwalk::state_layout::StateLayout;
use tokio::net::{TcpListener, TcpStream};

const TENANT: &str = "tenant.test";
const PHONE: &str = "phone.customer.test";

/// The DNS names of `proxy`'s stored certificate for TENANT, sorted.
fn stored_names(proxy: &AcmeProxy) -> Vec<String> {
    let path = StateLayout::new(&proxy.state_dir).stored_certificate(TENANT);
    let text = std::fs::read_to_string(&path).expect("stored certificate");
    let mut names = sniwalk::pem::parse_certificate_pem(&text)
        .expect("stored certificate parses")
        .leaf
        .dns_names;
    names.sort();
    names
}

fn yaml(env: &PebbleEnv, bind: &BindServer) -> String {
    format!(
        "master_domain: example.test\nstate_dir: state\ndomains:\n  example.test: {{}}\n  \
         {TENANT}:\n    names: [{TENANT}, \"*.{TENANT}\", {PHONE}]\n    acme: {{ enabled: true }}\n\
         acme:\n  directory: {}\n  ca_roots: [{}]\n  account_email: ops@example.test\n  \
         challenge: dns-01\n  rfc2136:\n    server: {}\n    tsig_key_name: {}\n    \
         tsig_secret_file: {}\n    propagation_timeout: 10s\n\
         listeners:\n  - name: web\n    kind: https\n    bind: 127.0.0.1:2\n    access_log: false\n    \
         routes:\n      - {{ host: \"*\", respond: {{ body: hello }} }}\n",
        env.directory_url(),
        env.ca_pem_path().display(),
        bind.addr(),
        bind.key_name,
        bind.keygen_file.display(),
    )
}

/// The leaf served for `sni` when a client verifying it against `client`'s
/// roots accepts it (its SHA-256), or the verification error.
async fn verified_leaf(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    sni: &str,
) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let chain = stream.get_ref().1.peer_certificates().ok_or("no chain")?;
    Ok(sniwalk::pem::sha256_fingerprint(chain[0].as_ref()))
}

async fn wait_verified(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    sni: &str,
    limit: Duration,
    logs: impl Fn() -> String,
) -> String {
    let started = Instant::now();
    loop {
        match verified_leaf(addr, client, sni).await {
            Ok(sha) => return sha,
            Err(e) if started.elapsed() > limit => {
                panic!(
                    "{sni} never served a certificate from Pebble: {e}\n{}",
                    logs()
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_and_several_names_through_bind_then_dns_server_down() {
    common::within(Duration::from_secs(180), "dns-01 against BIND", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut bind =
            BindServer::start(&tmp.path().join("bind"), &[TENANT, "customer.test"]).await;
        let env = PebbleEnv::start_with(
            &tmp.path().join("pebble"),
            PebbleOptions {
                dns_server: Some(bind.addr()),
                ..PebbleOptions::default()
            },
        )
        .await;
        let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        let proxy = AcmeProxy::start(&tmp.path().join("proxy"), &yaml(&env, &bind), vec![socket]);
        let client = common::pebble::client_trusting(&env.root_pem().await);
        let logs = || format!("{}\n{}", env.logs(), bind.logs());

        // One order, three names: each verifies against Pebble's root.
        let first = wait_verified(
            addr,
            &client,
            "a.tenant.test",
            Duration::from_secs(60),
            logs,
        )
        .await;
        for sni in ["b.tenant.test", TENANT, PHONE] {
            assert_eq!(
                verified_leaf(addr, &client, sni).await.as_deref(),
                Ok(first.as_str()),
                "{sni} gets the one certificate"
            );
        }
        assert_eq!(
            stored_names(&proxy),
            ["*.tenant.test", "phone.customer.test", "tenant.test"]
        );
        // A wildcard covers one label: two below get the tree's fallback
        // (no certificate on the master: the generated default).
        let deep = common::served_leaf(addr, Some("x.y.tenant.test")).await;
        assert_ne!(deep, first, "x.y.tenant.test must not get *.tenant.test");
        assert!(
            verified_leaf(addr, &client, "x.y.tenant.test")
                .await
                .is_err()
        );
        // The TXT records are gone once the CA has looked.
        for name in [
            "_acme-challenge.tenant.test",
            "_acme-challenge.phone.customer.test",
        ] {
            assert_eq!(bind.txt(name).await, Vec::<String>::new(), "{name} removed");
        }
        let status = proxy
            .wait_status_for(TENANT, Duration::from_secs(10), |s| s.in_flight.is_none())
            .await;
        assert_eq!(status.failures, 0, "{status:?}");

        // The DNS server goes down: a renewal fails at answer_challenge,
        // naming the server, and waits for its backoff; the old
        // certificate keeps serving.
        bind.stop();
        proxy.force_order(TENANT);
        let failed = proxy
            .wait_status_for(TENANT, Duration::from_secs(60), |s| {
                s.failures >= 1 && s.in_flight.is_none()
            })
            .await;
        let error = failed.last_error.clone().expect("last error");
        assert_eq!(
            error.step,
            sniwalk::acme::Step::AnswerChallenge,
            "{error:?}"
        );
        assert_eq!(
            error.code, "DnsUpdateFailed",
            "a problem of this side, not the CA's: {error:?}"
        );
        assert!(
            error.message.contains(&bind.addr().to_string()) && error.message.contains("rfc2136"),
            "the error names the server and the field: {}",
            error.message
        );
        let now = sniwalk::unix_now();
        assert!(
            failed.next_attempt > now + 30,
            "retried only after the backoff (next attempt {} at {now})",
            failed.next_attempt
        );
        assert_eq!(
            verified_leaf(addr, &client, "a.tenant.test")
                .await
                .as_deref(),
            Ok(first.as_str()),
            "the old certificate is kept"
        );

        // Back (same port, same zones): an order goes through again.
        bind.restart().await;
        proxy.force_order(TENANT);
        let renewed = proxy
            .wait_status_for(TENANT, Duration::from_secs(60), |s| {
                s.failures == 0 && s.in_flight.is_none()
            })
            .await;
        assert!(
            renewed.last_error.is_none(),
            "a success clears the error: {renewed:?}"
        );
        let started = Instant::now();
        loop {
            let now_served = verified_leaf(addr, &client, "a.tenant.test")
                .await
                .expect("verifies");
            if now_served != first {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never renewed\n{}",
                bind.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        proxy.stop().await;
    })
    .await;
}
