//! Hop-by-hop headers (RFC 9110 §7.6.1): meaningful for one connection only, so never
//! forwarded — neither the standard ones nor any header named in `Connection`. Only
//! a WebSocket handshake keeps an `Upgrade`, and then it is exactly `websocket`: no
//! other protocol (h2c with its `HTTP2-Settings`) ever reaches the other side.
//!
//! Runs twice per proxied request (request and response), so it walks the header
//! list once and touches the map only when there is something to remove.

use http::header::{CONNECTION, HeaderMap, HeaderName, UPGRADE};

pub use crate::http::hop_by_hop::is_hop_by_hop;

/// Removes hop-by-hop headers and every header named in `Connection`. With
/// `websocket` (a validated WebSocket handshake, see `super::websocket`), the result
/// says `Connection: upgrade` and `Upgrade: websocket`, nothing else of the kind.
pub fn remove(headers: &mut HeaderMap, websocket: bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    let mut connection = false;
    for name in headers.keys() {
        if name == CONNECTION {
            connection = true;
        }
        if is_hop_by_hop(name) {
            doomed.push(name.clone());
        }
    }
    if connection {
        for token in headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
        {
            let token = token.trim();
            // Connection options that name no header of their own (or one removed
            // above anyway): no need to build a header name for them.
            if token.eq_ignore_ascii_case("keep-alive") || token.eq_ignore_ascii_case("close") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                doomed.push(name);
            }
        }
    }
    for name in &doomed {
        headers.remove(name);
    }
    if websocket {
        headers.insert(CONNECTION, http::HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, http::HeaderValue::from_static("websocket"));
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
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        remove(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn every_standard_hop_by_hop_header_goes_without_a_connection_header() {
        let mut h = HeaderMap::new();
        for n in [
            "keep-alive",
            "proxy-authenticate",
            "proxy-authorization",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "http2-settings",
            "x-keep",
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        remove(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
    }

    #[test]
    fn connection_options_that_are_not_header_names_are_skipped() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("close, X-Foo, Keep-Alive"),
        );
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        remove(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
    }

    #[test]
    fn a_websocket_handshake_keeps_its_upgrade_headers_only() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade, x-foo"));
        h.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQAoAAAAAIAAAAA"),
        );
        remove(&mut h, true);
        assert_eq!(h[CONNECTION], "upgrade");
        assert_eq!(h[UPGRADE], "websocket");
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn an_h2c_upgrade_loses_upgrade_and_settings_even_when_connection_names_neither() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        h.insert(UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQAoAAAAAIAAAAA"),
        );
        h.insert("x-keep", HeaderValue::from_static("yes"));
        remove(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
    }
}
