//! `P/account`: the user's 2FA status and the actions on it — new backup codes,
//! forget remembered browsers, turn 2FA off (where no role requires it), turn it on.

use http::{Response, StatusCode};
use serde_json::json;

use super::render::{self, AccountPage, human_time_in};
use super::second_factor::{self, Verdict};
use super::{Ctx, Form, current, to_login};
use crate::core::auth_flow::{self, Stage};
use crate::core::clock::now_ms;
use crate::http::body::Body;
use crate::http::error::GatewayError;
use crate::session::Current;

/// A complete session, or where to go instead.
async fn complete(ctx: &Ctx<'_>) -> Result<Result<Current, Response<Body>>, GatewayError> {
    let account = ctx.p("/account");
    let Some(cur) = current(ctx).await? else {
        return Ok(Err(to_login(ctx, &account)));
    };
    if !auth_flow::is_complete(
        cur.record.stage,
        ctx.app.roles.requires_2fa(&cur.user.roles),
    ) {
        return Ok(Err(to_login(ctx, &account)));
    }
    Ok(Ok(cur))
}

async fn page(
    ctx: &Ctx<'_>,
    cur: &Current,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let user = &cur.user;
    let mfa = app.store.mfa_get(&user.username).await?;
    let (backup_left, devices) = if mfa.is_some() {
        let left = app.store.backup_count(&user.username).await?;
        let now = now_ms();
        let devices: Vec<String> = app
            .store
            .devices_list(&user.username)
            .await?
            .into_iter()
            .filter(|d| d.expires_ms > now && d.credential == user.credential_fingerprint())
            .map(|d| {
                ctx.tr.f2(
                    "account.device",
                    &d.label,
                    human_time_in(Some(d.created_ms), ctx.tr),
                )
            })
            .collect();
        (left, devices)
    } else {
        (0, Vec::new())
    };
    let (token, set) = app.csrf.issue(&ctx.headers);
    let roles = user.roles.join(", ");
    let account_rd = super::encode_rd(&ctx.p("/account"));
    let page = AccountPage {
        brand: &app.brand,
        tr: ctx.tr,
        csrf_token: &token,
        username: &user.username,
        display_name: &user.display_name,
        roles: &roles,
        mfa_on: mfa.is_some(),
        since: &human_time_in(mfa.as_ref().map(|m| m.enabled_ms), ctx.tr),
        last_used: &human_time_in(mfa.as_ref().and_then(|m| m.last_used_ms), ctx.tr),
        backup_left,
        devices: &devices,
        can_disable: !app.roles.requires_2fa(&user.roles),
        account_path_encoded: &account_rd,
        notice,
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
    match complete(ctx).await? {
        Ok(cur) => {
            let notice = match ctx.query.get("done").map(String::as_str) {
                Some("forgotten") => Some(ctx.t("account.forgotten")),
                Some("disabled") => Some(ctx.t("account.disabled")),
                _ => None,
            };
            page(ctx, &cur, StatusCode::OK, notice, None).await
        }
        Err(resp) => Ok(resp),
    }
}

/// Checks a current TOTP code for an account action; `Err(response)` on a wrong one.
async fn verify_current_code(
    ctx: &Ctx<'_>,
    cur: &Current,
    form: &Form,
) -> Result<Result<(), Response<Body>>, GatewayError> {
    let user = &cur.user;
    let Some(mfa) = ctx.app.store.mfa_get(&user.username).await? else {
        return Ok(Err(page(
            ctx,
            cur,
            StatusCode::CONFLICT,
            None,
            Some(ctx.t("account.not_on")),
        )
        .await?));
    };
    let secret = second_factor::open_secret(ctx, user, &mfa.secret)?;
    let attempt = second_factor::reserve(ctx, user).await?;
    match second_factor::check(ctx, user, form.get("code"), &secret, false).await? {
        Verdict::Accepted(..) => {
            attempt.right(ctx, user).await?;
            Ok(Ok(()))
        }
        Verdict::Wrong => {
            if let Some(locked) = attempt.wrong(ctx, user, "account") {
                return Err(locked);
            }
            Ok(Err(page(
                ctx,
                cur,
                StatusCode::UNAUTHORIZED,
                None,
                Some(ctx.t("account.wrong")),
            )
            .await?))
        }
    }
}

pub async fn regenerate_codes(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    let cur = match complete(ctx).await? {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    if let Err(resp) = verify_current_code(ctx, &cur, &form).await? {
        return Ok(resp);
    }
    let (codes, hashes) = second_factor::new_backup_codes(ctx, &cur.user);
    ctx.app
        .store
        .backup_replace(&cur.user.username, &hashes)
        .await?;
    ctx.app.audit.event(
        "mfa.backup_codes.regenerated",
        &cur.user.username,
        Some(ctx.ip),
        json!({ "count": codes.len() }),
    );
    Ok(second_factor::codes_page(
        ctx,
        &codes,
        false,
        &ctx.p("/account"),
        &[],
    ))
}

pub async fn forget_devices(ctx: &Ctx<'_>, _form: Form) -> Result<Response<Body>, GatewayError> {
    let cur = match complete(ctx).await? {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    let n = ctx.app.store.devices_forget(&cur.user.username).await?;
    ctx.app.audit.event(
        "mfa.devices.forgotten",
        &cur.user.username,
        Some(ctx.ip),
        json!({ "count": n, "by": "user" }),
    );
    Ok(render::redirect(
        StatusCode::SEE_OTHER,
        &format!("{}?done=forgotten", ctx.p("/account")),
        ctx.tls,
        &[],
    ))
}

pub async fn disable_2fa(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    let cur = match complete(ctx).await? {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    if ctx.app.roles.requires_2fa(&cur.user.roles) {
        return Err(GatewayError::MissingRole);
    }
    if let Err(resp) = verify_current_code(ctx, &cur, &form).await? {
        return Ok(resp);
    }
    let app = ctx.app;
    app.store.mfa_remove(&cur.user.username).await?;
    app.audit.event(
        "mfa.disabled",
        &cur.user.username,
        Some(ctx.ip),
        json!({ "by": "user" }),
    );
    let Some(cookie) = app
        .sessions
        .rotate(
            &cur,
            Stage::Complete { factor: None },
            Some(cur.record.created_ms),
            now_ms(),
        )
        .await?
    else {
        // Revoked or signed out meanwhile.
        return Ok(to_login(ctx, "/"));
    };
    Ok(render::redirect(
        StatusCode::SEE_OTHER,
        &format!("{}?done=disabled", ctx.p("/account")),
        ctx.tls,
        &[cookie],
    ))
}
