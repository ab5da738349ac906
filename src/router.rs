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
    let raw = match req.headers().get(HOST) {
        Some(h) => h.as_bytes(),
        None => req.uri().authority()?.as_str().as_bytes(),
    };
    match plain_host(raw) {
        Some(host) => Some(std::borrow::Cow::Borrowed(host)),
        None => host_name(req).map(std::borrow::Cow::Owned),
    }
}

/// The bytes of a plain host name or IPv4 address: lower-case letters, digits, `.`, `-`.
const PLAIN_HOST_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(b as u8, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-');
        b += 1;
    }
    table
};

/// `raw` without its port when it is a plain lower-case name or IPv4 address with at
/// most one `:port` of digits (checked byte by byte against a table, so the header
/// needs no separate UTF-8 check); `None` for anything else.
fn plain_host(raw: &[u8]) -> Option<&str> {
    let end = raw
        .iter()
        .position(|&b| !PLAIN_HOST_BYTE[usize::from(b)])
        .unwrap_or(raw.len());
    let port_ok = match raw[end..].split_first() {
        None => true,
        // A port is digits, at least one.
        Some((b':', digits)) => !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    if end == 0 || !port_ok {
        return None;
    }
    // Every byte before `end` is ASCII, so this never fails.
    std::str::from_utf8(&raw[..end]).ok()
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
            "lab.clinic.example:44x",
            "10.0.0.1:80:90",
            "caf\u{e9}.clinic.example",
            "lab_1.clinic.example",
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
