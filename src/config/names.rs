//! `domains.NAME.names` and the per-domain `acme.challenge`: the names one
//! certificate covers (wildcards `*.x` included) and the checks across
//! domains they need (README, "How a certificate is chosen" and "DNS-01 and wildcards").

use serde::{Deserialize, Deserializer};

use super::field_error::ListedNameError;
use super::fields::{CheckedStr, ValueError, normalize_domain_name};
use super::positions::locate_entry;
use super::types::{AcmeConfig, ChallengeKind, DomainConfig};

/// One entry of `names`: a DNS name, or a wildcard `*.x` whose `x` has at
/// least two labels (a CA issues no `*.com`).
#[derive(Debug, Clone, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(transparent)]
pub(super) struct NameField(pub(super) String);

impl<'de> Deserialize<'de> for NameField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr(|raw: &str| {
            normalize_listed_name(raw)
                .map(NameField)
                .map_err(ValueError::invalid("name"))
        }))
    }
}

/// Lower-cases and checks a `names` entry: `*.` followed by a DNS name of
/// two labels or more, or a DNS name.
pub fn normalize_listed_name(input: &str) -> Result<String, ListedNameError> {
    let trimmed = input.trim();
    match trimmed.strip_prefix("*.") {
        Some(base) => {
            let base = normalize_domain_name(base)?;
            if base.len() + 2 > 253 {
                return Err(super::field_error::DomainNameError::TooLong {
                    input: input.to_string(),
                }
                .into());
            }
            if !base.contains('.') {
                return Err(ListedNameError::WildcardTooWide {
                    input: input.to_string(),
                });
            }
            Ok(format!("*.{base}"))
        }
        None => Ok(normalize_domain_name(trimmed)?),
    }
}

/// Why the names or challenges of the domains do not fit together.
#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    /// The same name in two domains (listed, or a domain's own name).
    #[error(
        "domains.{domain}.names: `{name}` is also {other}; one name is answered by one \
         domain: remove it from one of them{at}"
    )]
    Twice {
        /// The domain that lists it second.
        domain: String,
        /// The name.
        name: String,
        /// `listed by domains.X` or `the configured domain X`.
        other: String,
        /// Where the second domain is.
        at: String,
    },
    /// `names` without the domain's own name.
    #[error(
        "domains.{domain}.names: the list lacks `{domain}` itself; add it (a certificate \
         without it would be served for it all the same){at}"
    )]
    WithoutOwnName {
        /// The domain.
        domain: String,
        /// Where the domain is.
        at: String,
    },
    /// A dns-01 name outside `acme.rfc2136.zone`.
    #[error(
        "domains.{domain}.names: `{name}` is not in acme.rfc2136.zone `{zone}`, so its TXT \
         record cannot be published there; remove `zone` (each name's zone is then found by \
         an SOA query) or use one zone for all dns-01 names{at}"
    )]
    OutsideZone {
        /// The domain.
        domain: String,
        /// The name.
        name: String,
        /// The configured zone.
        zone: String,
        /// Where the domain is.
        at: String,
    },
    /// The same name twice in one list.
    #[error("domains.{domain}.names: `{name}` is listed twice; list it once{at}")]
    Repeated {
        /// The domain.
        domain: String,
        /// The name.
        name: String,
        /// Where the domain is.
        at: String,
    },
    /// A wildcard on an ACME domain whose challenge cannot prove it.
    #[error(
        "domains.{domain}.names: `{name}` is a wildcard, which a CA validates only through \
         dns-01, but the domain's challenge is {challenge}; set `challenge: dns-01` in \
         domains.{domain}.acme (or in acme:) with an `acme.rfc2136` server{at}"
    )]
    WildcardNeedsDns01 {
        /// The domain.
        domain: String,
        /// The wildcard.
        name: String,
        /// The challenge that applies.
        challenge: &'static str,
        /// Where the domain is.
        at: String,
    },
    /// dns-01 without a DNS server to publish answers in.
    #[error(
        "acme.rfc2136: required by the dns-01 challenge of {}; add \
         `rfc2136: {{ server, tsig_key_name, tsig_secret_file }}` to acme:{at}",
        domains.join(", ")
    )]
    Dns01WithoutServer {
        /// The domains that use dns-01.
        domains: Vec<String>,
        /// Where the first of them is.
        at: String,
    },
}

/// The challenge a domain's orders use: its own `acme.challenge`, else the
/// global one.
pub fn effective_challenge(domain: &DomainConfig, acme: &AcmeConfig) -> ChallengeKind {
    domain
        .acme
        .as_ref()
        .and_then(|a| a.challenge)
        .unwrap_or(acme.challenge)
}

/// The configured domain that lists `name` in its `names`, if one does
/// (the admin API refuses to add such a name as a domain of its own).
pub fn listed_by<'a>(domains: &'a [DomainConfig], name: &str) -> Option<&'a str> {
    domains
        .iter()
        .find(|d| d.name != name && d.names.iter().any(|n| n == name))
        .map(|d| d.name.as_str())
}

/// The names an order for `domain` covers: its `names`, else its own name.
pub fn order_names(domain: &DomainConfig) -> Vec<String> {
    if domain.names.is_empty() {
        vec![domain.name.clone()]
    } else {
        domain.names.clone()
    }
}

/// Checks the names and challenges across domains: no name answered by
/// two domains, wildcards only with dns-01 on ACME domains, and dns-01
/// only with `acme.rfc2136`.
pub(super) fn check_names(
    domains: &[DomainConfig],
    acme: &AcmeConfig,
    text: &str,
) -> Result<(), NamesError> {
    let at = |domain: &str| locate_entry(text, domain, "", 0);
    let mut owners: std::collections::HashMap<&str, &str> = domains
        .iter()
        .map(|d| (d.name.as_str(), d.name.as_str()))
        .collect();
    for domain in domains {
        if !domain.names.is_empty() && !domain.names.contains(&domain.name) {
            return Err(NamesError::WithoutOwnName {
                domain: domain.name.clone(),
                at: at(&domain.name),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for name in &domain.names {
            if !seen.insert(name.as_str()) {
                return Err(NamesError::Repeated {
                    domain: domain.name.clone(),
                    name: name.clone(),
                    at: at(&domain.name),
                });
            }
            match owners.insert(name.as_str(), domain.name.as_str()) {
                Some(owner) if owner != domain.name => {
                    let other = if owner == name {
                        format!("the configured domain {owner}")
                    } else {
                        format!("listed by domains.{owner}")
                    };
                    return Err(NamesError::Twice {
                        domain: domain.name.clone(),
                        name: name.clone(),
                        other,
                        at: at(&domain.name),
                    });
                }
                _ => {}
            }
        }
    }
    let mut dns01 = Vec::new();
    for domain in domains {
        if !domain.acme.as_ref().is_some_and(|a| a.enabled) {
            continue;
        }
        let challenge = effective_challenge(domain, acme);
        if challenge == ChallengeKind::Dns01 {
            dns01.push(domain.name.clone());
            let zone = acme.rfc2136.as_ref().and_then(|r| r.zone.as_deref());
            if let Some(zone) = zone {
                let outside = order_names(domain).into_iter().find(|n| {
                    let n = n.strip_prefix("*.").unwrap_or(n);
                    n != zone && !n.ends_with(&format!(".{zone}"))
                });
                if let Some(name) = outside {
                    return Err(NamesError::OutsideZone {
                        domain: domain.name.clone(),
                        name,
                        zone: zone.to_string(),
                        at: at(&domain.name),
                    });
                }
            }
        } else if let Some(wildcard) = domain.names.iter().find(|n| n.starts_with("*.")) {
            return Err(NamesError::WildcardNeedsDns01 {
                domain: domain.name.clone(),
                name: wildcard.clone(),
                challenge: challenge.as_str(),
                at: at(&domain.name),
            });
        }
    }
    if acme.rfc2136.is_none()
        && let Some(first) = dns01.first()
    {
        return Err(NamesError::Dns01WithoutServer {
            at: at(first),
            domains: dns01,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn listed_names_are_names_or_wildcards_of_two_labels() {
        assert_eq!(
            normalize_listed_name("*.Tenant.Example."),
            Ok("*.tenant.example".into())
        );
        assert_eq!(
            normalize_listed_name("phone.customer.org"),
            Ok("phone.customer.org".into())
        );
        assert!(matches!(
            normalize_listed_name("*.com"),
            Err(ListedNameError::WildcardTooWide { .. })
        ));
        assert!(normalize_listed_name("a.*.example").is_err());
        assert!(normalize_listed_name("*.*.example.com").is_err());
        assert!(normalize_listed_name("192.0.2.1").is_err());
        assert!(normalize_listed_name("").is_err());
    }
}
