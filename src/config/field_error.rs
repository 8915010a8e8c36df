//! Why a single value is refused by its parser in `fields.rs`: the value
//! as written in every variant, the caller adds the field's name.

/// Why a text is not a domain name
/// ([`normalize_domain_name`](super::fields::normalize_domain_name)). Each
/// variant carries the name as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainNameError {
    /// Nothing left once spaces and the trailing dot are gone.
    #[error("an empty name is not a domain")]
    Empty,
    /// Longer than 253 characters.
    #[error("`{input}` is longer than 253 characters")]
    TooLong {
        /// The name as written.
        input: String,
    },
    /// An IP address, not a name.
    #[error(
        "`{input}` is an IP address; domains are DNS names (clients connecting by IP get the certdir)"
    )]
    IpAddress {
        /// The name as written.
        input: String,
    },
    /// A wildcard (`*.example.com`).
    #[error(
        "`{input}` is a wildcard; configure `{parent}` instead: names below a domain already resolve to it (for a wildcard certificate, list `*.{parent}` in its `names`)"
    )]
    Wildcard {
        /// The name as written.
        input: String,
        /// The name below the `*.`, what to configure instead.
        parent: String,
    },
    /// Two dots in a row, or a dot at the start.
    #[error("`{input}` has an empty label (two dots in a row?)")]
    EmptyLabel {
        /// The name as written.
        input: String,
    },
    /// A label longer than 63 characters.
    #[error("`{input}` has a label longer than 63 characters")]
    LongLabel {
        /// The name as written.
        input: String,
    },
    /// A label starting or ending with `-`.
    #[error("`{input}` has a label starting or ending with `-`")]
    Hyphen {
        /// The name as written.
        input: String,
    },
    /// A character that is no letter, digit, `-` or `_`.
    #[error("`{input}` contains `{bad}`; use letters, digits and `-` (IDNs in their xn-- form)")]
    Character {
        /// The name as written.
        input: String,
        /// The first character refused.
        bad: char,
    },
}

/// Why a single value of `proxy.yaml` (or of the admin API or the command
/// line) is refused by its parser. Each variant carries the value as
/// written; the caller adds the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// Not a domain name.
    #[error(transparent)]
    DomainName(#[from] DomainNameError),
    /// Not a name nor a wildcard of `names`.
    #[error(transparent)]
    ListedName(#[from] ListedNameError),
    /// A fingerprint pin of the wrong length or with non-hex digits.
    #[error("`{pin}` is not a fingerprint of {hex_len} hex digits (colons allowed)")]
    Pin {
        /// The pin as written.
        pin: String,
        /// How many hex digits the fingerprint has.
        hex_len: usize,
    },
    /// An account email written as a `mailto:` URL.
    #[error("`{input}`: write the address without `mailto:` (sniwalk adds it)")]
    EmailMailto {
        /// The address as written.
        input: String,
    },
    /// An account email with a space or a list separator in it.
    #[error(
        "`{input}` contains {}; expected one address such as `ops@example.com`",
        describe_email_character(*bad)
    )]
    EmailCharacter {
        /// The address as written.
        input: String,
        /// The first character refused.
        bad: char,
    },
    /// An account email whose domain part is no domain.
    #[error(
        "`{input}`: `{domain}` is not a domain; expected one address such as `ops@example.com`"
    )]
    EmailDomain {
        /// The address as written.
        input: String,
        /// The part after the `@`.
        domain: String,
    },
    /// Not one `local@domain` address.
    #[error("`{input}` is not an email address; expected one address such as `ops@example.com`")]
    NotEmail {
        /// The address as written.
        input: String,
    },
    /// An `https://` ACME directory URL without a host.
    #[error(
        "`{input}` has no host; use the CA's full directory URL, or the shorthand `production` \
         (Let's Encrypt) or `staging` (Let's Encrypt staging)"
    )]
    DirectoryHost {
        /// The directory as written.
        input: String,
    },
    /// An ACME directory that is no `https://` URL nor a shorthand.
    #[error(
        "`{input}` is not an https:// URL; ACME directories are served over HTTPS only: \
         use the CA's https:// directory URL, or the shorthand `production` (Let's Encrypt) or \
         `staging` (Let's Encrypt staging)"
    )]
    DirectoryScheme {
        /// The directory as written.
        input: String,
    },
    /// `acme.renew_at` that is no fraction strictly between 0 and 1.
    #[error(
        "invalid renew_at `{input}`: the fraction of the certificate's lifetime after which it is \
         renewed, strictly between 0 and 1, e.g. 0.66 (day 60 of 90) or \"2/3\""
    )]
    RenewAt {
        /// The value as written (or as the YAML number reads).
        input: String,
    },
    /// A TCP backend without `:PORT`.
    #[error("`{input}` has no port; expected HOST:PORT such as `127.0.0.1:5060`")]
    BackendNoPort {
        /// The backend as written.
        input: String,
    },
    /// A TCP backend whose port is no number from 0 to 65535.
    #[error("`{input}` has an invalid port `{port}`")]
    BackendPort {
        /// The backend as written.
        input: String,
        /// The text after the last `:`.
        port: String,
    },
    /// A TCP backend whose host is neither an IP address nor a name.
    #[error("`{input}`: {error}")]
    BackendHost {
        /// The backend as written.
        input: String,
        /// Why the host is no domain name.
        error: DomainNameError,
    },
    /// A duration that does not start with a number.
    #[error("`{input}` is not a duration; use e.g. `500ms`, `10s`, `5m`, `1h`")]
    Duration {
        /// The duration as written.
        input: String,
    },
    /// A duration with a unit other than ms, s, m or h.
    #[error("`{input}`: unknown unit `{unit}`; use ms, s, m or h")]
    DurationUnit {
        /// The duration as written.
        input: String,
        /// The unit after the number.
        unit: String,
    },
    /// A bind without `:PORT`.
    #[error(
        "`{input}` has no port; expected IP:PORT such as `127.0.0.1:8443`, `[::1]:8443` or `0.0.0.0:443`"
    )]
    BindNoPort {
        /// The bind as written.
        input: String,
    },
    /// A bind whose port is no number from 0 to 65535.
    #[error(
        "`{input}` has an invalid port `{port}`; expected IP:PORT such as `127.0.0.1:8443`, \
         `[::1]:8443` or `0.0.0.0:443`"
    )]
    BindPort {
        /// The bind as written.
        input: String,
        /// The text after the last `:`.
        port: String,
    },
    /// A bind whose host is no IP address (nor `localhost` or `*`).
    #[error(
        "`{input}`: `{host}` is not an IP address; expected IP:PORT such as `127.0.0.1:8443`, \
         `[::1]:8443` or `0.0.0.0:443`"
    )]
    BindHost {
        /// The bind as written.
        input: String,
        /// The text before the last `:`.
        host: String,
    },
    /// An empty path where a PEM file of CA certificates belongs.
    #[error("the path is empty; give a PEM file of CA certificates")]
    EmptyPath,
    /// A challenge type sniwalk does not answer.
    #[error(
        "`{input}` is not a challenge sniwalk answers; use `http-01` (answered on a `kind: http` \
         listener, port 80), `tls-alpn-01` (answered on a `kind: https` listener, port 443) or \
         `dns-01` (a TXT record published through `acme.rfc2136`)"
    )]
    Challenge {
        /// The challenge as written.
        input: String,
    },
}

/// What [`FieldError::EmailCharacter`] says about the character.
fn describe_email_character(bad: char) -> String {
    if bad.is_whitespace() {
        "a space".to_string()
    } else {
        format!("`{bad}`")
    }
}

/// Why a listed name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListedNameError {
    /// The part after `*.` (or the whole name) is no DNS name.
    #[error(transparent)]
    Name(#[from] DomainNameError),
    /// `*.com`: a wildcard over a single label.
    #[error(
        "`{input}` is a wildcard over a top-level domain; a wildcard needs a name with a dot \
         after `*.`, e.g. `*.tenant.example`"
    )]
    WildcardTooWide {
        /// As written.
        input: String,
    },
}
