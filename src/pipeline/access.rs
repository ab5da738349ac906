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
    /// A complete session whose last second-factor proof is older than the rule's
    /// `max_factor_age`: the code step again (a step-up).
    StepUp,
}

/// Applies `decision` to the request's session.
pub(super) async fn check<'a, B>(
    app: &App,
    req: &Request<B>,
    decision: Decision<'a>,
    trace: &mut Trace,
) -> Result<Access<'a>, GatewayError> {
    let (roles, max_factor_age_ms) = match decision {
        Decision::Deny => return Err(GatewayError::Denied),
        Decision::Bypass => return Ok(Access::Open),
        Decision::Authenticated {
            roles,
            max_factor_age_ms,
        } => (roles, max_factor_age_ms),
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
    if let Some(max_age) = max_factor_age_ms {
        match step_up_needed(factor, c.record.meta.factor_ms, max_age, now_ms()) {
            StepUp::Fresh => {}
            StepUp::Needed => return Ok(Access::StepUp),
            StepUp::Impossible => return Err(GatewayError::NoSecondFactor),
        }
    }
    Ok(Access::Granted(Holder {
        user: c.user.clone(),
        factor,
        id: c.id,
        roles,
    }))
}

/// What a `max_factor_age` rule makes of a complete session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepUp {
    /// The last proof is recent enough.
    Fresh,
    /// The code step again.
    Needed,
    /// The session was completed without a second factor: the user has none to give.
    Impossible,
}

/// Decides a step-up from the session's factor and its last proof's time: one
/// comparison on the hot path.
fn step_up_needed(
    factor: Option<SecondFactor>,
    proved_ms: Option<u64>,
    max_age_ms: u64,
    now_ms: u64,
) -> StepUp {
    match (factor, proved_ms) {
        (None, _) => StepUp::Impossible,
        (Some(_), Some(at)) if now_ms.saturating_sub(at) <= max_age_ms => StepUp::Fresh,
        (Some(_), _) => StepUp::Needed,
    }
}

/// A step-up: browser navigations go to the code step with `rd`, everything else
/// gets the 401 JSON naming it. Nothing is forwarded.
pub(super) fn step_up<B>(app: &App, req: &Request<B>, trace: &mut Trace) -> Response<Body> {
    let prefix = &app.cfg.server.prefix;
    trace.outcome = Some(Outcome::Unauthorized401);
    if !facts::is_navigation(req.method(), req.headers()) {
        return pages::render::json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({ "error": "step_up_required", "login": format!("{prefix}/challenge") }),
            app.tls,
        );
    }
    let original = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    trace.outcome = Some(Outcome::RedirectedToLogin);
    pages::render::redirect(
        StatusCode::FOUND,
        &format!("{prefix}/challenge?rd={}", pages::encode_rd(original)),
        app.tls,
        &[],
    )
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

#[cfg(test)]
mod step_up_tests {
    use super::*;

    #[test]
    fn a_recent_code_passes_an_old_one_or_a_remembered_browser_steps_up() {
        let totp = Some(SecondFactor::Totp);
        assert_eq!(
            step_up_needed(totp, Some(1_000), 300_000, 301_000),
            StepUp::Fresh
        );
        assert_eq!(
            step_up_needed(totp, Some(1_000), 300_000, 301_001),
            StepUp::Needed
        );
        // A session completed on a remembered browser has no proof time.
        let device = Some(SecondFactor::RememberedDevice);
        assert_eq!(step_up_needed(device, None, 300_000, 1), StepUp::Needed);
        assert_eq!(step_up_needed(None, None, 300_000, 1), StepUp::Impossible);
    }
}
