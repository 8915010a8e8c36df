//! The body of a request on its way to a backend: the client's, or none at
//! all for the copy of a bodiless request sent again to another backend.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// A forwarded request's body.
#[derive(Debug)]
pub enum ForwardBody {
    /// The client's body, streamed as it arrives.
    Client(Incoming),
    /// No body: a retry of an idempotent request that had none.
    Empty,
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ForwardBody::Client(body) => Pin::new(body).poll_frame(cx),
            ForwardBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ForwardBody::Client(body) => body.is_end_stream(),
            ForwardBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ForwardBody::Client(body) => body.size_hint(),
            ForwardBody::Empty => SizeHint::with_exact(0),
        }
    }
}
