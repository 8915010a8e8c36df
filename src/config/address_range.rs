//! An IP address range (`10.0.0.0/8`, `2001:db8::/32`, or one bare address)
//! as written in `accept_proxy_protocol.from`: parsed once when the
//! configuration loads, then tested against each connecting peer with a
//! few integer operations.

use std::fmt;
use std::net::IpAddr;

/// An IPv4 or IPv6 network: the address with its host bits zero and the
/// prefix length. A bare address is the network of that one address
/// (`/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    network: IpAddr,
    prefix: u8,
}

/// Why a text is not an address range. Each variant carries the text as
/// written; the caller adds the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressRangeError {
    /// Neither an IP address nor `ADDRESS/PREFIX`.
    #[error(
        "`{input}` is not an IP address or range; write a CIDR such as `10.0.0.0/8` or \
         `2001:db8::/32`, or one address such as `192.0.2.10` (host names are not resolved)"
    )]
    NotAnAddress {
        /// The text as written.
        input: String,
    },
    /// A prefix length that is no number.
    #[error("`{input}`: the prefix length `{prefix}` is not a number; write e.g. `10.0.0.0/8`")]
    Prefix {
        /// The text as written.
        input: String,
        /// The part after the `/`.
        prefix: String,
    },
    /// A prefix longer than the address.
    #[error(
        "`{input}`: the prefix length {prefix} is too long for an {family} address (at most {max})"
    )]
    PrefixTooLong {
        /// The text as written.
        input: String,
        /// The prefix length as written.
        prefix: u32,
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The longest prefix of that family.
        max: u8,
    },
    /// Bits set after the prefix: most likely a typo in the address or
    /// the prefix, so it is refused rather than silently widened.
    #[error(
        "`{input}` has bits set past its /{prefix} prefix; write the network `{network}/{prefix}`, \
         or `{address}/{full}` for the one address"
    )]
    HostBits {
        /// The text as written.
        input: String,
        /// The address as written.
        address: IpAddr,
        /// The network the prefix gives.
        network: IpAddr,
        /// The prefix length.
        prefix: u8,
        /// 32 or 128.
        full: u8,
    },
}

impl AddressRange {
    /// Parses `ADDRESS/PREFIX` or a bare `ADDRESS` (IPv4 or IPv6).
    pub fn parse(input: &str) -> Result<AddressRange, AddressRangeError> {
        let text = input.trim();
        let not_an_address = || AddressRangeError::NotAnAddress {
            input: input.to_string(),
        };
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| not_an_address())?;
        let (family, max) = match address {
            IpAddr::V4(_) => ("IPv4", 32),
            IpAddr::V6(_) => ("IPv6", 128),
        };
        let prefix = match prefix {
            None => max,
            Some(digits) => {
                let length: u32 = digits
                    .parse()
                    .ok()
                    .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| AddressRangeError::Prefix {
                        input: input.to_string(),
                        prefix: digits.to_string(),
                    })?;
                if length > u32::from(max) {
                    return Err(AddressRangeError::PrefixTooLong {
                        input: input.to_string(),
                        prefix: length,
                        family,
                        max,
                    });
                }
                length as u8
            }
        };
        let network = masked(address, prefix);
        if network != address {
            return Err(AddressRangeError::HostBits {
                input: input.to_string(),
                address,
                network,
                prefix,
                full: max,
            });
        }
        // An IPv4-mapped range (`::ffff:10.0.0.0/104`) is the IPv4 range it
        // maps: peers are compared as IPv4 (see `contains`), so kept as
        // IPv6 it would never match.
        if let IpAddr::V6(v6) = network
            && let Some(v4) = v6.to_ipv4_mapped()
            && prefix >= 96
        {
            return Ok(AddressRange {
                network: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Ok(AddressRange { network, prefix })
    }

    /// Whether `ip` is in the range. An IPv4 peer seen on an IPv6 socket
    /// (`::ffff:192.0.2.1`) is compared as the IPv4 address it is, so
    /// `192.0.2.0/24` matches it whatever the listener binds.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let same_family = ip.is_ipv4() == self.network.is_ipv4();
        same_family && masked(ip, self.prefix) == self.network
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// `address` with every bit past the first `prefix` cleared (`prefix` is
/// at most the family's length: 32 or 128).
fn masked(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (range, address, contained)
    const MEMBERSHIP: &[(&str, &str, bool)] = &[
        ("10.0.0.0/8", "10.1.2.3", true),
        ("10.0.0.0/8", "11.0.0.1", false),
        ("127.0.0.1", "127.0.0.1", true),
        ("127.0.0.1", "127.0.0.2", false),
        ("127.0.0.1/32", "127.0.0.1", true),
        ("0.0.0.0/0", "203.0.113.9", true),
        ("0.0.0.0/0", "::1", false),
        ("192.0.2.0/24", "::ffff:192.0.2.7", true),
        ("192.0.2.0/24", "::ffff:192.0.3.7", false),
        ("::1", "::1", true),
        ("::1", "127.0.0.1", false),
        ("2001:db8::/32", "2001:db8:ffff::1", true),
        ("2001:db8::/32", "2001:db9::1", false),
        ("::/0", "2001:db8::1", true),
        ("fd00::/8", "fdff::1", true),
        // IPv4-mapped ranges are the IPv4 ranges they map.
        ("::ffff:10.0.0.0/104", "10.1.2.3", true),
        ("::ffff:10.0.0.0/104", "::ffff:10.1.2.3", true),
        ("::ffff:192.0.2.10", "192.0.2.10", true),
        ("::ffff:192.0.2.10", "192.0.2.11", false),
    ];

    #[test]
    fn membership() {
        for (range, address, expected) in MEMBERSHIP {
            let parsed = AddressRange::parse(range).expect(range);
            let ip: IpAddr = address.parse().expect(address);
            assert_eq!(parsed.contains(ip), *expected, "{range} contains {address}");
        }
    }

    #[test]
    fn bare_addresses_are_single_address_ranges() {
        assert_eq!(
            AddressRange::parse("192.0.2.10").unwrap().to_string(),
            "192.0.2.10/32"
        );
        assert_eq!(AddressRange::parse(" ::1 ").unwrap().to_string(), "::1/128");
    }

    #[test]
    fn mistakes_are_refused_with_what_to_write() {
        let cases: &[(&str, &str)] = &[
            ("10.0.0.0/33", "too long for an IPv4 address (at most 32)"),
            ("::/129", "too long for an IPv6 address (at most 128)"),
            ("10.0.0.0/x", "`x` is not a number"),
            ("10.0.0.0/+8", "`+8` is not a number"),
            ("10.0.0.0/", "`` is not a number"),
            ("lb.example.com", "not an IP address or range"),
            ("10.0.0/8", "not an IP address or range"),
            ("", "not an IP address or range"),
            ("10.0.0.1/8", "write the network `10.0.0.0/8`"),
            ("2001:db8::1/32", "`2001:db8::/32`"),
        ];
        for (input, needle) in cases {
            let error = AddressRange::parse(input).expect_err(input).to_string();
            assert!(error.contains(needle), "{input}: {error}");
        }
    }
}
