//! YAML parse errors in words a person who wrote the file can act on: the
//! parser's message names the Rust type it wanted ("expected struct
//! RawDomain") and says nothing about the usual cause of a YAML error,
//! indentation. Pure text in, text out.

/// The message for a YAML error in `text`: serde's message with type names
/// replaced by what the field takes, and a hint when the cause is likely a
/// tab or a misaligned line.
pub(super) fn explain(error: &serde_yaml::Error, text: &str) -> String {
    let mut message = plain_types(&error.to_string());
    let line = error.location().map(|l| l.line());
    if let Some(tab_line) = line.and_then(|line| tab_indented_near(text, line)) {
        message.push_str(&format!(
            "; line {tab_line} is indented with a tab: YAML indents with spaces only, \
             so replace the tab with spaces"
        ));
    } else if let Some(line) = line
        && looks_like_indentation(&message)
    {
        message.push_str(&format!(
            "; check the indentation of line {line} and the lines above it: the keys of one \
             map start in the same column, and a value's own keys are indented under it \
             (with spaces)"
        ));
    }
    message
}

/// Replaces serde's names of our types with what the YAML should hold.
fn plain_types(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("expected struct ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "expected struct ".len()..];
        let name_len = after
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(after.len());
        out.push_str(&format!("expected {}", what_it_holds(&after[..name_len])));
        rest = &after[name_len..];
    }
    out.push_str(rest);
    out.replace(
        "expected a sequence",
        "expected a list (`- item` lines, or `[a, b]`)",
    )
}

/// What a configuration type is, as the YAML writes it.
fn what_it_holds(type_name: &str) -> &'static str {
    match type_name {
        "RawDomain" => {
            "a domain's settings: a map such as `{}` or `certificate_file: FILE` indented under \
             the name"
        }
        "RawListener" => "a listener: a map with `name:`, `kind:`, `bind:`, ...",
        "RawRoute" => "a route: a map with `host:` and what to do (`backend:`, ...)",
        _ => "a map (`key: value` lines indented under it)",
    }
}

/// The error's line, or the one above it (the parser often stops on the
/// line after the culprit), when its indentation holds a tab (1-based).
fn tab_indented_near(text: &str, line: usize) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    [line, line.saturating_sub(1)]
        .into_iter()
        .filter(|&n| n >= 1)
        .find(|&n| {
            lines.get(n - 1).is_some_and(|l| {
                l.chars()
                    .take_while(|c| c.is_whitespace())
                    .any(|c| c == '\t')
            })
        })
}

/// The parser's messages for a line that does not line up with its map.
fn looks_like_indentation(message: &str) -> bool {
    [
        "did not find expected key",
        "mapping values are not allowed",
        "did not find expected '-'",
        "while parsing a block",
    ]
    .iter()
    .any(|m| message.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        let error = serde_yaml::from_str::<serde_yaml::Value>(text)
            .map(|_| ())
            .unwrap_err();
        explain(&error, text)
    }

    #[test]
    fn a_tab_in_the_indentation_is_named_with_its_line() {
        let message = error_of("domains:\n\texample.com: {}\n");
        assert!(
            message.contains("line 2 is indented with a tab"),
            "{message}"
        );
    }

    #[test]
    fn a_tab_elsewhere_is_not_blamed() {
        // A tab inside a value on line 1; the error is on line 4.
        let message = error_of("note: \"a\tb\"\ndomains:\n  a.com: {}\n   b.com: {}\n");
        assert!(!message.contains("with a tab"), "{message}");
        assert!(
            message.contains("check the indentation of line 4"),
            "{message}"
        );
    }

    #[test]
    fn a_misaligned_key_gets_an_indentation_hint() {
        let message = error_of("domains:\n  a.com: {}\n   b.com: {}\n");
        assert!(
            message.contains("check the indentation of line 3"),
            "{message}"
        );
    }

    #[test]
    fn type_names_become_what_the_yaml_holds() {
        let plain = plain_types(
            "domains.x: invalid type: string \"x\", expected struct RawDomain at line 3 column 16",
        );
        assert!(!plain.contains("RawDomain"), "{plain}");
        assert!(plain.contains("a domain's settings"), "{plain}");
        assert!(plain.ends_with("at line 3 column 16"), "{plain}");
        let plain = plain_types("admin: invalid type: integer `5`, expected struct RawAdmin");
        assert_eq!(
            plain,
            "admin: invalid type: integer `5`, expected a map (`key: value` lines indented under it)"
        );
        assert!(plain_types("routes: expected a sequence").contains("`- item`"));
    }
}
