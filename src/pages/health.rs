//! `P/health` for load balancers and `P/api/session` for the upstream's front end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http::{Response, StatusCode};
use serde_json::json;

use super::Ctx;
use super::render;
use super::render::authentication_required;
use crate::app::App;
use crate::core::auth_flow;
use crate::core::clock::now_ms;
use crate::http::body::Body;
use crate::http::error::GatewayError;
use crate::signin::next_step::completed;

/// How long one look at the store and the users file answers for: a load balancer
/// probing every few milliseconds costs at most one store ping per second, unless a
/// store call fails in between (then the next probe looks again).
const CACHE_MS: u64 = 1_000;
/// A store that has not answered by then counts as down.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The last (relatively) expensive checks and when they ran.
#[derive(Default)]
pub struct HealthCache {
    checked_ms: AtomicU64,
    store_ok: AtomicBool,
    users_readable: AtomicBool,
}

/// Store reachable, users file still readable: from the cache when fresh.
async fn slow_checks(app: &App) -> (bool, bool) {
    let cache = &app.health;
    let now = now_ms();
    let last = cache.checked_ms.load(Ordering::Relaxed);
    // A cached "ok" does not outlive a store call that failed since: once a request
    // has failed on the store, health looks again at once. A cached failure may stand.
    let failed_since = app.metrics.take_store_failure();
    let cached_ok = cache.store_ok.load(Ordering::Relaxed);
    if last != 0 && now.saturating_sub(last) < CACHE_MS && !(cached_ok && failed_since) {
        return (
            cache.store_ok.load(Ordering::Relaxed),
            cache.users_readable.load(Ordering::Relaxed),
        );
    }
    let store_ok = matches!(
        tokio::time::timeout(PING_TIMEOUT, app.store.ping()).await,
        Ok(Ok(()))
    );
    // The watcher only notices changed files; one that became unreadable in place
    // (permissions, a vanished mount) is caught here.
    let users_readable = std::fs::File::open(&app.cfg.users.file).is_ok();
    cache.store_ok.store(store_ok, Ordering::Relaxed);
    cache
        .users_readable
        .store(users_readable, Ordering::Relaxed);
    cache.checked_ms.store(now, Ordering::Relaxed);
    (store_ok, users_readable)
}

/// 200 when the gateway can serve; 503 naming the (first) failing part otherwise:
/// `store` (unreachable), `users_file` (unreadable) or `certificate` (expired).
///
/// A users file that no longer parses does not fail the check: the last good version
/// stays in force (SPEC §4), so the gateway still serves, and one typo must not take
/// every instance out of the load balancer. It is logged as an error instead.
pub async fn health(ctx: &Ctx<'_>) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let (store_ok, users_ok) = slow_checks(app).await;
    let cert_ok = !app.cert_expiry.expired();
    let failing = [
        ("store", store_ok),
        ("users_file", users_ok),
        ("certificate", cert_ok),
    ]
    .into_iter()
    .find(|(_, ok)| !ok);
    if let Some((part, _)) = failing {
        let state = |ok: bool| if ok { "ok" } else { "failing" };
        let body = json!({
            "status": "unavailable",
            "failing": part,
            "checks": { "store": state(store_ok), "users_file": state(users_ok), "certificate": state(cert_ok) },
        });
        return Ok(render::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &body,
            ctx.tls,
        ));
    }
    // A refused reload leaves the previous configuration serving: healthy, but the
    // operator should know (SPEC §8 / issue 20).
    let body = match app.reloader.as_ref().and_then(|r| r.failure()) {
        None => json!({ "status": "ok" }),
        Some(why) => json!({
            "status": "ok",
            "detail": {
                "config": format!(
                    "reload failed; the previous configuration stays in force: {why}"
                ),
            },
        }),
    };
    Ok(render::json(StatusCode::OK, &body, ctx.tls))
}

/// The current complete session as JSON, or the §5.1 401.
pub async fn session_api(ctx: &Ctx<'_>) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let Some(cur) = super::current(ctx).await? else {
        return Ok(authentication_required(&app.cfg.server.prefix, ctx.tls));
    };
    let Some(factor) = completed(cur.record.stage, app.signin.requires_2fa(&cur.user)) else {
        return Ok(authentication_required(&app.cfg.server.prefix, ctx.tls));
    };
    let expires = app.sessions.expires_at_ms(&cur);
    let expires_at =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(expires))
            .to_string();
    let body = json!({
        "user": cur.user.username,
        "display_name": cur.user.display_name,
        "email": cur.user.email,
        "roles": cur.user.roles,
        "mfa": auth_flow::mfa_label(factor),
        "expires_at": expires_at,
    });
    Ok(render::json(StatusCode::OK, &body, ctx.tls))
}
