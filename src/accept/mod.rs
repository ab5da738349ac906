//! Listeners: TLS (with certificate reload), plain HTTP, the http→https redirect
//! listener, connection limits and graceful shutdown.

pub mod activity;
pub mod cert_expiry;
pub mod conn_io;
pub mod connection;
pub mod http1;
pub mod redirect;
pub mod server;
pub mod tls;
pub mod tls_stream;

use std::future::Future;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::http::body::Body;
use crate::http::peer::{ConnectionLease, Peer};
use crate::metrics::Metrics;

/// What answers the requests of accepted connections — the pipeline, in the gateway.
/// The listeners know nothing else of the gateway: they are handed this and the
/// [`Settings`] they need, not the wiring.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request; `lease` is its hold on its connection (kept by a
    /// WebSocket tunnel opened from it). Never fails: errors are answered inside.
    fn handle(
        self: Arc<Self>,
        peer: Peer,
        req: Request<Incoming>,
        lease: ConnectionLease,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// The limits and the counters the listeners apply.
#[derive(Clone)]
pub struct Settings {
    /// `server.max_connections`.
    pub max_connections: usize,
    /// `server.max_request_header_bytes`.
    pub max_request_header_bytes: usize,
    pub metrics: Arc<Metrics>,
}
