//! `acme.on_demand:` of `proxy.yaml`: certificates ordered when a handshake
//! asks for a name no domain answers, if the operator's `ask` endpoint
//! allows it, at a bounded rate (README, "On-demand certificates").

use std::time::Duration;

use serde::Deserialize;

use super::fields::DurationField;
use super::positions::locate_in_section;

/// Default `acme.on_demand.rate`: 10 orders a minute.
pub const DEFAULT_RATE: Rate = Rate {
    count: 10,
    per: Duration::from_secs(60),
};

/// Default `acme.on_demand.burst`.
pub const DEFAULT_BURST: u32 = 20;

/// Default `acme.on_demand.wait`: longer than an order takes against a CA
/// on the same network (Pebble: about 1.3 s from the first handshake to the
/// certificate served, README "On-demand certificates"), shorter than the
/// 10 s browsers and softphones give a handshake.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// Default `acme.on_demand.refused_for`.
pub const DEFAULT_REFUSED_FOR: Duration = Duration::from_secs(600);

/// Longest `acme.on_demand.wait`: clients give up on a handshake after 10
/// to 30 s.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// `acme.on_demand` as written.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AcmeOnDemand")]
pub(super) struct RawOnDemand {
    /// The endpoint that says which names may get a certificate: sniwalk sends `GET <ask>?domain=NAME`; 200 allows, any other answer refuses. `http://` or `https://`.
    ask: String,
    /// Most orders placed on demand, as `N/s`, `N/min` or `N/h` (default `10/min`).
    #[serde(default)]
    rate: Option<String>,
    /// Orders allowed at once above the rate after a quiet time (default 20).
    #[serde(default)]
    burst: Option<u32>,
    /// Longest time the handshake that triggered an order is held for its certificate before it gets what the tree gives (default 5s; 0 serves that at once).
    #[serde(default)]
    wait: Option<DurationField>,
    /// How long a name refused by `ask`, over the rate or failing its order is not asked again (default 10m).
    #[serde(default)]
    refused_for: Option<DurationField>,
}

/// An order rate: `count` orders every `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Orders per period.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

/// The validated `acme.on_demand` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDemandConfig {
    /// The `ask` endpoint, `http://` or `https://`.
    pub ask: String,
    /// Most orders per period.
    pub rate: Rate,
    /// Orders allowed at once above the rate.
    pub burst: u32,
    /// Longest hold of the handshake that triggered an order.
    pub wait: Duration,
    /// How long a refusal is remembered.
    pub refused_for: Duration,
}

/// Why `acme.on_demand` is refused; each message names the field.
#[derive(Debug, thiserror::Error)]
pub enum OnDemandConfigError {
    /// `ask` is no http(s) URL with a host.
    #[error(
        "acme.on_demand.ask: `{input}` is not an http:// or https:// URL with a host; give the \
         endpoint that answers `GET <ask>?domain=NAME` with 200 for names that may get a \
         certificate, e.g. `http://127.0.0.1:9000/allowed`{at}"
    )]
    Ask {
        /// As written.
        input: String,
        /// Where it is.
        at: String,
    },
    /// `rate` is not `N/unit`.
    #[error(
        "acme.on_demand.rate: `{input}` is not a rate; write N/s, N/min or N/h with N from 1 \
         to 10000, e.g. `10/min`{at}"
    )]
    Rate {
        /// As written.
        input: String,
        /// Where it is.
        at: String,
    },
    /// `burst` of zero.
    #[error("acme.on_demand.burst: between 1 and 10000 orders{at}")]
    Burst {
        /// Where it is.
        at: String,
    },
    /// `wait` over [`MAX_WAIT`].
    #[error(
        "acme.on_demand.wait: at most {}s (clients give up on a handshake held longer); \
         0 serves what the tree gives at once{at}",
        MAX_WAIT.as_secs()
    )]
    Wait {
        /// Where it is.
        at: String,
    },
    /// `refused_for` of zero or over a day.
    #[error(
        "acme.on_demand.refused_for: between 1s and 24h (how long a refused name is not asked \
         about again){at}"
    )]
    RefusedFor {
        /// Where it is.
        at: String,
    },
}

/// Validates `acme.on_demand`.
pub(super) fn on_demand_from_raw(
    raw: RawOnDemand,
    text: &str,
) -> Result<OnDemandConfig, OnDemandConfigError> {
    // `on_demand:` sits inside `acme:`; its keys are unique there.
    let at = |key: &str| locate_in_section(text, "acme", &format!("{key}:"));
    let ask = raw.ask.trim().to_string();
    if !is_http_url(&ask) {
        return Err(OnDemandConfigError::Ask {
            input: raw.ask,
            at: at("ask"),
        });
    }
    let rate = match raw.rate {
        None => DEFAULT_RATE,
        Some(input) => parse_rate(&input).ok_or_else(|| OnDemandConfigError::Rate {
            input,
            at: at("rate"),
        })?,
    };
    let burst = raw.burst.unwrap_or(DEFAULT_BURST);
    if !(1..=10_000).contains(&burst) {
        return Err(OnDemandConfigError::Burst { at: at("burst") });
    }
    let wait = raw.wait.map_or(DEFAULT_WAIT, |d| d.0);
    if wait > MAX_WAIT {
        return Err(OnDemandConfigError::Wait { at: at("wait") });
    }
    let refused_for = raw.refused_for.map_or(DEFAULT_REFUSED_FOR, |d| d.0);
    if refused_for.is_zero() || refused_for > Duration::from_secs(86_400) {
        return Err(OnDemandConfigError::RefusedFor {
            at: at("refused_for"),
        });
    }
    Ok(OnDemandConfig {
        ask,
        rate,
        burst,
        wait,
        refused_for,
    })
}

/// Whether `url` is `http://` or `https://` with a host, and nothing that
/// the `?domain=` query could not be added to (a fragment).
fn is_http_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return false;
    };
    matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.host().is_some_and(|h| !h.is_empty())
        && !url.contains('#')
}

/// `N/s`, `N/sec`, `N/second`, `N/m`, `N/min`, `N/minute`, `N/h`,
/// `N/hour`, with N from 1 to 10,000.
pub fn parse_rate(input: &str) -> Option<Rate> {
    let (count, unit) = input.trim().split_once('/')?;
    let count: u32 = count
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=10_000).contains(n))?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return None,
    };
    Some(Rate { count, per })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_count_per_unit() {
        for (input, expected) in [
            ("10/min", Some((10, 60))),
            (" 1 / s ", Some((1, 1))),
            ("500/hour", Some((500, 3600))),
            ("3/m", Some((3, 60))),
            ("0/min", None),
            ("10001/min", None),
            ("10", None),
            ("10/day", None),
            ("x/min", None),
            ("-1/min", None),
        ] {
            assert_eq!(
                parse_rate(input).map(|r| (r.count, r.per.as_secs())),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn ask_must_be_an_http_url_with_a_host() {
        for (url, ok) in [
            ("http://127.0.0.1:9000/allowed", true),
            ("https://tenants.example/check?zone=eu", true),
            ("http://[::1]:9000/", true),
            ("ftp://example/", false),
            ("127.0.0.1:9000/allowed", false),
            ("http:///allowed", false),
            ("http://x/a#frag", false),
            ("", false),
        ] {
            assert_eq!(is_http_url(url), ok, "{url}");
        }
    }
}
