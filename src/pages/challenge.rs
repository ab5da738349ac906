//! `P/challenge`: the code step for users with 2FA on — a TOTP code or a backup code,
//! optionally remembering this browser.

use http::{Response, StatusCode};
use serde_json::json;

use super::render::{self, ChallengePage};
use super::second_factor::{self, Verdict};
use super::{Ctx, Form, current, to_login};
use crate::core::auth_flow::{SecondFactor, Stage};
use crate::core::clock::now_ms;
use crate::core::redirect::safe_target;
use crate::core::store::{DeviceRecord, MfaRecord};
use crate::core::tokens::{fingerprint, new_token};
use crate::http::body::Body;
use crate::http::cookies;
use crate::http::error::GatewayError;
use crate::session::Current;

fn page(ctx: &Ctx<'_>, rd: &str, status: StatusCode, error: Option<&str>) -> Response<Body> {
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
    };
    render::html(status, &page, ctx.tls, &set.into_iter().collect::<Vec<_>>())
}

/// A password-done session of a user with 2FA on, or where to go instead.
async fn eligible(
    ctx: &Ctx<'_>,
    rd: &str,
) -> Result<Result<(Current, MfaRecord), Response<Body>>, GatewayError> {
    let Some(cur) = current(ctx).await? else {
        return Ok(Err(to_login(ctx, rd)));
    };
    if crate::core::auth_flow::is_complete(
        cur.record.stage,
        ctx.app.roles.requires_2fa(&cur.user.roles),
    ) {
        return Ok(Err(render::redirect(
            StatusCode::SEE_OTHER,
            rd,
            ctx.tls,
            &[],
        )));
    }
    match ctx.app.store.mfa_get(&cur.user.username).await? {
        Some(m) => Ok(Ok((cur, m))),
        None => Ok(Err(render::redirect(
            StatusCode::SEE_OTHER,
            &format!("{}?rd={}", ctx.p("/setup"), super::encode_rd(rd)),
            ctx.tls,
            &[],
        ))),
    }
}

pub async fn show(ctx: &Ctx<'_>) -> Result<Response<Body>, GatewayError> {
    let rd = ctx.rd_from_query();
    match eligible(ctx, &rd).await? {
        Ok(_) => Ok(page(ctx, &rd, StatusCode::OK, None)),
        Err(resp) => Ok(resp),
    }
}

pub async fn submit(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let rd = safe_target(form.get("rd"));
    let (cur, mfa) = match eligible(ctx, &rd).await? {
        Ok(x) => x,
        Err(resp) => return Ok(resp),
    };
    let user = cur.user.clone();
    let secret = second_factor::open_secret(ctx, &user, &mfa.secret)?;
    let attempt = second_factor::reserve(ctx, &user).await?;
    let (factor, left) =
        match second_factor::check(ctx, &user, form.get("code"), &secret, true).await? {
            Verdict::Accepted(f, left) => (f, left),
            Verdict::Wrong => {
                if let Some(locked) = attempt.wrong(ctx, &user, "challenge") {
                    return Err(locked);
                }
                return Ok(page(
                    ctx,
                    &rd,
                    StatusCode::UNAUTHORIZED,
                    Some(ctx.t("challenge.wrong")),
                ));
            }
        };
    attempt.right(ctx, &user).await?;
    let now = now_ms();
    app.store.mfa_mark_used(&user.username, now).await?;
    if let Some(left) = left {
        app.metrics.backup_code_used();
        app.audit.event(
            "mfa.backup_code.used",
            &user.username,
            Some(ctx.ip),
            json!({ "remaining": left }),
        );
    }
    app.audit.event(
        "mfa.challenge.success",
        &user.username,
        Some(ctx.ip),
        json!({ "method": crate::core::auth_flow::mfa_label(Some(factor)) }),
    );
    let stage = Stage::Complete {
        factor: Some(factor),
    };
    let Some(cookie) = app.sessions.rotate(&cur, stage, None, now).await? else {
        // Revoked or signed out while the code was checked.
        return Ok(to_login(ctx, &rd));
    };
    let mut cookies_out = vec![cookie];
    let rm = &app.cfg.remember_device;
    if rm.enabled && form.has("remember_device") && factor != SecondFactor::RememberedDevice {
        let token = new_token();
        let ua = ctx
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown browser");
        let rec = DeviceRecord {
            user: user.username.clone(),
            created_ms: now,
            expires_ms: now + rm.duration.as_millis() as u64,
            label: browser_label(ua),
            credential: user.credential_fingerprint(),
        };
        app.store.device_put(&fingerprint(&token), &rec).await?;
        cookies_out.push(cookies::set(
            &app.device_cookie,
            &token,
            ctx.tls,
            Some(rm.duration.as_secs() as i64),
        ));
        app.audit.event(
            "mfa.device.remembered",
            &user.username,
            Some(ctx.ip),
            json!({ "browser": rec.label }),
        );
    }
    Ok(render::redirect(
        StatusCode::SEE_OTHER,
        &rd,
        ctx.tls,
        &cookies_out,
    ))
}

/// A short, human description of a browser for the account page.
fn browser_label(ua: &str) -> String {
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
