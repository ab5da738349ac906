//! `P/setup`: TOTP enrollment — scan, verify, save backup codes. The same secret is
//! shown until a code verifies it; a user whose 2FA is on can never reach it.

use http::{Response, StatusCode};

use super::render::{self, SetupPage};
use super::{Ctx, Form, current, to_login};
use crate::core::auth_flow::{SecondFactor, Stage};
use crate::core::clock::now_ms;
use crate::core::totp;
use crate::core::user::User;
use crate::http::body::Body;
use crate::http::error::GatewayError;
use crate::session::Current;
use crate::signin::Next;
use crate::signin::code_step::Enrolled;

/// Who may enroll now — any session whose user has no 2FA yet (staff who must, or a
/// patient turning it on from the account page) — or where to send them instead.
async fn eligible(
    ctx: &Ctx<'_>,
    rd: &str,
) -> Result<Result<Current, Response<Body>>, GatewayError> {
    let Some(cur) = current(ctx).await? else {
        return Ok(Err(to_login(ctx, rd)));
    };
    let mfa_on = ctx.app.store.mfa_get(&cur.user.username).await?.is_some();
    let requires = ctx.app.signin.requires_2fa(&cur.user);
    let complete = crate::signin::next_step::completed(cur.record.stage, requires).is_some();
    // A user with keys but no TOTP may add TOTP from a complete session; a session
    // still at the password step goes to the challenge, where the keys are offered.
    let keys_only = !mfa_on && ctx.app.signin.has_second_factor(&cur.user).await?;
    if !mfa_on && (complete || !keys_only) {
        return Ok(Ok(cur));
    }
    let mfa_on = mfa_on || keys_only;
    let next = crate::signin::next_step::next_step(Some(cur.record.stage), requires, || mfa_on);
    let target = match next {
        Next::Challenge => format!("{}?rd={}", ctx.p("/challenge"), super::encode_rd(rd)),
        _ => ctx.p("/account"),
    };
    Ok(Err(render::redirect(
        StatusCode::SEE_OTHER,
        &target,
        ctx.tls,
        &[],
    )))
}

fn page(
    ctx: &Ctx<'_>,
    user: &User,
    secret: &[u8],
    rd: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response<Body>, GatewayError> {
    let settings = &ctx.app.cfg.totp;
    let uri = totp::otpauth_uri(settings, secret, &user.username);
    let (qr, size) = super::qr::png_base64(&uri)
        .ok_or_else(|| GatewayError::Internal("QR encoding failed".into()))?;
    let b32 = zeroize::Zeroizing::new(totp::base32(secret));
    let grouped = zeroize::Zeroizing::new(totp::grouped(&b32));
    let (token, set) = ctx.app.csrf.issue(&ctx.headers);
    let page = SetupPage {
        brand: &ctx.app.brand,
        tr: ctx.tr,
        csrf_token: &token,
        rd,
        qr_png_base64: &qr,
        qr_size: size,
        otpauth_uri: &uri,
        secret_grouped: &grouped,
        digits: settings.digits,
        period: settings.period,
        error,
        keys_enabled: ctx.app.signin.keys_enabled(),
        key_heading: ctx.t("webauthn.key_heading"),
        key_rd: rd,
    };
    Ok(render::html(
        status,
        &page,
        ctx.tls,
        &set.into_iter().collect::<Vec<_>>(),
    ))
}

pub async fn show(ctx: &Ctx<'_>) -> Result<Response<Body>, GatewayError> {
    let rd = ctx.rd_from_query();
    let cur = match eligible(ctx, &rd).await? {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    let secret = ctx.app.signin.pending_secret(&cur.user, ctx.ip).await?;
    page(ctx, &cur.user, &secret, &rd, StatusCode::OK, None)
}

pub async fn submit(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let rd = ctx.rd(form.get("rd"));
    let cur = match eligible(ctx, &rd).await? {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    let user = cur.user.clone();
    let secret = app.signin.pending_secret(&user, ctx.ip).await?;
    let codes = match app
        .signin
        .enroll(&user, form.get("code"), &secret, ctx.ip)
        .await?
    {
        Enrolled::Right { codes } => codes,
        Enrolled::Wrong => {
            return page(
                ctx,
                &user,
                &secret,
                &rd,
                StatusCode::UNAUTHORIZED,
                Some(ctx.t("setup.wrong")),
            );
        }
        Enrolled::AlreadyOn => {
            return Ok(render::redirect(
                StatusCode::SEE_OTHER,
                &ctx.p("/account"),
                ctx.tls,
                &[],
            ));
        }
    };
    let stage = Stage::Complete {
        factor: Some(SecondFactor::Totp),
    };
    // A session elsewhere may have been complete with the password alone (a
    // patient's, perhaps opened by whoever phished it): 2FA now applies, so every
    // other session ends (SPEC §6, "Turning 2FA on"), after this one is rotated.
    let Some(cookie) = app
        .sessions
        .rotate_ending_others(&cur, stage, now_ms())
        .await?
    else {
        // Revoked or signed out while the code was checked.
        return Ok(to_login(ctx, &rd));
    };
    app.signin.enrollment_done(&user, codes.len(), ctx.ip);
    Ok(super::codes::page(ctx, &codes, true, &rd, &[cookie]))
}
