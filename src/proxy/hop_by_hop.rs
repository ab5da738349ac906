//! Hop-by-hop headers (RFC 9110 §7.6.1): meaningful for one connection only, so never
//! forwarded — neither the standard ones nor any header named in `Connection`.

use http::header::{CONNECTION, HeaderMap, HeaderName};

/// Header names that always belong to a single connection.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Removes hop-by-hop headers and every header named in `Connection`. With
/// `keep_upgrade`, `Connection: upgrade` and `Upgrade` survive (for WebSocket).
pub fn remove(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(keep_upgrade && name == http::header::UPGRADE) {
            headers.remove(&name);
        }
    }
    for name in HOP_BY_HOP {
        if keep_upgrade && (*name == "upgrade" || *name == "connection") {
            continue;
        }
        headers.remove(*name);
    }
    if keep_upgrade {
        headers.insert(CONNECTION, http::HeaderValue::from_static("upgrade"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn removes_standard_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, X-Foo, remote-user"),
        );
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("remote-user", HeaderValue::from_static("evil"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        remove(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }
}
