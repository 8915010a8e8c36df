//! `sniwalk storage migrate` and `sniwalk storage ls` (README, "Command
//! line"), the real binary against a real etcd (tests/common/etcd.rs): a
//! state directory moved into etcd with identical bytes and without its
//! transient keys, a second run that finds everything the same, a newer
//! certificate in etcd kept and an older one replaced, a listing that
//! never shows a value, and an unreachable etcd named with exit code 1.
#![cfg(feature = "etcd")]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use common::etcd::TestEtcd;
use common::{cert, cert_valid_for, run_bounded, sniwalk_bin, within};

const SHOP: &str = "shop.example.com";
const BLOG: &str = "blog.example.com";
const ACCOUNT_KEY: &str = "accounts/0123456789abcdef.json";
const ACCOUNT: &str = r#"{"id":"https://ca.test/acct/1","key_pkcs8":"c2VjcmV0LWFjY291bnQta2V5"}"#;
const DOMAINS: &str = r#"{"version":1,"domains":{"extra.example.com":{}}}"#;

/// The bound of one test.
const TEST_LIMIT: Duration = Duration::from_secs(90);

/// How long one `sniwalk storage` or `check` run may take before it is
/// killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// Runs `sniwalk args` to its end (at most [`RUN_LIMIT`], then killed by
/// its PID).
async fn sniwalk(args: &[&str]) -> Output {
    let mut command = Command::new(sniwalk_bin());
    command.args(args).env("RUST_LOG", "warn");
    run_bounded(command, RUN_LIMIT).await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes a configuration named `name` into `dir`, its `state_dir` the
/// absolute `state`, with `storage` lines (empty for `kind: dir`).
fn write_config(dir: &Path, name: &str, state: &Path, storage: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "master_domain: example.com\nstate_dir: {}\n{storage}\
             domains:\n  example.com: {{}}\n  {SHOP}: {{}}\n",
            state.display()
        ),
    )
    .expect("write config");
    path.display().to_string()
}

/// The `storage:` lines of etcd at `endpoint`, prefix `/sniwalk/`.
fn etcd_storage(endpoint: &str) -> String {
    format!("storage:\n  kind: etcd\n  endpoints: [\"{endpoint}\"]\n  prefix: /sniwalk/\n")
}

/// The bytes etcd holds at `/sniwalk/<key>`, if any (JSON output: the value
/// base64-encoded, so exactly as stored).
async fn etcd_value(etcd: &TestEtcd, key: &str) -> Option<Vec<u8>> {
    let answer = etcd
        .etcdctl(&["get", &format!("/sniwalk/{key}"), "-w", "json"])
        .await;
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("etcdctl JSON");
    let value = answer["kvs"].as_array()?.first()?["value"].as_str()?;
    Some(
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .expect("base64 value"),
    )
}

/// Every key under `/sniwalk/`, one a line.
async fn keys_in_etcd(etcd: &TestEtcd) -> String {
    etcd.etcdctl(&["get", "--prefix", "--keys-only", "/sniwalk/"])
        .await
}

/// The line of `key` in a migration's output.
fn line_of<'a>(text: &'a str, key: &str) -> &'a str {
    let start = format!("{key}: ");
    text.lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_moves_into_etcd_once_and_newer_certificates_stay() {
    within(TEST_LIMIT, "storage migrate into etcd", async {
        let etcd = TestEtcd::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let (shop, blog) = (cert(&[SHOP]), cert(&[BLOG]));
        shop.write_pem(&state.join(format!("certificates/{SHOP}.pem")));
        blog.write_pem(&state.join(format!("certificates/{BLOG}.pem")));
        for (file, text) in [
            ("acme/accounts/0123456789abcdef.json", ACCOUNT),
            ("domains.json", DOMAINS),
            ("acme/http-01/tok", "tok.thumbprint"),
        ] {
            let path = state.join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write state file");
        }
        let from = write_config(dir.path(), "proxy.yaml", &state, "");
        let to = write_config(
            dir.path(),
            "etcd.yaml",
            &dir.path().join("etcd-state"),
            &etcd_storage(&etcd.endpoint()),
        );
        let migrate = ["storage", "migrate", "--config", &from, "--to", &to];

        // A dry run decides and writes nothing.
        let mut dry = migrate.to_vec();
        dry.push("--dry-run");
        let out = sniwalk(&dry).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            line_of(&stdout(&out), &format!("certificates/{SHOP}")).ends_with("would be copied"),
            "{}",
            stdout(&out)
        );
        assert_eq!(keys_in_etcd(&etcd).await.trim(), "", "a dry run wrote");

        // The first run copies everything but the transient answer.
        let out = sniwalk(&migrate).await;
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
        for key in [
            format!("certificates/{SHOP}"),
            format!("certificates/{BLOG}"),
            ACCOUNT_KEY.to_string(),
            "config/domains".to_string(),
        ] {
            assert_eq!(line_of(&text, &key), format!("{key}: copied"), "{text}");
        }
        assert_eq!(
            line_of(&text, "http-01/tok"),
            "http-01/tok: skipped (transient)"
        );
        assert!(
            text.contains("4 copied") && text.contains("0 failed"),
            "{text}"
        );
        let keys = keys_in_etcd(&etcd).await;
        assert!(!keys.contains("http-01"), "{keys}");
        for (key, bytes) in [
            (format!("certificates/{SHOP}"), shop.pem.as_bytes()),
            (format!("certificates/{BLOG}"), blog.pem.as_bytes()),
            (ACCOUNT_KEY.to_string(), ACCOUNT.as_bytes()),
            ("config/domains".to_string(), DOMAINS.as_bytes()),
        ] {
            assert!(
                keys.contains(&format!("/sniwalk/{key}")),
                "{key} missing:\n{keys}"
            );
            assert_eq!(
                etcd_value(&etcd, &key).await.as_deref(),
                Some(bytes),
                "{key}"
            );
        }

        // Again: everything the same.
        let out = sniwalk(&migrate).await;
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
        for line in text
            .lines()
            .filter(|l| l.contains(": ") && !l.contains(" keys from "))
        {
            assert!(
                line.ends_with(": same") || line.ends_with(": skipped (transient)"),
                "{line}\n{text}"
            );
        }
        assert!(text.contains("0 copied, 4 same"), "{text}");

        // A newer certificate in etcd is kept.
        let shop_key = format!("/sniwalk/certificates/{SHOP}");
        let newer = cert_valid_for(&[SHOP], Duration::from_secs(3 * 365 * 86_400));
        etcd.etcdctl(&["put", "--", &shop_key, &newer.pem]).await;
        let out = sniwalk(&migrate).await;
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
        assert!(
            line_of(&text, &format!("certificates/{SHOP}")).contains("kept newer in target"),
            "{text}"
        );
        assert_eq!(
            etcd_value(&etcd, &format!("certificates/{SHOP}"))
                .await
                .as_deref(),
            Some(newer.pem.as_bytes())
        );

        // An older one is replaced by the state directory's.
        let older = cert_valid_for(&[SHOP], Duration::from_secs(30 * 86_400));
        etcd.etcdctl(&["put", "--", &shop_key, &older.pem]).await;
        let out = sniwalk(&migrate).await;
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
        assert!(
            line_of(&text, &format!("certificates/{SHOP}"))
                .starts_with(&format!("certificates/{SHOP}: copied")),
            "{text}"
        );
        assert_eq!(
            etcd_value(&etcd, &format!("certificates/{SHOP}"))
                .await
                .as_deref(),
            Some(shop.pem.as_bytes())
        );

        // `storage ls` shows the facts and never a value.
        for json in [false, true] {
            let mut ls = vec!["storage", "ls", "--config", &to];
            if json {
                ls.push("--json");
            }
            let out = sniwalk(&ls).await;
            let text = stdout(&out);
            assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
            for shown in [
                SHOP,
                BLOG,
                &shop.sha256,
                &blog.sha256,
                ACCOUNT_KEY,
                "config/domains",
            ] {
                assert!(text.contains(shown), "{shown} not in:\n{text}");
            }
            for secret in ["PRIVATE KEY", "key_pkcs8", "c2VjcmV0", "extra.example.com"] {
                assert!(!text.contains(secret), "{secret} shown:\n{text}");
            }
            if json {
                let listed: serde_json::Value = serde_json::from_str(&text).expect("ls JSON");
                let shop_entry = listed["keys"]
                    .as_array()
                    .expect("keys")
                    .iter()
                    .find(|k| k["key"] == format!("certificates/{SHOP}"))
                    .expect("shop listed");
                assert_eq!(shop_entry["certificate"]["loads"], true, "{shop_entry}");
                assert_eq!(shop_entry["certificate"]["names"][0], SHOP, "{shop_entry}");
                assert_eq!(shop_entry["size"], shop.pem.len(), "{shop_entry}");
            }
        }

        // One storage on both sides is refused.
        let out = sniwalk(&["storage", "migrate", "--config", &to, "--to", &to]).await;
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(stderr(&out).contains("same storage"), "{}", stderr(&out));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_etcd_is_named_and_exits_1() {
    within(TEST_LIMIT, "storage ls on an unreachable etcd", async {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_config(
            dir.path(),
            "etcd.yaml",
            &dir.path().join("state"),
            &etcd_storage(&endpoint),
        );
        let out = sniwalk(&["storage", "ls", "--config", &config]).await;
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(stderr(&out).contains(&endpoint), "{}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    })
    .await;
}
