//! `P/login`: the password step. Unknown users, wrong passwords and disabled accounts
//! get the same message, status and (decoy-hash) cost; locks answer 429 for all alike.
//! Each attempt is reserved (counted) before its password is checked.

use http::{Response, StatusCode};
use serde_json::json;

use super::render::{self, LoginPage};
use super::{Ctx, Form};
use crate::core::auth_flow::{self, Next, SecondFactor, Stage};
use crate::core::clock::now_ms;
use crate::core::lockout::{LockState, Reservation, Step};
use crate::core::redirect::safe_target;
use crate::core::store::DeviceRecord;
use crate::core::tokens::{fingerprint, looks_like_token, new_token};
use crate::core::user::{MAX_USERNAME_LEN, User, lockout_key};
use crate::http::body::Body;
use crate::http::cookies;
use crate::http::error::GatewayError;
use crate::metrics::{CodeMethod, LockStep, LoginResult};

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

/// Runs argon2 on the low-priority hashing threads, never on the async workers.
async fn verify_off_thread(
    ctx: &Ctx<'_>,
    password: String,
    hash: String,
) -> Result<bool, GatewayError> {
    ctx.app
        .hashing
        .verify(zeroize::Zeroizing::new(password), hash)
        .await
        .map_err(|e| match e {
            crate::hash_pool::HashPoolError::Busy => GatewayError::RateLimited {
                retry_after_secs: 5,
            },
            crate::hash_pool::HashPoolError::Gone => GatewayError::Internal(e.to_string()),
        })
}

/// The name an audit line about a failed sign-in carries: a known user's stored name,
/// or — for a name no account has (perhaps a password typed into the wrong field) — the
/// typed text cut short and marked `user_exists: false`.
fn audited_name(
    app: &crate::app::App,
    typed: &str,
    details: serde_json::Value,
) -> (String, serde_json::Value) {
    match app.users.get().directory.find(typed) {
        Some(u) => (u.username.clone(), details),
        None => (
            crate::audit::typed_username(typed),
            crate::audit::unknown_user_details(details),
        ),
    }
}

pub async fn submit(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let rd = safe_target(form.get("rd"));
    let username = form.get("username").trim().to_string();
    // A name longer than any username can be is answered like a wrong password and
    // never reaches the store (SPEC §6): invented names cannot fill it. No user can
    // have such a name, so answering it unchecked reveals nothing.
    if username.is_empty() || username.len() > MAX_USERNAME_LEN || form.get("password").is_empty() {
        app.metrics.login(LoginResult::Failure);
        return Ok(form_page(
            ctx,
            StatusCode::UNAUTHORIZED,
            &rd,
            &username,
            Some(ctx.t("login.wrong")),
            None,
        ));
    }
    let key = lockout_key(&username);
    // The attempt is counted before the password is checked, in one atomic store call
    // (SPEC §6): at most `max_failures` wrong passwords are ever checked before the
    // lock holds, and an attempt that cannot be counted is refused (503) unchecked.
    let reservation = app
        .store
        .lock_reserve(&key, Step::Password, now_ms(), &app.lock_policy)
        .await?;
    let (record, imposed_lock) = match reservation {
        Reservation::Granted {
            record,
            imposed_lock,
        } => (record, imposed_lock),
        Reservation::Refused(state) => {
            let (who, details) = audited_name(app, &username, json!({ "reason": "locked" }));
            app.audit
                .event("login.failure", &who, Some(ctx.ip), details);
            app.metrics.login(LoginResult::Locked);
            let retry_after_ms = match state {
                LockState::Locked { retry_after_ms } => retry_after_ms,
                LockState::Open | LockState::Blocked => 1000,
            };
            return Err(GatewayError::Locked {
                retry_after_secs: retry_after_ms.div_ceil(1000),
            });
        }
    };
    let delay = app.velocity.delay(ctx.ip);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let snapshot = app.users.get();
    let user = snapshot.directory.find(&username).cloned();
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| snapshot.decoy_hash.clone());
    let matches = verify_off_thread(ctx, form.get("password").to_string(), hash).await?;
    let user = match user {
        Some(u) if matches && !u.disabled => u,
        other => {
            let reason = match other {
                None => "unknown_user",
                Some(u) if u.disabled => "disabled",
                Some(_) => "wrong_password",
            };
            app.velocity.failed(ctx.ip);
            // Already counted by the reservation.
            let (who, details) = audited_name(
                app,
                &username,
                json!({ "reason": reason, "failures": record.failures }),
            );
            app.audit
                .event("login.failure", &who, Some(ctx.ip), details);
            app.metrics.login(LoginResult::Failure);
            if imposed_lock {
                app.metrics.lockout(LockStep::Password);
                let (who, details) = audited_name(
                    app,
                    &username,
                    json!({ "failures": record.failures, "locks": record.locks }),
                );
                app.audit.event("login.locked", &who, Some(ctx.ip), details);
                if let LockState::Locked { retry_after_ms } = record.state(now_ms()) {
                    return Err(GatewayError::Locked {
                        retry_after_secs: retry_after_ms.div_ceil(1000),
                    });
                }
            }
            return Ok(form_page(
                ctx,
                StatusCode::UNAUTHORIZED,
                &rd,
                &username,
                Some(ctx.t("login.wrong")),
                None,
            ));
        }
    };
    // A right password clears the counter, lifting a lock this very attempt imposed
    // in advance: no lock event for it.
    app.store.lock_reset(&key, Step::Password).await?;
    let requires = app.roles.requires_2fa(&user.roles);
    let mfa_on = app.store.mfa_get(&user.username).await?.is_some();
    let mut next = auth_flow::after_password(requires, mfa_on);
    let mut cookies_out = Vec::new();
    let mut factor = None;
    if next == Next::Challenge
        && let Some(cookie) = remembered_device(ctx, &user).await?
    {
        cookies_out.push(cookie);
        next = Next::Complete;
        factor = Some(SecondFactor::RememberedDevice);
    }
    let stage = if next == Next::Complete {
        Stage::Complete { factor }
    } else {
        Stage::PasswordDone
    };
    let previous = app.sessions.presented(&ctx.headers);
    cookies_out.push(
        app.sessions
            .issue(&user, stage, previous.as_ref(), None, now_ms())
            .await?,
    );
    let next_name = match next {
        Next::Complete => "complete",
        Next::Enroll => "setup",
        Next::Challenge => "challenge",
    };
    app.metrics.login(LoginResult::Success);
    app.audit.event(
        "login.success",
        &user.username,
        Some(ctx.ip),
        json!({ "next": next_name, "mfa": auth_flow::mfa_label(factor) }),
    );
    let location = match next {
        Next::Complete => rd,
        Next::Enroll => format!("{}?rd={}", ctx.p("/setup"), super::encode_rd(&rd)),
        Next::Challenge => format!("{}?rd={}", ctx.p("/challenge"), super::encode_rd(&rd)),
    };
    Ok(render::redirect(
        StatusCode::SEE_OTHER,
        &location,
        ctx.tls,
        &cookies_out,
    ))
}

/// If this browser carries a valid remember-device token of `user`, uses it up and
/// returns the cookie carrying its replacement.
async fn remembered_device(ctx: &Ctx<'_>, user: &User) -> Result<Option<String>, GatewayError> {
    let app = ctx.app;
    if !app.cfg.remember_device.enabled {
        return Ok(None);
    }
    let Some(token) =
        cookies::get(&ctx.headers, &app.device_cookie).filter(|t| looks_like_token(t))
    else {
        return Ok(None);
    };
    let Some(rec) = app
        .store
        .device_take(&fingerprint(token), &user.username)
        .await?
    else {
        app.metrics.code_check(CodeMethod::RememberedDevice, false);
        return Ok(None);
    };
    let now = now_ms();
    if rec.expires_ms <= now || rec.credential != user.credential_fingerprint() {
        app.metrics.code_check(CodeMethod::RememberedDevice, false);
        return Ok(None);
    }
    app.metrics.code_check(CodeMethod::RememberedDevice, true);
    let fresh = new_token();
    let next = DeviceRecord {
        created_ms: rec.created_ms,
        ..rec
    };
    app.store.device_put(&fingerprint(&fresh), &next).await?;
    let max_age = (next.expires_ms.saturating_sub(now) / 1000) as i64;
    Ok(Some(cookies::set(
        &app.device_cookie,
        &fresh,
        ctx.tls,
        Some(max_age),
    )))
}
