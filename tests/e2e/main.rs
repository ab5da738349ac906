//! End-to-end tests: every test here spawns the real `vestibule` executable on
//! 127.0.0.1 (a free port), in front of an in-process echo upstream, and talks to
//! it over real sockets (TLS unless a test says otherwise).
//!
//! - `harness`: the builder-style `Gateway`, the recording `Upstream`, clients and
//!   raw-socket helpers.
//! - `proxy`: forwarding behaviour (SPEC §5.1 decision before login, §5.2 forwarding).
//! - `config_cli`: command line and configuration (SPEC §2, §3).
//! - `operator`, `demo`: the operator's first hour (check-config in one run, wording,
//!   gen-cert, the pages' icon, the demo's banner and admin commands).
//! - `lifecycle`: signals, graceful shutdown, certificate reload, memory under
//!   multi-gigabyte transfers.
//! - `upgrades`: only WebSocket is upgraded; tunnels end with their session, when
//!   idle, and count as connections; `TRACE` is refused.
//! - `differential`: hostile paths and upgrades through the gateway to real Tomcat and
//!   hypercorn servers, judged from what those servers logged (issue 17).
//! - `apps`: several applications behind one gateway on several test host names
//!   (SPEC §8, issue 20); `multihost` holds its browser, cookie jar and upstream.
//! - `forward_auth`: forward-auth mode behind real nginx (`auth_request`) and Caddy
//!   (`forward_auth`), run with the configuration files docs/forward-auth/ ships.
//! - `ldap`: users from a real OpenLDAP slapd (SPEC §11, issue 23): sign-in, roles from
//!   groups, escaping, disabled accounts, refresh, outage, fail-over, lockout before bind.

mod harness;
mod harness_selftest;
mod multihost;

mod apps;
mod assertion;
mod audit_chain;
mod burst;
mod bypasses;
mod config_cli;
mod demo;
mod differential;
mod flows;
mod forward_auth;
mod hardening;
mod keepalive;
mod ldap;
mod lifecycle;
mod observability;
mod operator;
mod proxy;
mod redis;
mod redis_cache;
mod rotation;
mod selfservice;
mod signin;
mod twofa;
mod upgrades;
mod upstream_apps;
mod upstream_pool;
mod webauthn;
