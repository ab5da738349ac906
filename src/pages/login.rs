//! `P/login`: the password step's page. The sign-in service decides; this parses the
//! form, issues the session at the stage reached and renders the answer.

use http::{Response, StatusCode};

use super::render::{self, LoginPage};
use super::{Ctx, Form};
use crate::core::auth_flow::Stage;
use crate::core::clock::now_ms;
use crate::http::body::Body;
use crate::http::error::GatewayError;
use crate::signin::Next;
use crate::signin::password::{Credentials, PasswordOutcome};

fn form_page(
    ctx: &Ctx<'_>,
    status: StatusCode,
    rd: &str,
    username: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> Response<Body> {
    let (token, set) = ctx.app.csrf.issue(&ctx.headers);
    let page = LoginPage {
        brand: &ctx.app.brand,
        tr: ctx.tr,
        csrf_token: &token,
        rd,
        username,
        error,
        notice,
        passwordless: ctx.app.signin.passwordless_enabled(),
    };
    render::html(status, &page, ctx.tls, &set.into_iter().collect::<Vec<_>>())
}

pub async fn show(ctx: &Ctx<'_>) -> Result<Response<Body>, GatewayError> {
    let notice = ctx
        .query
        .contains_key("logged_out")
        .then_some(ctx.t("login.signed_out"));
    Ok(form_page(
        ctx,
        StatusCode::OK,
        &ctx.rd_from_query(),
        "",
        None,
        notice,
    ))
}

pub async fn submit(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let rd = ctx.rd(form.get("rd"));
    let username = form.get("username").trim();
    let credentials = Credentials {
        username,
        password: form.get("password"),
        device_token: app.device_cookie.get(&ctx.headers),
    };
    let pause = app.velocity.delay(ctx.ip);
    let (user, next, new_device) = match app.signin.password(credentials, ctx.ip, pause).await? {
        PasswordOutcome::Right {
            user,
            next,
            new_device,
        } => (user, next, new_device),
        PasswordOutcome::Wrong {
            checked,
            locked_secs,
        } => {
            if checked {
                app.velocity.failed(ctx.ip);
            }
            if let Some(retry_after_secs) = locked_secs {
                return Err(GatewayError::Locked { retry_after_secs });
            }
            return Ok(form_page(
                ctx,
                StatusCode::UNAUTHORIZED,
                &rd,
                username,
                Some(ctx.t("login.wrong")),
                None,
            ));
        }
    };
    let mut cookies_out = Vec::new();
    if let Some(d) = new_device {
        cookies_out.push(app.device_cookie.set(&d.token, Some(d.max_age_secs as i64)));
    }
    let stage = match next {
        Next::Complete { factor } => Stage::Complete { factor },
        _ => Stage::PasswordDone,
    };
    let previous = app.sessions.presented(&ctx.headers);
    cookies_out.push(
        app.sessions
            .issue(
                &user,
                stage,
                previous.as_ref(),
                None,
                now_ms(),
                ctx.session_meta(),
            )
            .await?,
    );
    app.signin.signed_in(&user, next, ctx.ip);
    let location = match next {
        Next::Enroll => format!("{}?rd={}", ctx.p("/setup"), super::encode_rd(&rd)),
        Next::Challenge => format!("{}?rd={}", ctx.p("/challenge"), super::encode_rd(&rd)),
        _ => rd,
    };
    Ok(render::redirect(
        StatusCode::SEE_OTHER,
        &location,
        ctx.tls,
        &cookies_out,
    ))
}
