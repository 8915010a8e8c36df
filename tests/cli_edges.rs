//! The command line at its edges: the configuration file it picks without
//! `--config`, `-c` before the command, completions and the man page, a
//! closed stdout, one cause per error, exit codes, and the commands that
//! refuse to overwrite or accept a bad name.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{cert, sniwalk_bin};

/// Runs sniwalk in `cwd` with `env` added (and `SNIWALK_CONFIG` removed
/// unless given).
fn sniwalk_in(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(sniwalk_bin());
    command
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .env_remove("SNIWALK_CONFIG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("sniwalk runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A configuration whose only certificate is the master domain's, written
/// as `dir/NAME`; `master` names the master domain, so two files can be
/// told apart by `check`'s output.
fn write_config(dir: &Path, name: &str, master: &str) -> String {
    cert(&[master]).write_pem(&dir.join(format!("{master}.pem")));
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "master_domain: {master}\ndomains:\n  {master}:\n    certificate_file: {master}.pem\n\
             listeners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:8443\n\
             \x20   routes:\n      - host: \"*\"\n        status_page: true\n"
        ),
    )
    .expect("write config");
    path.to_string_lossy().into_owned()
}

#[test]
fn without_config_the_local_file_then_the_environment_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let env_file = write_config(elsewhere.path(), "env.yaml", "env.test");

    // No ./proxy.yaml: $SNIWALK_CONFIG is read.
    let out = sniwalk_in(dir.path(), &[("SNIWALK_CONFIG", &env_file)], &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("env.test"), "{}", stdout(&out));

    // ./proxy.yaml exists: it is read, and a note says the variable is not.
    write_config(dir.path(), "proxy.yaml", "local.test");
    let out = sniwalk_in(dir.path(), &[("SNIWALK_CONFIG", &env_file)], &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("local.test"), "{}", stdout(&out));
    assert!(stderr(&out).contains("SNIWALK_CONFIG="), "{}", stderr(&out));

    // `-c FILE` before the command, and after it, beat both.
    for args in [
        &["-c", env_file.as_str(), "check"][..],
        &["check", "-c", env_file.as_str()],
    ] {
        let out = sniwalk_in(dir.path(), &[], args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("env.test"), "{args:?}");
    }

    // Nothing to read: the message says what was tried and what to do.
    let empty = tempfile::tempdir().expect("tempdir");
    let out = sniwalk_in(empty.path(), &[], &["resolve", "x.test"]);
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert!(
        message.contains("SNIWALK_CONFIG") && message.contains("--config FILE"),
        "{message}"
    );
}

#[test]
fn a_bare_sniwalk_with_c_runs_that_file() {
    // `sniwalk -c FILE` is `sniwalk run --config FILE`: a file that does not
    // load stops it with that file's name, exit 2.
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "master_domain: [\n").expect("write");
    let out = sniwalk_in(dir.path(), &[], &["-c", &broken.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("broken.yaml"), "{}", stderr(&out));

    let help = sniwalk_in(dir.path(), &[], &["--help"]);
    assert!(
        stdout(&help).contains("With no command, runs `sniwalk run`"),
        "{}",
        stdout(&help)
    );
}

#[test]
fn completions_and_the_man_page_are_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (shell, marker) in [
        ("bash", "complete -F _sniwalk"),
        ("zsh", "#compdef sniwalk"),
        ("fish", "complete -c sniwalk"),
    ] {
        let out = sniwalk_in(dir.path(), &[], &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("selfsigned"),
            "{shell} completes the commands"
        );
    }
    // The bash script is valid bash.
    let bash = sniwalk_in(dir.path(), &[], &["completions", "bash"]);
    let file = dir.path().join("sniwalk.bash");
    std::fs::write(&file, &bash.stdout).expect("write");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash");
    assert!(syntax.status.success(), "{}", stderr(&syntax));

    let man = sniwalk_in(dir.path(), &[], &["man"]);
    assert_eq!(man.status.code(), Some(0));
    let roff = stdout(&man);
    assert!(roff.contains(".TH sniwalk 1"), "{roff}");
    assert!(
        roff.contains("SNIWALK_CONFIG"),
        "the man page says how --config defaults"
    );
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    // The reading end is closed before sniwalk starts, so its first write
    // gets EPIPE (as `sniwalk resolve --json x | head -1` does once head
    // has its line).
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "proxy.yaml", "pipe.test");
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(sniwalk_bin())
        .args(["resolve", "--json", "-c", &config, "www.pipe.test"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("sniwalk runs");
    let message = stderr(&out);
    assert!(!message.contains("panicked"), "{message}");
    assert_eq!(out.status.code(), Some(141), "as SIGPIPE would: {message}");
    assert!(message.is_empty(), "nothing to say: {message}");
}

#[test]
fn an_error_names_each_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = sniwalk_in(
        dir.path(),
        &[],
        &["resolve", "-c", "missing.yaml", "x.test"],
    );
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert_eq!(message.matches("os error 2").count(), 1, "{message}");
    assert!(message.contains("missing.yaml"), "{message}");
}

#[test]
fn check_json_reports_a_configuration_that_does_not_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("proxy.yaml"), "listeners: 3\n").expect("write");
    let out = sniwalk_in(dir.path(), &[], &["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(report["system_state"], "error");
    let error = report["error"].as_str().expect("an error message");
    assert!(error.contains("proxy.yaml"), "{error}");
}

#[test]
fn check_warns_when_every_name_gets_the_generated_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("proxy.yaml"),
        "master_domain: example.com\ndomains:\n  example.com: {}\n\
         listeners:\n  - name: ws\n    kind: https\n    bind: 127.0.0.1:8443\n\
         \x20   routes:\n      - host: \"*\"\n        status_page: true\n",
    )
    .expect("write");
    let out = sniwalk_in(dir.path(), &[], &["check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "a warning, not an error");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["system_state"], "warning", "{report:#}");
    let default = report["certificates"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["place"] == "default"))
        .expect("a default row");
    let problems = default["problems"].to_string();
    assert!(problems.contains("generated"), "{problems}");

    // One certificate anywhere, and the warning is gone.
    write_config(dir.path(), "proxy.yaml", "example.com");
    let out = sniwalk_in(dir.path(), &[], &["check", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["system_state"], "ok", "{report:#}");
}

#[test]
fn resolve_refuses_a_name_no_client_could_send() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), "proxy.yaml", "example.com");
    let out = sniwalk_in(dir.path(), &[], &["resolve", "bad name!"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("NAME"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

#[test]
fn pem_merge_out_writes_a_private_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leaf = cert(&["merge.test"]);
    std::fs::write(dir.path().join("k.pem"), &leaf.key_pem).expect("write");
    std::fs::write(dir.path().join("c.pem"), &leaf.cert_pem).expect("write");
    let target = dir.path().join("merged.pem");
    std::fs::write(&target, "old").expect("write");
    let out = sniwalk_in(
        dir.path(),
        &[],
        &[
            "pem",
            "merge",
            "--key",
            "k.pem",
            "--cert",
            "c.pem",
            "--out",
            "merged.pem",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mode = std::fs::metadata(&target)
        .expect("written")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&target).expect("read");
    let parsed = sniwalk::pem::parse_certificate_pem(&text).expect("loads");
    assert_eq!(parsed.leaf.sha256, leaf.sha256);
    assert!(
        !stdout(&out).contains("PRIVATE KEY"),
        "the key stays in the file"
    );
}

#[test]
fn selfsigned_keeps_an_existing_key_unless_forced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["selfsigned", "--name", "local.test", "--out", "certs"];
    let first = sniwalk_in(dir.path(), &[], &args);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let key = dir.path().join("certs/server.key");
    let before = std::fs::read(&key).expect("key written");

    let again = sniwalk_in(dir.path(), &[], &args);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(std::fs::read(&key).expect("key"), before, "the key is kept");

    let forced = sniwalk_in(dir.path(), &[], &[&args[..], &["--force"]].concat());
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    assert_ne!(std::fs::read(&key).expect("key"), before, "replaced");
}

#[test]
fn status_and_renew_exit_1_when_they_find_a_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), "proxy.yaml", "example.com");
    // Nothing listens there: the API cannot be reached.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let admin = format!("http://127.0.0.1:{port}");
    let out = sniwalk_in(dir.path(), &[], &["status", "--admin", &admin]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is sniwalk running?"),
        "{}",
        stderr(&out)
    );

    // A domain ACME does not manage.
    let out = sniwalk_in(dir.path(), &[], &["renew", "example.com"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("acme"), "{}", stderr(&out));
    // A bad argument is still 2.
    let out = sniwalk_in(
        dir.path(),
        &[],
        &["renew", "--timeout", "soon", "example.com"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn yaml_errors_speak_of_the_file_not_of_our_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |text: &str| std::fs::write(dir.path().join("proxy.yaml"), text).expect("write");
    write("master_domain: example.com\ndomains:\n  example.com: \"x\"\n");
    let out = sniwalk_in(dir.path(), &[], &["check"]);
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(!message.contains("Raw"), "no type names: {message}");
    assert!(message.contains("a domain's settings"), "{message}");

    write("master_domain: example.com\ndomains:\n\texample.com: {}\n");
    let message = stderr(&sniwalk_in(dir.path(), &[], &["check"]));
    assert!(
        message.contains("line 3 is indented with a tab"),
        "{message}"
    );
}
