//! HTTP plumbing shared by the pages and the proxy: body types, client addresses,
//! cookies, CSRF, and the one place where errors become responses.

pub mod body;
pub mod client_ip;
pub mod cookies;
pub mod csrf;
pub mod error;
pub mod facts;
pub mod peer;
pub mod rate;
pub mod request_id;
