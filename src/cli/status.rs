//! The commands that talk to a running proxy: `status` (admin API) and
//! `renew` (through the state directory).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use sniwalk::config::{Config, normalize_domain_name};
use sniwalk::{fsio, pem, unix_now};

use crate::cli::output::{found_problem, out, outln};

/// `status`: exit 1 when `system_state` is `error` or the admin API cannot
/// be reached or answers with an error; 2 for a configuration or argument
/// that cannot work.
pub(crate) fn status(
    config_path: &Path,
    admin: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let settings = config.admin.as_ref();
    let base = match (admin, settings) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(settings)) => format!("http://{}", settings.bind),
        (None, None) => bail!(
            "{} has no `admin:` block; add one (e.g. `admin: {{ bind: 127.0.0.1:9901 }}`) or pass --admin URL",
            config.file.display()
        ),
    };
    let token = match settings.and_then(|s| s.token_file.as_deref()) {
        Some(file) => Some(sniwalk::admin::read_token(file)?),
        None => None,
    };
    let authority = base
        .strip_prefix("http://")
        .with_context(|| format!("--admin {base}: give an http:// URL"))?
        .to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (code, body) = match runtime.block_on(admin_get(&authority, "/status", token.as_deref())) {
        Ok(answer) => answer,
        Err(e) => return found_problem(e),
    };
    if code != 200 {
        return found_problem(anyhow::anyhow!("{base}/status answered {code}: {body}"));
    }
    if json {
        outln!("{body}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let report: serde_json::Value = match serde_json::from_str(&body) {
        Ok(report) => report,
        Err(e) => {
            return found_problem(
                anyhow::Error::new(e).context(format!("{base}/status sent no JSON")),
            );
        }
    };
    out(format_args!("{}", render_status(&report)))?;
    Ok(if report["system_state"] == "error" {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One GET to the admin API; status code and body.
pub(crate) async fn admin_get(
    authority: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    use http_body_util::BodyExt as _;
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| {
            format!("connecting to the admin API at {authority}: is sniwalk running?")
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, authority);
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = sender
        .send_request(request.body(http_body_util::Empty::<bytes::Bytes>::new())?)
        .await?;
    let code = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

/// `/status` JSON as a table for people.
pub(crate) fn render_status(report: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut rows = vec![
        [
            "PLACE",
            "NAME",
            "MANAGED",
            "NOT AFTER",
            "DAYS",
            "RENEWS",
            "STATE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut problems = Vec::new();
    for row in report["certificates"].as_array().into_iter().flatten() {
        let managed = row["managed"].as_str().unwrap_or("-");
        let renews = row["acme"]["renew_at"].as_str().unwrap_or("-").to_string();
        rows.push(vec![
            text(&row["place"]),
            text(&row["name"]),
            managed.to_string(),
            text(&row["not_after"]),
            text(&row["days_left"]),
            renews,
            text(&row["state"]),
        ]);
        for problem in row["problems"].as_array().into_iter().flatten() {
            problems.push(format!(
                "  {} {}: {}",
                text(&problem["severity"]),
                text(&row["name"]),
                text(&problem["message"])
            ));
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for problem in problems {
        out.push_str(&problem);
        out.push('\n');
    }
    out.push_str(&format!(
        "\nsystem_state: {}\n",
        text(&report["system_state"])
    ));
    out
}

/// How long `renew` waits for a running proxy to pick its request up.
const RENEW_PICKUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `renew`: exit 0 when the new certificate serves, 1 when the renewal
/// failed, no running proxy took the request, or the domain is not one ACME
/// manages; 2 when the arguments or the configuration are wrong.
pub(crate) fn renew(config_path: &Path, domain: &str, timeout: &str) -> anyhow::Result<ExitCode> {
    use sniwalk::acme::control;
    use sniwalk::config::CertificateSource;

    let timeout =
        sniwalk::config::parse_duration(timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    let config = Config::load(config_path)?;
    let domain = normalize_domain_name(domain).map_err(|e| anyhow::anyhow!("DOMAIN: {e}"))?;
    let Some(configured) = config.domains.iter().find(|d| d.name == domain) else {
        return found_problem(anyhow::anyhow!(
            "{domain} is not under `domains` in {}; add it with `acme: {{ enabled: true }}`",
            config.file.display()
        ));
    };
    if !configured.acme.as_ref().is_some_and(|a| a.enabled) {
        return found_problem(anyhow::anyhow!(
            "{domain} does not have `acme: {{ enabled: true }}` in {}; nothing to renew",
            config.file.display()
        ));
    }
    if configured.certificate != CertificateSource::None {
        return found_problem(anyhow::anyhow!(
            "{domain}'s certificate is set by hand in {} (certificate_pem or certificate_file); \
            ACME leaves it alone; remove it to let ACME manage the domain",
            config.file.display()
        ));
    }
    let stored = config.state_layout().stored_certificate(&domain);
    if let Ok(text) = fsio::read_cert_text(&stored)
        && !text.contains(&format!("{}=", pem::ACME_ISSUED_MARKER))
    {
        return found_problem(anyhow::anyhow!(
            "{} has no `acme_issued` marker: it is managed by hand and ACME leaves it alone; \
            remove it to let ACME issue one",
            stored.display()
        ));
    }

    let state = config.state_layout();
    let id = control::request_renewal(&state, &domain, unix_now())
        .with_context(|| format!("asking the running proxy to renew {domain}"))?;
    outln!("renewal of {domain} requested; waiting for the running sniwalk")?;
    let started = std::time::Instant::now();
    let mut last_step = None;
    loop {
        if let Some(result) = control::read_result(&state, &domain).filter(|r| r.id == id) {
            outln!("{}", result.message)?;
            return Ok(if result.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        if control::request_pending(&state, &domain) {
            if started.elapsed() > RENEW_PICKUP_LIMIT {
                control::withdraw_request(&state, &domain);
                return found_problem(anyhow::anyhow!(
                    "no running sniwalk picked the request up within {}s: start it with \
                    `sniwalk run --config {}` (only the running proxy can answer the CA's challenge)",
                    RENEW_PICKUP_LIMIT.as_secs(),
                    config.file.display()
                ));
            }
        } else {
            let step = control::read_status(&state)
                .domains
                .get(&domain)
                .and_then(|s| s.in_flight);
            if step.is_some() && step != last_step {
                if let Some(step) = step {
                    outln!("  {}", step.describe())?;
                }
                last_step = step;
            }
        }
        if started.elapsed() > timeout {
            return found_problem(anyhow::anyhow!(
                "{domain}: no outcome within {}s; the renewal may still be running: see the \
                proxy's log and `sniwalk check`",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
