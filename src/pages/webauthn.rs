//! `P/webauthn/…`: the JSON endpoints of the security-key ceremonies (SPEC §10), used
//! by `assets/app.js`. Each is a `POST` of `application/json` whose `csrf_token` is
//! checked exactly as a form's (403, nothing changed, when it is not valid); the
//! answer is JSON: `{"ceremony", "options"}` from a `start`, `{"redirect"}` (and the
//! new session cookie) from a `finish` that succeeded, `401 {"error":"key_refused"}`
//! from one that did not.
//!
//! | route | session needed |
//! | --- | --- |
//! | `register/start`, `register/finish` | enrolling (staff at first sign-in), or complete (account page) |
//! | `challenge/start`, `challenge/finish` | password done, a key registered |
//! | `passwordless/start`, `passwordless/finish` | none (`webauthn.passwordless = true`) |

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::json;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::{Ctx, current, next_step};
use crate::core::auth_flow::{SecondFactor, Stage};
use crate::core::clock::now_ms;
use crate::http::body::{Body, RequestBody};
use crate::http::error::GatewayError;
use crate::session::Current;
use crate::signin::Next;
use crate::signin::code_step::Challenged;
use crate::signin::security_keys::{Registered, clean_name};

/// An attestation with its certificates fits well within this.
const MAX_JSON_BYTES: usize = 64 * 1024;

/// What the script posts.
#[derive(Deserialize)]
pub(super) struct KeyRequest {
    /// Missing reads as empty, which no browser's token is: 403 like a form without it.
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    credential: Option<serde_json::Value>,
    #[serde(default)]
    rd: String,
    #[serde(default)]
    remember_device: bool,
}

/// Reads a bounded JSON body and checks its CSRF token as [`super::read_form`] does.
pub(super) async fn read_json<B: RequestBody>(
    ctx: &Ctx<'_>,
    body: B,
) -> Result<KeyRequest, GatewayError> {
    let json = ctx
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(GatewayError::BadRequest("expected application/json"));
    }
    let bytes: Bytes = Limited::new(body, MAX_JSON_BYTES)
        .collect()
        .await
        .map_err(|_| GatewayError::PayloadTooLarge)?
        .to_bytes();
    let req: KeyRequest =
        serde_json::from_slice(&bytes).map_err(|_| GatewayError::BadRequest("malformed JSON"))?;
    if !ctx.app.csrf.verify(&ctx.headers, Some(&req.csrf_token)) {
        return Err(GatewayError::Csrf);
    }
    Ok(req)
}

fn ok(ctx: &Ctx<'_>, value: &serde_json::Value, cookies_out: &[String]) -> Response<Body> {
    let mut resp = super::render::json(StatusCode::OK, value, ctx.tls);
    super::render::add_cookies(&mut resp, cookies_out);
    resp
}

fn refused(ctx: &Ctx<'_>) -> Response<Body> {
    super::render::json(
        StatusCode::UNAUTHORIZED,
        &json!({ "error": "key_refused" }),
        ctx.tls,
    )
}

fn started(ctx: &Ctx<'_>, s: crate::signin::security_keys::Started) -> Response<Body> {
    ok(
        ctx,
        &json!({ "ceremony": s.ceremony, "options": s.options }),
        &[],
    )
}

fn credential<T: serde::de::DeserializeOwned>(req: &KeyRequest) -> Result<T, GatewayError> {
    req.credential
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or(GatewayError::BadRequest("malformed credential"))
}

/// The 401 of §5.1 for a ceremony without the session it needs.
fn signed_out(ctx: &Ctx<'_>) -> Response<Body> {
    super::render::authentication_required(&ctx.app.cfg.server.prefix, ctx.tls)
}

/// The session that may register a key: enrolling, or complete (`.1` says which).
async fn registering(
    ctx: &Ctx<'_>,
) -> Result<Result<(Current, bool), Response<Body>>, GatewayError> {
    let cur = current(ctx).await?;
    match (next_step(ctx, cur.as_ref()).await?, cur) {
        (Next::Enroll, Some(c)) => Ok(Ok((c, false))),
        (Next::Complete { .. }, Some(c)) => Ok(Ok((c, true))),
        (Next::Challenge, Some(_)) => Err(GatewayError::Denied),
        _ => Ok(Err(signed_out(ctx))),
    }
}

pub async fn register_start(
    ctx: &Ctx<'_>,
    req: KeyRequest,
) -> Result<Response<Body>, GatewayError> {
    let (cur, _) = match registering(ctx).await? {
        Ok(x) => x,
        Err(resp) => return Ok(resp),
    };
    let name = clean_name(&req.name, ctx.t("webauthn.name_default"));
    let s = ctx.app.signin.key_register_start(&cur.user, &name).await?;
    Ok(started(ctx, s))
}

pub async fn register_finish(
    ctx: &Ctx<'_>,
    req: KeyRequest,
) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let (cur, complete) = match registering(ctx).await? {
        Ok(x) => x,
        Err(resp) => return Ok(resp),
    };
    let answer: RegisterPublicKeyCredential = credential(&req)?;
    let first = match app
        .signin
        .key_register_finish(&cur.user, &req.ceremony, &answer, ctx.ip)
        .await?
    {
        Registered::Right { first } => first,
        Registered::Wrong => return Ok(refused(ctx)),
    };
    if complete && !first {
        // Another key for a user who had a second factor: nothing else changes.
        return Ok(ok(ctx, &json!({ "redirect": ctx.p("/account") }), &[]));
    }
    // The first second factor (enrollment, or a patient turning 2FA on): the session
    // is now complete with the key, and every other session ends (SPEC §6).
    let stage = Stage::Complete {
        factor: Some(SecondFactor::Webauthn),
    };
    let Some(cookie) = app
        .sessions
        .rotate_ending_others(&cur, stage, now_ms())
        .await?
    else {
        return Ok(signed_out(ctx));
    };
    app.signin.enrollment_done(&cur.user, 0, ctx.ip);
    let rd = if complete {
        ctx.p("/account")
    } else {
        ctx.rd(&req.rd)
    };
    Ok(ok(ctx, &json!({ "redirect": rd }), &[cookie]))
}

/// A password-done session whose next step is the challenge.
async fn challenged(ctx: &Ctx<'_>) -> Result<Result<Current, Response<Body>>, GatewayError> {
    let cur = current(ctx).await?;
    match (next_step(ctx, cur.as_ref()).await?, cur) {
        (Next::Challenge, Some(c)) => Ok(Ok(c)),
        (Next::Complete { .. }, Some(_)) => Err(GatewayError::Denied),
        _ => Ok(Err(signed_out(ctx))),
    }
}

pub async fn challenge_start(
    ctx: &Ctx<'_>,
    _req: KeyRequest,
) -> Result<Response<Body>, GatewayError> {
    let cur = match challenged(ctx).await? {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    match ctx.app.signin.key_challenge_start(&cur.user).await? {
        Some(s) => Ok(started(ctx, s)),
        None => Err(GatewayError::NotFound),
    }
}

pub async fn challenge_finish(
    ctx: &Ctx<'_>,
    req: KeyRequest,
) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let cur = match challenged(ctx).await? {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    let answer: PublicKeyCredential = credential(&req)?;
    let verified = match app
        .signin
        .key_challenge_finish(&cur.user, &req.ceremony, &answer, ctx.ip)
        .await?
    {
        Challenged::Right(v) => v,
        Challenged::Wrong | Challenged::NotEnrolled => return Ok(refused(ctx)),
    };
    let stage = Stage::Complete {
        factor: Some(verified.factor),
    };
    let Some(cookie) = app.sessions.rotate(&cur, stage, None, now_ms()).await? else {
        return Ok(signed_out(ctx));
    };
    let mut cookies_out = vec![cookie];
    if req.remember_device
        && let Some(device) = app
            .signin
            .remember_browser(
                &cur.user,
                crate::http::user_agent::describe(&ctx.headers),
                ctx.ip,
            )
            .await?
    {
        cookies_out.push(
            app.device_cookie
                .set(&device.token, Some(device.max_age_secs as i64)),
        );
    }
    Ok(ok(
        ctx,
        &json!({ "redirect": ctx.rd(&req.rd) }),
        &cookies_out,
    ))
}

pub async fn passwordless_start(
    ctx: &Ctx<'_>,
    _req: KeyRequest,
) -> Result<Response<Body>, GatewayError> {
    let s = ctx.app.signin.passwordless_start().await?;
    Ok(started(ctx, s))
}

pub async fn passwordless_finish(
    ctx: &Ctx<'_>,
    req: KeyRequest,
) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let answer: PublicKeyCredential = credential(&req)?;
    let Some(user) = app
        .signin
        .passwordless_finish(&req.ceremony, &answer, ctx.ip)
        .await?
    else {
        return Ok(refused(ctx));
    };
    let next = Next::Complete {
        factor: Some(SecondFactor::Passkey),
    };
    let stage = Stage::Complete {
        factor: Some(SecondFactor::Passkey),
    };
    let previous = app.sessions.presented(&ctx.headers);
    let cookie = app
        .sessions
        .issue(
            &user,
            stage,
            previous.as_ref(),
            None,
            now_ms(),
            // A passkey with user verification is a fresh second-factor proof.
            crate::core::store::SessionMeta {
                factor_ms: Some(now_ms()),
                ..ctx.session_meta()
            },
        )
        .await?;
    app.signin.signed_in(&user, next, ctx.ip);
    Ok(ok(ctx, &json!({ "redirect": ctx.rd(&req.rd) }), &[cookie]))
}
