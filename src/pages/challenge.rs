//! `P/challenge`: the code step's page for users with 2FA on — a TOTP code or a backup
//! code, optionally remembering this browser. The sign-in service checks the code.

use http::{Response, StatusCode};

use super::render::{self, ChallengePage};
use super::{Ctx, Form, current, to_login};
use crate::core::auth_flow::{SecondFactor, Stage};
use crate::core::clock::now_ms;
use crate::core::policy::Decision;
use crate::core::user::User;
use crate::http::body::Body;
use crate::http::error::GatewayError;
use crate::http::user_agent;
use crate::session::Current;
use crate::signin::Next;
use crate::signin::code_step::Challenged;

async fn page(
    ctx: &Ctx<'_>,
    user: &User,
    rd: &str,
    status: StatusCode,
    error: Option<&str>,
    step_up: bool,
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
        step_up,
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

/// Whether a complete session with a second factor must give a fresh one before `rd`:
/// a rule deciding `rd` has a `max_factor_age` that the session's last proof does not
/// meet. The same rules and path reading as the proxy's decision, for every method a
/// rule may name (an API call's step-up for a `POST`-only rule comes here as a
/// navigation), the shortest age holding.
fn step_up_for(ctx: &Ctx<'_>, rd: &str, cur: &Current, factor: Option<SecondFactor>) -> bool {
    if factor.is_none() {
        return false;
    }
    // `rd` is a path on this host, or an absolute URL to another app's host (§8).
    let (host, target) = match rd.strip_prefix("https://") {
        Some(rest) => {
            let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..split];
            let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
            (Some(host.to_ascii_lowercase()), &rest[split..])
        }
        None => (ctx.host.clone(), rd),
    };
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let path = if path.is_empty() { "/" } else { path };
    let Ok(path) = crate::core::path::normalise(path) else {
        return false;
    };
    let apps = ctx.app.apps.get();
    let Ok(route) = apps.route(host.as_deref(), &path) else {
        return false;
    };
    let max_age = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        .into_iter()
        .filter_map(|m| match apps.decide(route, m, &path) {
            Decision::Authenticated {
                max_factor_age_ms, ..
            } => max_factor_age_ms,
            _ => None,
        })
        .min();
    let Some(max_age) = max_age else {
        return false;
    };
    cur.record
        .meta
        .factor_ms
        .is_none_or(|at| now_ms().saturating_sub(at) > max_age)
}

/// A password-done session of a user with 2FA on, or a complete one that needs a
/// step-up for `rd` (`true`), or where to go instead (as the sign-in service's next
/// step says).
async fn eligible(
    ctx: &Ctx<'_>,
    rd: &str,
) -> Result<Result<(Current, bool), Response<Body>>, GatewayError> {
    let cur = current(ctx).await?;
    let next = super::next_step(ctx, cur.as_ref()).await?;
    let to = |target: &str| render::redirect(StatusCode::SEE_OTHER, target, ctx.tls, &[]);
    match (next, cur) {
        (Next::Challenge, Some(cur)) => Ok(Ok((cur, false))),
        (Next::Login, _) | (Next::Challenge, None) => Ok(Err(to_login(ctx, rd))),
        (Next::Complete { factor }, Some(cur)) if step_up_for(ctx, rd, &cur, factor) => {
            Ok(Ok((cur, true)))
        }
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
        Ok((cur, step_up)) => page(ctx, &cur.user, &rd, StatusCode::OK, None, step_up).await,
        Err(resp) => Ok(resp),
    }
}

pub async fn submit(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let rd = ctx.rd(form.get("rd"));
    let (cur, step_up) = match eligible(ctx, &rd).await? {
        Ok(x) => x,
        Err(resp) => return Ok(resp),
    };
    let user = cur.user.clone();
    let checked = if step_up {
        app.signin.step_up(&user, form.get("code"), ctx.ip).await?
    } else {
        app.signin
            .challenge(&user, form.get("code"), ctx.ip)
            .await?
    };
    let verified = match checked {
        Challenged::Right(v) => v,
        Challenged::Wrong => {
            return page(
                ctx,
                &user,
                &rd,
                StatusCode::UNAUTHORIZED,
                Some(ctx.t("challenge.wrong")),
                step_up,
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
                step_up,
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
    // A step-up keeps the session's start (its absolute timeout runs on).
    let started = step_up.then_some(cur.record.created_ms);
    let Some(cookie) = app.sessions.rotate(&cur, stage, started, now_ms()).await? else {
        // Revoked or signed out while the code was checked.
        return Ok(to_login(ctx, &rd));
    };
    let mut cookies_out = vec![cookie];
    if form.has("remember_device")
        && factor != SecondFactor::RememberedDevice
        && !step_up
        && let Some(device) = app
            .signin
            .remember_browser(&user, user_agent::describe(&ctx.headers), ctx.ip)
            .await?
    {
        cookies_out.push(
            app.device_cookie
                .set(&device.token, Some(device.max_age_secs as i64)),
        );
    }
    Ok(render::redirect(
        StatusCode::SEE_OTHER,
        &rd,
        ctx.tls,
        &cookies_out,
    ))
}
