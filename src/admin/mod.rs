//! The admin API: a small plain-HTTP/1.1 listener (`admin:` in
//! `proxy.yaml`) for operators and their tooling.
//!
//! | endpoint | auth | what |
//! | --- | --- | --- |
//! | `GET /healthz` | no | 200 while serving, 503 while draining |
//! | `GET /metrics` | no | Prometheus/OpenMetrics text |
//! | `GET /status` | yes | every certificate in use and its state |
//! | `GET /resolve?name=N&listener=L` | yes | the walk, as `sniwalk resolve` |
//! | `POST /certificates` | yes | issuance job for hostnames (README, "Admin API") → 202 |
//! | `GET /certificates/jobs/{id}` | yes | the job's status and step |
//! | `PUT /domains/{name}/certificate` | yes | import a certificate (by hand) |
//! | `POST`, `DELETE /backends/{listener}/{address}/drain` | yes | drain a backend, or end its drain |
//!
//! Auth is `Authorization: Bearer <token>`, the token being the content of
//! `admin.token_file` (whitespace trimmed). Errors are JSON
//! `{"error": "..."}` saying what to do.

mod backends;
mod domains;
mod import;
mod job_list;
mod job_share;
mod jobs;
mod reply;
mod state;

/// The request-body parsing of the handlers, callable without a server, for
/// the fuzz targets in `fuzz/`.
pub mod fuzz;

pub use import::ImportError;
pub use job_list::MAX_JOBS;
pub use jobs::{HostnamesError, MAX_HOSTNAMES};
pub use state::{AdminError, AdminState, read_token};

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::inspect::{CheckReport, Resolution};
use reply::{Reply, error, json};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// Serves the admin API on `socket` until `stop` is cancelled.
pub async fn serve(socket: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    tracing::info!(
        bind = %socket.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        auth = state.token.is_some(),
        "admin API listening"
    );
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, "admin connection: {e}");
                    }
                }
                _ = stop.cancelled() => connection.as_mut().graceful_shutdown(),
            }
        });
    }
}

async fn handle(state: &AdminState, request: Request<Incoming>) -> Reply {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) if state.draining.is_cancelled() => {
            // Not ready: a load balancer (or a Kubernetes readiness probe)
            // takes this instance out while what is open finishes.
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({
                    "status": "draining",
                    "error": "shutting down: no new connections are accepted; \
                              connections in flight may finish (shutdown_timeout)",
                }),
            );
        }
        (&Method::GET, ["healthz"]) => {
            return json(StatusCode::OK, &serde_json::json!({"status": "ok"}));
        }
        (&Method::GET, ["metrics"]) => {
            let text = state.metrics.render(&state.store.load());
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            return response;
        }
        _ => {}
    }
    if let Some(token) = &state.token
        && !authorized(&request, token)
    {
        let mut reply = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer <content of admin.token_file>`",
        );
        reply.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return reply;
    }
    match (&method, segments.as_slice()) {
        (&Method::GET, ["status"]) => status(state),
        (&Method::GET, ["resolve"]) => resolve(state, request.uri().query().unwrap_or("")),
        (&Method::POST, ["certificates"]) => match body(request).await {
            Ok((_, bytes)) => jobs::post_certificates(state, &bytes).await,
            Err(reply) => reply,
        },
        (&Method::GET, ["certificates", "jobs", id]) => jobs::job(state, id).await,
        (&Method::PUT, ["domains", name, "certificate"]) => {
            let name = name.to_string();
            match body(request).await {
                Ok((content_type, bytes)) => {
                    import::import(state, &name, content_type.as_deref(), &bytes).await
                }
                Err(reply) => reply,
            }
        }
        (&Method::DELETE, ["domains", name]) => domains::delete(state, name).await,
        (&Method::POST, ["backends", listener, address, "drain"]) => {
            backends::drain(state, listener, address, true).await
        }
        (&Method::DELETE, ["backends", listener, address, "drain"]) => {
            backends::drain(state, listener, address, false).await
        }
        (_, ["healthz" | "metrics" | "status" | "resolve" | "certificates"])
        | (_, ["backends", _, _, "drain"])
        | (_, ["certificates", "jobs", _])
        | (_, ["domains", _, "certificate"])
        | (_, ["domains", _]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            format!(
                "no endpoint {path}; see /healthz, /metrics, /status, /resolve, /certificates, \
                 /certificates/jobs/ID, /domains/NAME, /domains/NAME/certificate, \
                 /backends/LISTENER/ADDRESS/drain"
            ),
        ),
    }
}

/// Constant-time comparison of the bearer token.
fn authorized(request: &Request<Incoming>, token: &str) -> bool {
    let Some(given) = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Constant time in the content, so the answer's timing does not tell how
    // much of a guess was right (the length is not secret: README says to
    // use a long random string).
    aws_lc_rs::constant_time::verify_slices_are_equal(given.trim().as_bytes(), token.as_bytes())
        .is_ok()
}

/// The request body (at most [`MAX_BODY`]) and its content type.
async fn body(request: Request<Incoming>) -> Result<(Option<String>, Bytes), Reply> {
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok((content_type, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes"),
        )),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("reading the body: {e}"),
        )),
    }
}

fn status(state: &AdminState) -> Reply {
    let snapshot = state.store.load();
    let acme = crate::acme::control::read_status(&state.config.state_layout());
    let report =
        CheckReport::from_snapshot(&snapshot, crate::clock::unix_now()).with_acme_status(&acme);
    /// The report, and the storage's reachability beside it.
    #[derive(serde::Serialize)]
    struct Status<'a> {
        #[serde(flatten)]
        report: &'a CheckReport,
        #[serde(skip_serializing_if = "Option::is_none")]
        storage: Option<crate::storage::health::HealthView>,
        /// Every backend: health, drain, open sessions, failures.
        backends: Vec<crate::balance::BackendView>,
    }
    let storage = Some(state.storage.health().view());
    json(
        StatusCode::OK,
        &Status {
            report: &report,
            storage,
            backends: backends::views(&snapshot),
        },
    )
}

fn resolve(state: &AdminState, query: &str) -> Reply {
    let params: BTreeMap<String, String> = url_params(query);
    let snapshot = state.store.load();
    let listener = match params.get("listener") {
        Some(name) => match snapshot.listener_index(name) {
            Some(index) => Some(index),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "no listener `{name}`; listeners: {}",
                        snapshot.listener_names().join(", ")
                    ),
                );
            }
        },
        None => None,
    };
    let name = params
        .get("name")
        .map(String::as_str)
        .filter(|n| !n.is_empty());
    if name.is_none() && !params.contains_key("no_sni") {
        return error(
            StatusCode::BAD_REQUEST,
            "give `name=` (the SNI name), or `no_sni` for a client that sends none",
        );
    }
    json(
        StatusCode::OK,
        &Resolution::explain(&snapshot, listener, name),
    )
}

/// `a=1&b=2` as application/x-www-form-urlencoded (`%XX` and `+`
/// decoded; a `%` not followed by two hex digits stays as it is); a name
/// without `=` has an empty value, and the last of a repeated name wins.
fn url_params(query: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        let params = url_params("name=a.example.com&listener=web%20x&no_sni&x=1+2");
        assert_eq!(params["name"], "a.example.com");
        assert_eq!(params["listener"], "web x");
        assert_eq!(params["no_sni"], "");
        assert_eq!(params["x"], "1 2");
        assert_eq!(url_params("bad=%zz%")["bad"], "%zz%");
    }
}
