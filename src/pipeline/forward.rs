//! The last step of an upstream request: the WebSocket opening (if it is a handshake),
//! the identity the upstream is told (headers and, when configured, the signed
//! assertion), then the exchange itself, timed for the access line and the metrics.

use std::sync::Arc;
use std::time::Instant;

use http::uri::PathAndQuery;
use http::{Request, Response};

use super::Trace;
use super::access::Holder;
use super::upgrade;
use crate::app::App;
use crate::apps::AppRoute;
use crate::core::auth_flow::mfa_label;
use crate::core::clock::now_ms;
use crate::http::body::{Body, RequestBody};
use crate::http::error::GatewayError;
use crate::http::peer::{ConnectionLease, Peer};
use crate::metrics::Outcome;
use crate::proxy::answer_paths::AnswerPaths;
use crate::proxy::identity_headers::Identity;

/// Where a request goes: the app, the path-and-query it is sent, and whether the
/// path is one of the app's logout paths.
pub(super) struct To<'r> {
    pub(super) route: &'r Arc<AppRoute>,
    pub(super) pq: PathAndQuery,
    pub(super) logout: bool,
}

/// Forwards `req` as `holder` (none on bypass paths) to the app `to` names.
pub(super) async fn send<B: RequestBody>(
    app: &Arc<App>,
    req: Request<B>,
    to: To<'_>,
    peer: Peer,
    lease: ConnectionLease,
    holder: Option<Holder<'_>>,
    trace: &mut Trace,
) -> Result<Response<Body>, GatewayError> {
    let route = to.route;
    let session = holder.as_ref().map(|h| (h.id, h.roles));
    let websocket = upgrade::opening(
        app,
        &req,
        peer,
        lease,
        session,
        route.websocket_idle_timeout,
    )?;
    let roles_joined = holder.as_ref().map(|h| h.user.roles_joined());
    let assertion = match (&app.assertions, &holder) {
        (Some(signer), Some(h)) => Some(
            signer
                .header_for(&h.id, &route.name, &h.user, h.factor, now_ms())
                .map_err(|e| GatewayError::Internal(e.to_string()))?,
        ),
        _ => None,
    };
    let id = holder.as_ref().map(|h| Identity {
        user: &h.user.username,
        email: &h.user.email,
        name: &h.user.display_name,
        roles: roles_joined.as_deref().unwrap_or_default(),
        mfa: mfa_label(h.factor),
        assertion,
    });
    let client_host = client_host(&req);
    let started = Instant::now();
    let mut resp = route
        .forwarder
        .forward(req, to.pq, peer, id.as_ref(), websocket)
        .await?;
    let took = started.elapsed();
    route.metrics.upstream_time(took);
    trace.upstream = Some(took);
    trace.outcome = Some(if id.is_some() {
        Outcome::Forwarded
    } else {
        Outcome::Bypassed
    });
    let h = resp.headers();
    if route.strip_prefix
        || h.contains_key(http::header::LOCATION)
        || h.contains_key(http::header::CONTENT_LOCATION)
    {
        let scheme = if peer.tls { "https" } else { "http" };
        let client_origin = client_host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .map(|h| format!("{scheme}://{}", h.to_ascii_lowercase()));
        AnswerPaths {
            upstream_origin: &route.upstream_origin,
            client_origin: client_origin.as_deref(),
            stripped_prefix: route.strip_prefix.then_some(route.prefix.as_str()),
        }
        .apply(resp.headers_mut());
    }
    if to.logout
        && let Some(h) = &holder
    {
        end_session(app, &route.name, peer.addr.ip(), h, &mut resp).await;
    }
    Ok(resp)
}

/// The host the client addressed (`Host`, or the HTTP/2 authority), kept for mapping
/// the answer's addresses back (a shared-buffer clone, no copy).
fn client_host<B>(req: &Request<B>) -> Option<http::HeaderValue> {
    req.headers().get(http::header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
    })
}

/// A request to one of the app's logout paths was forwarded: the gateway session ends
/// too (server-side, and its cookie is cleared in the app's answer), so the next
/// visit signs in again instead of finding the gateway session still open.
async fn end_session(
    app: &App,
    app_name: &str,
    client_ip: std::net::IpAddr,
    holder: &Holder<'_>,
    resp: &mut Response<Body>,
) {
    if let Err(e) = app.sessions.end(&holder.id).await {
        tracing::error!(error = %e, "could not end the gateway session at the app's logout");
    }
    if let Ok(v) = http::HeaderValue::from_str(&app.sessions.clear_cookie()) {
        resp.headers_mut().append(http::header::SET_COOKIE, v);
    }
    app.audit.record(
        &holder.user.username,
        Some(client_ip),
        &crate::audit::AuditEvent::LogoutAtApp { app: app_name },
    );
}
