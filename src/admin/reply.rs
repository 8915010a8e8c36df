//! JSON replies: every admin answer, errors included, is JSON (README,
//! "Admin API": `{"error": "..."}` saying what to do).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde::Serialize;

/// What every handler answers.
pub(super) type Reply = Response<Full<Bytes>>;

/// `body` as pretty JSON with `status`.
pub(super) fn json<T: Serialize>(status: StatusCode, body: &T) -> Reply {
    let text = serde_json::to_vec_pretty(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// `{"error": message}` with `status`.
pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    json(status, &serde_json::json!({ "error": message.into() }))
}
