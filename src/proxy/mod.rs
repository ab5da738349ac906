//! Forwarding to the upstream: header hygiene (strip, then insert), the pooled
//! client, streaming in both directions, WebSocket upgrades and the tunnels they open. The proxy never renders
//! pages and never touches the store.

pub mod answer_paths;
pub mod client;
pub mod forward;
pub mod hop_by_hop;
pub mod identity_headers;
pub mod tunnel;
pub mod websocket;
