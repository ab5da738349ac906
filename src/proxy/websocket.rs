//! WebSocket upgrades: the only protocol the gateway ever lets a connection switch to.
//! A request opens a WebSocket only when it is exactly an RFC 6455 opening handshake;
//! every other `Upgrade` (h2c above all: a spliced h2c connection would reach the
//! upstream with no gateway in between) is stripped by `hop_by_hop` and the request
//! goes on as plain HTTP/1.1. An upstream's `101` is accepted only when it completes
//! that handshake (`Sec-WebSocket-Accept` computed from the client's key). Upgrades
//! opened from another site are refused (cross-site WebSocket hijacking rides on the
//! victim's cookies).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue, ORIGIN, UPGRADE};
use http::{Method, Uri, Version};
use sha1::{Digest, Sha1};

static SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
static SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// RFC 6455 §1.3: appended to the client's key before hashing.
const HANDSHAKE_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A client's WebSocket opening handshake, and the answer it expects.
#[derive(Debug)]
pub struct WebSocketRequest {
    /// The `Sec-WebSocket-Accept` the upstream's `101` must carry.
    accept: HeaderValue,
}

/// The WebSocket opening handshake this request is, if it is exactly one: `GET` over
/// HTTP/1.1, `Connection` naming `upgrade`, a single `Upgrade: websocket` (no list, no
/// other protocol) and a single `Sec-WebSocket-Key` of 16 bytes in base64.
pub fn requested(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Option<WebSocketRequest> {
    // The common case, first: no Upgrade header at all.
    if !headers.contains_key(UPGRADE) {
        return None;
    }
    if method != Method::GET || version != Version::HTTP_11 {
        return None;
    }
    if !names_upgrade(headers) || !only_websocket(headers) {
        return None;
    }
    let key = single(headers, &SEC_WEBSOCKET_KEY)?;
    let decoded = STANDARD.decode(key.as_bytes()).ok()?;
    if decoded.len() != 16 {
        return None;
    }
    Some(WebSocketRequest {
        accept: accept_for(key.as_bytes()),
    })
}

impl WebSocketRequest {
    /// Whether the upstream's `101` completes this handshake: it switches to
    /// `websocket` (and only that), says so in `Connection`, and carries the right
    /// `Sec-WebSocket-Accept`.
    pub fn completed_by(&self, response: &HeaderMap) -> bool {
        names_upgrade(response)
            && only_websocket(response)
            && single(response, &SEC_WEBSOCKET_ACCEPT).is_some_and(|a| a == self.accept)
    }
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2): base64(SHA-1(key ‖ GUID)).
fn accept_for(key: &[u8]) -> HeaderValue {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(HANDSHAKE_GUID);
    let encoded = STANDARD.encode(sha.finalize());
    // Base64 is always a valid header value.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// `Connection` lists the `upgrade` option.
fn names_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
}

/// One `Upgrade` field whose whole value is `websocket`.
fn only_websocket(headers: &HeaderMap) -> bool {
    single(headers, &UPGRADE).is_some_and(|v| {
        v.to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
    })
}

/// The header's value when it is sent exactly once.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    all.next().is_none().then_some(first)
}

fn default_port(scheme: &str) -> u16 {
    if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        443
    } else {
        80
    }
}

/// True when the request's `Origin` (if any) is this site: same scheme, host and port
/// as the `Host` it was sent to. Non-browser clients send no `Origin` and pass.
pub fn origin_allowed(headers: &HeaderMap, tls: bool) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Ok(uri) = origin.parse::<Uri>() else {
        return false;
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return false;
    };
    let ours = if tls { "https" } else { "http" };
    if !scheme.eq_ignore_ascii_case(ours) {
        return false;
    }
    let Some(Ok(site)) = headers.get(HOST).map(|h| h.to_str()) else {
        return false;
    };
    let Ok(site) = site.parse::<http::uri::Authority>() else {
        return false;
    };
    let origin_port = uri.port_u16().unwrap_or(default_port(scheme));
    let site_port = site.port_u16().unwrap_or(default_port(ours));
    host.eq_ignore_ascii_case(site.host()) && origin_port == site_port
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            m.insert(ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        m
    }

    fn handshake(upgrade: &str, key: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        m.insert(UPGRADE, HeaderValue::from_str(upgrade).unwrap());
        m.insert(&SEC_WEBSOCKET_KEY, HeaderValue::from_str(key).unwrap());
        m
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    #[test]
    fn the_rfc_6455_example_key_gives_the_rfc_accept() {
        assert_eq!(accept_for(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn only_a_plain_websocket_handshake_is_an_upgrade() {
        let ok = |m: &Method, v: Version, h: &HeaderMap| requested(m, v, h).is_some();
        let get = Method::GET;
        assert!(ok(&get, Version::HTTP_11, &handshake("websocket", KEY)));
        assert!(ok(&get, Version::HTTP_11, &handshake("WebSocket", KEY)));
        for upgrade in [
            "h2c",
            "websocket, h2c",
            "h2c, websocket",
            "websocket/13",
            "foo",
            "",
        ] {
            assert!(
                !ok(&get, Version::HTTP_11, &handshake(upgrade, KEY)),
                "{upgrade:?}"
            );
        }
        assert!(!ok(
            &Method::POST,
            Version::HTTP_11,
            &handshake("websocket", KEY)
        ));
        assert!(!ok(&get, Version::HTTP_10, &handshake("websocket", KEY)));
        for key in [
            "",
            "c2hvcnQ=",
            "not base64!",
            "dGhlIHNhbXBsZSBub25jZSBsb25nZXI=",
        ] {
            assert!(
                !ok(&get, Version::HTTP_11, &handshake("websocket", key)),
                "{key:?}"
            );
        }
        let mut two = handshake("websocket", KEY);
        two.append(UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!ok(&get, Version::HTTP_11, &two), "a second Upgrade field");
        let mut no_conn = handshake("websocket", KEY);
        no_conn.remove(CONNECTION);
        assert!(!ok(&get, Version::HTTP_11, &no_conn));
        assert!(!ok(&get, Version::HTTP_11, &HeaderMap::new()));
    }

    #[test]
    fn a_101_completes_the_handshake_only_with_the_right_accept() {
        let ws = requested(&Method::GET, Version::HTTP_11, &handshake("websocket", KEY)).unwrap();
        let answer = |upgrade: &str, accept: Option<&str>| {
            let mut m = HeaderMap::new();
            m.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            m.insert(UPGRADE, HeaderValue::from_str(upgrade).unwrap());
            if let Some(a) = accept {
                m.insert(&SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(a).unwrap());
            }
            m
        };
        let right = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        assert!(ws.completed_by(&answer("websocket", Some(right))));
        assert!(!ws.completed_by(&answer("websocket", None)));
        assert!(!ws.completed_by(&answer("websocket", Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA="))));
        assert!(!ws.completed_by(&answer("h2c", Some(right))));
        let mut no_conn = answer("websocket", Some(right));
        no_conn.remove(CONNECTION);
        assert!(!ws.completed_by(&no_conn));
    }

    #[test]
    fn same_site_origins_pass_foreign_ones_do_not() {
        assert!(origin_allowed(
            &h(Some("https://clinic.example"), "clinic.example"),
            true
        ));
        assert!(origin_allowed(
            &h(Some("https://127.0.0.1:8443"), "127.0.0.1:8443"),
            true
        ));
        assert!(origin_allowed(&h(None, "clinic.example"), true));
        assert!(!origin_allowed(
            &h(Some("https://evil.example"), "clinic.example"),
            true
        ));
        assert!(!origin_allowed(
            &h(Some("https://127.0.0.1:9999"), "127.0.0.1:8443"),
            true
        ));
        assert!(!origin_allowed(&h(Some("null"), "clinic.example"), true));
        assert!(!origin_allowed(
            &h(Some("http://clinic.example"), "clinic.example"),
            true
        ));
    }
}
