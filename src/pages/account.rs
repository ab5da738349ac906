//! `P/account`: the user's 2FA status and the actions on it — new backup codes,
//! forget remembered browsers, turn 2FA off (where no role requires it), turn it on.

use http::{Response, StatusCode};

use super::render::{self, AccountPage, human_time_in};
use super::{Ctx, Form, current, to_login};
use crate::core::auth_flow::Stage;
use crate::core::clock::now_ms;
use crate::http::body::Body;
use crate::http::error::GatewayError;
use crate::session::Current;
use crate::signin::code_step::Confirmed;

/// A complete session, or where to go instead.
pub(super) async fn complete(
    ctx: &Ctx<'_>,
) -> Result<Result<Current, Response<Body>>, GatewayError> {
    let account = ctx.p("/account");
    let cur = current(ctx).await?;
    let complete = cur.as_ref().is_some_and(|c| {
        crate::signin::next_step::completed(c.record.stage, ctx.app.signin.requires_2fa(&c.user))
            .is_some()
    });
    match cur {
        Some(c) if complete => Ok(Ok(c)),
        _ => Ok(Err(to_login(ctx, &account))),
    }
}

pub(super) async fn page(
    ctx: &Ctx<'_>,
    cur: &Current,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let user = &cur.user;
    let mfa = app.store.mfa_get(&user.username).await?;
    let keys = super::keys::rows(ctx, user).await?;
    let (backup_left, devices) = if mfa.is_some() || !keys.is_empty() {
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
        keys_enabled: app.signin.keys_enabled(),
        keys: &keys,
        key_heading: ctx.t("webauthn.add"),
        key_rd: &ctx.p("/account"),
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
                Some("key-removed") => Some(ctx.t("webauthn.removed")),
                Some("key-renamed") => Some(ctx.t("webauthn.renamed")),
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
    let (status, error) = match ctx
        .app
        .signin
        .confirm_code(&cur.user, form.get("code"), ctx.ip)
        .await?
    {
        Confirmed::Right => return Ok(Ok(())),
        Confirmed::NotOn => (StatusCode::CONFLICT, ctx.t("account.not_on")),
        Confirmed::Wrong => (StatusCode::UNAUTHORIZED, ctx.t("account.wrong")),
    };
    Ok(Err(page(ctx, cur, status, None, Some(error)).await?))
}

pub async fn regenerate_codes(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    let cur = match complete(ctx).await? {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    if let Err(resp) = verify_current_code(ctx, &cur, &form).await? {
        return Ok(resp);
    }
    let codes = ctx.app.signin.regenerate_codes(&cur.user, ctx.ip).await?;
    Ok(super::codes::page(
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
    ctx.app.signin.forget_devices(&cur.user, ctx.ip).await?;
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
    if ctx.app.signin.requires_2fa(&cur.user) {
        return Err(GatewayError::MissingRole);
    }
    if let Err(resp) = verify_current_code(ctx, &cur, &form).await? {
        return Ok(resp);
    }
    let app = ctx.app;
    app.signin.disable_2fa(&cur.user, ctx.ip).await?;
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
