//! `P/account`: the user's 2FA status and the actions on it — new backup codes,
//! forget remembered browsers, turn 2FA off (where no role requires it), turn it on.

use http::{Response, StatusCode};

use super::render::{self, AccountPage, DeviceRow, PasswordErrors, SessionRow, human_time_in};
use super::{Ctx, Form, current, to_login};
use crate::audit::AuditEvent;
use crate::core::auth_flow::Stage;
use crate::core::clock::now_ms;
use crate::core::password_rules::Refused;
use crate::http::body::Body;
use crate::http::error::GatewayError;
use crate::session::Current;
use crate::signin::code_step::Confirmed;
use crate::signin::password_change::{Changed, CodeProblem, NewProblem, PasswordChange};

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
    page_with(ctx, cur, status, notice, error, PasswordErrors::default()).await
}

/// The account page, with the password form's field errors.
async fn page_with(
    ctx: &Ctx<'_>,
    cur: &Current,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
    pw: PasswordErrors<'_>,
) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let user = &cur.user;
    let now = now_ms();
    let key = handle_key(ctx);
    let mfa = app.store.mfa_get(&user.username).await?;
    let keys = super::keys::rows(ctx, user).await?;
    let (backup_left, devices) = if mfa.is_some() || !keys.is_empty() {
        let left = app.store.backup_count(&user.username).await?;
        let devices: Vec<DeviceRow> = app
            .sessions
            .devices(&key, user, now)
            .await?
            .into_iter()
            .map(|d| {
                let added = human_time_in(Some(d.record.created_ms), ctx.tr);
                DeviceRow {
                    label: ctx.tr.f2("account.device", &d.record.label, &added),
                    revoke_label: ctx.tr.f2(
                        "sessions.device_revoke_label",
                        &d.record.label,
                        &added,
                    ),
                    handle: d.handle,
                }
            })
            .collect();
        (left, devices)
    } else {
        (0, Vec::new())
    };
    let sessions: Vec<SessionRow> = app
        .sessions
        .list(&key, user, Some(&cur.id), now)
        .await?
        .into_iter()
        .map(|s| {
            let browser = if s.record.meta.browser.is_empty() {
                ctx.t("sessions.browser").to_string()
            } else {
                s.record.meta.browser.clone()
            };
            let started = human_time_in(Some(s.record.created_ms), ctx.tr);
            SessionRow {
                revoke_label: ctx.tr.f2("sessions.revoke_label", &browser, &started),
                browser,
                started,
                last_seen: human_time_in(Some(s.record.last_seen_ms), ctx.tr),
                address: s.record.meta.address,
                current: s.current,
                handle: s.handle,
            }
        })
        .collect();
    let others = sessions.iter().any(|s| !s.current);
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
        sessions: &sessions,
        others,
        min_password_length: app.cfg.users.min_password_length,
        password_here: app.signin.password_changes_here(),
        pw,
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

/// The key of the page's session and device handles.
fn handle_key(ctx: &Ctx<'_>) -> [u8; 32] {
    ctx.app.keys.get().derive(crate::session::HANDLE_PURPOSE)
}

/// Back to the account page with a notice.
fn done(ctx: &Ctx<'_>, what: &str, cookies: &[String]) -> Response<Body> {
    render::redirect(
        StatusCode::SEE_OTHER,
        &format!("{}?done={what}", ctx.p("/account")),
        ctx.tls,
        cookies,
    )
}

pub async fn show(ctx: &Ctx<'_>) -> Result<Response<Body>, GatewayError> {
    match complete(ctx).await? {
        Ok(cur) => {
            let notice = match ctx.query.get("done").map(String::as_str) {
                Some("forgotten") => Some(ctx.t("account.forgotten")),
                Some("disabled") => Some(ctx.t("account.disabled")),
                Some("revoked") => Some(ctx.t("sessions.revoked")),
                Some("all-revoked") => Some(ctx.t("sessions.all_revoked")),
                Some("device-forgotten") => Some(ctx.t("sessions.device_revoked")),
                Some("password") => Some(ctx.t("password.changed")),
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

/// `POST P/account/sessions/revoke`: ends one of the user's sessions by its handle
/// (`session`), or all but this one (`all_others = 1`). A handle that names none of
/// the user's sessions (ended already, or someone else's) changes nothing.
pub async fn revoke_session(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    let cur = match complete(ctx).await? {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    let app = ctx.app;
    if form.get("all_others") == "1" {
        let n = app.sessions.revoke_others(&cur.user, &cur.id).await?;
        app.audit.record(
            &cur.user.username,
            Some(ctx.ip),
            &AuditEvent::SessionsRevokedByUser {
                sessions: n,
                all_others: true,
            },
        );
        return Ok(done(ctx, "all-revoked", &[]));
    }
    let ended = app
        .sessions
        .revoke_handle(&handle_key(ctx), &cur.user, form.get("session"), now_ms())
        .await?;
    if !ended {
        return page(
            ctx,
            &cur,
            StatusCode::NOT_FOUND,
            None,
            Some(ctx.t("sessions.unknown")),
        )
        .await;
    }
    app.audit.record(
        &cur.user.username,
        Some(ctx.ip),
        &AuditEvent::SessionsRevokedByUser {
            sessions: 1,
            all_others: false,
        },
    );
    Ok(done(ctx, "revoked", &[]))
}

/// `POST P/account/devices/revoke`: forgets one remembered browser (`device`, a handle).
pub async fn revoke_device(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    let cur = match complete(ctx).await? {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    let app = ctx.app;
    let forgotten = app
        .sessions
        .forget_device_handle(&handle_key(ctx), &cur.user, form.get("device"))
        .await?;
    if !forgotten {
        return page(
            ctx,
            &cur,
            StatusCode::NOT_FOUND,
            None,
            Some(ctx.t("sessions.unknown")),
        )
        .await;
    }
    app.audit.record(
        &cur.user.username,
        Some(ctx.ip),
        &AuditEvent::DevicesForgotten {
            count: 1,
            by_admin: false,
            reason: None,
        },
    );
    Ok(done(ctx, "device-forgotten", &[]))
}

/// `POST P/account/password`: changes the user's password (SPEC §12). Problems are
/// answered per field on the account page (422; a wrong current password or code
/// 401); the typed passwords are never sent back.
pub async fn change_password(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    let cur = match complete(ctx).await? {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    let app = ctx.app;
    let min = app.cfg.users.min_password_length;
    let change = PasswordChange {
        current: form.get("current_password"),
        new: form.get("new_password"),
        confirm: form.get("new_password_confirm"),
        code: form.get("code"),
    };
    let user = match app
        .signin
        .change_password(&cur.user, change, min, ctx.ip)
        .await?
    {
        Changed::Done { user } => user,
        Changed::Refused(p) => {
            let too_short = ctx.tr.f("password.too_short", min);
            let errors = PasswordErrors {
                current: p.current_wrong.then(|| ctx.t("password.wrong_current")),
                new: p.new.map(|n| match n {
                    NewProblem::Rules(Refused::TooShort { .. }) => too_short.as_str(),
                    NewProblem::Rules(Refused::ContainsUsername) => {
                        ctx.t("password.contains_username")
                    }
                    NewProblem::Rules(Refused::Common) => ctx.t("password.common"),
                    NewProblem::SameAsCurrent => ctx.t("password.same"),
                }),
                confirm: p.mismatch.then(|| ctx.t("password.mismatch")),
                code: p.code.map(|c| match c {
                    CodeProblem::Missing => ctx.t("password.code_needed"),
                    CodeProblem::Wrong => ctx.t("password.code_wrong"),
                }),
            };
            let status = if p.current_wrong || p.code == Some(CodeProblem::Wrong) {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            return page_with(ctx, &cur, status, None, None, errors).await;
        }
    };
    // This session moves to the new password; every other one ends, and so does
    // every remembered browser (they were remembered under the old password).
    let moved = Current {
        id: cur.id,
        record: cur.record.clone(),
        user: user.clone(),
    };
    let Some((cookie, sessions_ended)) = app
        .sessions
        .rotate_ending_others_since(
            &moved,
            cur.record.stage,
            Some(cur.record.created_ms),
            now_ms(),
        )
        .await?
    else {
        return Ok(to_login(ctx, &ctx.p("/account")));
    };
    let devices_forgotten = app.store.devices_forget(&user.username).await?;
    app.audit.record(
        &user.username,
        Some(ctx.ip),
        &AuditEvent::PasswordChanged {
            sessions_ended,
            devices_forgotten,
        },
    );
    let clear_device = app.device_cookie.clear();
    Ok(done(ctx, "password", &[cookie, clear_device]))
}
