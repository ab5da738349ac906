//! Vestibule: a TLS-terminating reverse proxy that signs people in before anything
//! reaches the application behind it.
//!
//! The path of a request: [`accept`] (TLS, connections) → [`pipeline`] → [`router`]
//! (own page or upstream?) → [`session`] (cookie → session) → [`core::policy`] (rule
//! and completeness) → [`pages`] (sign-in, 2FA, account) or [`proxy`] (forward with
//! identity headers). [`core`] holds the domain rules and knows nothing of HTTP or
//! storage; [`store`] implements its storage contract.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::dbg_macro,
        clippy::print_stdout
    )
)]

pub mod accept;
pub mod access_log;
pub mod app;
pub mod assertion;
pub(crate) mod atomic_file;
pub mod audit;
pub mod cli;
pub mod config;
pub mod core;
pub mod hash_pool;
pub mod http;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod pages;
pub mod pipeline;
pub mod proxy;
pub mod router;
pub mod session;
pub mod signin;
pub mod store;
pub mod users;

pub use cli::{Cli, UsersCommand};
