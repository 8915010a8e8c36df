//! ACME issuance against a real CA: Pebble validates HTTP-01 through
//! sniwalk's own `http` listener, the certificate is stored where the
//! snapshot loads it, and after a domain reload sniwalk serves it with a
//! chain that verifies up to Pebble's root.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pebble::{PebbleEnv, PebbleOptions};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use sniwalk::acme::{AcmeError, account, order};
use sniwalk::challenge::ChallengeStore;
use sniwalk::reload::Reload;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const DOMAIN: &str = "shop.example.test";
const BROKEN: &str = "broken.example.test";

/// sniwalk in-process: an `http` listener on `http_socket` (the port Pebble
/// validates on) and an `https` listener on a free port.
struct Proxy {
    https: SocketAddr,
    reload: sniwalk::reload::ReloadHandle,
    state_dir: std::path::PathBuf,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), sniwalk::RunError>>,
}

async fn start_proxy(
    dir: &Path,
    http_socket: TcpListener,
    challenges: Arc<ChallengeStore>,
) -> Proxy {
    common::install_provider();
    let yaml = format!(
        "master_domain: example.test\nstate_dir: state\ndomains:\n  example.test: {{}}\n  \
         {DOMAIN}:\n    acme: {{ enabled: true }}\n  {BROKEN}:\n    acme: {{ enabled: true }}\n\
         listeners:\n  - name: plain\n    kind: http\n    bind: 127.0.0.1:1\n    access_log: false\n  \
         - name: web\n    kind: https\n    bind: 127.0.0.1:2\n    access_log: false\n    routes:\n      \
         - {{ host: \"*\", respond: {{ body: hello }} }}\n"
    );
    let path = dir.join("proxy.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let config = sniwalk::config::Config::load(&path).expect("test config is valid");
    let state_dir = config.state_dir.clone();
    let https_socket = TcpListener::bind("127.0.0.1:0").await.expect("bind https");
    let https = https_socket.local_addr().expect("https addr");
    let (reload, reloads) = sniwalk::reload::channel();
    let (shutdown, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(sniwalk::run_with(
        config,
        vec![http_socket, https_socket],
        sniwalk::RunOptions {
            challenges,
            reloads,
        },
        async move {
            let _ = rx.await;
        },
    ));
    Proxy {
        https,
        reload,
        state_dir,
        shutdown,
        task,
    }
}

/// A real handshake with SNI `name`, trusting only `root`; the served chain.
async fn verified_handshake(
    addr: SocketAddr,
    name: &str,
    root: &CertificateDer<'static>,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let stream = tokio::time::timeout(Duration::from_secs(5), connector.connect(server_name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (_, connection) = stream.get_ref();
    Ok(connection
        .peer_certificates()
        .ok_or("no certificates")?
        .iter()
        .map(|c| c.clone().into_owned())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issuance_through_the_http_listener() {
    common::within(Duration::from_secs(120), "the ACME issuance test", async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();

        // The http listener's port is the one Pebble validates HTTP-01 on.
        let http_socket = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let http_port = http_socket.local_addr().expect("http addr").port();
        let env = PebbleEnv::start_with(
            &tmp.path().join("pebble"),
            PebbleOptions {
                http_port: Some(http_port),
                ..PebbleOptions::default()
            },
        )
        .await;
        let challenges = Arc::new(ChallengeStore::default());
        let proxy = start_proxy(tmp.path(), http_socket, challenges.clone()).await;
        let directory = env.directory_url();
        let state_dir = proxy.state_dir.clone();

        // Account: created once, credentials stored 0600, then reused.
        let email = Some("ops@example.test");
        let acct = account::load_or_create(&state_dir, &directory, email, Some(env.ca_pem_path()))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", env.logs()));
        let creds = account::credentials_path(&state_dir, &directory, email);
        assert!(creds.is_file(), "credentials at {}", creds.display());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&creds)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "credentials are private");
        }
        let again = account::load_or_create(&state_dir, &directory, email, Some(env.ca_pem_path()))
            .await
            .expect("account restored");
        assert_eq!(again.id(), acct.id(), "the stored account is reused");

        // Issue and store.
        let issuing = Instant::now();
        let pem = order::issue_http01(&acct, DOMAIN, &challenges, &directory)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", env.logs()));
        eprintln!(
            "issued in {:?} ({:?} since start)",
            issuing.elapsed(),
            started.elapsed()
        );
        let path = order::store(&state_dir, DOMAIN, &pem).await.expect("store");
        assert_eq!(
            path,
            sniwalk::snapshot::stored_certificate_path(&state_dir, DOMAIN)
        );

        let stored = std::fs::read_to_string(&path).expect("read stored");
        let parsed = sniwalk::pem::parse_certificate_pem(&stored).expect("stored text parses");
        assert!(parsed.markers.is_acme_issued(), "{:?}", parsed.markers);
        assert_eq!(
            parsed.markers.value(order::ACME_DIRECTORY_MARKER),
            Some(directory.as_str())
        );
        assert!(parsed.leaf.covers(DOMAIN), "{:?}", parsed.leaf);

        // sniwalk serves it once told, and the chain verifies up to the root.
        let root_pem = env.root_pem().await;
        let root = CertificateDer::from_pem_slice(root_pem.as_bytes()).expect("root PEM");
        proxy.reload.send(Reload::Domain(DOMAIN.to_string()));
        let chain = loop {
            match verified_handshake(proxy.https, DOMAIN, &root).await {
                Ok(chain) => break chain,
                Err(_) if started.elapsed() < Duration::from_secs(100) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("never served a verifiable chain: {e}"),
            }
        };
        assert_eq!(
            sniwalk::pem::sha256_fingerprint(chain[0].as_ref()),
            parsed.leaf.sha256,
            "the stored certificate is served"
        );
        eprintln!("served verified in {:?} since start", started.elapsed());

        // Failure: answers that the listener does not serve cannot be
        // validated; the error names the domain and the step, nothing is
        // written.
        let unconnected = ChallengeStore::default();
        let error = order::issue_http01(&acct, BROKEN, &unconnected, &directory)
            .await
            .expect_err("validation fails");
        let text = error.to_string();
        match &error {
            AcmeError::Order { domain, step, .. } => {
                assert_eq!(domain, BROKEN);
                assert_eq!(*step, "validating the http-01 challenge", "{text}");
            }
            other => panic!("unexpected error: {other}"),
        }
        assert!(text.contains(BROKEN), "{text}");
        assert!(
            text.contains("urn:ietf:params:acme:error:"),
            "CA problem kept: {text}"
        );
        eprintln!("failure reads: {text}");
        assert!(
            !sniwalk::snapshot::stored_certificate_path(&state_dir, BROKEN).exists(),
            "nothing stored for {BROKEN}"
        );

        let _ = proxy.shutdown.send(());
        common::within(Duration::from_secs(10), "proxy shutdown", proxy.task)
            .await
            .expect("join")
            .expect("proxy ran");
    })
    .await;
}
