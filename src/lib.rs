//! Vestibule: a TLS-terminating reverse proxy that signs people in before anything
//! reaches the application behind it.
//!
//! The path of a request: [`accept`] (TLS, connections) → [`pipeline`]: screen (method,
//! header size) → host ([`router`]: own page or upstream?) → path (normal form) → rule
//! ([`core::policy`]) → session ([`session`]: cookie → session) → decision (`signin`'s
//! next step: complete? roles?) → forward ([`proxy`], with identity headers) or page
//! ([`pages`]: sign-in, 2FA, account). [`core`] holds the domain rules and knows nothing
//! of HTTP or storage; `signin` runs the sign-in flow without HTTP; [`store`]
//! implements the storage contract. `docs/architecture.md` draws the picture and lists
//! the dependency rules `tests/architecture.rs` enforces.

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

pub(crate) mod accept;
pub(crate) mod access_log;
pub(crate) mod app;
pub(crate) mod apps;
pub(crate) mod assertion;
pub(crate) mod atomic_file;
pub mod audit;
pub mod cli;
pub(crate) mod client_tls;
pub(crate) mod config;
pub mod core;
pub(crate) mod hash_pool;
pub mod http;
pub mod keys;
pub(crate) mod logging;
pub(crate) mod metrics;
pub(crate) mod pages;
pub(crate) mod pipeline;
pub(crate) mod proxy;
pub(crate) mod router;
pub(crate) mod session;
pub(crate) mod signin;
pub(crate) mod store;
pub(crate) mod users;

pub use cli::{Cli, UsersCommand};
