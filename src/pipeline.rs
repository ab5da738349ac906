//! The spine of every request, in order:
//! host check → own pages? → normalise path → access rule → session → forward or refuse.
//!
//! Invariants (each has a test):
//! 1. A client-supplied identity header never reaches the upstream — stripped before
//!    ours are set (`proxy::identity_headers`), on bypass paths too.
//! 2. A protected path is forwarded only with a complete session; any doubt (store
//!    error, unparsable cookie, expiry, disabled user, changed password) means no.
//! 3. The session id changes at every privilege change; logout deletes it server-side.
//! 4. No request input can panic the process; no log line carries a secret.
//! 5. Password hashing never runs on the async workers.

use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::{now_ms, App};
use crate::core::auth_flow::{self, mfa_label};
use crate::core::path::normalise;
use crate::core::policy::{self, Decision};
use crate::http::body::Body;
use crate::http::error::{authentication_required, GatewayError};
use crate::http::facts;
use crate::pages;
use crate::proxy::forward::Peer;
use crate::proxy::identity_headers::Identity;
use crate::proxy::websocket;
use crate::router::{self, Route};

/// Answers one request. Never fails: every error becomes its response here.
pub async fn handle(app: Arc<App>, peer: Peer, req: Request<Incoming>) -> Response<Body> {
    let html = facts::accepts_html(req.headers());
    match decide(&app, peer, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(html, &app.brand, peer.tls),
    }
}

async fn decide(app: &App, peer: Peer, req: Request<Incoming>) -> Result<Response<Body>, GatewayError> {
    if router::header_bytes(req.headers()) > app.cfg.server.max_request_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    let route = router::route(&app.cfg.server, &req)?;
    let path = match route {
        Route::Own => return pages::serve(app, peer, req).await,
        Route::Upstream => normalise(req.uri().path()).map_err(|_| GatewayError::BadRequest("path cannot be normalised"))?,
    };
    if router::is_own_path(&app.cfg.server.prefix, &path) {
        return Err(GatewayError::BadRequest("path resolves into the gateway's reserved prefix"));
    }
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let pq = PathAndQuery::try_from(pq).map_err(|_| GatewayError::BadRequest("invalid path or query"))?;

    match policy::decide(&app.cfg.policy.rules, req.method().as_str(), &path) {
        Decision::Deny => Err(GatewayError::Denied),
        Decision::Bypass => {
            check_upgrade_origin(&req, peer)?;
            app.forwarder.forward(req, pq, peer, None).await
        }
        Decision::Authenticated { roles } => {
            let users = app.users.get();
            let now = now_ms();
            let current = app.sessions.load(req.headers(), &users, now).await.map_err(|e| GatewayError::StoreUnavailable(e.to_string()))?;
            let complete = current
                .as_ref()
                .filter(|c| auth_flow::is_complete(c.record.stage, app.roles.requires_2fa(&c.user.roles)));
            let Some(c) = complete else {
                return next_step(app, &req, current.as_ref(), peer).await;
            };
            if !policy::roles_allow(roles, &c.user.roles) {
                return Err(GatewayError::MissingRole);
            }
            check_upgrade_origin(&req, peer)?;
            let factor = match c.record.stage {
                auth_flow::Stage::Complete { factor } => factor,
                auth_flow::Stage::PasswordDone => None,
            };
            let roles_joined = c.user.roles_joined();
            let id = Identity {
                user: &c.user.username,
                email: &c.user.email,
                name: &c.user.display_name,
                roles: &roles_joined,
                mfa: mfa_label(factor),
            };
            app.forwarder.forward(req, pq, peer, Some(&id)).await
        }
    }
}

fn check_upgrade_origin(req: &Request<Incoming>, peer: Peer) -> Result<(), GatewayError> {
    if websocket::is_upgrade(req.method(), req.headers()) && !websocket::origin_allowed(req.headers(), peer.tls) {
        return Err(GatewayError::ForeignOrigin);
    }
    Ok(())
}

/// Without a complete session: browser navigations go to the next sign-in step,
/// everything else gets the 401 JSON. Nothing is forwarded.
async fn next_step(app: &App, req: &Request<Incoming>, current: Option<&crate::session::Current>, _peer: Peer) -> Result<Response<Body>, GatewayError> {
    let tls = app.tls;
    if !facts::is_navigation(req.method(), req.headers()) {
        return Ok(authentication_required(&app.cfg.server.prefix, tls));
    }
    let original = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let step = match current {
        None => "login",
        Some(c) => {
            let mfa_on = app.store.mfa_get(&c.user.username).await.map_err(|e| GatewayError::StoreUnavailable(e.to_string()))?.is_some();
            match auth_flow::after_password(app.roles.requires_2fa(&c.user.roles), mfa_on) {
                auth_flow::Next::Enroll => "setup",
                auth_flow::Next::Challenge => "challenge",
                auth_flow::Next::Complete => "login",
            }
        }
    };
    let location = format!("{}/{step}?rd={}", app.cfg.server.prefix, pages::encode_rd(original));
    Ok(pages::render::redirect(StatusCode::FOUND, &location, tls, &[]))
}
