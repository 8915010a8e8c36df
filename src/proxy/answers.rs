//! The answers sniwalk makes itself rather than a backend: short plain
//! text (errors, `respond` routes), redirects and the status page.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Request, Response, StatusCode};

use super::pool::PooledBody;
use crate::inspect::escape_html;
use crate::snapshot::LoadedCertificate;
use crate::tree::Step;

/// The body every response of an `https` or `http` listener has: an
/// answer of our own, whole, or a backend's, streamed. An enum rather than
/// a boxed trait object: every proxied response then saves an allocation
/// and calls its body directly (README, Performance).
#[derive(Debug)]
pub enum ProxyBody {
    /// Made here: errors, `respond` routes, redirects, the status page.
    Own(Full<Bytes>),
    /// Relayed from a backend connection of the pool.
    Backend(PooledBody<super::request_body::ForwardBody>),
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Own(full) => Pin::new(full)
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(|never| match never {}))),
            ProxyBody::Backend(backend) => Pin::new(backend).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Own(full) => full.is_end_stream(),
            ProxyBody::Backend(backend) => backend.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Own(full) => full.size_hint(),
            ProxyBody::Backend(backend) => backend.size_hint(),
        }
    }
}

/// A short plain-text response: the status code, then `message`.
pub fn plain(status: StatusCode, message: &str) -> Response<ProxyBody> {
    text(status, format!("{} {message}\n", status.as_u16()))
}

/// A response with `body` as plain text.
pub(super) fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `body` as a whole response body.
pub(super) fn full(body: String) -> ProxyBody {
    ProxyBody::Own(Full::new(Bytes::from(body)))
}

/// A redirect: `to` as given when it has a path, else `to` plus the
/// request's path and query.
pub(super) fn redirect(to: &str, status: u16, request: &Request<Incoming>) -> Response<ProxyBody> {
    let has_path = to
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    let location = if has_path {
        to.to_string()
    } else {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        format!("{to}{path}")
    };
    let Ok(value) = HeaderValue::from_str(&location) else {
        return plain(StatusCode::BAD_REQUEST, "invalid request target");
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::PERMANENT_REDIRECT);
    let mut response = plain(status, "redirecting");
    response.headers_mut().insert(LOCATION, value);
    response
}

/// A small page saying that sniwalk works and which certificate this
/// connection got and why; it shows nothing beyond this connection.
pub(super) fn status_page(
    host: &str,
    sni: Option<&str>,
    step: Step,
    domain: Option<&str>,
    certificate: &LoadedCertificate,
) -> Response<ProxyBody> {
    let why = match (step, domain) {
        (Step::Exact, Some(d)) => format!(
            "the domain <code>{}</code> has its own certificate",
            escape_html(d)
        ),
        (Step::Listed, Some(d)) => format!(
            "the domain <code>{}</code> lists this name in its <code>names</code>",
            escape_html(d)
        ),
        (Step::Ancestor, Some(d)) => format!(
            "the nearest configured domain with a certificate is <code>{}</code>",
            escape_html(d)
        ),
        (Step::Master, Some(d)) => format!(
            "the walk ended at the master domain <code>{}</code>",
            escape_html(d)
        ),
        (Step::Certdir, _) => {
            "no domain on the chain has a certificate, so the listener's certdir served".into()
        }
        _ => "no domain on the chain has a certificate and the listener has no working certdir, \
              so the default certificate served"
            .into(),
    };
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>sniwalk</title>\
         <style>body{{font-family:sans-serif;max-width:46em;margin:2em auto;line-height:1.5}}\
         code{{background:#eee;padding:0 .2em}}td{{padding:.1em .8em .1em 0;vertical-align:top}}</style></head>\n\
         <body><h1>sniwalk is running</h1>\n\
         <p>This page is served by sniwalk {version}, a TLS-terminating reverse proxy. \
         Edit <code>proxy.yaml</code> to add domains, certificates and routes; \
         <code>sniwalk check</code> shows every certificate and its problems.</p>\n\
         <h2>This connection</h2><table>\n\
         <tr><td>Host</td><td><code>{host}</code></td></tr>\n\
         <tr><td>SNI</td><td><code>{sni}</code></td></tr>\n\
         <tr><td>Certificate</td><td>{step}: {why}</td></tr>\n\
         <tr><td>Subject</td><td><code>{subject}</code></td></tr>\n\
         <tr><td>Valid until</td><td>{not_after}</td></tr>\n\
         <tr><td>SHA-256</td><td><code>{sha256}</code></td></tr>\n\
         </table></body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        host = escape_html(host),
        sni = escape_html(sni.unwrap_or("(none: connected by address)")),
        step = step.as_str(),
        subject = escape_html(&certificate.facts.subject),
        not_after = crate::clock::rfc3339(certificate.facts.not_after),
        sha256 = certificate.facts.sha256,
    );
    let mut response = Response::new(full(body));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}
