//! `P/setup`: TOTP enrollment — scan, verify, save backup codes. The same secret is
//! shown until a code verifies it; a user whose 2FA is on can never reach it.

use http::{Response, StatusCode};
use serde_json::json;

use super::render::{self, SetupPage};
use super::second_factor::{self, Verdict};
use super::{Ctx, Form, current, to_login};
use crate::core::auth_flow::{SecondFactor, Stage};
use crate::core::clock::now_ms;
use crate::core::redirect::safe_target;
use crate::core::store::{MfaRecord, PendingEnrollment, SecretKind};
use crate::core::totp;
use crate::core::user::User;
use crate::http::body::Body;
use crate::http::error::GatewayError;
use crate::session::Current;

/// Who may enroll now, or where to send them instead.
async fn eligible(
    ctx: &Ctx<'_>,
    rd: &str,
) -> Result<Result<Current, Response<Body>>, GatewayError> {
    let Some(cur) = current(ctx).await? else {
        return Ok(Err(to_login(ctx, rd)));
    };
    let mfa_on = ctx.app.store.mfa_get(&cur.user.username).await?.is_some();
    if mfa_on {
        let target = match cur.record.stage {
            Stage::PasswordDone => format!("{}?rd={}", ctx.p("/challenge"), super::encode_rd(rd)),
            Stage::Complete { .. } => ctx.p("/account"),
        };
        return Ok(Err(render::redirect(
            StatusCode::SEE_OTHER,
            &target,
            ctx.tls,
            &[],
        )));
    }
    Ok(Ok(cur))
}

/// The pending secret of `user`, created (and audited) on first sight.
async fn pending_secret(
    ctx: &Ctx<'_>,
    user: &User,
) -> Result<zeroize::Zeroizing<Vec<u8>>, GatewayError> {
    let app = ctx.app;
    if let Some(p) = app.store.pending_get(&user.username).await?
        && let Ok(secret) = app
            .keys
            .open(&user.username, SecretKind::Pending, &p.secret)
    {
        return Ok(secret);
    }
    let secret = totp::new_secret();
    let sealed = app
        .keys
        .get()
        .seal(&user.username, SecretKind::Pending, secret.expose());
    app.store
        .pending_put(
            &user.username,
            &PendingEnrollment {
                secret: sealed,
                created_ms: now_ms(),
            },
        )
        .await?;
    app.audit.event(
        "mfa.enroll.started",
        &user.username,
        Some(ctx.ip),
        json!({}),
    );
    Ok(zeroize::Zeroizing::new(secret.expose().clone()))
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
    let secret = pending_secret(ctx, &cur.user).await?;
    page(ctx, &cur.user, &secret, &rd, StatusCode::OK, None)
}

pub async fn submit(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let rd = safe_target(form.get("rd"));
    let cur = match eligible(ctx, &rd).await? {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    let user = cur.user.clone();
    let secret = pending_secret(ctx, &user).await?;
    let attempt = second_factor::reserve(ctx, &user).await?;
    match second_factor::check(ctx, &user, form.get("code"), &secret, false).await? {
        Verdict::Wrong => {
            if let Some(locked) = attempt.wrong(ctx, &user, "setup") {
                return Err(locked);
            }
            page(
                ctx,
                &user,
                &secret,
                &rd,
                StatusCode::UNAUTHORIZED,
                Some(ctx.t("setup.wrong")),
            )
        }
        Verdict::Accepted(..) => {
            attempt.right(ctx, &user).await?;
            let (codes, hashes) = second_factor::new_backup_codes(ctx, &user);
            let now = now_ms();
            let rec = MfaRecord {
                secret: app
                    .keys
                    .get()
                    .seal(&user.username, SecretKind::Active, &secret),
                enabled_ms: now,
                last_used_ms: Some(now),
            };
            if !app.store.mfa_enable(&user.username, &rec, &hashes).await? {
                return Ok(render::redirect(
                    StatusCode::SEE_OTHER,
                    &ctx.p("/account"),
                    ctx.tls,
                    &[],
                ));
            }
            // A session elsewhere may have been complete with the password alone (a
            // patient's, perhaps opened by whoever phished it): 2FA now applies, so
            // every other session ends (SPEC §6, "Turning 2FA on").
            let stage = Stage::Complete {
                factor: Some(SecondFactor::Totp),
            };
            let Some(cookie) = app.sessions.rotate_ending_others(&cur, stage, now).await? else {
                // Revoked or signed out while the code was checked.
                return Ok(to_login(ctx, &rd));
            };
            app.metrics.enrollment_completed();
            app.audit.event(
                "mfa.enroll.completed",
                &user.username,
                Some(ctx.ip),
                json!({ "backup_codes": codes.len() }),
            );
            Ok(second_factor::codes_page(ctx, &codes, true, &rd, &[cookie]))
        }
    }
}
