//! `storage:` of `proxy.yaml`, from its raw form to [`StorageConfig`]:
//! the kind, and for `kind: etcd` the endpoints, the prefix, TLS, the user
//! and the lease.

use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

use super::fields::normalize_domain_name;
use super::paths::{PathError, PathResolver};
use super::positions::{locate_entry, locate_in_section};
use super::raw::{RawStorage, RawStorageTls};
use super::types::{
    DEFAULT_STORAGE_LEASE, DEFAULT_STORAGE_PREFIX, EtcdStorageConfig, MAX_STORAGE_LEASE,
    MIN_STORAGE_LEASE, StorageConfig,
};

/// Why the `storage:` section is refused. Each message names the field
/// (`storage.endpoints[1]`, `storage.tls.client_key`...), says what to do
/// and ends with ` at line L column C` when the value is found.
#[derive(Debug, thiserror::Error)]
pub enum StorageConfigError {
    /// `storage:` without `kind`.
    #[error(
        "storage.kind: required: `dir` (the files under state_dir, what sniwalk uses without \
         `storage:`) or `etcd` (an etcd cluster){at}"
    )]
    NoKind {
        /// Where `storage:` is.
        at: String,
    },
    /// A `kind` other than `dir` and `etcd`.
    #[error("storage.kind: `{kind}` is not a storage kind; use `dir` or `etcd`{at}")]
    Kind {
        /// The kind as written.
        kind: String,
        /// Where `kind:` is.
        at: String,
    },
    /// A field of `kind: etcd` with another kind.
    #[error("storage.{what}: only with `kind: etcd`; remove it, or set `kind: etcd`{at}")]
    OnlyEtcd {
        /// The field.
        what: &'static str,
        /// Where it is.
        at: String,
    },
    /// `kind: etcd` without endpoints.
    #[error(
        "storage.endpoints: `kind: etcd` needs at least one endpoint, e.g. \
         `endpoints: [https://etcd-1.example.internal:2379]`{at}"
    )]
    NoEndpoints {
        /// Where `storage:` is.
        at: String,
    },
    /// An endpoint that is no `http(s)://HOST:PORT` nor `HOST:PORT`.
    #[error(
        "storage.endpoints[{index}]: `{endpoint}` {problem}; write http://HOST:PORT, \
         https://HOST:PORT or HOST:PORT, e.g. `https://etcd-1.example.internal:2379`{at}"
    )]
    Endpoint {
        /// Its place in the list, from 0.
        index: usize,
        /// The endpoint as written.
        endpoint: String,
        /// What is wrong with it.
        problem: &'static str,
        /// Where it is.
        at: String,
    },
    /// `http://` and `https://` endpoints in one list.
    #[error(
        "storage.endpoints[{index}]: `{endpoint}` is {} while `{other}` \
         (storage.endpoints[{other_index}]) is {}; one client speaks one scheme to every \
         endpoint of the cluster: write them all with the same one{at}",
        scheme_of(endpoint),
        scheme_of(other)
    )]
    MixedSchemes {
        /// The later endpoint's place in the list.
        index: usize,
        /// The later endpoint as written.
        endpoint: String,
        /// The earlier endpoint's place in the list.
        other_index: usize,
        /// The earlier endpoint as written, with the other scheme.
        other: String,
        /// Where the later endpoint is.
        at: String,
    },
    /// `tls:` with plain `http://` endpoints.
    #[error(
        "storage.tls: the endpoint `{endpoint}` (storage.endpoints[{index}]) is plain HTTP; \
         write it https://HOST:PORT (or HOST:PORT) to speak TLS to etcd, or remove `tls`{at}"
    )]
    TlsWithHttp {
        /// The endpoint's place in the list.
        index: usize,
        /// The endpoint as written.
        endpoint: String,
        /// Where `tls:` is.
        at: String,
    },
    /// `client_certificate` without `client_key`, or the other way round.
    #[error(
        "storage.tls.{missing}: required with `storage.tls.{present}` (a client certificate \
         and its key come together); add it, or remove `{present}`{at}"
    )]
    ClientPair {
        /// The field that is missing.
        missing: &'static str,
        /// The field that is there.
        present: &'static str,
        /// Where the one there is.
        at: String,
    },
    /// A prefix that is no key prefix.
    #[error(
        "storage.prefix: `{prefix}` {problem}; a prefix is printable ASCII without spaces, \
         ends with `/` and has no empty, `.` or `..` segment (an optional leading `/` aside), \
         e.g. `sniwalk/` or `/sniwalk/`{at}"
    )]
    Prefix {
        /// The prefix as written.
        prefix: String,
        /// What is wrong with it.
        problem: &'static str,
        /// Where `prefix:` is.
        at: String,
    },
    /// An empty `username`.
    #[error("storage.username: empty; give the etcd user, or remove `username`{at}")]
    EmptyUsername {
        /// Where `username:` is.
        at: String,
    },
    /// `username` without `password_file`.
    #[error(
        "storage.password_file: required with `storage.username`: a file holding the etcd \
         user's password alone; add it, or remove `username`{at}"
    )]
    NoPasswordFile {
        /// Where `username:` is.
        at: String,
    },
    /// `password_file` without `username`.
    #[error(
        "storage.username: required with `storage.password_file`: the etcd user the password \
         is for; add it, or remove `password_file`{at}"
    )]
    NoUsername {
        /// Where `password_file:` is.
        at: String,
    },
    /// `lease` out of bounds.
    #[error(
        "storage.lease: between {}s and {}m (locks and each instance's liveness are renewed \
         every third of it; a dead instance's locks are taken over once it has run out){at}",
        MIN_STORAGE_LEASE.as_secs(),
        MAX_STORAGE_LEASE.as_secs() / 60
    )]
    Lease {
        /// Where `lease:` is.
        at: String,
    },
    /// A path of the section that cannot be used.
    #[error(transparent)]
    Path(#[from] PathError),
}

/// The scheme an endpoint names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// The scheme of an endpoint that names one, for messages.
fn scheme_of(endpoint: &str) -> &'static str {
    if endpoint.starts_with("https://") {
        "https://"
    } else {
        "http://"
    }
}

/// Validates `storage:`; without one, the state directory.
pub(super) fn storage_from_raw(
    raw: Option<RawStorage>,
    paths: &PathResolver<'_>,
) -> Result<StorageConfig, StorageConfigError> {
    let at = |needle: &str| locate_in_section(paths.text, "storage", needle);
    let Some(raw) = raw else {
        return Ok(StorageConfig::Dir);
    };
    let Some(kind) = raw.kind.as_deref() else {
        return Err(StorageConfigError::NoKind {
            at: locate_entry(paths.text, "storage", "", 0),
        });
    };
    match kind.trim().to_ascii_lowercase().as_str() {
        "dir" => {
            check_no_etcd_fields(&raw, &at)?;
            Ok(StorageConfig::Dir)
        }
        "etcd" => etcd_from_raw(raw, paths).map(StorageConfig::Etcd),
        _ => Err(StorageConfigError::Kind {
            kind: kind.to_string(),
            at: at("kind:"),
        }),
    }
}

/// `kind: dir` has no field but `kind`.
fn check_no_etcd_fields(
    raw: &RawStorage,
    at: &impl Fn(&str) -> String,
) -> Result<(), StorageConfigError> {
    let present = [
        ("endpoints", raw.endpoints.is_some()),
        ("prefix", raw.prefix.is_some()),
        ("tls", raw.tls.is_some()),
        ("username", raw.username.is_some()),
        ("password_file", raw.password_file.is_some()),
        ("lease", raw.lease.is_some()),
    ];
    match present.iter().find(|(_, there)| *there) {
        Some(&(what, _)) => Err(StorageConfigError::OnlyEtcd {
            what,
            at: at(&format!("{what}:")),
        }),
        None => Ok(()),
    }
}

/// Validates `storage:` with `kind: etcd`.
fn etcd_from_raw(
    raw: RawStorage,
    paths: &PathResolver<'_>,
) -> Result<EtcdStorageConfig, StorageConfigError> {
    let at = |needle: &str| locate_in_section(paths.text, "storage", needle);
    let endpoints: Vec<String> = raw
        .endpoints
        .unwrap_or_default()
        .iter()
        .map(|e| e.trim().to_string())
        .collect();
    if endpoints.is_empty() {
        return Err(StorageConfigError::NoEndpoints {
            at: locate_entry(paths.text, "storage", "", 0),
        });
    }
    let mut schemes: Vec<(usize, Scheme)> = Vec::new();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let scheme = endpoint_scheme(endpoint).map_err(|problem| StorageConfigError::Endpoint {
            index,
            endpoint: endpoint.clone(),
            problem,
            at: at(endpoint),
        })?;
        let Some(scheme) = scheme else { continue };
        if let Some(&(other_index, _)) = schemes.iter().find(|(_, s)| *s != scheme) {
            return Err(StorageConfigError::MixedSchemes {
                index,
                endpoint: endpoint.clone(),
                other_index,
                other: endpoints[other_index].clone(),
                at: at(endpoint),
            });
        }
        schemes.push((index, scheme));
    }

    let prefix = raw
        .prefix
        .unwrap_or_else(|| DEFAULT_STORAGE_PREFIX.to_string());
    if let Some(problem) = prefix_problem(&prefix) {
        return Err(StorageConfigError::Prefix {
            prefix,
            problem,
            at: at("prefix:"),
        });
    }

    let (ca_file, client_certificate, client_key) = match raw.tls {
        None => (None, None, None),
        Some(tls) => {
            if let Some(&(index, _)) = schemes.iter().find(|(_, s)| *s == Scheme::Http) {
                return Err(StorageConfigError::TlsWithHttp {
                    index,
                    endpoint: endpoints[index].clone(),
                    at: at("tls:"),
                });
            }
            tls_from_raw(tls, paths, &at)?
        }
    };

    let username = match raw.username {
        Some(name) if name.trim().is_empty() => {
            return Err(StorageConfigError::EmptyUsername {
                at: at("username:"),
            });
        }
        Some(name) => Some(name.trim().to_string()),
        None => None,
    };
    let password_file = match (&username, raw.password_file) {
        (Some(_), None) => {
            return Err(StorageConfigError::NoPasswordFile {
                at: at("username:"),
            });
        }
        (None, Some(_)) => {
            return Err(StorageConfigError::NoUsername {
                at: at("password_file:"),
            });
        }
        (Some(_), Some(file)) => Some(paths.resolve(&file, "storage.password_file")?),
        (None, None) => None,
    };

    let lease = raw.lease.map_or(DEFAULT_STORAGE_LEASE, |d| d.0);
    if !(MIN_STORAGE_LEASE..=MAX_STORAGE_LEASE).contains(&lease) {
        return Err(StorageConfigError::Lease { at: at("lease:") });
    }

    Ok(EtcdStorageConfig {
        endpoints,
        prefix,
        ca_file,
        client_certificate,
        client_key,
        username,
        password_file,
        lease,
    })
}

/// The three files of `storage.tls`: the CA, the client certificate and
/// its key (the last two together or neither).
type TlsFiles = (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>);

/// Validates `storage.tls`.
fn tls_from_raw(
    tls: RawStorageTls,
    paths: &PathResolver<'_>,
    at: &impl Fn(&str) -> String,
) -> Result<TlsFiles, StorageConfigError> {
    match (&tls.client_certificate, &tls.client_key) {
        (Some(_), None) => {
            return Err(StorageConfigError::ClientPair {
                missing: "client_key",
                present: "client_certificate",
                at: at("client_certificate:"),
            });
        }
        (None, Some(_)) => {
            return Err(StorageConfigError::ClientPair {
                missing: "client_certificate",
                present: "client_key",
                at: at("client_key:"),
            });
        }
        _ => {}
    }
    let resolve = |value: Option<String>, what: &str| -> Result<Option<PathBuf>, PathError> {
        value
            .map(|v| paths.resolve(&v, &format!("storage.tls.{what}")))
            .transpose()
    };
    Ok((
        resolve(tls.ca_file, "ca_file")?,
        resolve(tls.client_certificate, "client_certificate")?,
        resolve(tls.client_key, "client_key")?,
    ))
}

/// Checks one endpoint (trimmed): the scheme it names, `None` for a bare
/// `HOST:PORT`; else what is wrong with it.
fn endpoint_scheme(endpoint: &str) -> Result<Option<Scheme>, &'static str> {
    if endpoint.is_empty() {
        return Err("is empty");
    }
    if endpoint.contains(char::is_whitespace) {
        return Err("contains a space");
    }
    let (scheme, rest) = if let Some(rest) = endpoint.strip_prefix("http://") {
        (Some(Scheme::Http), rest)
    } else if let Some(rest) = endpoint.strip_prefix("https://") {
        (Some(Scheme::Https), rest)
    } else if endpoint.contains("://") {
        return Err("has a scheme other than `http://` and `https://`");
    } else {
        (None, endpoint)
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err("has a path (only a trailing `/` is allowed)");
    }
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err("has no port");
    };
    let port_ok = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0);
    if !port_ok {
        return Err("has a port that is not a number from 1 to 65535");
    }
    if host.is_empty() {
        return Err("has no host");
    }
    if let Some(inner) = host.strip_prefix('[') {
        let address = inner.strip_suffix(']').unwrap_or("");
        if address.parse::<Ipv6Addr>().is_err() {
            return Err("has a host in brackets that is not an IPv6 address");
        }
    } else if let Ok(address) = host.parse::<IpAddr>() {
        if address.is_ipv6() {
            return Err("has an IPv6 address without brackets (write `[2001:db8::5]:2379`)");
        }
    } else if normalize_domain_name(host).is_err() {
        return Err("has a host that is neither a DNS name nor an IP address");
    }
    Ok(scheme)
}

/// What is wrong with a `storage.prefix`, if anything.
fn prefix_problem(prefix: &str) -> Option<&'static str> {
    if prefix.is_empty() {
        return Some("is empty");
    }
    if !prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("has a space or a character that is not printable ASCII");
    }
    let Some(body) = prefix.strip_suffix('/') else {
        return Some("does not end with `/`");
    };
    let body = body.strip_prefix('/').unwrap_or(body);
    if body.split('/').any(str::is_empty) {
        return Some("has an empty segment");
    }
    if body.split('/').any(|s| s == "." || s == "..") {
        return Some("has a `.` or `..` segment");
    }
    None
}
