//! Paths in `proxy.yaml`: `alias://paths/NAME` expanded, relative paths
//! anchored at the configuration file's folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::positions::locate;
use super::types::{ALIAS_PREFIX, ConfigError};

/// Turns configured path strings into paths: aliases first, then relative
/// paths against the configuration file's folder.
pub(super) struct PathResolver<'a> {
    pub(super) file: &'a Path,
    pub(super) base: &'a Path,
    pub(super) aliases: &'a BTreeMap<String, String>,
    pub(super) text: &'a str,
}

impl PathResolver<'_> {
    pub(super) fn resolve(&self, value: &str, field: &str) -> Result<PathBuf, ConfigError> {
        let expanded = match value.strip_prefix(ALIAS_PREFIX) {
            Some(rest) => {
                let (alias, tail) = rest.split_once('/').unwrap_or((rest, ""));
                let Some(target) = self.aliases.get(alias) else {
                    let known: Vec<&str> = self.aliases.keys().map(String::as_str).collect();
                    return Err(ConfigError::Invalid {
                        file: self.file.to_path_buf(),
                        message: format!(
                            "{field}: unknown alias `{alias}` in `{value}`; define it under `paths:` \
                             (known: {}){}",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            },
                            locate(self.text, value)
                        ),
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
            return Err(ConfigError::Invalid {
                file: self.file.to_path_buf(),
                message: format!("{field}: the path is empty{}", locate(self.text, field)),
            });
        }
        Ok(if expanded.is_absolute() {
            expanded
        } else {
            self.base.join(expanded)
        })
    }
}
