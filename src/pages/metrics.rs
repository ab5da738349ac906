//! `P/metrics`: the Prometheus text exposition, for loopback and trusted proxies only
//! (SPEC §5.3) — the counters reveal traffic and sign-in patterns to anyone else.

use std::net::IpAddr;
use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use super::Ctx;
use crate::app::App;
use crate::core::clock::now_ms;
use crate::http::body::{Body, full};
use crate::http::error::GatewayError;
use crate::metrics::scrape_allowed;

/// A store that cannot count its sessions by then leaves the gauge as it was.
const COUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// Values read at scrape time rather than kept current on every request.
async fn refresh(app: &App) {
    if let Some(left) = app.cert_expiry.seconds_left() {
        app.metrics.set_cert_expiry(left);
    }
    if app.metrics.sessions_due(now_ms()) {
        match tokio::time::timeout(COUNT_TIMEOUT, app.store.sessions_count()).await {
            Ok(Ok(n)) => app.metrics.set_active_sessions(n),
            _ => tracing::debug!("could not count sessions for the metrics"),
        }
    }
}

/// 403 unless both the TCP peer and the client behind it are loopback or trusted
/// proxies. A trusted proxy relays every client of the site, so the peer alone is not
/// enough: the client it names in `X-Forwarded-For` (resolved as everywhere else,
/// [`crate::http::client_ip::client_ip`]) must be allowed too. A scraper reaching the
/// gateway directly from a trusted address has no such header and is the client.
pub async fn serve(ctx: &Ctx<'_>, peer: IpAddr) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let trusted = &app.cfg.server.trusted_proxies;
    if !(scrape_allowed(peer, trusted) && scrape_allowed(ctx.ip, trusted)) {
        return Err(GatewayError::Denied);
    }
    refresh(app).await;
    let mut resp = Response::new(full(app.metrics.render()));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}
