//! The path step: the upstream path in normal form (dot segments resolved, encodings
//! decoded once), refused when it would land in the gateway's reserved prefix — also
//! without `;parameters`, since a servlet container reads `/P;x/…` as `/P/…`. The
//! access rule is then decided on this normal path, and it is what is forwarded.

use std::borrow::Cow;

use http::Request;
use http::uri::PathAndQuery;

use super::Trace;
use crate::app::App;
use crate::apps::{AppRoute, Apps, NoApp};
use crate::core::path::{normalise, without_parameters};
use crate::http::error::GatewayError;
use crate::router;

/// The normal path of an upstream request and the path-and-query to forward.
pub(super) struct Target<'r> {
    pub(super) path: Cow<'r, str>,
    pub(super) pq: PathAndQuery,
    /// The request's own path was already normal (the common case).
    unchanged: bool,
}

impl Target<'_> {
    /// Leaves the normal path for the access line (only when it differs from the
    /// request's own, which the line falls back to) and keeps what is forwarded:
    /// without the app's prefix when it strips it ("/lab/x?q" reaches it as "/x?q").
    pub(super) fn into_forwarded(
        self,
        route: &AppRoute,
        trace: &mut Trace,
    ) -> Result<PathAndQuery, GatewayError> {
        let pq = match route.strip_prefix {
            false => self.pq,
            true => {
                let rest = &self.pq.as_str()[route.prefix.len().min(self.pq.as_str().len())..];
                let stripped = match rest.as_bytes().first() {
                    Some(b'/') => rest.to_string(),
                    _ => format!("/{rest}"),
                };
                PathAndQuery::try_from(stripped)
                    .map_err(|_| GatewayError::BadRequest("invalid path or query"))?
            }
        };
        trace.path = (!self.unchanged).then(|| self.path.into_owned());
        Ok(pq)
    }

    /// Whether the request's own path was already its normal form. Forward-auth needs
    /// it: there the proxy forwards the path as the client sent it, not this one.
    pub(super) fn is_normal(&self) -> bool {
        self.unchanged
    }

    /// The app that takes this request (by its host and this normal path).
    pub(super) fn app<'t, B>(
        &self,
        apps: &'t Apps,
        req: &Request<B>,
    ) -> Result<&'t std::sync::Arc<AppRoute>, GatewayError> {
        let host = if apps.routes_by_host() {
            router::host_key(req)
        } else {
            None
        };
        apps.route(host.as_deref(), &self.path)
            .map_err(|e| match e {
                NoApp::Unrouted => GatewayError::NotFound,
                NoApp::Ambiguous => GatewayError::BadRequest(
                    "the path's ;parameters would reach another application",
                ),
            })
    }
}

/// The request's path in normal form, or why it cannot be forwarded.
pub(super) fn resolve<'r, B>(app: &App, req: &'r Request<B>) -> Result<Target<'r>, GatewayError> {
    let path = normalise(req.uri().path())
        .map_err(|_| GatewayError::BadRequest("path cannot be normalised"))?;
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
    Ok(Target {
        path,
        pq,
        unchanged,
    })
}
