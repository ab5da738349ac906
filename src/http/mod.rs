//! HTTP plumbing shared by the pages and the proxy: body types, client addresses,
//! cookies, CSRF, hop-by-hop header names and the error type (answered in
//! `pipeline::respond`).

pub(crate) mod body;
pub(crate) mod client_ip;
pub mod cookies;
pub mod csrf;
pub(crate) mod error;
pub(crate) mod facts;
pub(crate) mod hop_by_hop;
pub(crate) mod peer;
pub(crate) mod rate;
pub(crate) mod request_id;
pub(crate) mod user_agent;
