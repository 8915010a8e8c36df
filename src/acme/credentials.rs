//! The ACME credential files, checked without an order for `check` and the
//! start log (README, "DNS-01 and wildcards", "External Account
//! Binding"): `acme.rfc2136.tsig_secret_file` is read only when an order
//! needs it (so a rotated secret is picked up), which would leave a missing
//! or garbled file unseen until the first renewal; and neither it nor
//! `acme.eab.hmac_key_file` should be readable by every user.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::rfc2136::{KeyBlock, key_block, parse_tsig_secret};
use crate::config::{Config, Rfc2136Config};
use crate::snapshot::Problem;

/// What is wrong with the credential files `config` names; empty when
/// nothing is (or none is configured).
pub fn problems(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(rfc2136) = &config.acme.rfc2136 {
        tsig_problems(rfc2136, &mut problems);
    }
    if let Some(eab) = &config.acme.eab {
        world_readable("acme.eab.hmac_key_file", &eab.hmac_key_file, &mut problems);
    }
    problems
}

/// The secret file: readable, a usable secret, a key block (if it is one)
/// for the configured key name and algorithm, not readable by every user.
fn tsig_problems(config: &Rfc2136Config, problems: &mut Vec<Problem>) {
    const FIELD: &str = "acme.rfc2136.tsig_secret_file";
    let file = &config.tsig_secret_file;
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            problems.push(Problem::error(format!(
                "{FIELD} {}: {e}; dns-01 orders fail until it holds the key's base64 secret \
                 (as `tsig-keygen` prints it)",
                file.display()
            )));
            return;
        }
    };
    if let Err(e) = parse_tsig_secret(&text) {
        problems.push(Problem::error(format!(
            "{FIELD} {}: {e}; dns-01 orders fail until it is fixed",
            file.display()
        )));
        return;
    }
    let KeyBlock { name, algorithm } = key_block(&text);
    if let Some(name) = name
        && !name
            .trim_end_matches('.')
            .eq_ignore_ascii_case(&config.tsig_key_name)
    {
        problems.push(Problem::error(format!(
            "{FIELD} {} holds the key `{name}`, but acme.rfc2136.tsig_key_name is `{}`; the \
             DNS server refuses updates signed under another name: set tsig_key_name: {name}",
            file.display(),
            config.tsig_key_name
        )));
    }
    if let Some(algorithm) = algorithm
        && !algorithm.eq_ignore_ascii_case(config.tsig_algorithm.as_str())
    {
        problems.push(Problem::error(format!(
            "{FIELD} {} holds a key for {algorithm}, but acme.rfc2136.tsig_algorithm is {}; \
             the DNS server refuses such signatures: set tsig_algorithm: {algorithm}",
            file.display(),
            config.tsig_algorithm
        )));
    }
    world_readable(FIELD, file, problems);
}

/// A warning when every user of the machine may read `file`.
fn world_readable(field: &str, file: &Path, problems: &mut Vec<Problem>) {
    let Ok(metadata) = std::fs::metadata(file) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        problems.push(Problem::warning(format!(
            "{field} {}: every user of this machine may read it (mode {mode:04o}); it is a \
             credential: chmod 600 it (or 640 with the group sniwalk runs as)",
            file.display()
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::rfc2136::TsigAlgorithm;

    const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnl0ZXM=";

    fn settings(file: &Path) -> Rfc2136Config {
        Rfc2136Config {
            server: "127.0.0.1:53".into(),
            tsig_key_name: "acme-update".into(),
            tsig_algorithm: TsigAlgorithm::HmacSha256,
            tsig_secret_file: file.to_path_buf(),
            zone: None,
            propagation_timeout: std::time::Duration::from_secs(60),
        }
    }

    fn found(content: Option<&str>, mode: u32) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tsig.key");
        if let Some(content) = content {
            std::fs::write(&file, content).expect("write");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        let mut problems = Vec::new();
        tsig_problems(&settings(&file), &mut problems);
        problems
            .into_iter()
            .map(|p| format!("{:?}: {}", p.severity, p.message))
            .collect()
    }

    #[test]
    fn a_good_secret_file_has_no_problem() {
        assert_eq!(found(Some(SECRET), 0o600), Vec::<String>::new());
        let block = format!(
            "key \"acme-update\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{SECRET}\";\n}};\n"
        );
        assert_eq!(found(Some(&block), 0o640), Vec::<String>::new());
    }

    #[test]
    fn missing_garbled_mismatched_and_open_files_are_named() {
        let missing = found(None, 0);
        assert!(
            missing[0].starts_with("Error") && missing[0].contains("tsig_secret_file"),
            "{missing:?}"
        );
        let garbled = found(Some("not base64!"), 0o600);
        assert!(garbled[0].contains("not base64"), "{garbled:?}");
        let other = format!("key \"other\" {{ algorithm hmac-sha512; secret \"{SECRET}\"; }};");
        let other = found(Some(&other), 0o600);
        assert!(
            other.iter().any(|p| p.contains("set tsig_key_name: other")),
            "{other:?}"
        );
        assert!(
            other
                .iter()
                .any(|p| p.contains("set tsig_algorithm: hmac-sha512")),
            "{other:?}"
        );
        let open = found(Some(SECRET), 0o644);
        assert!(
            open.len() == 1 && open[0].starts_with("Warning") && open[0].contains("0644"),
            "{open:?}"
        );
    }
}
