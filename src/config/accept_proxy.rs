//! A listener's `accept_proxy_protocol:` from its raw form to
//! [`AcceptProxyProtocol`] (README: Behind a load balancer).

use super::address_range::{AddressRange, AddressRangeError};
use super::raw::RawAcceptProxy;
use super::types::AcceptProxyProtocol;

/// Why `accept_proxy_protocol:` is refused. `field` is the listener
/// (`listeners.NAME`); each message names the key under it.
#[derive(Debug, thiserror::Error)]
pub enum AcceptProxyError {
    /// No `from:`.
    #[error(
        "{field}.accept_proxy_protocol.from: missing; list the addresses of the load balancers \
         that send the header, e.g. `from: [10.0.0.0/8]` (everyone else connects directly)"
    )]
    MissingFrom {
        /// The listener.
        field: String,
    },
    /// `from: []`.
    #[error(
        "{field}.accept_proxy_protocol.from: empty; list at least one load balancer address or \
         range, e.g. `from: [10.0.0.0/8]`, or remove `accept_proxy_protocol`"
    )]
    EmptyFrom {
        /// The listener.
        field: String,
    },
    /// One entry of `from:` that is no address range.
    #[error("{field}.accept_proxy_protocol.from[{index}]: {error}")]
    From {
        /// The listener.
        field: String,
        /// The entry's position.
        index: usize,
        /// Why it is refused.
        error: AddressRangeError,
    },
    /// `versions: []`.
    #[error(
        "{field}.accept_proxy_protocol.versions: empty; list `v1`, `v2` or both, or leave \
         `versions` out to accept both"
    )]
    EmptyVersions {
        /// The listener.
        field: String,
    },
    /// A version other than v1 and v2.
    #[error(
        "{field}.accept_proxy_protocol.versions[{index}]: `{value}` is not a PROXY protocol \
         version; use `v1` (text), `v2` (binary) or both"
    )]
    Version {
        /// The listener.
        field: String,
        /// The entry's position.
        index: usize,
        /// The entry as written.
        value: String,
    },
}

/// Validates `accept_proxy_protocol:` of the listener `field`: `versions`
/// defaults to both, `from` is required and not empty.
pub(super) fn accept_proxy_from_raw(
    raw: RawAcceptProxy,
    field: &str,
) -> Result<AcceptProxyProtocol, AcceptProxyError> {
    let listener = || field.to_string();
    let (mut v1, mut v2) = (false, false);
    match raw.versions {
        None => (v1, v2) = (true, true),
        Some(versions) if versions.is_empty() => {
            return Err(AcceptProxyError::EmptyVersions { field: listener() });
        }
        Some(versions) => {
            for (index, value) in versions.into_iter().enumerate() {
                match value.trim().to_ascii_lowercase().as_str() {
                    "v1" => v1 = true,
                    "v2" => v2 = true,
                    _ => {
                        return Err(AcceptProxyError::Version {
                            field: listener(),
                            index,
                            value,
                        });
                    }
                }
            }
        }
    }
    let Some(entries) = raw.from else {
        return Err(AcceptProxyError::MissingFrom { field: listener() });
    };
    if entries.is_empty() {
        return Err(AcceptProxyError::EmptyFrom { field: listener() });
    }
    let mut from = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let range = AddressRange::parse(entry).map_err(|error| AcceptProxyError::From {
            field: listener(),
            index,
            error,
        })?;
        from.push(range);
    }
    Ok(AcceptProxyProtocol { v1, v2, from })
}

#[cfg(test)]
mod tests;
