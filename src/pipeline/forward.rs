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
use crate::core::auth_flow::mfa_label;
use crate::core::clock::now_ms;
use crate::http::body::{Body, RequestBody};
use crate::http::error::GatewayError;
use crate::http::peer::{ConnectionLease, Peer};
use crate::metrics::Outcome;
use crate::proxy::identity_headers::Identity;

/// The app name of a configuration without `[[apps]]` (SPEC §8): the assertion's `aud`.
const DEFAULT_APP: &str = "default";

/// Forwards `req` as `holder` (none on bypass paths) to `pq` upstream.
pub(super) async fn send<B: RequestBody>(
    app: &Arc<App>,
    req: Request<B>,
    pq: PathAndQuery,
    peer: Peer,
    lease: ConnectionLease,
    holder: Option<Holder<'_>>,
    trace: &mut Trace,
) -> Result<Response<Body>, GatewayError> {
    let session = holder.as_ref().map(|h| (h.id, h.roles));
    let websocket = upgrade::opening(app, &req, peer, lease, session)?;
    let roles_joined = holder.as_ref().map(|h| h.user.roles_joined());
    let assertion = match (&app.assertions, &holder) {
        (Some(signer), Some(h)) => Some(
            signer
                .header_for(&h.id, DEFAULT_APP, &h.user, h.factor, now_ms())
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
    let started = Instant::now();
    let resp = app
        .forwarder
        .forward(req, pq, peer, id.as_ref(), websocket)
        .await?;
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
