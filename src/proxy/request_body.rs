//! The body of a request on its way to a backend: the client's, or none at
//! all for the copy of a bodiless request sent again to another backend.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// A forwarded request's body.
#[derive(Debug)]
pub enum ForwardBody {
    /// The client's body, streamed as it arrives. `sent` (made only for a
    /// request that has a body) is raised once all of it went on, so that
    /// a backend that timed out while the client was still sending is
    /// not blamed for the client's slowness.
    Client {
        /// The body.
        body: Incoming,
        /// Raised at its end.
        sent: Option<Arc<AtomicBool>>,
    },
    /// No body: a retry of an idempotent request that had none.
    Empty,
}

impl ForwardBody {
    /// The client's `body`; with the flag raised at its end when it has
    /// one.
    pub fn client(body: Incoming) -> (Self, Option<Arc<AtomicBool>>) {
        let sent = (!body.is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
        (
            ForwardBody::Client {
                body,
                sent: sent.clone(),
            },
            sent,
        )
    }
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ForwardBody::Client { body, sent } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                if let Some(flag) = sent
                    && (matches!(polled, Poll::Ready(None)) || body.is_end_stream())
                {
                    flag.store(true, Ordering::Relaxed);
                }
                polled
            }
            ForwardBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ForwardBody::Client { body, .. } => body.is_end_stream(),
            ForwardBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ForwardBody::Client { body, .. } => body.size_hint(),
            ForwardBody::Empty => SizeHint::with_exact(0),
        }
    }
}
