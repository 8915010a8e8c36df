//! `log:` and `access_log:` read from whole configuration texts.

use std::path::Path;

use super::super::{AccessLogConfig, AccessLogFormat, Config, ConfigError, LogFormat};

const HEAD: &str = "master_domain: example.com\ndomains:\n  example.com: {}\n";

fn parse(yaml: &str, dir: &Path) -> Result<Config, ConfigError> {
    Config::parse(yaml, &dir.join("proxy.yaml"))
}

fn listener(name: &str, kind: &str, port: u16, extra: &str) -> String {
    let backend = if kind == "tls" {
        "    backend: 127.0.0.1:5060\n"
    } else {
        ""
    };
    format!("  - name: {name}\n    kind: {kind}\n    bind: 127.0.0.1:{port}\n{backend}{extra}")
}

fn access(config: &Config, name: &str) -> Option<AccessLogConfig> {
    config
        .listeners
        .iter()
        .find(|l| l.name == name)
        .expect("listener")
        .access_log
        .clone()
}

fn error(yaml: &str, dir: &Path) -> String {
    parse(yaml, dir).expect_err("refused").to_string()
}

#[test]
fn defaults_log_text_at_info_and_every_request_to_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!("{HEAD}listeners:\n{}", listener("ws", "https", 1, ""));
    let config = parse(&yaml, dir.path()).expect("valid");
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.level, "info");
    assert_eq!(
        access(&config, "ws"),
        Some(AccessLogConfig {
            format: AccessLogFormat::Text,
            file: None
        })
    );
}

#[test]
fn the_access_log_follows_the_log_format_unless_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "{HEAD}log: {{ format: json, level: \"warn,sniwalk::proxy=debug\" }}\nlisteners:\n{}{}",
        listener("a", "https", 1, ""),
        listener("b", "https", 2, "    access_log: { format: combined }\n"),
    );
    let config = parse(&yaml, dir.path()).expect("valid");
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.level, "warn,sniwalk::proxy=debug");
    assert_eq!(
        access(&config, "a").map(|a| a.format),
        Some(AccessLogFormat::Json)
    );
    assert_eq!(
        access(&config, "b").map(|a| a.format),
        Some(AccessLogFormat::Combined)
    );
}

/// A listener inherits the top-level block; its own map replaces it,
/// `true` takes it, `false` turns the log off.
#[test]
fn listeners_inherit_the_top_level_access_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "{HEAD}access_log: {{ format: json, file: logs/access.log }}\nlisteners:\n{}{}{}{}{}",
        listener("inherits", "https", 1, ""),
        listener("own", "https", 2, "    access_log: { format: combined }\n"),
        listener("on", "http", 3, "    access_log: true\n"),
        listener("off", "https", 4, "    access_log: false\n"),
        listener("sip", "tls", 5, ""),
    );
    std::fs::create_dir(dir.path().join("logs")).expect("logs folder");
    let config = parse(&yaml, dir.path()).expect("valid");
    let shared = Some(AccessLogConfig {
        format: AccessLogFormat::Json,
        file: Some(dir.path().join("logs/access.log")),
    });
    assert_eq!(access(&config, "inherits"), shared);
    assert_eq!(
        access(&config, "own"),
        Some(AccessLogConfig {
            format: AccessLogFormat::Combined,
            file: None
        }),
        "a listener's map replaces the top-level one (stderr here)"
    );
    assert_eq!(access(&config, "on"), shared);
    assert_eq!(access(&config, "off"), None);
    assert_eq!(access(&config, "sip"), shared);
}

#[test]
fn a_top_level_false_turns_every_listener_off_but_those_that_say_true() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "{HEAD}access_log: false\nlisteners:\n{}{}",
        listener("quiet", "https", 1, ""),
        listener("loud", "https", 2, "    access_log: true\n"),
    );
    let config = parse(&yaml, dir.path()).expect("valid");
    assert_eq!(access(&config, "quiet"), None);
    assert_eq!(
        access(&config, "loud"),
        Some(AccessLogConfig {
            format: AccessLogFormat::Text,
            file: None
        })
    );
}

#[test]
fn a_missing_folder_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let top = format!(
        "{HEAD}access_log: {{ file: nowhere/access.log }}\nlisteners:\n{}",
        listener("ws", "https", 1, "")
    );
    let message = error(&top, dir.path());
    assert!(message.contains("access_log.file"), "{message}");
    assert!(message.contains("nowhere"), "{message}");
    assert!(message.contains("create it"), "{message}");

    let own = format!(
        "{HEAD}listeners:\n{}",
        listener(
            "ws",
            "https",
            1,
            "    access_log: { file: /nonexistent-sniwalk/a.log }\n"
        )
    );
    let message = error(&own, dir.path());
    assert!(
        message.contains("listeners.ws.access_log.file"),
        "{message}"
    );
}

#[test]
fn a_folder_is_no_log_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "{HEAD}access_log: {{ file: . }}\nlisteners:\n{}",
        listener("ws", "https", 1, "")
    );
    let message = error(&yaml, dir.path());
    assert!(message.contains("is a folder"), "{message}");
    assert!(message.contains("access.log"), "{message}");
}

#[test]
fn combined_is_refused_on_tls_listeners_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let own = format!(
        "{HEAD}listeners:\n{}",
        listener("sip", "tls", 1, "    access_log: { format: combined }\n")
    );
    let message = error(&own, dir.path());
    assert!(message.contains("listeners.sip.access_log"), "{message}");
    assert!(message.contains("format: text"), "{message}");
    assert!(!message.contains("inherited"), "{message}");

    let inherited = format!(
        "{HEAD}access_log: {{ format: combined }}\nlisteners:\n{}{}",
        listener("web", "https", 1, ""),
        listener("sip", "tls", 2, "")
    );
    let message = error(&inherited, dir.path());
    assert!(message.contains("listeners.sip.access_log"), "{message}");
    assert!(
        message.contains("inherited from the top-level"),
        "{message}"
    );

    let overridden = format!(
        "{HEAD}access_log: {{ format: combined }}\nlisteners:\n{}{}",
        listener("web", "https", 1, ""),
        listener("sip", "tls", 2, "    access_log: { format: json }\n")
    );
    parse(&overridden, dir.path()).expect("the tls listener says json");
}

#[test]
fn bad_values_are_refused_with_their_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table: &[(&str, &[&str])] = &[
        (
            "log: { format: xml }\n",
            &["log.format", "unknown variant", "text", "json"],
        ),
        (
            "log: { colour: red }\n",
            &["log", "unknown field", "colour"],
        ),
        (
            "log: { level: \"info,=\" }\n",
            &["log.level", "not a log filter"],
        ),
        ("log: { level: \" \" }\n", &["log.level", "it is empty"]),
        (
            "access_log: { format: clf }\n",
            &["access_log.format", "unknown variant", "combined"],
        ),
        (
            "access_log: { path: a.log }\n",
            &["access_log", "unknown field", "path"],
        ),
        (
            "access_log: yes please\n",
            &["access_log", "boolean", "map"],
        ),
    ];
    for (extra, needles) in table {
        let yaml = format!(
            "{HEAD}{extra}listeners:\n{}",
            listener("ws", "https", 1, "")
        );
        let message = error(&yaml, dir.path());
        for needle in *needles {
            assert!(
                message.contains(needle),
                "{extra:?}: {needle:?} in {message}"
            );
        }
    }
}
