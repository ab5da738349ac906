//! HTTP plumbing shared by the pages and the proxy: body types, client addresses,
//! cookies, CSRF, hop-by-hop header names and the error type (answered in
//! `pipeline::respond`).

pub mod body;
pub mod client_ip;
pub mod cookies;
pub mod csrf;
pub mod error;
pub mod facts;
pub mod hop_by_hop;
pub mod peer;
pub mod rate;
pub mod request_id;
