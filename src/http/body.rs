//! The response body type: everything the gateway answers is boxed into one type so
//! streamed upstream bodies and rendered pages travel the same way.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Error type of streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the gateway sends.
pub type Body = BoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// What the request path accepts as a request body: hyper's `Incoming` from the
/// listeners, a `Full<Bytes>` in the in-process tests. The pipeline is generic over
/// it (monomorphised, so the real listeners pay nothing); `Sync` because requests are
/// borrowed across awaits, `Unpin` so the forwarder can poll it without pinning.
pub trait RequestBody:
    http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + Unpin + 'static
{
}

impl<B> RequestBody for B
where
    B: http_body::Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
}
