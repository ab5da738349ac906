//! The session and decision steps: for a path whose rule asks for sign-in, the
//! request's session must be complete (the sign-in service's `next_step` says so, with
//! no store call beyond the session's own) and its user must hold the rule's roles.
//! Any doubt — a store error, an unparsable cookie, expiry, a disabled user, a changed
//! password — means no. Without a complete session, browser navigations are sent to
//! their next sign-in step and everything else gets the 401 JSON.

use std::sync::Arc;

use http::{Request, Response, StatusCode};

use super::Trace;
use crate::app::App;
use crate::core::auth_flow::SecondFactor;
use crate::core::clock::now_ms;
use crate::core::policy::{Decision, Roles};
use crate::core::store::Fingerprint;
use crate::core::user::User;
use crate::http::body::Body;
use crate::http::error::GatewayError;
use crate::http::facts;
use crate::metrics::Outcome;
use crate::pages;
use crate::pages::render::authentication_required;
use crate::session::Current;
use crate::signin::Next;
use crate::signin::next_step::completed;

/// Who a forwarded request is forwarded as.
pub(super) struct Holder<'a> {
    pub(super) user: Arc<User>,
    pub(super) factor: Option<SecondFactor>,
    /// The session's fingerprint (a WebSocket tunnel's watch re-checks it).
    pub(super) id: Fingerprint,
    /// The roles the rule required (the tunnel's watch re-checks them too).
    pub(super) roles: Roles<'a>,
}

/// What the rule and the session decided.
pub(super) enum Access<'a> {
    /// A bypass path: forwarded without identity.
    Open,
    /// A complete session holding the rule's roles.
    Granted(Holder<'a>),
    /// Not (yet) signed in far enough; the session, if there is one.
    SignIn(Option<Current>),
}

/// Applies `decision` to the request's session.
pub(super) async fn check<'a, B>(
    app: &App,
    req: &Request<B>,
    decision: Decision<'a>,
    trace: &mut Trace,
) -> Result<Access<'a>, GatewayError> {
    let roles = match decision {
        Decision::Deny => return Err(GatewayError::Denied),
        Decision::Bypass => return Ok(Access::Open),
        Decision::Authenticated { roles } => roles,
    };
    let current = app
        .sessions
        .load(req.headers(), &*app.users, now_ms())
        .await?;
    let complete = current
        .as_ref()
        .and_then(|c| completed(c.record.stage, app.signin.requires_2fa(&c.user)).map(|f| (c, f)));
    let Some((c, factor)) = complete else {
        trace.user = current.as_ref().map(|c| c.user.clone());
        return Ok(Access::SignIn(current));
    };
    trace.user = Some(c.user.clone());
    if !roles.allow(&c.user.roles) {
        return Err(GatewayError::MissingRole);
    }
    Ok(Access::Granted(Holder {
        user: c.user.clone(),
        factor,
        id: c.id,
        roles,
    }))
}

/// Without a complete session: browser navigations go to the next sign-in step,
/// everything else gets the 401 JSON. Nothing is forwarded.
pub(super) async fn sign_in<B>(
    app: &App,
    req: &Request<B>,
    current: Option<&Current>,
    trace: &mut Trace,
) -> Result<Response<Body>, GatewayError> {
    let tls = app.tls;
    if !facts::is_navigation(req.method(), req.headers()) {
        trace.outcome = Some(Outcome::Unauthorized401);
        return Ok(authentication_required(&app.cfg.server.prefix, tls));
    }
    let original = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let next = app
        .signin
        .next(current.map(|c| (c.record.stage, &*c.user)))
        .await?;
    let step = match next {
        Next::Enroll => "setup",
        Next::Challenge => "challenge",
        Next::Login | Next::SignInAgain | Next::Complete { .. } => "login",
    };
    let location = format!(
        "{}/{step}?rd={}",
        app.cfg.server.prefix,
        pages::encode_rd(original)
    );
    trace.outcome = Some(Outcome::RedirectedToLogin);
    Ok(pages::render::redirect(
        StatusCode::FOUND,
        &location,
        tls,
        &[],
    ))
}
