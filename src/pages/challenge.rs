//! `P/challenge`: the code step's page for users with 2FA on — a TOTP code or a backup
//! code, optionally remembering this browser. The sign-in service checks the code.

use http::{Response, StatusCode};

use super::render::{self, ChallengePage};
use super::{Ctx, Form, current, to_login};
use crate::core::auth_flow::{SecondFactor, Stage};
use crate::core::clock::now_ms;
use crate::core::redirect::safe_target;
use crate::core::user::User;
use crate::http::body::Body;
use crate::http::cookies;
use crate::http::error::GatewayError;
use crate::session::Current;
use crate::signin::Next;
use crate::signin::code_step::Challenged;

async fn page(
    ctx: &Ctx<'_>,
    user: &User,
    rd: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response<Body>, GatewayError> {
    let keys_on = ctx.app.signin.keys_enabled() && !ctx.app.signin.keys_of(user).await?.is_empty();
    let totp_on = ctx.app.store.mfa_get(&user.username).await?.is_some();
    let (token, set) = ctx.app.csrf.issue(&ctx.headers);
    let rm = &ctx.app.cfg.remember_device;
    let page = ChallengePage {
        brand: &ctx.app.brand,
        tr: ctx.tr,
        csrf_token: &token,
        rd,
        issuer: &ctx.app.cfg.totp.issuer,
        remember_enabled: rm.enabled,
        remember_days: rm.duration.as_secs().div_ceil(86_400),
        period: ctx.app.cfg.totp.period,
        error,
        keys_on,
        // Without keys the code form is all there is (also when TOTP was just reset).
        totp_on: totp_on || !keys_on,
    };
    Ok(render::html(
        status,
        &page,
        ctx.tls,
        &set.into_iter().collect::<Vec<_>>(),
    ))
}

/// A password-done session of a user with 2FA on, or where to go instead (as the
/// sign-in service's next step says).
async fn eligible(
    ctx: &Ctx<'_>,
    rd: &str,
) -> Result<Result<Current, Response<Body>>, GatewayError> {
    let cur = current(ctx).await?;
    let next = super::next_step(ctx, cur.as_ref()).await?;
    let to = |target: &str| render::redirect(StatusCode::SEE_OTHER, target, ctx.tls, &[]);
    match (next, cur) {
        (Next::Challenge, Some(cur)) => Ok(Ok(cur)),
        (Next::Login, _) | (Next::Challenge, None) => Ok(Err(to_login(ctx, rd))),
        (Next::Complete { .. }, _) => Ok(Err(to(rd))),
        // 2FA is off: enrolling is what is left (whether or not a role requires it).
        (Next::Enroll | Next::SignInAgain, _) => Ok(Err(to(&format!(
            "{}?rd={}",
            ctx.p("/setup"),
            super::encode_rd(rd)
        )))),
    }
}

pub async fn show(ctx: &Ctx<'_>) -> Result<Response<Body>, GatewayError> {
    let rd = ctx.rd_from_query();
    match eligible(ctx, &rd).await? {
        Ok(cur) => page(ctx, &cur.user, &rd, StatusCode::OK, None).await,
        Err(resp) => Ok(resp),
    }
}

pub async fn submit(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let rd = safe_target(form.get("rd"));
    let cur = match eligible(ctx, &rd).await? {
        Ok(x) => x,
        Err(resp) => return Ok(resp),
    };
    let user = cur.user.clone();
    let verified = match app
        .signin
        .challenge(&user, form.get("code"), ctx.ip)
        .await?
    {
        Challenged::Right(v) => v,
        Challenged::Wrong => {
            return page(
                ctx,
                &user,
                &rd,
                StatusCode::UNAUTHORIZED,
                Some(ctx.t("challenge.wrong")),
            )
            .await;
        }
        // Keys but no TOTP: a typed code cannot be right.
        Challenged::NotEnrolled if app.signin.has_second_factor(&user).await? => {
            return page(
                ctx,
                &user,
                &rd,
                StatusCode::UNAUTHORIZED,
                Some(ctx.t("challenge.wrong")),
            )
            .await;
        }
        Challenged::NotEnrolled => {
            return Ok(render::redirect(
                StatusCode::SEE_OTHER,
                &format!("{}?rd={}", ctx.p("/setup"), super::encode_rd(&rd)),
                ctx.tls,
                &[],
            ));
        }
    };
    let factor = verified.factor;
    let stage = Stage::Complete {
        factor: Some(factor),
    };
    let Some(cookie) = app.sessions.rotate(&cur, stage, None, now_ms()).await? else {
        // Revoked or signed out while the code was checked.
        return Ok(to_login(ctx, &rd));
    };
    let mut cookies_out = vec![cookie];
    if form.has("remember_device") && factor != SecondFactor::RememberedDevice {
        let ua = ctx
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown browser");
        if let Some(device) = app
            .signin
            .remember_browser(&user, browser_label(ua), ctx.ip)
            .await?
        {
            cookies_out.push(cookies::set(
                &app.device_cookie,
                &device.token,
                ctx.tls,
                Some(device.max_age_secs as i64),
            ));
        }
    }
    Ok(render::redirect(
        StatusCode::SEE_OTHER,
        &rd,
        ctx.tls,
        &cookies_out,
    ))
}

/// A short, human description of a browser for the account page.
pub(super) fn browser_label(ua: &str) -> String {
    let browser = ["Edg/", "Firefox/", "Chrome/", "Safari/"]
        .iter()
        .find(|b| ua.contains(*b))
        .map(|b| match *b {
            "Edg/" => "Edge",
            "Firefox/" => "Firefox",
            "Chrome/" => "Chrome",
            _ => "Safari",
        })
        .unwrap_or("Browser");
    let os = ["Windows", "Android", "iPhone", "iPad", "Mac OS", "Linux"]
        .iter()
        .find(|o| ua.contains(*o))
        .copied()
        .unwrap_or("unknown system");
    format!("{browser} on {os}")
}
