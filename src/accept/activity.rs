//! What one connection's serving loop needs to know about the requests hyper runs on
//! it: how many exchanges have started, whether one is still running, and whether a
//! response is stuck waiting for the client to read. Those three facts decide when an
//! idle HTTP/1 connection may be parked (see [`super::http1`]) and when the header-read
//! / keep-alive timeout applies.
//!
//! Every counter is touched only from the connection's own worker thread, so relaxed
//! atomics are enough; they are atomics because hyper wants `Send` services.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::http::body::{Body, BoxError};

/// Request/response progress on one connection.
#[derive(Debug, Default)]
pub struct Activity {
    exchanges: AtomicU64,
    in_flight: AtomicUsize,
    write_blocked: AtomicBool,
    parking: AtomicBool,
}

impl Activity {
    /// Marks a request head as received; the exchange lasts until the returned guard
    /// (carried by the response body) is dropped, which hyper does once the whole
    /// response has been handed to it or the exchange was abandoned.
    pub fn begin(self: &Arc<Self>) -> Exchange {
        self.exchanges.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        Exchange(self.clone())
    }

    /// How many exchanges have started on the connection so far.
    pub fn exchanges(&self) -> u64 {
        self.exchanges.load(Relaxed)
    }

    /// Whether any exchange is still running (its response not completely produced).
    pub fn busy(&self) -> bool {
        self.in_flight.load(Relaxed) > 0
    }

    /// Whether the last write or flush could not complete (the client is not reading).
    pub fn write_blocked(&self) -> bool {
        self.write_blocked.load(Relaxed)
    }

    pub(super) fn note_write(&self, blocked: bool) {
        if self.write_blocked.load(Relaxed) != blocked {
            self.write_blocked.store(blocked, Relaxed);
        }
    }

    /// While set, ending the HTTP connection must leave the socket open: the connection
    /// is being parked, not closed.
    pub fn parking(&self) -> bool {
        self.parking.load(Relaxed)
    }

    pub(super) fn set_parking(&self, on: bool) {
        self.parking.store(on, Relaxed);
    }
}

/// One running exchange; dropping it ends the exchange.
#[derive(Debug)]
pub struct Exchange(Arc<Activity>);

impl Drop for Exchange {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A response body that ends its exchange when hyper is done with it.
pub struct ExchangeBody {
    inner: Body,
    _exchange: Exchange,
}

impl ExchangeBody {
    pub fn new(inner: Body, exchange: Exchange) -> Self {
        Self {
            inner,
            _exchange: exchange,
        }
    }
}

impl http_body::Body for ExchangeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exchange_is_busy_until_its_body_is_dropped() {
        let a = Arc::new(Activity::default());
        assert!(!a.busy());
        let body = ExchangeBody::new(crate::http::body::empty(), a.begin());
        let second = a.begin();
        assert!(a.busy());
        assert_eq!(a.exchanges(), 2);
        drop(body);
        assert!(a.busy(), "one exchange is still running");
        drop(second);
        assert!(!a.busy());
        assert_eq!(a.exchanges(), 2, "ending an exchange does not uncount it");
    }
}
