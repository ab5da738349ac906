//! `P/health` for load balancers and `P/api/session` for the upstream's front end.

use std::time::Duration;

use http::{Response, StatusCode};
use serde_json::json;

use super::render;
use super::Ctx;
use crate::core::auth_flow::{self, Stage};
use crate::http::body::Body;
use crate::http::error::{authentication_required, GatewayError};

/// 200 when the gateway can serve; 503 naming the failing part otherwise.
pub async fn health(ctx: &Ctx<'_>) -> Result<Response<Body>, GatewayError> {
    let store_ok = matches!(tokio::time::timeout(Duration::from_secs(2), ctx.app.store.ping()).await, Ok(Ok(())));
    if !store_ok {
        return Ok(render::json(StatusCode::SERVICE_UNAVAILABLE, &json!({ "status": "unavailable", "failing": "store" }), ctx.tls));
    }
    Ok(render::json(StatusCode::OK, &json!({ "status": "ok" }), ctx.tls))
}

/// The current complete session as JSON, or the §5.1 401.
pub async fn session_api(ctx: &Ctx<'_>) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let Some(cur) = super::current(ctx).await? else {
        return Ok(authentication_required(&app.cfg.server.prefix, ctx.tls));
    };
    let factor = match cur.record.stage {
        Stage::Complete { factor } if auth_flow::is_complete(cur.record.stage, app.roles.requires_2fa(&cur.user.roles)) => factor,
        _ => return Ok(authentication_required(&app.cfg.server.prefix, ctx.tls)),
    };
    let expires = app.sessions.expires_at_ms(&cur.record);
    let expires_at = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(expires)).to_string();
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
