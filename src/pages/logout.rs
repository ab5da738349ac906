//! `POST P/logout`: ends the session on the server and clears the cookie.

use http::{Response, StatusCode};

use super::render;
use super::{Ctx, Form};
use crate::audit::AuditEvent;
use crate::http::body::Body;
use crate::http::error::GatewayError;

pub async fn submit(ctx: &Ctx<'_>, _form: Form) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    if let Some(cur) = super::current(ctx).await? {
        app.sessions.end(&cur.id).await?;
        app.audit
            .record(&cur.user.username, Some(ctx.ip), &AuditEvent::Logout);
    } else if let Some(id) = app.sessions.presented(&ctx.headers) {
        app.sessions.end(&id).await?;
    }
    let location = format!("{}?logged_out=1", ctx.p("/login"));
    Ok(render::redirect(
        StatusCode::SEE_OTHER,
        &location,
        ctx.tls,
        &[app.sessions.clear_cookie()],
    ))
}
