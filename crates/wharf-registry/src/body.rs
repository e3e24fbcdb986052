//! The response body type.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use wharf_storage::ByteStream;

/// A response body: empty, one buffer, or a blob streamed from storage with
/// a known length (so `Content-Length` is exact and memory stays bounded).
pub struct ResponseBody {
    kind: Kind,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Stream { stream: ByteStream, remaining: u64 },
}

impl ResponseBody {
    /// No body.
    pub fn empty() -> Self {
        ResponseBody { kind: Kind::Empty }
    }

    /// One buffer.
    pub fn full(bytes: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Full(Some(bytes)),
        }
    }

    /// A stream of exactly `len` bytes.
    pub fn stream(stream: ByteStream, len: u64) -> Self {
        ResponseBody {
            kind: Kind::Stream {
                stream,
                remaining: len,
            },
        }
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Empty => f.write_str("ResponseBody::Empty"),
            Kind::Full(b) => write!(
                f,
                "ResponseBody::Full({} bytes)",
                b.as_ref().map_or(0, Bytes::len)
            ),
            Kind::Stream { remaining, .. } => {
                write!(f, "ResponseBody::Stream({remaining} bytes left)")
            }
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream { stream, remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                match stream.as_mut().poll_next(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Ok(chunk))) => {
                        let n = chunk.len() as u64;
                        if n > *remaining {
                            *remaining = 0;
                            return Poll::Ready(Some(Err(std::io::Error::other(
                                "stored blob is longer than its recorded size",
                            ))));
                        }
                        *remaining -= n;
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        tracing::error!(error = %e, "blob read failed mid-stream");
                        *remaining = 0;
                        Poll::Ready(Some(Err(std::io::Error::other(e))))
                    }
                    Poll::Ready(None) => {
                        // Ending early would let the client see a short body
                        // as complete only if lengths were not enforced; make
                        // it an error so the connection is reset.
                        let missing = *remaining;
                        *remaining = 0;
                        Poll::Ready(Some(Err(std::io::Error::other(format!(
                            "stored blob ended {missing} bytes early"
                        )))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.is_none(),
            Kind::Stream { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}
