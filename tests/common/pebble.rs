//! A real ACME CA for tests: Debian's `pebble` 2.4.0 and
//! `pebble-challtestsrv` run as child processes on free 127.0.0.1 ports.
//!
//! The package ships no test certificates, so [`PebbleEnv::start`] makes a CA
//! and a `localhost`/`127.0.0.1` leaf for Pebble's own HTTPS with rcgen and
//! writes a config of its own. challtestsrv answers Pebble's DNS queries
//! (every name resolves to 127.0.0.1); its HTTP-01/HTTPS/TLS-ALPN-01
//! listeners are off, so the tests answer challenges themselves on
//! [`PebbleEnv::http_port`] and [`PebbleEnv::tls_port`], where Pebble's
//! validator connects.
//!
//! Both children are killed by PID on [`PebbleEnv::stop`] and on drop. Their
//! output goes to files in the directory; [`PebbleEnv::logs`] reads them.

use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// How long [`PebbleEnv::start`] waits for the directory to answer.
const START_LIMIT: Duration = Duration::from_secs(10);

/// What [`PebbleEnv::start_with`] may be told; the default picks fresh
/// free ports.
#[derive(Clone, Debug, Default)]
pub struct PebbleOptions {
    /// The port Pebble's validator connects to for HTTP-01 (`httpPort`).
    pub http_port: Option<u16>,
    /// The port Pebble's validator connects to for TLS-ALPN-01 (`tlsPort`).
    pub tls_port: Option<u16>,
    /// Extra environment for `pebble` (e.g. `PEBBLE_VA_ALWAYS_VALID=1`).
    pub env: Vec<(String, String)>,
    /// New accounts must carry External Account Binding
    /// (`externalAccountBindingRequired`).
    pub eab_required: bool,
    /// EAB keys Pebble accepts: kid → base64url MAC key
    /// (`externalAccountMACKeys`).
    pub eab_keys: Vec<(String, String)>,
    /// The DNS server Pebble resolves with instead of challtestsrv's (which
    /// still starts).
    pub dns_server: Option<SocketAddr>,
}

/// Pebble and challtestsrv running; both are killed when this is dropped.
pub struct PebbleEnv {
    pub dir: PathBuf,
    /// Pebble's ACME listener (HTTPS).
    pub listen_port: u16,
    /// Pebble's management listener (HTTPS): `/roots/0`, `/intermediates/0`.
    pub management_port: u16,
    /// Where Pebble validates HTTP-01 challenges (on 127.0.0.1).
    pub http_port: u16,
    /// Where Pebble validates TLS-ALPN-01 challenges (on 127.0.0.1).
    pub tls_port: u16,
    /// challtestsrv's DNS server (UDP and TCP), which Pebble resolves with.
    pub dns_port: u16,
    /// challtestsrv's management listener (plain HTTP): `/set-txt`, ….
    pub challtestsrv_port: u16,
    ca_pem_path: PathBuf,
    ca_pem: String,
    pebble: Option<Child>,
    challtestsrv: Option<Child>,
}

impl PebbleEnv {
    /// [`PebbleEnv::start_with`] with the default options.
    pub async fn start(dir: &Path) -> PebbleEnv {
        Self::start_with(dir, PebbleOptions::default()).await
    }

    /// Writes certificates and config into `dir` (created), starts
    /// challtestsrv and Pebble, and returns once the directory answers
    /// over HTTPS (panics, with the children's output, after 10 s).
    pub async fn start_with(dir: &Path, options: PebbleOptions) -> PebbleEnv {
        super::install_provider();
        std::fs::create_dir_all(dir).expect("create pebble dir");
        let dir = std::fs::canonicalize(dir).expect("canonical pebble dir");

        let (ca_pem, cert_pem, key_pem) = pebble_https_certs();
        let ca_pem_path = dir.join("pebble-https-ca.pem");
        let cert_path = dir.join("pebble-https-cert.pem");
        let key_path = dir.join("pebble-https-key.pem");
        std::fs::write(&ca_pem_path, &ca_pem).expect("write CA");
        std::fs::write(&cert_path, &cert_pem).expect("write cert");
        std::fs::write(&key_path, &key_pem).expect("write key");

        let listen_port = free_tcp_port();
        let management_port = free_tcp_port();
        let http_port = options.http_port.unwrap_or_else(free_tcp_port);
        let tls_port = options.tls_port.unwrap_or_else(free_tcp_port);
        let dns_port = free_tcp_udp_port();
        let challtestsrv_port = free_tcp_port();

        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen_port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": cert_path,
                "privateKey": key_path,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": options.eab_required,
                "externalAccountMACKeys": options
                    .eab_keys
                    .iter()
                    .cloned()
                    .collect::<std::collections::BTreeMap<String, String>>(),
            }
        });
        let config_path = dir.join("pebble-config.json");
        std::fs::write(
            &config_path,
            serde_json::to_string_pretty(&config).expect("config JSON"),
        )
        .expect("write pebble config");

        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{challtestsrv_port}")])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log_file(&dir, "challtestsrv.stdout"))
            .stderr(log_file(&dir, "challtestsrv.stderr"))
            .spawn()
            .expect("spawn pebble-challtestsrv (apt-get install pebble; scripts/test.sh does)");

        let mut env = PebbleEnv {
            dir: dir.clone(),
            listen_port,
            management_port,
            http_port,
            tls_port,
            dns_port,
            challtestsrv_port,
            ca_pem_path,
            ca_pem,
            pebble: None,
            challtestsrv: Some(challtestsrv),
        };

        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args([
                "-dnsserver",
                &options
                    .dns_server
                    .map_or_else(|| format!("127.0.0.1:{dns_port}"), |a| a.to_string()),
            ])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // Pebble reuses a valid authorization for half of the new
            // orders by default: a renewal would then skip validation at
            // random, and a test that takes the challenge away (a DNS
            // server down, an HTTP listener gone) would pass or fail by
            // chance. Every order validates afresh.
            .env("PEBBLE_AUTHZREUSE", "0")
            .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log_file(&dir, "pebble.stdout"))
            .stderr(log_file(&dir, "pebble.stderr"))
            .spawn()
            .expect("spawn pebble (apt-get install pebble; scripts/test.sh does)");
        env.pebble = Some(pebble);

        env.wait_ready().await;
        env
    }

    /// Polls until challtestsrv's management port accepts and Pebble's
    /// directory answers 200; panics with the logs if either child exits or
    /// [`START_LIMIT`] passes.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_LIMIT;
        let mut last_error;
        let mut challtestsrv_up = false;
        loop {
            if let Some(exited) = self.exited() {
                panic!("{exited}\n{}", self.logs());
            }
            if !challtestsrv_up {
                challtestsrv_up = TcpStream::connect(("127.0.0.1", self.challtestsrv_port))
                    .await
                    .is_ok();
            }
            if challtestsrv_up {
                match self.try_get(&self.directory_url()).await {
                    Ok((200, _)) => return,
                    Ok((status, body)) => last_error = format!("status {status}: {body}"),
                    Err(e) => last_error = e,
                }
            } else {
                last_error = "challtestsrv management port not accepting".into();
            }
            if Instant::now() >= deadline {
                panic!(
                    "pebble not ready within {START_LIMIT:?} (last: {last_error})\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Which child has exited, and how, if one has.
    fn exited(&mut self) -> Option<String> {
        for (name, child) in [
            ("pebble", self.pebble.as_mut()),
            ("pebble-challtestsrv", self.challtestsrv.as_mut()),
        ] {
            if let Some(status) = child.and_then(|c| c.try_wait().expect("try_wait")) {
                return Some(format!("{name} exited early ({status})"));
            }
        }
        None
    }

    /// The ACME directory URL, e.g. `https://127.0.0.1:14000/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.listen_port)
    }

    /// The base URL of Pebble's management interface (HTTPS).
    pub fn management_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.management_port)
    }

    /// The base URL of challtestsrv's management interface (plain HTTP),
    /// e.g. for `POST /set-txt {"host":"_acme-challenge.x.test.","value":…}`.
    pub fn challtestsrv_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.challtestsrv_port)
    }

    /// The CA that signed Pebble's own HTTPS certificate (PEM file), for
    /// `instant_acme::Account::builder_with_root`.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// The same CA as PEM text.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The root that issues ACME certificates (`/roots/0`, PEM). Pebble
    /// makes a new one every start.
    pub async fn root_pem(&self) -> String {
        let url = format!("{}/roots/0", self.management_url());
        let (status, body) = self.get(&url).await;
        assert_eq!(status, 200, "GET {url}: {body}");
        body
    }

    /// GET `url` (an `https://127.0.0.1:<port>/…` of this env) trusting
    /// only [`PebbleEnv::ca_pem`]; panics on failure, with the logs.
    pub async fn get(&self, url: &str) -> (u16, String) {
        match self.try_get(url).await {
            Ok(answer) => answer,
            Err(e) => panic!("GET {url}: {e}\n{}", self.logs()),
        }
    }

    /// [`PebbleEnv::get`] that reports failures (within 10 s).
    pub async fn try_get(&self, url: &str) -> Result<(u16, String), String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("not an https URL: {url}"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr: SocketAddr = authority
            .parse()
            .map_err(|e| format!("authority {authority:?} is not ip:port: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(self.client_config());
        let attempt = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("tcp connect: {e}"))?;
            let tls = connector
                .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let (mut send, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .map_err(|e| format!("HTTP handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let request = hyper::Request::get(path)
                .header("host", authority)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .map_err(|e| format!("request: {e}"))?;
            let response = send
                .send_request(request)
                .await
                .map_err(|e| format!("send: {e}"))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .unwrap_or_else(|_| Err("no answer within 10 s".into()))
    }

    /// A rustls client config trusting only the CA of Pebble's HTTPS.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// Both children's stdout and stderr, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in [
            "pebble.stdout",
            "pebble.stderr",
            "challtestsrv.stdout",
            "challtestsrv.stderr",
        ] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            out.push_str(&format!("---- {name} ----\n{text}"));
            if !text.is_empty() && !text.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// Kills both children (by PID) and waits for them. Idempotent.
    pub fn stop(&mut self) {
        for child in [self.pebble.take(), self.challtestsrv.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PebbleEnv {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a leaf for `localhost` and 127.0.0.1 signed by it, as PEM:
/// (CA certificate, leaf certificate, leaf key).
fn pebble_https_certs() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "sniwalk test pebble HTTPS CA");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA self-signed");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let key = rcgen::KeyPair::generate().expect("leaf key");
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
    params.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = params.signed_by(&key, &issuer).expect("leaf signed");
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_tcp_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A port on 127.0.0.1 free for both TCP and UDP a moment ago (DNS).
pub fn free_tcp_udp_port() -> u16 {
    for _ in 0..100 {
        let tcp = StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = tcp.local_addr().expect("local addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on 127.0.0.1");
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(name)).unwrap_or_else(|e| panic!("create {name}: {e}"))
}

/// A client that trusts only Pebble's issuing root (`root_pem`). Every
/// handshake is a full one: a resumed session reports the certificate of
/// the session it resumes, not the one served now.
pub fn client_trusting(root_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.expect("root PEM")).expect("root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}
