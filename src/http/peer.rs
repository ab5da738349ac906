//! The connection a request arrived on, as every step of the request path sees it.

use std::net::SocketAddr;

/// Facts about the incoming connection.
#[derive(Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// What a request holds of its client connection beyond the request itself. A
/// WebSocket tunnel outlives the HTTP exchange that opened it; holding this keeps the
/// connection's place under `server.max_connections` (and in the open-connections
/// gauge) until the tunnel ends, and tells the tunnel when the gateway shuts down.
pub trait ConnectionSlot: Send + Sync + 'static {
    /// Cancelled when the gateway begins to shut down.
    fn shutdown(&self) -> &tokio_util::sync::CancellationToken;
}

/// A shared hold on the client connection: one allocation per connection, a reference
/// count per request.
pub type ConnectionLease = std::sync::Arc<dyn ConnectionSlot>;
