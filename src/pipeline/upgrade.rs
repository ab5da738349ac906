//! The upgrade step: whether the request is a WebSocket handshake (the only upgrade
//! there is), whether it comes from this site, and the terms its tunnel will run
//! under — the connection's slot, the idle timeout, and for an authenticated
//! handshake the watch that closes the tunnel when its session ends.

use std::sync::Arc;

use http::Request;

use super::session_watch::SessionWatch;
use crate::app::App;
use crate::core::store::Fingerprint;
use crate::http::error::GatewayError;
use crate::http::peer::{ConnectionLease, Peer};
use crate::proxy::tunnel::{Opening, Revalidate, Terms};
use crate::proxy::websocket;

/// The WebSocket opening to forward, if the request is a handshake; `session` is the
/// session that authorised it (its fingerprint and the roles the rule required), none
/// on bypass paths. A handshake from another site is refused.
pub(super) fn opening<B>(
    app: &Arc<App>,
    req: &Request<B>,
    peer: Peer,
    lease: ConnectionLease,
    session: Option<(Fingerprint, crate::core::policy::Roles<'_>)>,
    idle_timeout: std::time::Duration,
) -> Result<Option<Box<Opening>>, GatewayError> {
    let Some(handshake) = websocket::requested(req.method(), req.version(), req.headers()) else {
        return Ok(None);
    };
    check_origin(app, req, peer)?;
    let session = session.map(|(id, roles)| {
        Box::new(SessionWatch::new(app.clone(), id, roles)) as Box<dyn Revalidate>
    });
    Ok(Some(Box::new(Opening {
        handshake,
        terms: Terms {
            lease,
            idle_timeout,
            session,
        },
    })))
}

/// Refuses a WebSocket handshake opened from another site. The site's scheme is https
/// under TLS, or when a trusted TLS-terminating proxy says so in X-Forwarded-Proto.
fn check_origin<B>(app: &App, req: &Request<B>, peer: Peer) -> Result<(), GatewayError> {
    let https = peer.tls
        || (crate::http::client_ip::is_trusted(peer.addr.ip(), &app.cfg.server.trusted_proxies)
            && req
                .headers()
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https")));
    if !websocket::origin_allowed(req.headers(), https) {
        return Err(GatewayError::ForeignOrigin);
    }
    Ok(())
}
