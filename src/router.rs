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

/// The request's host as [`host_name`] gives it, borrowed from the header when it is
/// already a plain lower-case name or address with an optional port (the common
/// case), so routing by host allocates nothing; anything else takes [`host_name`]'s
/// parsing.
pub fn host_key<B>(req: &Request<B>) -> Option<std::borrow::Cow<'_, str>> {
    let raw = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    };
    let plain = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if plain {
        Some(std::borrow::Cow::Borrowed(host))
    } else {
        host_name(req).map(std::borrow::Cow::Owned)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The borrowed fast path gives exactly what the parsing one gives.
    #[test]
    fn host_key_agrees_with_host_name() {
        for host in [
            "records.clinic.example",
            "records.clinic.example:8443",
            "Records.Clinic.Example",
            "RECORDS.clinic.example:443",
            "127.0.0.1",
            "127.0.0.1:18403",
            "[::1]:8443",
            "user@records.clinic.example",
            "a:b:c",
            "lab.clinic.example:",
            "",
        ] {
            let req = Request::get("/").header(HOST, host).body(()).unwrap();
            assert_eq!(
                host_key(&req).map(|h| h.into_owned()),
                host_name(&req),
                "{host:?}"
            );
        }
        let h2 = Request::get("https://Lab.Clinic.Example:8443/x")
            .body(())
            .unwrap();
        assert_eq!(host_key(&h2).as_deref(), Some("lab.clinic.example"));
    }
}
