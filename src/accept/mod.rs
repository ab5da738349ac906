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
