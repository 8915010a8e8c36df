//! A real authoritative DNS server for tests: BIND 9 (`named`, Debian's
//! bind9) run as a child process on a free 127.0.0.1 port, TCP and UDP
//! (Pebble can resolve through it with `-dnsserver 127.0.0.1:PORT`).
//!
//! [`BindServer::start`] writes everything into the folder it is given: a
//! TSIG key made by `tsig-keygen` (hmac-sha256), `named.conf` (no
//! recursion, no validation, pid and session files in the folder), and
//! for each zone a primary zone file (SOA, NS, `ns` A 127.0.0.1) that the
//! key may change TXT records in (`update-policy { grant KEY zonesub
//! TXT; }`), its journal in the folder too. `named -g` logs to
//! `named.log` ([`BindServer::logs`]).
//!
//! [`BindServer::txt`] asks with `dig`, a client independent of the one
//! under test. The process is killed by PID on [`BindServer::stop`] and
//! on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long [`BindServer::start`] waits for an SOA answer over TCP.
const START_LIMIT: Duration = Duration::from_secs(10);

/// The TSIG key name [`BindServer::start`] makes.
pub const KEY_NAME: &str = "sniwalk-acme";

/// `named` running with the zones it was started with.
pub struct BindServer {
    /// Holds the configuration, zones, journals and `named.log`.
    pub dir: PathBuf,
    /// The port `named` listens on, TCP and UDP, on 127.0.0.1.
    pub port: u16,
    /// The zones served, without the trailing dot.
    pub zones: Vec<String>,
    /// The TSIG key allowed to update TXT records in every zone.
    pub key_name: String,
    /// The key's secret, base64.
    pub secret_b64: String,
    /// A file holding only the base64 secret.
    pub secret_file: PathBuf,
    /// A file holding the block `tsig-keygen` printed.
    pub keygen_file: PathBuf,
    child: Option<Child>,
}

impl BindServer {
    /// Writes the key, configuration and zones into `dir` (created) and
    /// starts `named`; returns once an SOA query over TCP for the first
    /// zone answers (panics, with the log, after 10 s).
    pub async fn start(dir: &Path, zones: &[&str]) -> BindServer {
        assert!(!zones.is_empty(), "BindServer needs at least one zone");
        std::fs::create_dir_all(dir).expect("create bind dir");
        let dir = std::fs::canonicalize(dir).expect("canonical bind dir");
        let keygen = run(Command::new(sbin("tsig-keygen")).args(["-a", "hmac-sha256", KEY_NAME]));
        let secret_b64 = secret_of(&keygen);
        let keygen_file = dir.join("tsig.key");
        let secret_file = dir.join("tsig.secret");
        std::fs::write(&keygen_file, &keygen).expect("write tsig.key");
        std::fs::write(&secret_file, format!("{secret_b64}\n")).expect("write tsig.secret");
        let port = super::pebble::free_tcp_udp_port();
        let zones: Vec<String> = zones
            .iter()
            .map(|z| z.trim_end_matches('.').into())
            .collect();
        for zone in &zones {
            std::fs::write(dir.join(format!("{zone}.zone")), zone_file(zone)).expect("write zone");
        }
        let conf = dir.join("named.conf");
        std::fs::write(&conf, named_conf(&dir, port, &zones)).expect("write named.conf");
        let mut server = BindServer {
            dir,
            port,
            zones,
            key_name: KEY_NAME.to_string(),
            secret_b64,
            secret_file,
            keygen_file,
            child: None,
        };
        server.spawn(&conf);
        server.wait_ready().await;
        server
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn spawn(&mut self, conf: &Path) {
        let log = std::fs::File::create(self.dir.join("named.log")).expect("create named.log");
        let log_err = log.try_clone().expect("clone named.log");
        // As root, named keeps running as root without `-u`; that is what
        // the tests want (the folder is root's).
        let child = Command::new(sbin("named"))
            .arg("-g")
            .arg("-c")
            .arg(conf)
            .args(["-p", &self.port.to_string()])
            .args(["-n", "1"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .expect("spawn named (apt-get install bind9; scripts/test.sh does)");
        self.child = Some(child);
    }

    /// Polls an SOA query for the first zone over TCP with `dig`; panics
    /// with the log if `named` exits or [`START_LIMIT`] passes.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait named"))
            {
                panic!("named exited early ({status})\n{}", self.logs());
            }
            let answer = self.dig(&["+tcp", "+short", "SOA", &self.zones[0]]).await;
            if answer.is_ok_and(|a| !a.trim().is_empty()) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "named not answering within {START_LIMIT:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The TXT values BIND serves at `name`, asked with `dig +tcp +short`
    /// (quotes removed, a value's strings joined); panics if dig fails.
    pub async fn txt(&self, name: &str) -> Vec<String> {
        let answer = self
            .dig(&["+tcp", "+short", "TXT", name])
            .await
            .unwrap_or_else(|e| panic!("dig TXT {name}: {e}\n{}", self.logs()));
        let mut values: Vec<String> = answer.lines().map(unquote).collect();
        values.sort();
        values
    }

    /// Runs `dig @127.0.0.1 -p PORT <args>` (one try, 2 s) and returns its
    /// output, or why it failed.
    pub async fn dig(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new("dig");
        command
            .args(["@127.0.0.1", "-p", &self.port.to_string()])
            .args(["+time=2", "+tries=1"])
            .args(args)
            .stdin(Stdio::null());
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("dig task")
            .map_err(|e| format!("dig: {e} (apt-get install bind9-dnsutils)"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            return Err(format!(
                "dig {}: {stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(stdout)
    }

    /// What `named` logged.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("named.log")).unwrap_or_default()
    }

    /// Starts `named` again after [`BindServer::stop`], on the same port
    /// with the same key and zones (journals kept): a DNS server back
    /// after an outage.
    pub async fn restart(&mut self) {
        self.stop();
        let conf = self.dir.join("named.conf");
        self.spawn(&conf);
        self.wait_ready().await;
    }

    /// Kills `named` (by PID) and waits for it. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for BindServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The configuration: the key, options keeping every file in `dir`, and
/// one primary zone per name, updatable by the key for TXT records.
fn named_conf(dir: &Path, port: u16, zones: &[String]) -> String {
    let d = dir.display();
    let mut conf = format!(
        "include \"{d}/tsig.key\";\n\
         options {{\n\
         \tdirectory \"{d}\";\n\
         \tlisten-on port {port} {{ 127.0.0.1; }};\n\
         \tlisten-on-v6 {{ none; }};\n\
         \tpid-file \"{d}/named.pid\";\n\
         \tsession-keyfile \"{d}/session.key\";\n\
         \tmanaged-keys-directory \"{d}\";\n\
         \trecursion no;\n\
         \tdnssec-validation no;\n\
         \tnotify no;\n\
         }};\n"
    );
    for zone in zones {
        conf.push_str(&format!(
            "zone \"{zone}\" {{\n\
             \ttype primary;\n\
             \tfile \"{d}/{zone}.zone\";\n\
             \tjournal \"{d}/{zone}.zone.jnl\";\n\
             \tupdate-policy {{ grant {KEY_NAME} zonesub TXT; }};\n\
             }};\n"
        ));
    }
    conf
}

/// A minimal zone: SOA (negative TTL 1 s), NS and the server's address.
fn zone_file(zone: &str) -> String {
    format!(
        "$TTL 60\n\
         @ IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 1\n\
         @ IN NS ns.{zone}.\n\
         ns IN A 127.0.0.1\n"
    )
}

/// The quoted secret of a `tsig-keygen` block.
fn secret_of(block: &str) -> String {
    block
        .lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("secret")?.trim();
            Some(rest.trim_end_matches(';').trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("no secret in tsig-keygen output:\n{block}"))
}

/// A `dig +short` TXT line as one value: its quoted strings joined.
fn unquote(line: &str) -> String {
    line.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, part)| part)
        .collect()
}

/// `/usr/sbin/<name>` where Debian puts it (a user's PATH may not have
/// /usr/sbin), else `name` from PATH.
fn sbin(name: &str) -> PathBuf {
    let path = Path::new("/usr/sbin").join(name);
    if path.exists() {
        path
    } else {
        PathBuf::from(name)
    }
}

/// Runs `command` and returns its standard output; panics if it fails.
fn run(command: &mut Command) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (apt-get install bind9)"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
