//! The command line: `check` exit codes and messages, `resolve` output,
//! `selfsigned` output that loads and serves, `pem merge`, `--help`.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{TestProxy, cert, cert_between, cert_valid_for, served_leaf, sniwalk_bin};

fn sniwalk(args: &[&str]) -> Output {
    Command::new(sniwalk_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("sniwalk runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A config with a master holding `master_file` and `extra` domain lines.
fn write_config(dir: &Path, extra_domains: &str, extra_top: &str) -> String {
    let path = dir.join("proxy.yaml");
    std::fs::write(
        &path,
        format!(
            "master_domain: example.com\n{extra_top}\
             domains:\n  example.com:\n    certificate_file: certs/example.com.pem\n{extra_domains}\
             listeners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:8443\n    certdir: certs/ws\n\
             \x20   routes:\n      - host: \"*\"\n        status_page: true\n"
        ),
    )
    .expect("write config");
    path.to_string_lossy().into_owned()
}

/// Appends a plain-HTTP listener to a config from [`write_config`]: a domain
/// with ACME enabled needs one for the HTTP-01 challenge.
fn add_http_listener(config: &str) {
    let mut text = std::fs::read_to_string(config).expect("read config");
    text.push_str("  - name: plain\n    kind: http\n    bind: 127.0.0.1:8080\n");
    std::fs::write(config, text).expect("write config");
}

fn good_setup(dir: &Path) -> String {
    cert(&["example.com", "*.example.com"]).write_pem(&dir.join("certs/example.com.pem"));
    cert(&["ws.example.com"]).write_certdir(&dir.join("certs/ws"));
    cert(&["t1.example.com"]).write_pem(&dir.join("certs/t1.pem"));
    write_config(
        dir,
        "  t1.example.com:\n    certificate_file: certs/t1.pem\n  t2.example.com: {}\n",
        "",
    )
}

#[test]
fn check_passes_on_a_good_config_and_lists_every_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = good_setup(dir.path());
    let out = sniwalk(&["check", "--config", &config]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    for expected in [
        "example.com",
        "t1.example.com",
        "t2.example.com",
        "certdir",
        "ws",
        "default",
        "system_state: ok",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!dir.path().join("state").exists(), "check writes nothing");
}

#[test]
fn check_json_is_machine_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = good_setup(dir.path());
    let out = sniwalk(&["check", "--config", &config, "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(json["system_state"], "ok");
    let rows = json["certificates"].as_array().expect("rows");
    let t1 = rows
        .iter()
        .find(|r| r["name"] == "t1.example.com")
        .expect("t1 row");
    assert_eq!(t1["place"], "domain");
    assert_eq!(t1["source"], "file");
    assert_eq!(t1["names"][0], "t1.example.com");
    assert!(t1["days_left"].as_i64().expect("days") >= 363);
    assert_eq!(t1["sha256"].as_str().expect("fingerprint").len(), 95);
    let t2 = rows
        .iter()
        .find(|r| r["name"] == "t2.example.com")
        .expect("t2 row");
    assert_eq!(t2["source"], "none");
}

#[test]
fn check_exits_1_on_errors_and_names_domain_and_file() {
    let cases: &[(&str, &[u8], &str)] = &[
        ("garbage", b"\x00\x01\xffbinary", "not text"),
        ("empty", b"", "no PEM blocks"),
        (
            "truncated",
            b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49",
            "cut off",
        ),
    ];
    for (what, content, message) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = good_setup(dir.path());
        std::fs::write(dir.path().join("certs/t1.pem"), content).expect("write broken");
        let out = sniwalk(&["check", "--config", &config]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {text}");
        assert!(
            text.contains("t1.example.com") && text.contains("t1.pem"),
            "{what}: {text}"
        );
        assert!(
            text.contains(message),
            "{what}: expected {message:?} in {text}"
        );
        assert!(text.contains("system_state: error"), "{what}: {text}");
    }
}

#[test]
fn check_reports_key_mismatch_missing_file_and_bad_certdir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = good_setup(dir.path());
    let other = cert(&["other.test"]);
    let t1 = std::fs::read_to_string(dir.path().join("certs/t1.pem")).expect("read");
    let cert_only = &t1[t1.find("-----BEGIN CERTIFICATE").expect("cert block")..];
    std::fs::write(
        dir.path().join("certs/t1.pem"),
        format!("{}{cert_only}", other.key_pem),
    )
    .expect("write");
    std::fs::remove_file(dir.path().join("certs/ws/server.key")).expect("remove key");
    let out = sniwalk(&["check", "--config", &config]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("matches none"),
        "key mismatch reported: {text}"
    );
    assert!(
        text.contains("server.key"),
        "missing certdir key reported: {text}"
    );
}

#[test]
fn check_warnings_do_not_change_the_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = good_setup(dir.path());
    // Expires in 5 days, and does not cover its own name.
    cert_valid_for(&["elsewhere.test"], Duration::from_secs(5 * 86_400 + 7200))
        .write_pem(&dir.path().join("certs/t1.pem"));
    let out = sniwalk(&["check", "--config", &config]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("expires within 14 days"), "{text}");
    assert!(text.contains("does not cover `t1.example.com`"), "{text}");
    assert!(text.contains("system_state: warning"), "{text}");
}

#[test]
fn check_flags_expired_as_error_and_hand_managed_acme() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = time::OffsetDateTime::now_utc();
    cert_between(
        &["t1.example.com"],
        now - time::Duration::days(100),
        now - time::Duration::days(10),
    )
    .write_pem(&dir.path().join("certs/t1.pem"));
    cert(&["example.com"]).write_pem(&dir.path().join("certs/example.com.pem"));
    cert(&["ws.example.com"]).write_certdir(&dir.path().join("certs/ws"));
    let config = write_config(
        dir.path(),
        "  t1.example.com:\n    certificate_file: certs/t1.pem\n    acme: { enabled: true, account_email: ops@example.com }\n",
        "",
    );
    add_http_listener(&config);
    let out = sniwalk(&["check", "--config", &config]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("expired"), "{text}");
    assert!(text.contains("managed by hand"), "{text}");
}

/// `check` shows each certificate's expiry state: within `acme.warn_days`
/// (14 by default) it expires soon, a warning that keeps exit 0; once
/// expired it is an error, exit 1. A longer warning period warns earlier.
#[test]
fn check_shows_expiry_by_warn_days() {
    let now = time::OffsetDateTime::now_utc();
    let hours = |h: u64| Duration::from_secs(h * 3600);
    let expired = cert_between(
        &["t1.example.com"],
        now - time::Duration::days(100),
        now - time::Duration::days(10) - time::Duration::hours(1),
    );
    // (what, t1's certificate, top-level config, expiry, days_left, state, exit code)
    let cases = [
        (
            "3 days left",
            cert_valid_for(&["t1.example.com"], hours(3 * 24 + 2)),
            "",
            "expires_soon",
            3,
            "warning",
            0,
        ),
        (
            "20 days left, default warn_days",
            cert_valid_for(&["t1.example.com"], hours(20 * 24 + 2)),
            "",
            "ok",
            20,
            "ok",
            0,
        ),
        (
            "20 days left, warn_days 30",
            cert_valid_for(&["t1.example.com"], hours(20 * 24 + 2)),
            "acme:\n  warn_days: 30\n",
            "expires_soon",
            20,
            "warning",
            0,
        ),
        ("expired", expired, "", "expired", -11, "error", 1),
    ];
    for (what, t1, top, expiry, days_left, state, code) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        cert(&["example.com", "*.example.com"])
            .write_pem(&dir.path().join("certs/example.com.pem"));
        cert(&["ws.example.com"]).write_certdir(&dir.path().join("certs/ws"));
        t1.write_pem(&dir.path().join("certs/t1.pem"));
        let config = write_config(
            dir.path(),
            "  t1.example.com:\n    certificate_file: certs/t1.pem\n",
            top,
        );

        let out = sniwalk(&["check", "--config", &config, "--json"]);
        assert_eq!(out.status.code(), Some(code), "{what}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
        assert_eq!(json["system_state"], state, "{what}: {json:#}");
        let rows = json["certificates"].as_array().expect("rows");
        let row = rows
            .iter()
            .find(|r| r["name"] == "t1.example.com")
            .expect("t1 row");
        assert_eq!(row["expiry"], expiry, "{what}: {row:#}");
        assert_eq!(row["days_left"], days_left, "{what}: {row:#}");
        assert_eq!(row["state"], state, "{what}: {row:#}");
        for other in rows.iter().filter(|r| r["name"] != "t1.example.com") {
            if other["source"] != "none" {
                assert_eq!(other["expiry"], "ok", "{what}: {other:#}");
            } else {
                assert!(other["expiry"].is_null(), "{what}: {other:#}");
            }
        }

        let out = sniwalk(&["check", "--config", &config]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(code), "{what}: {text}");
        assert!(text.contains("EXPIRY"), "{what}: {text}");
        assert!(
            text.lines().any(|l| l.starts_with("domain")
                && l.contains("t1.example.com")
                && l.contains(expiry)),
            "{what}: {text}"
        );
        if what == "20 days left, warn_days 30" {
            assert!(text.contains("expires within 30 days (20 left)"), "{text}");
        }
    }
}

#[test]
fn configuration_errors_exit_1_with_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("proxy.yaml");
    std::fs::write(
        &path,
        "master_domain: example.com\ndomains:\n  example.com:\n    certifcate_file: x.pem\n",
    )
    .expect("write");
    let out = sniwalk(&["check", "--config", &path.to_string_lossy()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("proxy.yaml"), "{err}");
    assert!(
        err.contains("certifcate_file") && err.contains("line 4 column 5"),
        "{err}"
    );

    let out = sniwalk(&[
        "check",
        "--config",
        &dir.path().join("missing.yaml").to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.yaml"), "{}", stderr(&out));
}

#[test]
fn resolve_prints_names_tried_and_the_choice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = good_setup(dir.path());
    let out = sniwalk(&["resolve", "--config", &config, "b.x.t1.example.com"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let tried = text
        .find("1. b.x.t1.example.com  not configured")
        .expect("first name tried");
    let second = text
        .find("2. x.t1.example.com  not configured")
        .expect("second name tried");
    let third = text
        .find("3. t1.example.com  configured")
        .expect("third name tried");
    assert!(tried < second && second < third, "{text}");
    assert!(text.contains("chosen: ancestor"), "{text}");

    let out = sniwalk(&[
        "resolve",
        "--config",
        &config,
        "--listener",
        "ws",
        "--no-sni",
    ]);
    let text = stdout(&out);
    assert!(text.contains("chosen: certdir"), "{text}");
    assert!(text.contains("ws.example.com"), "{text}");

    let out = sniwalk(&["resolve", "--config", &config, "other.org", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["step"], "master");
    assert_eq!(json["certificate"]["covers_name"], false);

    let out = sniwalk(&[
        "resolve",
        "--config",
        &config,
        "--listener",
        "nope",
        "a.test",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no listener named `nope`"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn selfsigned_output_loads_and_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("certs/ws");
    for rsa in [false, true] {
        let mut args = vec![
            "selfsigned",
            "--name",
            "local.test",
            "--days",
            "30",
            "--out",
        ];
        let out_str = out_dir.to_string_lossy().into_owned();
        args.push(&out_str);
        if rsa {
            // The second round replaces the first one's key.
            args.extend(["--rsa", "--force"]);
        }
        let out = sniwalk(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(out_dir.join("server.key"))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = std::fs::read_to_string(out_dir.join("server.key")).expect("key");
        let crt = std::fs::read_to_string(out_dir.join("server.crt")).expect("crt");
        let parsed =
            sniwalk::pem::parse_key_and_chain(&key, &crt).expect("selfsigned output parses");
        assert!(parsed.leaf.covers("local.test"));
        assert_eq!(parsed.leaf.days_left(sniwalk::unix_now()), 29);
        let yaml = "master_domain: local.test\ndomains:\n  local.test: {}\n\
                    listeners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:1\n    certdir: certs/ws\n\
                    \x20   routes:\n      - host: \"*\"\n        status_page: true\n";
        let proxy = TestProxy::start(dir.path(), yaml).await;
        assert_eq!(
            served_leaf(proxy.addr(), Some("local.test")).await,
            parsed.leaf.sha256,
            "rsa={rsa}"
        );
        proxy.stop().await;
    }
}

#[test]
fn pem_merge_prints_a_validated_certificate_pem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leaf = cert(&["merge.test"]);
    let chain = cert(&["intermediate.test"]);
    std::fs::write(dir.path().join("k.pem"), &leaf.key_pem).expect("write");
    std::fs::write(dir.path().join("c.pem"), &leaf.cert_pem).expect("write");
    std::fs::write(dir.path().join("ca.pem"), &chain.cert_pem).expect("write");
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let out = sniwalk(&[
        "pem",
        "merge",
        "--key",
        &p("k.pem"),
        "--cert",
        &p("c.pem"),
        "--chain",
        &p("ca.pem"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("-----BEGIN PRIVATE KEY-----"),
        "key first: {text}"
    );
    let parsed = sniwalk::pem::parse_certificate_pem(&text).expect("merged text parses");
    assert_eq!(parsed.leaf.sha256, leaf.sha256);
    assert_eq!(parsed.certified_key.cert.len(), 2, "leaf and chain");

    // A key that does not belong to the certificate is refused.
    std::fs::write(dir.path().join("k.pem"), &chain.key_pem).expect("write");
    let out = sniwalk(&["pem", "merge", "--key", &p("k.pem"), "--cert", &p("c.pem")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("matches none"), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing printed on error");
}

#[test]
fn help_everywhere() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["check", "--help"],
        &["resolve", "--help"],
        &["selfsigned", "--help"],
        &["pem", "--help"],
        &["pem", "merge", "--help"],
        &["storage", "ls", "--help"],
        &["storage", "migrate", "--help"],
    ] {
        let out = sniwalk(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(stdout(&out).contains("Usage"), "{args:?}");
    }
}

/// `sniwalk run` raises its open file soft limit to the hard limit and
/// logs both, and warns when the hard limit is below what the listeners'
/// limits can use. The limits are set for the child by the shell (`ulimit`
/// lowers them without privileges); the child is killed by its PID.
#[test]
fn run_raises_the_open_file_limit_and_logs_it() {
    use std::io::{BufRead as _, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("proxy.yaml");
    std::fs::write(
        &config,
        "master_domain: example.com\nstate_dir: state\ndomains:\n  example.com: {}\n\
         listeners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:0\n    max_connections: 100000\n\
         \x20   routes:\n      - host: \"*\"\n        status_page: true\n",
    )
    .expect("write config");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 256 && ulimit -Hn 4096 && exec {} run --config {}",
            sniwalk_bin(),
            config.display()
        ))
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sniwalk run starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !(seen.iter().any(|l: &String| l.contains("soft raised"))
        && seen
            .iter()
            .any(|l: &String| l.contains("below what the listeners")))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = seen.join("\n");
    let raised = seen
        .iter()
        .find(|l| l.contains("soft raised"))
        .unwrap_or_else(|| panic!("no open file limit line in:\n{text}"));
    assert!(raised.contains("soft_before=256"), "{raised}");
    assert!(raised.contains("soft=4096"), "{raised}");
    assert!(raised.contains("hard=4096"), "{raised}");
    let warned = seen
        .iter()
        .find(|l| l.contains("below what the listeners"))
        .unwrap_or_else(|| panic!("no warning about the limit in:\n{text}"));
    assert!(warned.contains("wanted=110064"), "{warned}");
}

/// Issue 11, item 7: an Ed25519 certificate loads and is served (clients
/// such as OpenSSL and rustls can use it), but `check` warns that browsers
/// cannot, naming them; warnings keep exit 0.
#[tokio::test]
async fn check_warns_about_ed25519_keys_which_are_still_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = good_setup(dir.path());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key");
    let certificate = rcgen::CertificateParams::new(vec!["t1.example.com".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let pem = format!("{}{}", key.serialize_pem(), certificate.pem());
    std::fs::write(dir.path().join("certs/t1.pem"), &pem).expect("write");
    let out = sniwalk(&["check", "--config", &config]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let row = text
        .lines()
        .skip_while(|line| !line.contains("t1.example.com"))
        .take(12)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        row.contains("Ed25519"),
        "the warning is on t1.example.com: {text}"
    );
    for browser in ["Chrome", "Firefox", "Safari", "Edge"] {
        assert!(text.contains(browser), "{browser} named: {text}");
    }
    assert!(text.contains("system_state: warning"), "{text}");
    let json = sniwalk(&["check", "--config", &config, "--json"]);
    assert!(stdout(&json).contains("Ed25519"), "{}", stdout(&json));

    let yaml = std::fs::read_to_string(&config).expect("config");
    let proxy = TestProxy::start(dir.path(), &yaml).await;
    let sha = sniwalk::pem::parse_certificate_pem(&pem)
        .expect("loads")
        .leaf
        .sha256;
    assert_eq!(
        served_leaf(proxy.addr(), Some("t1.example.com")).await,
        sha,
        "still served to a client that can use it"
    );
    proxy.stop().await;
}

/// An ACME domain never issued, with Let's Encrypt production as the
/// directory (the default, or written out): `check` warns, naming the
/// domain and the rate limit, and suggests staging first; with staging, or
/// once a certificate is stored, it does not. No CA is contacted.
#[test]
fn check_warns_before_the_first_order_goes_to_production() {
    let dir = tempfile::tempdir().expect("tempdir");
    cert(&["example.com"]).write_pem(&dir.path().join("certs/example.com.pem"));
    cert(&["ws.example.com"]).write_certdir(&dir.path().join("certs/ws"));
    let shop = "  shop.example.com:\n    acme: { enabled: true, account_email: ops@example.com }\n";
    for (top, warns) in [
        ("", true),
        ("acme: { directory: production }\n", true),
        ("acme: { directory: staging }\n", false),
    ] {
        let config = write_config(dir.path(), shop, top);
        add_http_listener(&config);
        let out = sniwalk(&["check", "--config", &config]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{top}: {text}");
        let warning = "shop.example.com has never been issued and acme.directory is Let's \
                       Encrypt production";
        assert_eq!(text.contains(warning), warns, "{top}: {text}");
        if warns {
            assert!(
                text.contains("5 failed validations per account per hostname per hour"),
                "{text}"
            );
            assert!(text.contains("`acme.directory: staging` first"), "{text}");
        }
    }
    // Issued once (a stored certificate with the marker): no warning.
    let issued = format!(
        "acme_issued=2026-01-01T00:00:00Z\n{}",
        std::fs::read_to_string(dir.path().join("certs/example.com.pem")).expect("pem")
    );
    let stored = dir.path().join("state/certificates/shop.example.com.pem");
    std::fs::create_dir_all(stored.parent().expect("parent")).expect("mkdir");
    std::fs::write(&stored, issued).expect("stored");
    let config = write_config(dir.path(), shop, "");
    add_http_listener(&config);
    let text = stdout(&sniwalk(&["check", "--config", &config]));
    assert!(!text.contains("has never been issued"), "{text}");
}

#[test]
fn check_reads_the_tsig_secret_file_and_warns_about_open_credentials() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    cert(&["example.com"]).write_pem(&dir.path().join("certs/example.com.pem"));
    cert(&["ws.example.com"]).write_certdir(&dir.path().join("certs/ws"));
    let top = "acme:\n  directory: staging\n  challenge: dns-01\n  rfc2136:\n    server: \
               127.0.0.1:5353\n    tsig_key_name: acme-update\n    tsig_secret_file: tsig.key\n";
    let config = write_config(dir.path(), "", top);
    let secret = dir.path().join("tsig.key");
    // Missing: an error naming the field and the file, exit 1 (an order
    // would fail at the first renewal).
    let out = sniwalk(&["check", "--config", &config]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("error: acme.rfc2136.tsig_secret_file") && text.contains("tsig.key"),
        "{text}"
    );
    // A block for another algorithm: named, with the fix.
    std::fs::write(
        &secret,
        "key \"acme-update\" {\n\talgorithm hmac-sha512;\n\tsecret \
         \"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnl0ZXM=\";\n};\n",
    )
    .expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = sniwalk(&["check", "--config", &config]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("set tsig_algorithm: hmac-sha512"), "{text}");
    // The secret alone, readable by every user: a warning, exit 0.
    std::fs::write(
        &secret,
        "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnl0ZXM=\n",
    )
    .expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = sniwalk(&["check", "--config", &config]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("warning: acme.rfc2136.tsig_secret_file") && text.contains("0644"),
        "{text}"
    );
}
