//! The spine of every request, in order:
//! method → host check → own pages? → normalise path → access rule → session →
//! upgrade → forward or refuse.
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
//! client), counts the outcome and writes the access line. What it needs to know of
//! the decision travels in a [`Trace`] filled by `decide`, not in allocations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::access_log::{self, Access};
use crate::app::App;
use crate::core::auth_flow::mfa_label;
use crate::core::clock::now_ms;
use crate::core::path::{normalise, without_parameters};
use crate::core::policy::{self, Decision};
use crate::http::body::Body;
use crate::http::error::GatewayError;
use crate::http::facts;
use crate::http::peer::{ConnectionLease, Peer};
use crate::http::request_id::{self, X_REQUEST_ID};
use crate::metrics::{Outcome, UpstreamError};
use crate::pages;
use crate::pages::render::authentication_required;
use crate::proxy::identity_headers::Identity;
use crate::proxy::tunnel::Opening;
use crate::router::{self, Route};
use crate::signin::Next;
use crate::signin::next_step::completed;

/// The app name of a configuration without `[[apps]]` (SPEC §8): the assertion's `aud`.
const DEFAULT_APP: &str = "default";

mod respond;
mod session_watch;
mod upgrade;

/// What the access line and the metrics need to know about how a request was decided.
#[derive(Default)]
pub struct Trace {
    /// Set when the request was forwarded or sent to sign in; otherwise the status decides.
    outcome: Option<Outcome>,
    /// The normalised path, once computed.
    path: Option<String>,
    /// Time until the upstream's response headers.
    upstream: Option<Duration>,
    user: Option<Arc<crate::core::user::User>>,
}

/// Answers one request. Never fails: every error becomes its response here. `lease`
/// is the request's hold on its connection, handed to a WebSocket tunnel if one opens.
pub async fn handle(
    app: Arc<App>,
    peer: Peer,
    mut req: Request<Incoming>,
    lease: ConnectionLease,
) -> Response<Body> {
    let started = Instant::now();
    let rid = request_id::assign(
        req.headers_mut(),
        peer.addr.ip(),
        &app.cfg.server.trusted_proxies,
    );
    let html = facts::accepts_html(req.headers());
    // Error pages for people speak their language; keep the header (a refcount bump).
    let language = html
        .then(|| req.headers().get(http::header::ACCEPT_LANGUAGE).cloned())
        .flatten();
    // Cheap clones (shared bytes), kept only when an access line will be written.
    let logged = app
        .cfg
        .log
        .access_log
        .then(|| (req.method().clone(), req.uri().clone()));
    let mut trace = Trace::default();
    let mut resp = match decide(&app, peer, req, lease, &mut trace).await {
        Ok(resp) => resp,
        Err(e) => {
            match e {
                GatewayError::UpstreamUnreachable(_) => {
                    app.metrics.upstream_error(UpstreamError::Connect)
                }
                GatewayError::UpstreamTimeout => app.metrics.upstream_error(UpstreamError::Timeout),
                _ => {}
            }
            let mut lang_headers = http::HeaderMap::new();
            if let Some(v) = language {
                lang_headers.insert(http::header::ACCEPT_LANGUAGE, v);
            }
            let tr = crate::pages::i18n::for_request(&lang_headers, app.brand.default_lang);
            respond::error(e, html, &app.brand, tr, peer.tls)
        }
    };
    app.metrics.request(
        trace
            .outcome
            .unwrap_or_else(|| Outcome::from_status(resp.status())),
    );
    if let Some((method, uri)) = logged {
        access_log::write(&Access {
            method: &method,
            path: trace.path.as_deref().unwrap_or(uri.path()),
            status: resp.status(),
            upstream: trace.upstream,
            total: started.elapsed(),
            request_id: rid.to_str().unwrap_or(""),
            user: trace.user.as_deref().map(|u| u.username.as_str()),
        });
    }
    resp.headers_mut().insert(&X_REQUEST_ID, rid);
    resp
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

/// Forwards and records how long the upstream took (to its response headers).
async fn forward(
    app: &App,
    req: Request<Incoming>,
    pq: PathAndQuery,
    peer: Peer,
    id: Option<&Identity<'_>>,
    websocket: Option<Box<Opening>>,
    trace: &mut Trace,
) -> Result<Response<Body>, GatewayError> {
    let started = Instant::now();
    let resp = app.forwarder.forward(req, pq, peer, id, websocket).await?;
    let took = started.elapsed();
    app.metrics.upstream_time(took);
    trace.upstream = Some(took);
    trace.outcome = Some(if id.is_some() {
        Outcome::Forwarded
    } else {
        Outcome::Bypassed
    });
    Ok(resp)
}

async fn decide(
    app: &Arc<App>,
    peer: Peer,
    req: Request<Incoming>,
    lease: ConnectionLease,
    trace: &mut Trace,
) -> Result<Response<Body>, GatewayError> {
    // TRACE echoes the request (cookies included) back to whoever can read the answer,
    // and nothing behind a gateway needs it: refused everywhere, before anything else.
    if is_trace(req.method()) {
        return Err(GatewayError::MethodNotAllowed);
    }
    if router::header_bytes(req.headers()) > app.cfg.server.max_request_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    let route = router::route(&app.cfg.server, &req)?;
    let path = match route {
        // Boxed: the pages' futures are large, and every proxied request would
        // otherwise carry (and move) their space.
        Route::Own => return Box::pin(pages::serve(app, peer, req)).await,
        Route::Upstream => normalise(req.uri().path())
            .map_err(|_| GatewayError::BadRequest("path cannot be normalised"))?,
    };
    // Also without `;parameters`: a servlet container reads `/P;x/…` as `/P/…`.
    if router::is_own_path(&app.cfg.server.prefix, &path)
        || router::is_own_path(&app.cfg.server.prefix, &without_parameters(&path))
    {
        return Err(GatewayError::BadRequest(
            "path resolves into the gateway's reserved prefix",
        ));
    }
    let unchanged = req.uri().path() == &*path;
    let pq = match req.uri().path_and_query() {
        // Already normal (the common case): forward the request's own bytes.
        Some(original) if unchanged => original.clone(),
        _ => {
            let pq = match req.uri().query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            PathAndQuery::try_from(pq)
                .map_err(|_| GatewayError::BadRequest("invalid path or query"))?
        }
    };
    let policy = &app.cfg.policy;
    let decision = policy::decide(
        &policy.rules,
        policy.path_case,
        req.method().as_str(),
        &path,
    );
    // The access line falls back to the request's own path when that is the normal one.
    trace.path = (!unchanged).then(|| path.into_owned());

    // One forward call for both branches: the request's future then holds the
    // upstream exchange once, not once per branch.
    let holder = match decision {
        Decision::Deny => return Err(GatewayError::Denied),
        Decision::Bypass => None,
        Decision::Authenticated { roles } => {
            let users = app.users.get();
            let now = now_ms();
            let current = app.sessions.load(req.headers(), &users, now).await?;
            let complete = current.as_ref().and_then(|c| {
                completed(c.record.stage, app.signin.requires_2fa(&c.user)).map(|f| (c, f))
            });
            let Some((c, factor)) = complete else {
                trace.user = current.as_ref().map(|c| c.user.clone());
                return Box::pin(next_step(app, &req, current.as_ref(), trace)).await;
            };
            trace.user = Some(c.user.clone());
            if !roles.allow(&c.user.roles) {
                return Err(GatewayError::MissingRole);
            }
            Some((c.user.clone(), factor, c.id, roles))
        }
    };
    let session = holder.as_ref().map(|(_, _, id, roles)| (*id, *roles));
    let websocket = upgrade::opening(app, &req, peer, lease, session)?;
    let roles_joined = holder.as_ref().map(|(user, ..)| user.roles_joined());
    let assertion = match (&app.assertions, &holder) {
        (Some(signer), Some((user, factor, id, _))) => Some(
            signer
                .header_for(id, DEFAULT_APP, user, *factor, now_ms())
                .map_err(|e| GatewayError::Internal(e.to_string()))?,
        ),
        _ => None,
    };
    let id = holder.as_ref().map(|(user, factor, ..)| Identity {
        user: &user.username,
        email: &user.email,
        name: &user.display_name,
        roles: roles_joined.as_deref().unwrap_or_default(),
        mfa: mfa_label(*factor),
        assertion,
    });
    forward(app, req, pq, peer, id.as_ref(), websocket, trace).await
}

/// `TRACE`, and `TRACK` (the same thing under IIS's name).
fn is_trace(method: &http::Method) -> bool {
    method == http::Method::TRACE || method.as_str() == "TRACK"
}

/// Without a complete session: browser navigations go to the next sign-in step,
/// everything else gets the 401 JSON. Nothing is forwarded.
async fn next_step(
    app: &App,
    req: &Request<Incoming>,
    current: Option<&crate::session::Current>,
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
