//! Paths in `proxy.yaml`: `alias://paths/NAME` expanded, relative paths
//! anchored at the configuration file's folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::positions::locate;
use super::types::ALIAS_PREFIX;

/// Why a configured path cannot be used. The message names the field and
/// ends with where in the file the value is, when it is found.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// `alias://paths/NAME/...` with a `NAME` not under `paths:`.
    #[error(
        "{field}: unknown alias `{alias}` in `{value}`; define it under `paths:` (known: {}){at}",
        list_or_none(known)
    )]
    UnknownAlias {
        /// The field (`listeners.web.certdir`).
        field: String,
        /// The alias named.
        alias: String,
        /// The path as written.
        value: String,
        /// The aliases defined under `paths:`.
        known: Vec<String>,
        /// ` at line L column C`, or empty when not found.
        at: String,
    },
    /// An empty path (after alias expansion).
    #[error("{field}: the path is empty{at}")]
    Empty {
        /// The field.
        field: String,
        /// ` at line L column C`, or empty when not found.
        at: String,
    },
}

/// `a, b` or `none`.
fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Turns configured path strings into paths: aliases first, then relative
/// paths against the configuration file's folder.
pub(super) struct PathResolver<'a> {
    pub(super) base: &'a Path,
    pub(super) aliases: &'a BTreeMap<String, String>,
    pub(super) text: &'a str,
}

impl PathResolver<'_> {
    pub(super) fn resolve(&self, value: &str, field: &str) -> Result<PathBuf, PathError> {
        let expanded = match value.strip_prefix(ALIAS_PREFIX) {
            Some(rest) => {
                let (alias, tail) = rest.split_once('/').unwrap_or((rest, ""));
                let Some(target) = self.aliases.get(alias) else {
                    return Err(PathError::UnknownAlias {
                        field: field.to_string(),
                        alias: alias.to_string(),
                        value: value.to_string(),
                        known: self.aliases.keys().cloned().collect(),
                        at: locate(self.text, value),
                    });
                };
                if tail.is_empty() {
                    PathBuf::from(target)
                } else {
                    Path::new(target).join(tail)
                }
            }
            None => PathBuf::from(value),
        };
        if expanded.as_os_str().is_empty() {
            return Err(PathError::Empty {
                field: field.to_string(),
                at: locate(self.text, field),
            });
        }
        Ok(if expanded.is_absolute() {
            expanded
        } else {
            self.base.join(expanded)
        })
    }
}
