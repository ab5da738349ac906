//! The spine of every request, in order, one named step per line of [`decide`]:
//! screen (method, header size) → host (router: own page or upstream?) → path
//! (normal form) → rule (access policy) → session → decision (complete? roles?) →
//! forward, or the page of the next sign-in step. Each step has its own file below.
//!
//! Invariants (each has a test):
//! 1. A client-supplied identity header never reaches the upstream — stripped before
//!    ours are set (`proxy::identity_headers`), on bypass paths too.
//! 2. A protected path is forwarded only with a complete session; any doubt (store
//!    error, unparsable cookie, expiry, disabled user, changed password) means no.
//! 3. The session id changes at every privilege change; logout deletes it server-side.
//! 4. No request input can panic the process; no log line carries a secret.
//! 5. Password hashing never runs on the async workers.
//! 6. Only a WebSocket handshake is ever upgraded, and its tunnel is closed within
//!    60 s of the session that opened it ending (`upgrade`, `session_watch`).
//!
//! Around the spine, [`handle`] assigns the request id (sent upstream and back to the
//! client), turns a refusal into its response (`respond`, the one place for proxied
//! requests and own pages alike), counts the outcome and writes the access line. What
//! it needs to know of the decision travels in a [`Trace`] filled by `decide`, not in
//! allocations.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::app::App;
use crate::http::body::{Body, RequestBody};
use crate::http::error::GatewayError;
use crate::http::peer::{ConnectionLease, Peer};
use crate::metrics::Outcome;
use crate::pages;
use crate::router::{self, Route};

mod access;
mod forward;
mod forward_auth;
mod respond;
mod screen;
mod session_watch;
mod target;
mod upgrade;

/// What the access line and the metrics need to know about how a request was decided.
#[derive(Default)]
pub struct Trace {
    /// Set when the request was forwarded or sent to sign in; otherwise the status decides.
    outcome: Option<Outcome>,
    /// The normalised path, when it differs from the request's own.
    path: Option<String>,
    /// Time until the upstream's response headers.
    upstream: Option<Duration>,
    user: Option<Arc<crate::core::user::User>>,
    /// The app the request went to, once known.
    app: Option<Arc<crate::apps::AppRoute>>,
}

/// Answers one request. Never fails: every error becomes its response here. `lease`
/// is the request's hold on its connection, handed to a WebSocket tunnel if one opens.
pub async fn handle<B: RequestBody>(
    app: Arc<App>,
    peer: Peer,
    mut req: Request<B>,
    lease: ConnectionLease,
) -> Response<Body> {
    let answering = respond::Answering::begin(&app, peer, &mut req);
    let mut trace = Trace::default();
    let resp = match decide(&app, peer, req, lease, &mut trace).await {
        Ok(resp) => resp,
        Err(e) => answering.refused(&app, &trace, e, peer.tls),
    };
    answering.finish(&app, trace, resp)
}

/// The listeners hand every request to the pipeline.
impl crate::accept::Handler for App {
    fn handle(
        self: Arc<Self>,
        peer: Peer,
        req: Request<Incoming>,
        lease: ConnectionLease,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        handle(self, peer, req, lease)
    }
}

/// The spine.
async fn decide<B: RequestBody>(
    app: &Arc<App>,
    peer: Peer,
    req: Request<B>,
    lease: ConnectionLease,
    trace: &mut Trace,
) -> Result<Response<Body>, GatewayError> {
    screen::screen(app, &req)?;
    // The proxy's question in forward-auth mode names its own host (the protected
    // one) in its headers: decided there, before the host allow-list of this request.
    if let Some(endpoint) = forward_auth::endpoint(&app.cfg.server.prefix, req.uri().path()) {
        return Box::pin(forward_auth::answer(app, peer, req, endpoint, trace)).await;
    }
    match router::route(&app.cfg.server, &req)? {
        // Boxed: the pages' futures are large, and every proxied request would
        // otherwise carry (and move) their space.
        Route::Own => return Box::pin(pages::serve(app, peer, req)).await,
        Route::Upstream => {}
    }
    let target = target::resolve(app, &req)?;
    let apps = app.apps.get();
    let route = target.app(&apps, &req)?;
    trace.app = Some(route.clone());
    let decision = apps.decide(route, req.method().as_str(), &target.path);
    let logout = route.is_logout_path(&target.path, apps.path_case);
    let pq = target.into_forwarded(route, trace)?;
    let holder = match access::check(app, &req, decision, trace).await? {
        access::Access::Open => None,
        access::Access::Granted(holder) => Some(holder),
        access::Access::SignIn(current) => {
            return Box::pin(access::sign_in(app, &req, current.as_ref(), trace)).await;
        }
        access::Access::StepUp => return Ok(access::step_up(app, &req, trace)),
    };
    // One forward call for both branches: the request's future then holds the
    // upstream exchange once, not once per branch.
    let to = forward::To { route, pq, logout };
    forward::send(app, req, to, peer, lease, holder, trace).await
}

#[cfg(test)]
mod tests;
