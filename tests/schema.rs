//! `sniwalk schema` against what users write: the shipped `proxy.yaml` and
//! every ```yaml example of the README validate against the JSON Schema,
//! and the schema refuses what sniwalk refuses (unknown keys, wrong types).
//!
//! A README example may be a part of a file: a block is checked against
//! the whole file's schema with no key required, or against the part
//! (listener, route, domain, ...) whose keys it uses. YAML that is not
//! proxy.yaml (alert rules, say) is fenced as ```yml, not ```yaml.

mod common;

use serde_json::{Map, Value, json};

fn schema() -> Value {
    let out = std::process::Command::new(common::sniwalk_bin())
        .arg("schema")
        .output()
        .expect("sniwalk schema runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the schema is JSON")
}

fn yaml_as_json(text: &str) -> Result<Value, String> {
    serde_yaml::from_str::<Value>(text).map_err(|e| e.to_string())
}

/// The schemas a (part of a) file may be checked against: the whole file
/// with nothing required, then each definition, each with the keys it
/// knows.
fn candidates(schema: &Value) -> Vec<(String, Vec<String>, Value)> {
    let defs = schema["$defs"].clone();
    let keys = |s: &Value| -> Vec<String> {
        s["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut root = schema.clone();
    root.as_object_mut().expect("an object").remove("required");
    let mut out = vec![("the whole file".to_string(), keys(schema), root)];
    for (name, def) in defs.as_object().expect("$defs") {
        if def["properties"].is_object() {
            // The part shown may leave out its required keys (a listener's
            // `routes:` alone); what it nests is checked in full.
            let mut defs = defs.clone();
            if let Some(part) = defs[name.as_str()].as_object_mut() {
                part.remove("required");
            }
            let part = json!({ "$defs": defs, "$ref": format!("#/$defs/{name}") });
            out.push((name.clone(), keys(def), part));
        }
    }
    out
}

/// Checks one map: against each candidate that knows all its keys; Ok when
/// one accepts it.
fn check_map(
    map: &Map<String, Value>,
    candidates: &[(String, Vec<String>, Value)],
) -> Result<(), String> {
    let mut errors = Vec::new();
    for (name, keys, schema) in candidates {
        if !map.keys().all(|k| keys.contains(k)) {
            continue;
        }
        let validator = jsonschema::validator_for(schema).expect("the schema compiles");
        let found: Vec<String> = validator
            .iter_errors(&Value::Object(map.clone()))
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if found.is_empty() {
            return Ok(());
        }
        errors.push(format!("as {name}: {}", found.join("; ")));
    }
    if errors.is_empty() {
        let keys: Vec<&String> = map.keys().collect();
        return Err(format!(
            "no part of proxy.yaml has all of the keys {keys:?} (not proxy.yaml? fence it as ```yml)"
        ));
    }
    Err(errors.join("\n"))
}

fn check_example(value: &Value, candidates: &[(String, Vec<String>, Value)]) -> Result<(), String> {
    match value {
        Value::Object(map) => check_map(map, candidates),
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| check_example(item, candidates)),
        other => Err(format!("not a map or a list: {other}")),
    }
}

#[test]
fn the_shipped_proxy_yaml_is_valid() {
    let schema = schema();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.yaml"))
        .expect("proxy.yaml");
    let config = yaml_as_json(&text).expect("proxy.yaml is YAML");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&config)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "proxy.yaml: {errors:#?}");
}

#[test]
fn every_yaml_example_of_the_readme_is_valid() {
    let schema = schema();
    let candidates = candidates(&schema);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut lines = readme.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        if line.trim() != "```yaml" {
            continue;
        }
        let block: Vec<&str> = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| l.trim() != "```")
            .collect();
        checked += 1;
        let outcome =
            yaml_as_json(&block.join("\n")).and_then(|value| check_example(&value, &candidates));
        if let Err(e) = outcome {
            failures.push(format!("README.md line {}: {e}", number + 1));
        }
    }
    assert!(checked >= 5, "only {checked} ```yaml blocks found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_schema_refuses_what_sniwalk_refuses() {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let valid = |yaml: &str| validator.is_valid(&yaml_as_json(yaml).expect("YAML"));
    let base = "master_domain: example.com\ndomains:\n  example.com: {}\n";
    assert!(valid(base));
    assert!(
        !valid("domains:\n  example.com: {}\n"),
        "master_domain is required"
    );
    assert!(!valid(&format!("{base}listners: []\n")), "an unknown key");
    assert!(
        !valid(&format!("{base}shutdown_timeout: 5 minutes\n")),
        "a bad duration"
    );
    assert!(valid(&format!("{base}shutdown_timeout: 5m\n")));
    assert!(!valid(&format!(
        "{base}listeners:\n  - name: a\n    kind: ftp\n    bind: 127.0.0.1:21\n"
    )));
    assert!(!valid(&format!(
        "{base}listeners:\n  - name: a\n    kind: https\n    bind: 443\n"
    )));
    assert!(!valid(
        "master_domain: example.com\ndomains:\n  bad name!: {}\n"
    ));
}
