//! Listeners: TLS (with certificate reload), plain HTTP, the http→https redirect
//! listener, connection limits and graceful shutdown.

pub mod cert_expiry;
pub mod first_byte;
pub mod redirect;
pub mod server;
pub mod tls;
