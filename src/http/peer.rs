//! The connection a request arrived on, as every step of the request path sees it.

use std::net::SocketAddr;

/// Facts about the incoming connection.
#[derive(Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
}
