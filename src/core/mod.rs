//! The domain core: users, roles, passwords, TOTP, backup codes, lockout arithmetic,
//! the sign-in state machine, access rules and the storage contract.
//!
//! Nothing here knows about HTTP, sockets, Redis or files; clocks are passed in, so
//! every rule can be tested without waiting.

pub(crate) mod auth_flow;
pub mod backup_codes;
pub(crate) mod clock;
pub(crate) mod fast_map;
pub(crate) mod lang;
pub(crate) mod lockout;
pub(crate) mod password;
pub(crate) mod password_rules;
pub mod path;
pub mod policy;
pub mod redirect;
pub(crate) mod secret;
pub mod store;
pub(crate) mod tokens;
pub mod totp;
pub(crate) mod user;
