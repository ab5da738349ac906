//! The domain core: users, roles, passwords, TOTP, backup codes, lockout arithmetic,
//! the sign-in state machine, access rules and the storage contract.
//!
//! Nothing here knows about HTTP, sockets, Redis or files; clocks are passed in, so
//! every rule can be tested without waiting.

pub mod auth_flow;
pub mod backup_codes;
pub mod clock;
pub mod lang;
pub mod lockout;
pub mod password;
pub mod path;
pub mod policy;
pub mod redirect;
pub mod secret;
pub mod store;
pub mod tokens;
pub mod totp;
pub mod user;
