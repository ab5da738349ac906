//! Forwarding to the upstream: header hygiene (strip, then insert), the pooled
//! client, streaming in both directions, WebSocket upgrades. The proxy never renders
//! pages and never touches the store.

pub mod client;
pub mod forward;
pub mod hop_by_hop;
pub mod identity_headers;
pub mod websocket;
