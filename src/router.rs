//! Decides only whose path a request is: the gateway's own (under `server.prefix`) or
//! the upstream's — after refusing hosts that are not served here.

use http::header::HOST;
use http::{HeaderMap, Request};

use crate::config::ServerConfig;
use crate::http::error::GatewayError;

/// Whose request this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Own,
    Upstream,
}

/// True when `path` lies under the reserved prefix.
pub fn is_own_path(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The request's host name without port, lower-case (`Host`, or `:authority` in HTTP/2).
pub fn host_name<B>(req: &Request<B>) -> Option<String> {
    let raw = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    let authority = raw.parse::<http::uri::Authority>().ok()?;
    Some(
        authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
    )
}

/// Applies the host allow-list (421, except for the health check) and picks the route.
pub fn route<B>(server: &ServerConfig, req: &Request<B>) -> Result<Route, GatewayError> {
    let path = req.uri().path();
    let own = is_own_path(&server.prefix, path);
    if !server.hostnames.is_empty() {
        let health = own && path == format!("{}/health", server.prefix);
        let allowed = host_name(req).is_some_and(|h| server.hostnames.contains(&h));
        if !allowed && !health {
            return Err(GatewayError::MisdirectedHost);
        }
    }
    Ok(if own { Route::Own } else { Route::Upstream })
}

/// Approximate size of the request head's header section, as sent.
pub fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}
