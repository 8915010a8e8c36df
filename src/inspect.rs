//! What `sniwalk check` and `sniwalk resolve` report, as data (for `--json`
//! and, later, the admin API) and as text for people.

use std::fmt::Write as _;

use serde::Serialize;

/// RFC 3339 text of Unix seconds (kept here for the command line and
/// tests; it lives in [`crate::clock`]).
pub use crate::clock::rfc3339;
use crate::expiry::ExpiryState;
use crate::snapshot::{LoadedCertificate, Severity, Snapshot};
use crate::tree::Step;

/// One row of `check`: a certificate source and its state.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    /// `domain`, `certdir` or `default`.
    pub place: &'static str,
    /// The domain name, the listener name, or `default`.
    pub name: String,
    /// How it is configured: `inline`, `file`, `stored`, `certdir`,
    /// `default_certificate`, `generated`, or `none`.
    pub source: String,
    /// The file or directory it is read from.
    pub file: Option<String>,
    /// Whether ACME is enabled for it.
    pub acme_enabled: bool,
    /// Whether the serving certificate was issued by sniwalk's ACME client.
    pub acme_issued: bool,
    /// Subject of the serving certificate.
    pub subject: Option<String>,
    /// DNS names of the serving certificate.
    pub names: Vec<String>,
    /// Start of validity, RFC 3339.
    pub not_before: Option<String>,
    /// End of validity, RFC 3339.
    pub not_after: Option<String>,
    /// `acme` (issued by sniwalk's ACME client) or `hand`; `None` when no
    /// certificate is loaded.
    pub managed: Option<&'static str>,
    /// Whole days left (negative once expired).
    pub days_left: Option<i64>,
    /// `ok`, `expires_soon` (within `acme.warn_days`) or `expired`; `None`
    /// when no certificate is loaded.
    pub expiry: Option<&'static str>,
    /// SHA-256 fingerprint of the leaf.
    pub sha256: Option<String>,
    /// `ok`, `warning` or `error`.
    pub state: &'static str,
    /// Problems, worst first.
    pub problems: Vec<ProblemRow>,
    /// The ACME task's state for this domain (from `state_dir/acme/status.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme: Option<crate::acme::control::DomainStatusView>,
}

/// One problem of a [`CheckRow`].
#[derive(Debug, Clone, Serialize)]
pub struct ProblemRow {
    /// `error` or `warning`.
    pub severity: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

/// The whole `check` report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// `ok`, `warning` or `error`: the worst state of any row.
    pub system_state: &'static str,
    /// The master domain.
    pub master_domain: String,
    /// Every source: domains, certdirs, then the default.
    pub certificates: Vec<CheckRow>,
}

impl CheckReport {
    /// Collects the report from a snapshot.
    pub fn from_snapshot(snapshot: &Snapshot, now: i64) -> Self {
        let mut worst = None;
        let certificates = snapshot
            .reports()
            .iter()
            .map(|report| {
                let (place, name) = report.place.label();
                let name = name.to_string();
                let mut problems: Vec<_> = report.problems.clone();
                problems.sort_by_key(|p| std::cmp::Reverse(p.severity));
                worst = worst.max(report.worst());
                let loaded = report.loaded.as_deref();
                CheckRow {
                    place,
                    name,
                    source: report
                        .kind
                        .map(|k| k.as_str())
                        .unwrap_or("none")
                        .to_string(),
                    file: report.file.as_ref().map(|f| f.display().to_string()),
                    acme_enabled: report.acme_enabled,
                    acme_issued: loaded.is_some_and(|l| l.acme_issued),
                    subject: loaded.map(|l| l.facts.subject.clone()),
                    names: loaded
                        .map(|l| l.facts.dns_names.clone())
                        .unwrap_or_default(),
                    not_before: loaded.map(|l| rfc3339(l.facts.not_before)),
                    not_after: loaded.map(|l| rfc3339(l.facts.not_after)),
                    managed: loaded.map(|l| if l.acme_issued { "acme" } else { "hand" }),
                    days_left: loaded.map(|l| l.facts.days_left(now)),
                    expiry: report.expiry.map(expiry_label),
                    sha256: loaded.map(|l| l.facts.sha256.clone()),
                    state: state_label(report.worst()),
                    problems: problems
                        .into_iter()
                        .map(|p| ProblemRow {
                            severity: p.severity.as_str(),
                            message: p.message,
                        })
                        .collect(),
                    acme: None,
                }
            })
            .collect();
        let mut report = CheckReport {
            system_state: state_label(worst),
            master_domain: snapshot.master_domain().to_string(),
            certificates,
        };
        report.warn_when_only_the_generated_default_serves();
        report
    }

    /// A configuration where no domain and no certdir has a certificate
    /// serves the generated self-signed default for every name, which no
    /// client trusts: legal (a first start must work), but worth a warning
    /// on the `default` row. A configured `default_certificate` is a choice
    /// and gets none.
    fn warn_when_only_the_generated_default_serves(&mut self) {
        let any_served = self
            .certificates
            .iter()
            .any(|row| row.place != "default" && row.subject.is_some());
        let acme_pending = self.certificates.iter().any(|row| row.acme_enabled);
        let Some(default) = self
            .certificates
            .iter_mut()
            .find(|row| row.place == "default" && row.source == "generated")
        else {
            return;
        };
        if any_served {
            return;
        }
        let until = if acme_pending {
            " until ACME issues the enabled domains' certificates"
        } else {
            ""
        };
        default.problems.push(ProblemRow {
            severity: Severity::Warning.as_str(),
            message: format!(
                "no domain and no certdir has a certificate: every name gets the generated \
                 self-signed default certificate{until}, which browsers and phones do not trust; \
                 give a domain `certificate_file:`, point a listener's `certdir:` at certificates \
                 (`sniwalk selfsigned` makes one for testing) or enable `acme:`"
            ),
        });
        if default.state == "ok" {
            default.state = "warning";
        }
        if self.system_state == "ok" {
            self.system_state = "warning";
        }
    }

    /// Adds what the running proxy's ACME task recorded: its state per
    /// domain, and its last failure and what an order waits for as problems
    /// (an error while the domain has no certificate of its own, else a
    /// warning: the old one serves).
    pub fn with_acme_status(mut self, status: &crate::acme::control::StatusFile) -> Self {
        let mut worst = None;
        for row in &mut self.certificates {
            if row.place == "domain"
                && let Some(acme) = status.domains.get(&row.name)
            {
                if let Some(error) = &acme.last_error {
                    let severity = if row.sha256.is_some() {
                        Severity::Warning
                    } else {
                        Severity::Error
                    };
                    row.problems.insert(
                        0,
                        ProblemRow {
                            severity: severity.as_str(),
                            message: format!(
                                "ACME {} at {} ({}, failure {}): {}; next attempt {}{}",
                                error.code,
                                rfc3339(error.at),
                                error.step.as_str(),
                                acme.failures,
                                error.message,
                                rfc3339(acme.next_attempt),
                                if row.sha256.is_some() {
                                    "; the current certificate keeps serving"
                                } else {
                                    ""
                                }
                            ),
                        },
                    );
                    row.problems
                        .sort_by_key(|p| std::cmp::Reverse(p.severity == "error"));
                    row.state = state_label(Some(severity).max(state_severity(row.state)));
                }
                if let Some(waiting) = &acme.waiting {
                    // No order until the operator acts: an error while the
                    // domain has no certificate of its own, else a warning.
                    let severity = if row.sha256.is_some() {
                        Severity::Warning
                    } else {
                        Severity::Error
                    };
                    row.problems.insert(
                        0,
                        ProblemRow {
                            severity: severity.as_str(),
                            message: format!(
                                "ACME {} since {}: {}{}",
                                waiting.code,
                                rfc3339(waiting.since),
                                waiting.message,
                                if row.sha256.is_some() {
                                    "; the current certificate keeps serving"
                                } else {
                                    ""
                                }
                            ),
                        },
                    );
                    row.problems
                        .sort_by_key(|p| std::cmp::Reverse(p.severity == "error"));
                    row.state = state_label(Some(severity).max(state_severity(row.state)));
                }
                row.acme = Some(acme.into());
            }
            worst = worst.max(state_severity(row.state));
        }
        self.system_state = state_label(worst);
        self
    }

    /// Whether any source has an error (`check` then exits 1).
    pub fn has_errors(&self) -> bool {
        self.system_state == "error"
    }

    /// The report as an aligned table with problems under their rows.
    pub fn render_text(&self) -> String {
        let header = [
            "PLACE",
            "NAME",
            "SOURCE",
            "SUBJECT",
            "NAMES",
            "NOT AFTER",
            "DAYS",
            "EXPIRY",
            "STATE",
        ];
        let rows: Vec<[String; 9]> = self
            .certificates
            .iter()
            .map(|row| {
                [
                    row.place.to_string(),
                    row.name.clone(),
                    if row.acme_enabled {
                        format!("{} (acme)", row.source)
                    } else {
                        row.source.clone()
                    },
                    row.subject.clone().unwrap_or_else(|| "-".into()),
                    if row.names.is_empty() {
                        "-".into()
                    } else {
                        row.names.join(",")
                    },
                    row.not_after.clone().unwrap_or_else(|| "-".into()),
                    row.days_left
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "-".into()),
                    row.expiry.unwrap_or("-").to_string(),
                    row.state.to_string(),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            let mut text = String::new();
            for (cell, width) in cells.iter().zip(widths) {
                let _ = write!(text, "{cell:<width$}  ");
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&mut out, &header.map(String::from));
        for (row, cells) in self.certificates.iter().zip(&rows) {
            line(&mut out, cells);
            if let Some(file) = &row.file {
                let _ = writeln!(out, "    file: {file}");
            }
            for problem in &row.problems {
                let _ = writeln!(out, "    {}: {}", problem.severity, problem.message);
            }
        }
        let errors = self
            .certificates
            .iter()
            .flat_map(|r| &r.problems)
            .filter(|p| p.severity == "error")
            .count();
        let warnings = self
            .certificates
            .iter()
            .flat_map(|r| &r.problems)
            .filter(|p| p.severity == "warning")
            .count();
        let _ = writeln!(
            out,
            "\nsystem_state: {} ({errors} error(s), {warnings} warning(s))",
            self.system_state
        );
        out
    }
}

fn state_severity(label: &str) -> Option<Severity> {
    match label {
        "warning" => Some(Severity::Warning),
        "error" => Some(Severity::Error),
        _ => None,
    }
}

fn state_label(worst: Option<Severity>) -> &'static str {
    match worst {
        None => "ok",
        Some(Severity::Warning) => "warning",
        Some(Severity::Error) => "error",
    }
}

/// The `expiry` word of a [`CheckRow`].
fn expiry_label(state: ExpiryState) -> &'static str {
    match state {
        ExpiryState::Ok => "ok",
        ExpiryState::ExpiresSoon { .. } => "expires_soon",
        ExpiryState::Expired => "expired",
    }
}

/// How a name resolves: the walk, step by step.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    /// The name asked about, normalised (`None`: no SNI).
    pub name: Option<String>,
    /// The listener whose certdir is the fallback.
    pub listener: Option<String>,
    /// The names tried, in order, and whether each is a configured domain.
    pub tried: Vec<TriedName>,
    /// The chain walked up, from the first configured domain to the master.
    pub chain: Vec<ChainLink>,
    /// `exact`, `ancestor`, `master`, `certdir` or `default`.
    pub step: &'static str,
    /// Why this certificate, in words.
    pub why: String,
    /// The certificate chosen.
    pub certificate: ChosenCertificate,
}

/// One name tried by the walk.
#[derive(Debug, Clone, Serialize)]
pub struct TriedName {
    /// The name.
    pub name: String,
    /// Whether it is a configured domain.
    pub configured: bool,
}

/// One domain on the chain and whether it has a certificate.
#[derive(Debug, Clone, Serialize)]
pub struct ChainLink {
    /// The domain.
    pub domain: String,
    /// Whether it has a working certificate of its own.
    pub has_certificate: bool,
}

/// The chosen certificate, briefly.
#[derive(Debug, Clone, Serialize)]
pub struct ChosenCertificate {
    /// How it is configured.
    pub source: String,
    /// Its file.
    pub file: Option<String>,
    /// Subject.
    pub subject: String,
    /// DNS names.
    pub names: Vec<String>,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// SHA-256 fingerprint.
    pub sha256: String,
    /// Whether it covers the name asked about.
    pub covers_name: Option<bool>,
}

impl Resolution {
    /// Explains the choice for `name` on listener number `listener`.
    pub fn explain(snapshot: &Snapshot, listener: Option<usize>, name: Option<&str>) -> Self {
        let tree = snapshot.tree();
        let normalized = name.map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        let mut tried = Vec::new();
        let mut chain = Vec::new();
        if let Some(name) = &normalized {
            let explained = tree.explain(name);
            let start = tree.start(name);
            tried = explained
                .into_iter()
                .map(|(name, id)| TriedName {
                    name,
                    configured: id.is_some(),
                })
                .collect();
            if tried.iter().all(|t| !t.configured) {
                tried.push(TriedName {
                    name: tree.name(tree.master()).to_string(),
                    configured: true,
                });
            }
            chain = tree
                .chain(start)
                .into_iter()
                .map(|id| ChainLink {
                    domain: tree.name(id).to_string(),
                    has_certificate: snapshot.domain_certificate(id).is_some(),
                })
                .collect();
        }
        let index = listener.unwrap_or(usize::MAX);
        let choice = snapshot.choose(index, normalized.as_deref());
        let why = match (choice.step, choice.domain) {
            (Step::Exact, Some(d)) => format!("`{d}` is configured and has a certificate"),
            (Step::Listed, Some(d)) => format!(
                "`{d}` lists this name (or a wildcard one label above it) in its `names` and has a certificate"
            ),
            (Step::Ancestor, Some(d)) => {
                format!("`{d}` is the nearest domain on the chain with a certificate")
            }
            (Step::Master, Some(d)) => {
                format!("no domain before the master has a certificate; the master `{d}` has one")
            }
            (Step::Certdir, _) if normalized.is_none() => {
                "no SNI: the listener's certdir serves".to_string()
            }
            (Step::Certdir, _) => {
                "no domain on the chain has a certificate: the listener's certdir serves"
                    .to_string()
            }
            _ if listener.is_none() => {
                "no domain on the chain has a certificate and no listener was named \
                 (--listener NAME adds its certdir): the default certificate serves"
                    .to_string()
            }
            _ => {
                "no domain on the chain has a certificate and the listener has no working certdir: \
                  the default certificate serves"
                    .to_string()
            }
        };
        let certificate = chosen(choice.certificate, normalized.as_deref());
        Resolution {
            name: normalized,
            listener: listener.and_then(|i| snapshot.listener_names().get(i).cloned()),
            tried,
            chain,
            step: choice.step.as_str(),
            why,
            certificate,
        }
    }

    /// The walk as text for people.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        match &self.name {
            Some(name) => {
                let _ = writeln!(out, "name: {name}");
            }
            None => out.push_str("name: (none: no SNI)\n"),
        }
        if let Some(listener) = &self.listener {
            let _ = writeln!(out, "listener: {listener}");
        }
        if !self.tried.is_empty() {
            out.push_str("names tried:\n");
            for (i, t) in self.tried.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  {}. {}  {}",
                    i + 1,
                    t.name,
                    if t.configured {
                        "configured"
                    } else {
                        "not configured"
                    }
                );
            }
            out.push_str("chain walked:\n");
            for link in &self.chain {
                let _ = writeln!(
                    out,
                    "  {}  {}",
                    link.domain,
                    if link.has_certificate {
                        "has a certificate"
                    } else {
                        "no certificate"
                    }
                );
            }
        }
        let c = &self.certificate;
        let _ = writeln!(out, "chosen: {} ({})", self.step, self.why);
        let _ = writeln!(out, "  source:    {}", c.source);
        if let Some(file) = &c.file {
            let _ = writeln!(out, "  file:      {file}");
        }
        let _ = writeln!(out, "  subject:   {}", c.subject);
        let _ = writeln!(out, "  names:     {}", c.names.join(", "));
        let _ = writeln!(out, "  not after: {}", c.not_after);
        let _ = writeln!(out, "  sha256:    {}", c.sha256);
        if c.covers_name == Some(false) {
            out.push_str(
                "  warning:   the certificate does not cover this name; clients will refuse it\n",
            );
        }
        out
    }
}

fn chosen(certificate: &LoadedCertificate, name: Option<&str>) -> ChosenCertificate {
    ChosenCertificate {
        source: certificate.kind.as_str().to_string(),
        file: certificate.file.as_ref().map(|f| f.display().to_string()),
        subject: certificate.facts.subject.clone(),
        names: certificate.facts.dns_names.clone(),
        not_after: rfc3339(certificate.facts.not_after),
        sha256: certificate.facts.sha256.clone(),
        covers_name: name.map(|n| certificate.facts.covers(n)),
    }
}

/// Escapes text for HTML: names shown on pages come from the network.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href='x'>&"),
            "&lt;a href=&#39;x&#39;&gt;&amp;"
        );
    }
}
