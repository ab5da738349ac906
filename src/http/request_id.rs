//! The request id that ties the access line, the upstream's logs and the client's
//! report together: taken from `X-Request-Id` when a trusted proxy already assigned
//! one, generated otherwise (16 random hex digits). A client outside the trusted
//! proxies cannot choose it, so ids in the logs cannot be forged or made to collide.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use ipnet::IpNet;

use super::client_ip;
use crate::core::tokens::random_bytes;

/// The header carrying the id, to the upstream and back to the client.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id accepted from a proxy.
const MAX_LEN: usize = 128;

/// Whether a proxy-supplied id is safe to log and forward: short, and only characters
/// that need no escaping anywhere (no spaces, quotes or control characters).
fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LEN
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

/// A new id: 64 random bits as 16 lower-case hex digits.
pub fn generate() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, b) in random_bytes::<8>().iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("0000000000000000"))
}

/// Chooses the request's id and writes it into `headers` (replacing whatever a
/// non-trusted client sent), so the upstream receives it.
pub fn assign(headers: &mut HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> HeaderValue {
    let from_proxy = if trusted.is_empty() || !client_ip::is_trusted(peer, trusted) {
        None
    } else {
        headers
            .get(&X_REQUEST_ID)
            .filter(|v| acceptable(v))
            .cloned()
    };
    let id = from_proxy.unwrap_or_else(generate);
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_str(id).unwrap());
        h
    }

    #[test]
    fn generated_ids_are_sixteen_hex_digits_and_differ() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), 16);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn trusted_proxy_ids_are_kept() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = with("abc-123.def:9");
        let id = assign(&mut h, "10.1.1.1".parse().unwrap(), &trusted);
        assert_eq!(id, "abc-123.def:9");
        assert_eq!(h[&X_REQUEST_ID], "abc-123.def:9");
    }

    #[test]
    fn untrusted_or_unsafe_ids_are_replaced() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = with("chosen-by-client");
        let id = assign(&mut h, "192.0.2.1".parse().unwrap(), &trusted);
        assert_ne!(id, "chosen-by-client");
        assert_eq!(h[&X_REQUEST_ID], id);
        let mut h = with("has space");
        assert_ne!(
            assign(&mut h, "10.1.1.1".parse().unwrap(), &trusted),
            "has space"
        );
        let mut h = with(&"x".repeat(129));
        assert_eq!(
            assign(&mut h, "10.1.1.1".parse().unwrap(), &trusted).len(),
            16
        );
    }
}
