//! One access line per request (`[log] access_log`), through `tracing` so it follows
//! `[log] format`: `key=value` pairs in text, top-level fields in JSON.
//!
//! Only the method, the normalised path (never the query: it may carry tokens or
//! personal data), the status, the timings, the request id and the user are written.
//! No header is ever logged, so Cookie, Set-Cookie and Authorization values cannot leak.

use std::time::Duration;

use http::{Method, StatusCode};

/// The target of access lines, so `RUST_LOG` can filter them separately
/// (e.g. `RUST_LOG=info,access=off`).
pub const TARGET: &str = "access";

/// What one access line says.
pub struct Access<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub status: StatusCode,
    pub upstream: Option<Duration>,
    pub total: Duration,
    pub request_id: &'a str,
    pub user: Option<&'a str>,
}

fn ms(d: Duration) -> f64 {
    // Microsecond resolution is plenty, and keeps the lines short.
    (d.as_micros() as f64) / 1000.0
}

/// Writes the line (fields missing when unknown: `user`, `upstream_ms`).
pub fn write(a: &Access<'_>) {
    tracing::info!(
        target: TARGET,
        method = a.method.as_str(),
        path = a.path,
        status = a.status.as_u16(),
        upstream_ms = a.upstream.map(ms),
        total_ms = ms(a.total),
        request_id = a.request_id,
        user = a.user,
        "access"
    );
}
