//! Pre-flight (README, "ACME", the `CheckDnsResolution` step): before an
//! order is placed, the name must resolve to one of
//! `acme.expected_addresses`, or the CA's validation could not reach this
//! proxy and the order would only spend the CA's rate limit on a certain failure.

use std::net::IpAddr;

use super::AcmeError;

/// Whether `domain` resolves (system resolver) to one of `expected`; an
/// empty `expected` means the check is off.
pub async fn check(domain: &str, expected: &[IpAddr]) -> Result<(), AcmeError> {
    if expected.is_empty() {
        return Ok(());
    }
    let (resolved, lookup_error) = match tokio::net::lookup_host((domain, 0)).await {
        Ok(addresses) => (addresses.map(|a| a.ip()).collect::<Vec<_>>(), None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    verdict(domain, resolved, lookup_error, expected)
}

/// The pure half of [`check`].
fn verdict(
    domain: &str,
    mut resolved: Vec<IpAddr>,
    lookup_error: Option<String>,
    expected: &[IpAddr],
) -> Result<(), AcmeError> {
    if resolved.iter().any(|ip| expected.contains(&canonical(*ip))) {
        return Ok(());
    }
    resolved.sort();
    resolved.dedup();
    Err(AcmeError::HostnameNotResolvingToProxy {
        domain: domain.to_string(),
        resolved,
        lookup_error,
        expected: expected.to_vec(),
    })
}

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`) compares as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn verdicts() {
        let expected = [ip("192.0.2.1"), ip("2001:db8::1")];
        assert!(verdict("a.test", vec![ip("192.0.2.1")], None, &expected).is_ok());
        assert!(
            verdict(
                "a.test",
                vec![ip("10.0.0.1"), ip("2001:db8::1")],
                None,
                &expected
            )
            .is_ok()
        );
        assert!(verdict("a.test", vec![ip("::ffff:192.0.2.1")], None, &expected).is_ok());

        let error = verdict(
            "a.test",
            vec![ip("10.0.0.2"), ip("10.0.0.1")],
            None,
            &expected,
        )
        .expect_err("elsewhere");
        let text = error.to_string();
        assert_eq!(error.code(), "HostnameNotResolvingToProxy");
        assert!(
            text.starts_with("HostnameNotResolvingToProxy: a.test resolves to 10.0.0.1, 10.0.0.2"),
            "{text}"
        );
        assert!(text.contains("192.0.2.1, 2001:db8::1"), "{text}");
        assert!(text.contains("no order was placed"), "{text}");

        let error = verdict("a.test", vec![], Some("no such host".into()), &expected)
            .expect_err("unresolvable");
        assert!(
            error
                .to_string()
                .contains("a.test does not resolve (no such host)"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn off_without_expected_addresses_and_checks_real_lookups() {
        assert!(check("name.invalid", &[]).await.is_ok());
        assert!(
            check("localhost", &[ip("127.0.0.1"), ip("::1")])
                .await
                .is_ok()
        );
        let error = check("localhost", &[ip("192.0.2.1")])
            .await
            .expect_err("loopback");
        assert!(
            error.to_string().contains("localhost resolves to"),
            "{error}"
        );
    }
}
