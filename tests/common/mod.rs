//! Test support: certificates made at test time, sniwalk run in-process on
//! 127.0.0.1:0, and a real TLS client that reports the leaf it was served.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod acme_proxy;
pub mod backends;
pub mod bind;
pub mod etcd;
pub mod farm;
pub mod haproxy;
pub mod instances;
pub mod pebble;
pub mod scrape;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A certificate made for a test: the `certificate_pem` text, its key and
/// certificate separately, and the leaf's SHA-256 fingerprint.
#[derive(Clone, Debug)]
pub struct TestCert {
    pub pem: String,
    pub key_pem: String,
    pub cert_pem: String,
    pub sha256: String,
}

impl TestCert {
    /// Writes `server.key` and `server.crt` into `dir` (created).
    pub fn write_certdir(&self, dir: &Path) {
        std::fs::create_dir_all(dir).expect("create certdir");
        std::fs::write(dir.join("server.key"), &self.key_pem).expect("write server.key");
        std::fs::write(dir.join("server.crt"), &self.cert_pem).expect("write server.crt");
    }

    /// Writes the `certificate_pem` text to `path`.
    pub fn write_pem(&self, path: &Path) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(path, &self.pem).expect("write pem");
    }

    /// The text indented for a YAML block scalar under a domain.
    pub fn yaml_block(&self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        self.pem.lines().map(|l| format!("{pad}{l}\n")).collect()
    }
}

/// A self-signed ECDSA P-256 certificate for `names`.
pub fn cert(names: &[&str]) -> TestCert {
    cert_valid_for(names, Duration::from_secs(365 * 86_400))
}

/// A self-signed certificate valid from an hour ago for `validity`.
pub fn cert_valid_for(names: &[&str], validity: Duration) -> TestCert {
    let start = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    cert_between(names, start, start + validity)
}

/// A self-signed certificate valid between two instants.
pub fn cert_between(
    names: &[&str],
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> TestCert {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        names.first().copied().unwrap_or("test"),
    );
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    let certificate = params.self_signed(&key).expect("self-signed");
    let key_pem = key.serialize_pem();
    let cert_pem = certificate.pem();
    TestCert {
        pem: format!("{key_pem}{cert_pem}"),
        sha256: sniwalk::pem::sha256_fingerprint(certificate.der()),
        key_pem,
        cert_pem,
    }
}

/// A CA for tests: its PEM and the issuer that signs with it.
pub fn test_ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), rcgen::Issuer::new(params, key))
}

/// Installs aws-lc-rs as the process default crypto provider once.
pub fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// sniwalk running in-process on 127.0.0.1:0 for each configured listener.
pub struct TestProxy {
    pub dir: PathBuf,
    pub addrs: Vec<SocketAddr>,
    /// The kind of each listener, in order.
    config_kinds: Vec<sniwalk::config::ListenerKind>,
    /// Existing folders the reload task must watch (see
    /// [`TestProxy::start_with_reload`]).
    source_dirs: Vec<PathBuf>,
    /// The metrics the proxy counts into (see
    /// [`TestProxy::start_with_metrics`]).
    pub metrics: Option<Arc<sniwalk::metrics::Metrics>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), sniwalk::RunError>>>,
}

impl TestProxy {
    /// Writes `yaml` to `dir/proxy.yaml`, loads it and starts the proxy.
    /// The configured binds are ignored: every listener gets a port of its
    /// own on 127.0.0.1.
    pub async fn start(dir: &Path, yaml: &str) -> TestProxy {
        Self::launch(dir, yaml, Launch::Plain).await
    }

    /// [`TestProxy::start`] through `run_with_challenges`, sharing
    /// `challenges` with the test.
    pub async fn start_with_challenges(
        dir: &Path,
        yaml: &str,
        challenges: Arc<sniwalk::challenge::ChallengeStore>,
    ) -> TestProxy {
        Self::launch(dir, yaml, Launch::Challenges(challenges)).await
    }

    /// [`TestProxy::start`] through `run_with`, returning the handle of the
    /// reload channel (`send(Reload::All)` is what SIGHUP does). Returns
    /// once the proxy has answered a TLS handshake and (on Linux) the
    /// reload task watches the folders of the configuration, of every
    /// `certificate_file`, of the default certificate and every certdir
    /// that exists, so a change made next is seen.
    pub async fn start_with_reload(
        dir: &Path,
        yaml: &str,
    ) -> (TestProxy, sniwalk::reload::ReloadHandle) {
        let (handle, receiver) = sniwalk::reload::channel();
        let proxy = Self::launch(dir, yaml, Launch::Reload(receiver)).await;
        let first_tls = proxy
            .config_kinds
            .iter()
            .position(|kind| kind.terminates_tls());
        let source_dirs = proxy.source_dirs.clone();
        within(
            Duration::from_secs(10),
            "the proxy ready to reload",
            async {
                if let Some(index) = first_tls {
                    while try_served_leaf(proxy.addrs[index], None).await.is_err() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                while !all_watched(&source_dirs) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
        )
        .await;
        (proxy, handle)
    }

    /// [`TestProxy::start`] through `run_with` with metrics made for the
    /// configuration, kept in [`TestProxy::metrics`] for the test to
    /// render; returns the handle of the reload channel too.
    pub async fn start_with_metrics(
        dir: &Path,
        yaml: &str,
    ) -> (TestProxy, sniwalk::reload::ReloadHandle) {
        let (handle, receiver) = sniwalk::reload::channel();
        let proxy = Self::launch(dir, yaml, Launch::Metrics(receiver)).await;
        (proxy, handle)
    }

    async fn launch(dir: &Path, yaml: &str, how: Launch) -> TestProxy {
        install_provider();
        let path = dir.join("proxy.yaml");
        std::fs::write(&path, yaml).expect("write config");
        let config = sniwalk::config::Config::load(&path).expect("test config is valid");
        let mut sockets = Vec::new();
        let mut addrs = Vec::new();
        for _ in &config.listeners {
            let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addrs.push(socket.local_addr().expect("local addr"));
            sockets.push(socket);
        }
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let config_kinds = config.listeners.iter().map(|l| l.kind).collect();
        let source_dirs = source_dirs(&config);
        let mut metrics = None;
        let task = match how {
            Launch::Plain => tokio::spawn(sniwalk::run(config, sockets, shutdown)),
            Launch::Challenges(challenges) => tokio::spawn(sniwalk::run_with_challenges(
                config, sockets, challenges, shutdown,
            )),
            Launch::Reload(reloads) => tokio::spawn(sniwalk::run_with(
                config,
                sockets,
                sniwalk::RunOptions {
                    challenges: Arc::new(sniwalk::challenge::ChallengeStore::default()),
                    reloads,
                    clock: sniwalk::acme::manager::system_clock(),
                    metrics: None,
                    admin_socket: None,
                },
                shutdown,
            )),
            Launch::Metrics(reloads) => {
                let made = sniwalk::metrics::Metrics::new(&config);
                metrics = Some(made.clone());
                tokio::spawn(sniwalk::run_with(
                    config,
                    sockets,
                    sniwalk::RunOptions {
                        challenges: Arc::new(sniwalk::challenge::ChallengeStore::default()),
                        reloads,
                        clock: sniwalk::acme::manager::system_clock(),
                        metrics: Some(made),
                        admin_socket: None,
                    },
                    shutdown,
                ))
            }
        };
        TestProxy {
            dir: dir.to_path_buf(),
            addrs,
            config_kinds,
            source_dirs,
            metrics,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Stops the proxy and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("proxy stops within 10 s")
                .expect("proxy task did not panic");
            result.expect("proxy ran without error");
        }
    }
}

impl TestProxy {
    /// Starts shutdown (as SIGTERM would) and returns at once.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `run` to return, at most `limit` (panics after), and
    /// returns what it returned.
    pub async fn finish(mut self, limit: Duration) -> Result<(), sniwalk::RunError> {
        let task = self.task.take().expect("proxy task");
        tokio::time::timeout(limit, task)
            .await
            .unwrap_or_else(|_| panic!("run returns within {limit:?} of shutdown"))
            .expect("proxy task did not panic")
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The existing folders of `config`'s sources that a test may change.
fn source_dirs(config: &sniwalk::config::Config) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = config
        .file
        .parent()
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    let files = config
        .domains
        .iter()
        .filter_map(|d| match &d.certificate {
            sniwalk::config::CertificateSource::File(path) => Some(path),
            _ => None,
        })
        .chain(config.default_certificate.as_ref());
    dirs.extend(files.filter_map(|f| f.parent().map(Path::to_path_buf)));
    dirs.extend(config.listeners.iter().filter_map(|l| l.certdir.clone()));
    dirs.retain(|d| d.is_dir());
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Whether every one of `dirs` is watched by an inotify instance of this
/// process (read from /proc/self/fdinfo); true where /proc does not tell.
fn all_watched(dirs: &[PathBuf]) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return true;
    };
    let mut watched = std::collections::HashSet::new();
    for fd in fds.flatten() {
        let is_inotify = std::fs::read_link(fd.path())
            .is_ok_and(|target| target.to_string_lossy() == "anon_inode:inotify");
        if !is_inotify {
            continue;
        }
        let info = std::fs::read_to_string(Path::new("/proc/self/fdinfo").join(fd.file_name()))
            .unwrap_or_default();
        for line in info.lines().filter(|l| l.starts_with("inotify ")) {
            let inode = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("ino:"))
                .and_then(|hex| u64::from_str_radix(hex, 16).ok());
            watched.extend(inode);
        }
    }
    dirs.iter()
        .all(|dir| std::fs::metadata(dir).is_ok_and(|meta| watched.contains(&meta.ino())))
}

/// How [`TestProxy::launch`] runs the proxy.
enum Launch {
    /// `run`.
    Plain,
    /// `run_with_challenges`.
    Challenges(Arc<sniwalk::challenge::ChallengeStore>),
    /// `run_with`, with the receiving end of a reload channel.
    Reload(sniwalk::reload::ReloadReceiver),
    /// `run_with`, with metrics made for the configuration and the
    /// receiving end of a reload channel.
    Metrics(sniwalk::reload::ReloadReceiver),
}

/// Accepts any server certificate: the tests check which one was served by
/// fingerprint, not whether a browser would trust it.
#[derive(Debug)]
pub struct AcceptAnyCertificate(pub Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A rustls client config that trusts anything and offers `alpn`.
pub fn client_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    install_provider();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Connects with a real TLS handshake and returns the stream.
/// `sni: None` connects "by IP address": rustls then sends no SNI.
pub async fn connect(
    addr: SocketAddr,
    sni: Option<&str>,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(client_config(alpn));
    let server_name = match sni {
        Some(name) => ServerName::try_from(name.to_string()).expect("valid SNI"),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    tokio::time::timeout(Duration::from_secs(10), connector.connect(server_name, tcp))
        .await
        .expect("handshake within 10 s")
        .expect("TLS handshake succeeds")
}

/// The SHA-256 fingerprint of the leaf served for `sni`.
pub async fn served_leaf(addr: SocketAddr, sni: Option<&str>) -> String {
    let stream = connect(addr, sni, &[b"http/1.1"]).await;
    let (_, connection) = stream.get_ref();
    let chain = connection
        .peer_certificates()
        .expect("server sent certificates");
    sniwalk::pem::sha256_fingerprint(chain[0].as_ref())
}

/// [`served_leaf`] that reports failures instead of panicking: a refused
/// connection, a failed handshake, or no answer within 10 s.
pub async fn try_served_leaf(addr: SocketAddr, sni: Option<&str>) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(client_config(&[b"http/1.1"]));
    let server_name = match sni {
        Some(name) => ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?,
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("tcp connect: {e}"))?;
        let stream = connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (_, connection) = stream.get_ref();
        let chain = connection
            .peer_certificates()
            .ok_or_else(|| "no server certificate".to_string())?;
        Ok(sniwalk::pem::sha256_fingerprint(chain[0].as_ref()))
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err("no handshake within 10 s".into()))
}

/// Sends one HTTP/1.1 GET over TLS and returns (status, body).
pub async fn https_get(
    addr: SocketAddr,
    sni: Option<&str>,
    host: &str,
    path: &str,
) -> (u16, String) {
    let mut stream = connect(addr, sni, &[b"http/1.1"]).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("response within 10 s")
        .ok();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("HTTP status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Path to the built `sniwalk` binary.
pub fn sniwalk_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sniwalk")
}

/// Runs `command` to its end, for at most `limit`: its output. Standard
/// output and error go to files (no pipe fills up while nobody reads); the
/// exit is polled with `try_wait`, so no thread blocks on the process. On
/// the deadline, or if the test stops waiting, the process is killed by
/// its PID; on the deadline the test fails with what it printed.
pub async fn run_bounded(
    mut command: std::process::Command,
    limit: Duration,
) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir for the output");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let shown = format!("{command:?}");
    let child = command
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    let mut running = KillOnDrop(child);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = running.0.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() >= limit {
            drop(running);
            panic!(
                "{shown}: not done within {limit:?}; killed\nstdout:\n{}\nstderr:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    std::process::Output {
        status,
        stdout: std::fs::read(&out_path).expect("read stdout"),
        stderr: std::fs::read(&err_path).expect("read stderr"),
    }
}

/// A child process killed (SIGKILL, by its PID) and reaped when dropped,
/// unless it has exited already.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

// ---- traffic helpers -------------------------------------------------------

/// Awaits `future`, panicking with `what` if it takes longer than `limit`.
pub async fn within<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: not done within {limit:?}"),
    }
}

/// A `proxy.yaml` with master domain `example.com` (no certificates: the
/// generated default serves, for `example.com` and `localhost`) and the
/// given `listeners:` entries, indented by two spaces.
pub fn proxy_yaml(top: &str, listeners: &str) -> String {
    format!(
        "master_domain: example.com\nstate_dir: state\n{top}domains:\n  example.com: {{}}\nlisteners:\n{listeners}"
    )
}

/// An HTTP/1.1 client connection over TLS (ALPN `http/1.1`) to `addr` with
/// SNI `sni`; the connection task runs with upgrades.
pub async fn h1_client(
    addr: SocketAddr,
    sni: &str,
) -> hyper::client::conn::http1::SendRequest<backends::TestBody> {
    let tls = connect(addr, Some(sni), &[b"http/1.1"]).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "ALPN http/1.1"
    );
    let (send, connection) = within(
        Duration::from_secs(10),
        "HTTP/1.1 handshake",
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)),
    )
    .await
    .expect("HTTP/1.1 client handshake");
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    send
}

/// An HTTP/2 client connection over TLS (ALPN `h2`) to `addr` with SNI
/// `sni`.
pub async fn h2_client(
    addr: SocketAddr,
    sni: &str,
) -> hyper::client::conn::http2::SendRequest<backends::TestBody> {
    let tls = connect(addr, Some(sni), &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "ALPN h2");
    let (send, connection) = within(
        Duration::from_secs(10),
        "HTTP/2 handshake",
        hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        ),
    )
    .await
    .expect("HTTP/2 client handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

/// A response read whole.
#[derive(Debug)]
pub struct Collected {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Collected {
    /// The body as JSON (the echo backend's answer).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Reads a whole response (within 10 s).
pub async fn collect(response: hyper::Response<hyper::body::Incoming>) -> Collected {
    use http_body_util::BodyExt as _;
    let (parts, body) = response.into_parts();
    let body = within(Duration::from_secs(10), "response body", body.collect())
        .await
        .expect("response body")
        .to_bytes();
    Collected {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Sends `request` on an HTTP/1.1 connection and reads the whole response.
pub async fn send_h1(
    send: &mut hyper::client::conn::http1::SendRequest<backends::TestBody>,
    request: hyper::Request<backends::TestBody>,
) -> Collected {
    within(Duration::from_secs(10), "connection ready", send.ready())
        .await
        .expect("connection ready");
    let response = within(
        Duration::from_secs(10),
        "response head",
        send.send_request(request),
    )
    .await
    .expect("response");
    collect(response).await
}

/// Sends `request` on an HTTP/2 connection and reads the whole response.
pub async fn send_h2(
    send: &mut hyper::client::conn::http2::SendRequest<backends::TestBody>,
    request: hyper::Request<backends::TestBody>,
) -> Collected {
    within(Duration::from_secs(10), "connection ready", send.ready())
        .await
        .expect("connection ready");
    let response = within(
        Duration::from_secs(10),
        "response head",
        send.send_request(request),
    )
    .await
    .expect("response");
    collect(response).await
}

/// One GET over a new HTTP/1.1 connection with SNI and Host `host`.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Collected {
    let mut send = h1_client(addr, host).await;
    let request = hyper::Request::get(path)
        .header("host", host)
        .body(backends::empty())
        .expect("request");
    send_h1(&mut send, request).await
}

/// A response parsed from raw bytes.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `method path` with a JSON `body` on the admin API at `admin` (waiting
/// up to 20 s for it to listen): status and body.
pub async fn admin_call(admin: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut tcp = within(Duration::from_secs(20), "the admin API listening", async {
        loop {
            if let Ok(tcp) = TcpStream::connect(admin).await {
                return tcp;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let response = raw_exchange(
        &mut tcp,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    (response.status, response.body)
}

/// Writes `request` as is and reads until the server closes (the request
/// should say `Connection: close`), within 10 s.
pub async fn raw_exchange<S>(stream: &mut S, request: &str) -> RawResponse
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut bytes = Vec::new();
    // A close without TLS close_notify is an error after the data: keep
    // what arrived.
    let _ = within(
        Duration::from_secs(10),
        "response until close",
        stream.read_to_end(&mut bytes),
    )
    .await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A `VmRSS`/`VmHWM`-style line of /proc/self/status, in KiB.
pub fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}
